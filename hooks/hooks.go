// Package hooks asks the application before Parley lets something happen
// (proto/api/hooks.proto): before a WebSocket connects (the application
// authenticates it with its own cookie or session), before a user joins a
// room, and before a user's post is stored (allow, deny, or rewrite). Each
// hook is a Connect call with a JSON body to the application's URL,
// signed (sign.go), bounded by its timeout, and when it fails — times
// out, errors, answers garbage — its policy decides: fail open (allow) or
// fail closed (refuse). The rooms see only the final verdict
// (actors.Hooks), and never wait on the network themselves.
package hooks

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"connectrpc.com/connect"

	"github.com/parleychat/parley/actors"
	"github.com/parleychat/parley/auth"
	apiv1 "github.com/parleychat/parley/proto/api"
	"github.com/parleychat/parley/proto/api/apiv1connect"
)

// Hook is one hook's configuration.
type Hook struct {
	// URL is the application's HookService base URL (the method's path is
	// appended); empty: the hook is off.
	URL string `json:"url"`
	// Timeout bounds one call. Zero means 2s.
	Timeout Duration `json:"timeout"`
	// FailOpen allows what was asked when the call fails; otherwise it is
	// refused (fail closed, the default).
	FailOpen bool `json:"fail_open"`
}

// Config is the hooks file (-hooks): the three hooks and the secret that
// signs their requests.
type Config struct {
	Connect Hook `json:"connect"`
	Join    Hook `json:"join"`
	Post    Hook `json:"post"`
	// Secret signs every request (Parley-Signature); at least 32 bytes.
	// SecretFile, when set, holds it instead (so the JSON file can be
	// shared without it).
	Secret     string `json:"secret"`
	SecretFile string `json:"secret_file"`
}

// Duration is a time.Duration written as "2s" in JSON.
type Duration time.Duration

// UnmarshalJSON reads "1.5s" or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		*d = Duration(v)
		return err
	}
	var secs float64
	if err := json.Unmarshal(b, &secs); err != nil {
		return fmt.Errorf("a duration is \"2s\" or a number of seconds, not %s", b)
	}
	*d = Duration(secs * float64(time.Second))
	return nil
}

// Load reads a hooks file (JSON).
func Load(file string) (Config, error) {
	var c Config
	b, err := os.ReadFile(file)
	if err != nil {
		return c, fmt.Errorf("hooks file: %w", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return c, fmt.Errorf("hooks file %s: %w", file, err)
	}
	if c.SecretFile != "" {
		s, err := os.ReadFile(c.SecretFile)
		if err != nil {
			return c, fmt.Errorf("hooks file %s: secret_file: %w", file, err)
		}
		c.Secret = strings.TrimSpace(string(s))
	}
	return c, nil
}

// Options are what the hooks need besides their configuration.
type Options struct {
	// MaxTextRunes bounds a post's text as the hook rewrites it (as the
	// node bounds clients'); a longer rewrite is a failed call.
	MaxTextRunes int
	// Observe, when set, is told of every call: the hook (connect, join,
	// post), its outcome (allow, deny, rewrite, failed_open, failed_closed)
	// and how long it took.
	Observe func(hook, outcome string, took time.Duration)
	Logger  *slog.Logger
	// HTTPClient makes the calls; nil: one with sensible pool limits.
	HTTPClient *http.Client
}

// Client calls the application's hooks.
type Client struct {
	cfg    Config
	o      Options
	svc    map[string]apiv1connect.HookServiceClient // by hook name
	secret []byte
}

// New checks cfg and returns its client; nil when no hook is configured.
func New(cfg Config, o Options) (*Client, error) {
	if cfg.Connect.URL == "" && cfg.Join.URL == "" && cfg.Post.URL == "" {
		return nil, nil
	}
	if len(cfg.Secret) < 32 {
		return nil, fmt.Errorf("hooks: the secret that signs their requests is %d bytes; at least 32 are needed (secret or secret_file)", len(cfg.Secret))
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxTextRunes <= 0 {
		o.MaxTextRunes = 4000
	}
	hc := o.HTTPClient
	if hc == nil {
		hc = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 256, IdleConnTimeout: 90 * time.Second}}
	}
	c := &Client{cfg: cfg, o: o, svc: map[string]apiv1connect.HookServiceClient{}, secret: []byte(cfg.Secret)}
	signed := &http.Client{Transport: &signer{next: transportOf(hc), secret: c.secret}, Timeout: hc.Timeout}
	for name, h := range map[string]Hook{"connect": cfg.Connect, "join": cfg.Join, "post": cfg.Post} {
		if h.URL == "" {
			continue
		}
		if !strings.HasPrefix(h.URL, "http://") && !strings.HasPrefix(h.URL, "https://") {
			return nil, fmt.Errorf("hooks: %s: %q is not an http:// or https:// URL", name, h.URL)
		}
		c.svc[name] = apiv1connect.NewHookServiceClient(signed, strings.TrimSuffix(h.URL, "/"))
	}
	return c, nil
}

func transportOf(hc *http.Client) http.RoundTripper {
	if hc.Transport != nil {
		return hc.Transport
	}
	return http.DefaultTransport
}

func (c *Client) hook(name string) Hook {
	switch name {
	case "connect":
		return c.cfg.Connect
	case "join":
		return c.cfg.Join
	}
	return c.cfg.Post
}

// call runs one hook call with its timeout and reports the outcome: the
// caller's verdict, or the policy's when the call failed.
func call[Req, Resp any](c *Client, name string, req *Req, do func(context.Context, *connect.Request[Req]) (*connect.Response[Resp], error)) (*Resp, bool) {
	h := c.hook(name)
	timeout := time.Duration(h.Timeout)
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	resp, err := do(ctx, connect.NewRequest(req))
	if err != nil {
		c.o.Logger.Warn("hooks: "+name+" hook failed", "url", h.URL, "err", err, "fail_open", h.FailOpen)
		return nil, false
	}
	return resp.Msg, true
}

// observe reports a call's outcome and returns it.
func (c *Client) observe(name, outcome string, start time.Time) {
	if c.o.Observe != nil {
		c.o.Observe(name, outcome, time.Since(start))
	}
}

func (c *Client) failed(name string, start time.Time) bool {
	open := c.hook(name).FailOpen
	outcome := "failed_closed"
	if open {
		outcome = "failed_open"
	}
	c.observe(name, outcome, start)
	return open
}

// ActorHooks are the join and post hooks as the rooms take them (nil for a
// hook that is off).
func (c *Client) ActorHooks() actors.Hooks {
	var h actors.Hooks
	if c == nil {
		return h
	}
	if _, ok := c.svc["join"]; ok {
		h.Join = c.beforeJoin
	}
	if _, ok := c.svc["post"]; ok {
		h.Post = c.beforePost
	}
	return h
}

// Authenticator is the connect hook as the transport takes it (nil when
// it is off).
func (c *Client) Authenticator() auth.Authenticator {
	if c == nil {
		return nil
	}
	if _, ok := c.svc["connect"]; !ok {
		return nil
	}
	return auth.AuthenticatorFunc(c.beforeConnect)
}

func (c *Client) beforeJoin(_ context.Context, room, user string) actors.Verdict {
	start := time.Now()
	resp, ok := call(c, "join", &apiv1.BeforeJoinRequest{Room: room, User: user}, c.svc["join"].BeforeJoin)
	switch {
	case !ok:
		open := c.failed("join", start)
		return actors.Verdict{Allow: open, Failed: !open}
	case !resp.GetAllow():
		c.observe("join", "deny", start)
		return actors.Verdict{Reason: resp.GetReason()}
	}
	c.observe("join", "allow", start)
	return actors.Verdict{Allow: true}
}

func (c *Client) beforePost(_ context.Context, room, user, text, id string) actors.Verdict {
	start := time.Now()
	resp, ok := call(c, "post", &apiv1.BeforePostRequest{Room: room, User: user, Text: text, ClientMsgId: id}, c.svc["post"].BeforePost)
	if ok && resp.Text != nil {
		if n := utf8.RuneCountInString(resp.GetText()); resp.GetText() == "" || n > c.o.MaxTextRunes || !utf8.ValidString(resp.GetText()) {
			c.o.Logger.Warn("hooks: the post hook rewrote a post to an empty, invalid or too long text; taken as a failed call", "room", room, "runes", n)
			ok = false
		}
	}
	switch {
	case !ok:
		open := c.failed("post", start)
		return actors.Verdict{Allow: open, Failed: !open, Text: text}
	case !resp.GetAllow():
		c.observe("post", "deny", start)
		return actors.Verdict{Reason: resp.GetReason()}
	case resp.Text != nil && resp.GetText() != text:
		c.observe("post", "rewrite", start)
		return actors.Verdict{Allow: true, Text: resp.GetText()}
	}
	c.observe("post", "allow", start)
	return actors.Verdict{Allow: true, Text: text}
}

// forwarded are the handshake headers the connect hook is shown.
var forwarded = []string{"Cookie", "Authorization", "Origin", "User-Agent"}

func (c *Client) beforeConnect(r *http.Request, remote string) (*auth.Claims, error) {
	start := time.Now()
	req := &apiv1.BeforeConnectRequest{RemoteAddr: remote, Headers: map[string]string{}, Query: map[string]string{}}
	for _, h := range forwarded {
		if v := r.Header.Get(h); v != "" {
			req.Headers[h] = v
		}
	}
	for k, v := range r.URL.Query() {
		if len(v) > 0 {
			req.Query[k] = v[0]
		}
	}
	resp, ok := call(c, "connect", req, c.svc["connect"].BeforeConnect)
	if ok && resp.GetAllow() {
		if err := actors.ValidName(resp.GetUser()); err != nil {
			c.o.Logger.Warn("hooks: the connect hook allowed a connection without a valid user name; taken as a failed call", "err", err)
			ok = false
		}
	}
	if !ok {
		if c.failed("connect", start) {
			return nil, nil // in as if it had brought nothing: Hello decides
		}
		return nil, auth.ErrUnavailable
	}
	if !resp.GetAllow() {
		c.observe("connect", "deny", start)
		reason := resp.GetReason()
		if reason == "" {
			reason = "refused by the application"
		}
		return nil, &auth.Denied{Reason: reason}
	}
	c.observe("connect", "allow", start)
	cl := &auth.Claims{Subject: resp.GetUser(), Rooms: resp.GetRooms(), ReadOnlyRooms: resp.GetReadOnlyRooms(), Roles: resp.GetRoles()}
	if resp.GetAllRooms() {
		cl.Rooms = nil
	} else if cl.Rooms == nil {
		cl.Rooms = []string{}
	}
	if ms := resp.GetExpiresMs(); ms > 0 {
		cl.Expiry = time.UnixMilli(ms)
	}
	for pattern, role := range cl.Roles {
		if role != auth.RoleModerator && role != auth.RoleOwner {
			return nil, &auth.Denied{Reason: fmt.Sprintf("the application gave an unknown role %q for %q", role, pattern)}
		}
	}
	return cl, nil
}
