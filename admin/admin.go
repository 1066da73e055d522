// Package admin is the operator's HTTP API, served on its own listener
// (-admin-addr, loopback by default): list rooms and members, kick a user,
// close a room, broadcast a notice, Prometheus metrics and pprof. Every
// action is a message to the actor that owns the state (see actors/admin.go).
package admin

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/parleychat/parley/actors"
)

// Options configures the admin API.
type Options struct {
	// Token, when set, is required as "Authorization: Bearer <token>" on
	// every request. Required when the listener is not on loopback.
	Token string
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
	if o.Token == "" {
		return mux
	}
	want := []byte("Bearer " + o.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="parley-admin"`)
			http.Error(w, "admin API: send Authorization: Bearer <the -admin-token value>", http.StatusUnauthorized)
			return
		}
		mux.ServeHTTP(w, r)
	})
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
}

func readBody(w http.ResponseWriter, r *http.Request) (actionBody, bool) {
	var b actionBody
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&b); err != nil && !errors.Is(err, io.EOF) {
		http.Error(w, "admin API: the body must be JSON: "+err.Error(), http.StatusBadRequest)
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
		http.Error(w, `admin API: name the user: {"user":"...","reason":"..."}`, http.StatusBadRequest)
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
		http.Error(w, `admin API: give the notice: {"text":"..."}`, http.StatusBadRequest)
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
	if errors.Is(err, context.DeadlineExceeded) {
		status = http.StatusGatewayTimeout
	}
	http.Error(w, "admin API: "+err.Error(), status)
}
