package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"
	"unicode"

	"connectrpc.com/connect"

	"github.com/parleychat/parley/hooks"
	parleypb "github.com/parleychat/parley/proto"
	apiv1 "github.com/parleychat/parley/proto/api"
	"github.com/parleychat/parley/proto/api/apiv1connect"
)

// WelcomeRoom is the room the application makes and greets in.
const WelcomeRoom = "welcome"

// Config is what the application needs to know.
type Config struct {
	APIURL, APIKey string
	// Secret checks the signature of Parley's requests (hooks, webhooks).
	Secret []byte
	// Words are filtered out of posts (case-insensitive, whole words).
	Words  []string
	Logger *slog.Logger
}

// App is the example application: a hook service, a webhook receiver and
// a client of Parley's server API.
type App struct {
	apiv1connect.UnimplementedHookServiceHandler
	cfg    Config
	api    apiv1connect.ParleyServiceClient
	filter *regexp.Regexp

	mu      sync.Mutex
	seen    map[string]bool // webhook event ids: a redelivery is dropped
	notices []Notice
}

// Notice is one push notification the application would send.
type Notice struct {
	User, Room, From, Text string
	Seq                    uint64
}

// New returns the application.
func New(cfg Config) *App {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	var quoted []string
	for _, w := range cfg.Words {
		if w = strings.TrimSpace(w); w != "" {
			quoted = append(quoted, regexp.QuoteMeta(w))
		}
	}
	a := &App{cfg: cfg, seen: map[string]bool{}}
	if len(quoted) > 0 {
		a.filter = regexp.MustCompile(`(?i)\b(` + strings.Join(quoted, "|") + `)\b`)
	}
	bearer := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+cfg.APIKey)
			return next(ctx, req)
		}
	})
	a.api = apiv1connect.NewParleyServiceClient(http.DefaultClient, cfg.APIURL, connect.WithInterceptors(bearer))
	return a
}

// Welcome makes sure the welcome room exists and publishes the welcome
// into it, once however often the application starts (the idempotency
// key), and returns the welcome's seq.
func (a *App) Welcome(ctx context.Context) (uint64, error) {
	_, err := a.api.CreateRoom(ctx, connect.NewRequest(&apiv1.CreateRoomRequest{Room: WelcomeRoom, Title: "Welcome", Topic: "Say hello"}))
	if err != nil && connect.CodeOf(err) != connect.CodeAlreadyExists {
		return 0, err
	}
	resp, err := a.api.Publish(ctx, connect.NewRequest(&apiv1.PublishRequest{
		Room: WelcomeRoom, SenderKind: parleypb.SenderKind_SENDER_KIND_SYSTEM,
		Text: "Welcome! Be kind: some words are filtered here.", IdempotencyKey: "welcome-v1",
	}))
	if err != nil {
		return 0, err
	}
	return resp.Msg.GetSeq(), nil
}

// Handler serves Parley's calls: the hooks under their Connect path, and
// webhooks at /webhooks; every request's signature is checked first.
func (a *App) Handler() http.Handler {
	mux := http.NewServeMux()
	path, h := apiv1connect.NewHookServiceHandler(a)
	mux.Handle(path, a.signed(h))
	mux.Handle("POST /webhooks", a.signed(http.HandlerFunc(a.webhook)))
	return mux
}

// signed refuses a request whose signature does not check out (a caller
// who is not Parley, or a replay).
func (a *App) signed(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		if err := hooks.Verify(a.cfg.Secret, r.Header.Get(hooks.SignatureHeader), body, time.Now(), 5*time.Minute); err != nil {
			a.cfg.Logger.Warn("refused an unsigned or stale request", "path", r.URL.Path, "err", err)
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		next.ServeHTTP(w, r)
	})
}

// BeforePost filters the word list out of a post, and refuses a post that
// is all capitals (shouting).
func (a *App) BeforePost(_ context.Context, req *connect.Request[apiv1.BeforePostRequest]) (*connect.Response[apiv1.BeforePostResponse], error) {
	text := req.Msg.GetText()
	if shouting(text) {
		return connect.NewResponse(&apiv1.BeforePostResponse{Reason: "no shouting, please"}), nil
	}
	if a.filter != nil && a.filter.MatchString(text) {
		clean := a.filter.ReplaceAllStringFunc(text, func(w string) string { return strings.Repeat("*", len([]rune(w))) })
		return connect.NewResponse(&apiv1.BeforePostResponse{Allow: true, Text: &clean}), nil
	}
	return connect.NewResponse(&apiv1.BeforePostResponse{Allow: true}), nil
}

func shouting(s string) bool {
	letters, upper := 0, 0
	for _, r := range s {
		if unicode.IsLetter(r) {
			letters++
			if unicode.IsUpper(r) {
				upper++
			}
		}
	}
	return letters >= 8 && upper == letters
}

// webhookEvent is the part of a webhook body the application reads.
type webhookEvent struct {
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	Room       string          `json:"room"`
	Seq        uint64          `json:"seq"`
	Event      json.RawMessage `json:"event"`
	Recipients []string        `json:"recipients"`
}

// webhook records the notify events (once each: Parley delivers at least
// once, and a redelivery has the same id).
func (a *App) webhook(w http.ResponseWriter, r *http.Request) {
	var ev webhookEvent
	if err := json.NewDecoder(r.Body).Decode(&ev); err != nil || ev.ID == "" {
		http.Error(w, "not a webhook event", http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.seen[ev.ID] {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	a.seen[ev.ID] = true
	if ev.Type == "notify" {
		var post struct {
			Sender string `json:"sender"`
			Text   string `json:"text"`
		}
		if err := json.Unmarshal(ev.Event, &post); err != nil {
			http.Error(w, "bad event", http.StatusBadRequest)
			return
		}
		for _, u := range ev.Recipients {
			a.notices = append(a.notices, Notice{User: u, Room: ev.Room, From: post.Sender, Text: post.Text, Seq: ev.Seq})
			a.cfg.Logger.Info("would push a notification", "user", u, "room", ev.Room, "from", post.Sender)
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

// Notices are the notifications recorded so far.
func (a *App) Notices() []Notice {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Notice(nil), a.notices...)
}
