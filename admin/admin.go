// Package admin is the operator's HTTP API, served on its own listener
// (-admin-addr, loopback by default): list rooms and members, kick a user,
// close a room, broadcast a notice, Prometheus metrics and pprof. Every
// action is a message to the actor that owns the state (see actors/admin.go).
//
// It is for curl, scripts and Prometheus, never for browsers: a web page the
// operator happens to have open can send requests to a loopback address too
// (a "simple" cross-site POST needs no permission), and a DNS-rebinding page
// can read the answers. So every request that a browser marks as coming from
// another site (Origin, Sec-Fetch-Site) is refused; without a token, so is
// every request whose Host is not this listener's own name (localhost, a
// loopback address, or the -admin-addr host); and actions take only
// Content-Type: application/json, which no page can send cross-site without
// a CORS preflight this API never grants.
package admin

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"strings"
	"time"

	"github.com/parleychat/parley/actors"
	parleypb "github.com/parleychat/parley/proto"
)

// Options configures the admin API.
type Options struct {
	// Token, when set, is required as "Authorization: Bearer <token>" on
	// every request. Required when the listener is not on loopback.
	Token string
	// Addr is the listener's address (-admin-addr). Without a Token, a
	// request's Host must name its host, localhost or a loopback address.
	Addr string
	// Metrics serves /metrics; nil leaves it out.
	Metrics http.Handler
	// Logger records every action. Nil discards.
	Logger *slog.Logger
}

// Handler returns the admin API for a node.
func Handler(node *actors.Node, o Options) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	a := &api{node: node, log: o.Logger}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /rooms", a.rooms)
	mux.HandleFunc("GET /rooms/{room}", a.members)
	mux.HandleFunc("POST /rooms/{room}/close", a.closeRoom)
	mux.HandleFunc("POST /kick", a.kick)
	mux.HandleFunc("POST /notice", a.notice)
	if o.Metrics != nil {
		mux.Handle("GET /metrics", o.Metrics)
	}
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return guard(o, mux)
}

// guard refuses what a browser sends from another site, foreign Host
// headers when there is no token, and requests without the token when there
// is one. Errors are JSON, like every answer.
func guard(o Options, next http.Handler) http.Handler {
	want := []byte("Bearer " + o.Token)
	own := ""
	if h, _, err := net.SplitHostPort(o.Addr); err == nil {
		own = strings.ToLower(h)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if o.Token != "" && subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="parley-admin"`)
			jsonError(w, http.StatusUnauthorized, "admin API: send Authorization: Bearer <the -admin-token value>")
			return
		}
		if why := crossSite(r); why != "" {
			o.Logger.Warn("admin: cross-site request refused", "method", r.Method, "path", r.URL.Path, "why", why, "remote", r.RemoteAddr)
			jsonError(w, http.StatusForbidden, "admin API: refused a request from a web page ("+why+"); the admin API is for curl, scripts and Prometheus")
			return
		}
		if o.Token == "" && !localHost(r.Host, own) {
			o.Logger.Warn("admin: request for a foreign host refused", "method", r.Method, "path", r.URL.Path, "host", r.Host, "remote", r.RemoteAddr)
			jsonError(w, http.StatusForbidden, fmt.Sprintf("admin API: Host %q is not this listener's (use localhost or its address, or set -admin-token to reach it by other names)", r.Host))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// crossSite says why a request comes from a web page of another origin, or
// "" if it does not. Browsers send Sec-Fetch-Site on every request and
// Origin on every POST; curl and Prometheus send neither.
func crossSite(r *http.Request) string {
	switch site := r.Header.Get("Sec-Fetch-Site"); site {
	case "", "same-origin", "none":
	default:
		return "Sec-Fetch-Site: " + site
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return ""
	}
	if u, err := url.Parse(origin); err == nil && u.Host != "" && strings.EqualFold(u.Host, r.Host) {
		return "" // a page served by this listener itself
	}
	return "Origin: " + origin
}

// localHost reports whether a Host header names this listener: localhost,
// a loopback address, or the host of -admin-addr. A DNS-rebinding page
// reaches the listener under its own name, which is none of these.
func localHost(hostport, own string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback() || host == own
	}
	return host == "" || host == "localhost" || host == own
}

type api struct {
	node *actors.Node
	log  *slog.Logger
}

const callTimeout = 5 * time.Second

func (a *api) rooms(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), callTimeout)
	defer cancel()
	rooms, err := a.node.ListRooms(ctx)
	if err != nil {
		fail(w, err)
		return
	}
	type room struct {
		Name    string `json:"name"`
		Members uint32 `json:"members"`
	}
	out := make([]room, 0, len(rooms))
	for _, x := range rooms {
		out = append(out, room{x.GetName(), x.GetMembers()})
	}
	reply(w, map[string]any{"rooms": out})
}

func (a *api) members(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), callTimeout)
	defer cancel()
	ms, err := a.node.RoomMembers(ctx, r.PathValue("room"))
	if errors.Is(err, actors.ErrNoRoom) {
		jsonError(w, http.StatusNotFound, fmt.Sprintf("admin API: no room %q: it is not active and has no stored history", r.PathValue("room")))
		return
	}
	if err != nil {
		fail(w, err)
		return
	}
	type member struct {
		Name    string `json:"name"`
		Devices uint32 `json:"devices"`
	}
	out := make([]member, 0, len(ms))
	for _, m := range ms {
		out = append(out, member{m.GetName(), m.GetDevices()})
	}
	reply(w, map[string]any{"room": r.PathValue("room"), "members": out})
}

type actionBody struct {
	User   string `json:"user"`
	Reason string `json:"reason"`
	Text   string `json:"text"`
	// For /rooms/{room}/moderate: invite, revoke, kick, ban, unban, mute,
	// unmute, set_role (with role: member or moderator), transfer; until
	// (RFC 3339) for ban and mute.
	Action string    `json:"action"`
	Role   string    `json:"role"`
	Until  time.Time `json:"until"`
}

// readBody reads an action's JSON body. It must say so
// (Content-Type: application/json): a web page can POST text/plain or a
// form to any address without asking, but not JSON.
func readBody(w http.ResponseWriter, r *http.Request) (actionBody, bool) {
	var b actionBody
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		jsonError(w, http.StatusUnsupportedMediaType, fmt.Sprintf("admin API: send the body as JSON with Content-Type: application/json (got %q)", r.Header.Get("Content-Type")))
		return b, false
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&b); err != nil && !errors.Is(err, io.EOF) {
		jsonError(w, http.StatusBadRequest, "admin API: the body must be JSON: "+err.Error())
		return b, false
	}
	return b, true
}

func (a *api) kick(w http.ResponseWriter, r *http.Request) {
	b, ok := readBody(w, r)
	if !ok {
		return
	}
	if b.User == "" {
		jsonError(w, http.StatusBadRequest, `admin API: name the user: {"user":"...","reason":"..."}`)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), callTimeout)
	defer cancel()
	n, err := a.node.Kick(ctx, b.User, b.Reason)
	if err != nil {
		fail(w, err)
		return
	}
	a.log.Warn("admin: user kicked", "user", b.User, "reason", b.Reason, "connections", n, "remote", r.RemoteAddr)
	reply(w, map[string]any{"user": b.User, "connections_closed": n})
}

func (a *api) closeRoom(w http.ResponseWriter, r *http.Request) {
	b, ok := readBody(w, r)
	if !ok {
		return
	}
	room := r.PathValue("room")
	ctx, cancel := context.WithTimeout(r.Context(), callTimeout)
	defer cancel()
	n, err := a.node.CloseRoom(ctx, room, b.Reason)
	if err != nil {
		fail(w, err)
		return
	}
	a.log.Warn("admin: room closed", "room", room, "reason", b.Reason, "evicted", n, "remote", r.RemoteAddr)
	reply(w, map[string]any{"room": room, "connections_evicted": n})
}

func (a *api) notice(w http.ResponseWriter, r *http.Request) {
	b, ok := readBody(w, r)
	if !ok {
		return
	}
	if b.Text == "" {
		jsonError(w, http.StatusBadRequest, `admin API: give the notice: {"text":"..."}`)
		return
	}
	n := a.node.Broadcast(b.Text)
	a.log.Warn("admin: notice broadcast", "text", b.Text, "sessions", n, "remote", r.RemoteAddr)
	reply(w, map[string]any{"sessions": n})
}

func reply(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	var re *actors.RequestError
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		status = http.StatusGatewayTimeout
	case errors.As(err, &re):
		status = statusOf(re.Code)
	}
	jsonError(w, status, "admin API: "+err.Error())
}

// jsonError answers {"error": msg} with status.
func jsonError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// statusOf is the HTTP status of a refusal's error code.
func statusOf(code parleypb.ErrorCode) int {
	switch code {
	case parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, parleypb.ErrorCode_ERROR_CODE_TOO_LONG:
		return http.StatusBadRequest
	case parleypb.ErrorCode_ERROR_CODE_FORBIDDEN, parleypb.ErrorCode_ERROR_CODE_BANNED, parleypb.ErrorCode_ERROR_CODE_MUTED:
		return http.StatusForbidden
	case parleypb.ErrorCode_ERROR_CODE_NO_SUCH_ROOM, parleypb.ErrorCode_ERROR_CODE_NOT_MEMBER:
		return http.StatusNotFound
	case parleypb.ErrorCode_ERROR_CODE_ROOM_EXISTS:
		return http.StatusConflict
	case parleypb.ErrorCode_ERROR_CODE_UNAVAILABLE, parleypb.ErrorCode_ERROR_CODE_RATE_LIMITED:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
