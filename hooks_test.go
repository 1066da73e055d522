package main_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/parleychat/parley/client"
	"github.com/parleychat/parley/hooks"
	parleypb "github.com/parleychat/parley/proto"
	apiv1 "github.com/parleychat/parley/proto/api"
	"github.com/parleychat/parley/proto/api/apiv1connect"
	"github.com/parleychat/parley/proto/codec"
	"github.com/parleychat/parley/server"
)

// The application's hooks, end to end: a real node calls a fake
// application on 127.0.0.1 before connections, joins and posts, and each
// verdict (allow, deny, rewrite) and each failure (timeout, garbage, down)
// under each policy (fail open, fail closed) shows to the client as its
// error code says.

const hookSecret = "hook-secret-0123456789abcdef0123456789"

// fakeApp is an application's HookService. Posts whose text starts with
// "slow" wait for release; "spam" is denied; "darn" is rewritten.
type fakeApp struct {
	apiv1connect.UnimplementedHookServiceHandler
	release   chan struct{}
	got       chan string // each post's text, as it is asked
	badSigned atomic.Int32
	signed    atomic.Int32
}

func newFakeApp() *fakeApp {
	return &fakeApp{release: make(chan struct{}), got: make(chan string, 64)}
}

func (a *fakeApp) BeforeConnect(_ context.Context, req *connect.Request[apiv1.BeforeConnectRequest]) (*connect.Response[apiv1.BeforeConnectResponse], error) {
	switch req.Msg.GetHeaders()["Cookie"] {
	case "session=alice-cookie":
		return connect.NewResponse(&apiv1.BeforeConnectResponse{Allow: true, User: "alice", Rooms: []string{"team-*"}, Roles: map[string]string{"team-a": "moderator"}}), nil
	case "session=suspended":
		return connect.NewResponse(&apiv1.BeforeConnectResponse{Reason: "account suspended"}), nil
	case "session=nameless":
		return connect.NewResponse(&apiv1.BeforeConnectResponse{Allow: true}), nil
	}
	return connect.NewResponse(&apiv1.BeforeConnectResponse{Reason: "log in first"}), nil
}

func (a *fakeApp) BeforeJoin(_ context.Context, req *connect.Request[apiv1.BeforeJoinRequest]) (*connect.Response[apiv1.BeforeJoinResponse], error) {
	if req.Msg.GetRoom() == "vip" && req.Msg.GetUser() != "alice" {
		return connect.NewResponse(&apiv1.BeforeJoinResponse{Reason: "members of the VIP plan only"}), nil
	}
	return connect.NewResponse(&apiv1.BeforeJoinResponse{Allow: true}), nil
}

func (a *fakeApp) BeforePost(ctx context.Context, req *connect.Request[apiv1.BeforePostRequest]) (*connect.Response[apiv1.BeforePostResponse], error) {
	text := req.Msg.GetText()
	a.got <- text
	switch {
	case strings.HasPrefix(text, "slow"):
		select {
		case <-a.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	case strings.Contains(text, "spam"):
		return connect.NewResponse(&apiv1.BeforePostResponse{Reason: "no spam here"}), nil
	case strings.Contains(text, "darn"):
		clean := strings.ReplaceAll(text, "darn", "d**n")
		return connect.NewResponse(&apiv1.BeforePostResponse{Allow: true, Text: &clean}), nil
	}
	return connect.NewResponse(&apiv1.BeforePostResponse{Allow: true}), nil
}

// serve runs the app on 127.0.0.1, checking every request's signature as
// a real receiver would.
func (a *fakeApp) serve(t *testing.T) string {
	t.Helper()
	path, h := apiv1connect.NewHookServiceHandler(a)
	mux := http.NewServeMux()
	mux.Handle(path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := hooks.Verify([]byte(hookSecret), r.Header.Get(hooks.SignatureHeader), body, time.Now(), 5*time.Minute); err != nil {
			a.badSigned.Add(1)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		a.signed.Add(1)
		r.Body = io.NopCloser(bytes.NewReader(body))
		h.ServeHTTP(w, r)
	}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func startHookedServer(t *testing.T, hc hooks.Config) *server.Server {
	t.Helper()
	hc.Secret = hookSecret
	return startServer(t, func(c *server.Config) { c.Hooks = hc })
}

// TestPostHook: allowed, denied with the reason the client sees, rewritten
// (what is stored and delivered is the application's text); posts of one
// room keep their order however long the hook takes for each, and a slow
// hook holds up its own room only.
func TestPostHook(t *testing.T) {
	t.Parallel()
	app := newFakeApp()
	srv := startHookedServer(t, hooks.Config{Post: hooks.Hook{URL: app.serve(t), Timeout: hooks.Duration(20 * time.Second)}})
	ctx := testCtx(t, 30*time.Second)
	alice := login(t, ctx, srv, codec.JSON, "alice", "chat", "other")
	bob := login(t, ctx, srv, codec.Proto, "bob", "chat")
	posted := func(c *client.Client, text string) *parleypb.RoomEvent {
		t.Helper()
		return nextEvent(t, ctx, c, "the post "+text, func(e *parleypb.Envelope) bool {
			return e.GetEvent().GetRoom() == "chat" && e.GetEvent().GetChange() == nil
		}).GetEvent()
	}

	if _, err := alice.Post(ctx, "chat", "hello", "p1"); err != nil {
		t.Fatal(err)
	}
	if ev := posted(bob, "hello"); ev.GetText() != "hello" {
		t.Fatalf("bob got %q", ev.GetText())
	}
	_, err := alice.Post(ctx, "chat", "buy spam now", "p2")
	wantCode(t, "a post the application denies", err, parleypb.ErrorCode_ERROR_CODE_FORBIDDEN)
	if !strings.Contains(err.Error(), "no spam here") {
		t.Fatalf("the denial %q does not give the application's reason", err)
	}
	seq, err := alice.Post(ctx, "chat", "darn it", "p3")
	if err != nil {
		t.Fatal(err)
	}
	if ev := posted(bob, "darn it"); ev.GetText() != "d**n it" || ev.GetSeq() != seq {
		t.Fatalf("bob got %q at %d, want the rewrite at %d", ev.GetText(), ev.GetSeq(), seq)
	}

	// Order: "slow" is held by the application; "fast", after it in the
	// same room, is decided at once but stored after "slow"; a post to
	// another room goes through meanwhile.
	drain(app.got)
	type result struct {
		seq uint64
		err error
	}
	slow, fast := make(chan result, 1), make(chan result, 1)
	go func() { s, err := alice.Post(ctx, "chat", "slow one", "p4"); slow <- result{s, err} }()
	askedAbout(t, ctx, app.got, "slow one")
	go func() { s, err := alice.Post(ctx, "chat", "fast two", "p5"); fast <- result{s, err} }()
	askedAbout(t, ctx, app.got, "fast two")
	if _, err := alice.Post(ctx, "other", "elsewhere", "p6"); err != nil {
		t.Fatalf("a post to another room while chat's hook is slow: %v", err)
	}
	select {
	case r := <-fast:
		t.Fatalf("fast two was acknowledged (%v) before slow one, which came first, was decided", r)
	default:
	}
	close(app.release)
	rs, rf := <-slow, <-fast
	if rs.err != nil || rf.err != nil || rs.seq >= rf.seq {
		t.Fatalf("slow one at %d (%v), fast two at %d (%v): want both, in the order they came", rs.seq, rs.err, rf.seq, rf.err)
	}
	if a, b := posted(bob, "slow one"), posted(bob, "fast two"); a.GetText() != "slow one" || b.GetText() != "fast two" {
		t.Fatalf("bob got %q then %q", a.GetText(), b.GetText())
	}
	// A retry of an acknowledged post is not asked about again.
	drain(app.got)
	if again, err := alice.Post(ctx, "chat", "slow one", "p4"); err != nil || again != rs.seq {
		t.Fatalf("a retry: %d (%v), want %d", again, err, rs.seq)
	}
	select {
	case text := <-app.got:
		t.Fatalf("the application was asked about a retry of a stored post: %q", text)
	default:
	}
	if app.badSigned.Load() != 0 || app.signed.Load() == 0 {
		t.Fatalf("signatures: %d good, %d bad", app.signed.Load(), app.badSigned.Load())
	}
}

func drain(ch chan string) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

func askedAbout(t *testing.T, ctx context.Context, ch chan string, want string) {
	t.Helper()
	for {
		select {
		case got := <-ch:
			if got == want {
				return
			}
		case <-ctx.Done():
			t.Fatalf("the application was never asked about %q", want)
		}
	}
}

// TestJoinHook: the application allows or denies a join, with its reason.
func TestJoinHook(t *testing.T) {
	t.Parallel()
	app := newFakeApp()
	srv := startHookedServer(t, hooks.Config{Join: hooks.Hook{URL: app.serve(t)}})
	ctx := testCtx(t, 20*time.Second)
	login(t, ctx, srv, codec.JSON, "alice", "vip")
	bob := login(t, ctx, srv, codec.JSON, "bob", "lobby")
	_, err := bob.Join(ctx, "vip", nil)
	wantCode(t, "a join the application denies", err, parleypb.ErrorCode_ERROR_CODE_FORBIDDEN)
	if !strings.Contains(err.Error(), "VIP plan") {
		t.Fatalf("the denial %q does not give the application's reason", err)
	}
}

// deadURL is an http:// URL nothing listens on.
func deadURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

// TestHookFailures: a hook that times out, answers garbage, or is down,
// under each policy: fail open lets the request through as if allowed,
// fail closed refuses it with UNAVAILABLE (retry), and the server goes on.
func TestHookFailures(t *testing.T) {
	t.Parallel()
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // (net/http notices the caller hang up only once the body is read)
		<-r.Context().Done()
	}))
	t.Cleanup(hang.Close)
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, "<html>this is not JSON</html>")
	}))
	t.Cleanup(garbage.Close)
	for _, f := range []struct{ name, url string }{{"times out", hang.URL}, {"answers garbage", garbage.URL}, {"is down", deadURL(t)}} {
		for _, open := range []bool{true, false} {
			policy := map[bool]string{true: "fail open", false: "fail closed"}[open]
			t.Run(f.name+", "+policy, func(t *testing.T) {
				t.Parallel()
				h := hooks.Hook{URL: f.url, Timeout: hooks.Duration(300 * time.Millisecond), FailOpen: open}
				srv := startHookedServer(t, hooks.Config{Join: h, Post: h})
				ctx := testCtx(t, 20*time.Second)
				c := login(t, ctx, srv, codec.JSON, "alice")
				_, jerr := c.Join(ctx, "chat", nil)
				if !open {
					wantCode(t, "a join, the hook failing closed", jerr, parleypb.ErrorCode_ERROR_CODE_UNAVAILABLE)
					return
				}
				if jerr != nil {
					t.Fatalf("a join, the hook failing open: %v", jerr)
				}
				if _, err := c.Post(ctx, "chat", "hello", "p1"); err != nil {
					t.Fatalf("a post, the hook failing open: %v", err)
				}
			})
		}
	}
	// Closed on posts, open on joins: the post is refused UNAVAILABLE and
	// nothing is stored.
	srv := startHookedServer(t, hooks.Config{Join: hooks.Hook{URL: deadURL(t), FailOpen: true}, Post: hooks.Hook{URL: deadURL(t)}})
	ctx := testCtx(t, 20*time.Second)
	c := login(t, ctx, srv, codec.JSON, "alice", "chat")
	_, err := c.Post(ctx, "chat", "hello", "p1")
	wantCode(t, "a post, the hook failing closed", err, parleypb.ErrorCode_ERROR_CODE_UNAVAILABLE)
	if err := c.History(ctx, "chat", 0, 50); err != nil {
		t.Fatal(err)
	}
	for _, ev := range nextEvent(t, ctx, c, "the history", func(e *parleypb.Envelope) bool { return e.GetHistoryPage() != nil }).GetHistoryPage().GetEvents() {
		if ev.GetChange() == nil {
			t.Fatalf("a refused post was stored: %v", ev)
		}
	}
}

// TestConnectHook: the application authenticates a handshake by its own
// cookie: in as its user with its claims, refused with its reason (HTTP
// 403), or, when it cannot be asked, 503 (fail closed) or in with nothing
// (fail open: Hello decides).
func TestConnectHook(t *testing.T) {
	t.Parallel()
	app := newFakeApp()
	srv := startHookedServer(t, hooks.Config{Connect: hooks.Hook{URL: app.serve(t)}})
	ctx := testCtx(t, 20*time.Second)
	dialWith := func(srv *server.Server, cookie string) (*client.Client, error) {
		h := http.Header{}
		if cookie != "" {
			h.Set("Cookie", cookie)
		}
		c, err := client.Dial(ctx, srv.URL(), codec.JSON, &client.Options{Header: h})
		if err == nil {
			t.Cleanup(c.CloseNow)
		}
		return c, err
	}
	c, err := dialWith(srv, "session=alice-cookie")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Hello(ctx, "", false); err != nil {
		t.Fatalf("hello as the application's user: %v", err)
	}
	_, err = c.Join(ctx, "lobby", nil)
	wantCode(t, "a room the application's claims leave out", err, parleypb.ErrorCode_ERROR_CODE_FORBIDDEN)
	if _, err := c.Join(ctx, "team-a", nil); err != nil {
		t.Fatalf("a room the claims allow: %v", err)
	}
	seq, err := c.Post(ctx, "team-a", "hi", "p1")
	if err != nil {
		t.Fatal(err)
	}
	ev := nextEvent(t, ctx, c, "alice's post", func(e *parleypb.Envelope) bool { return e.GetEvent().GetSeq() == seq }).GetEvent()
	if ev.GetSender() != "alice" {
		t.Fatalf("the post's sender is %q, want the application's user", ev.GetSender())
	}
	for _, tc := range []struct{ cookie, reason string }{{"session=suspended", "account suspended"}, {"", "log in first"}, {"session=nameless", "unavailable"}} {
		_, err := dialWith(srv, tc.cookie)
		var de *client.DialError
		wantStatus := http.StatusForbidden
		if tc.cookie == "session=nameless" { // allowed without a user: a broken answer, failing closed
			wantStatus = http.StatusServiceUnavailable
		}
		if !errors.As(err, &de) || de.StatusCode != wantStatus || !strings.Contains(de.Body+" "+err.Error(), tc.reason) {
			t.Fatalf("dial with cookie %q: %v, want HTTP %d naming %q", tc.cookie, err, wantStatus, tc.reason)
		}
	}

	closed := startHookedServer(t, hooks.Config{Connect: hooks.Hook{URL: deadURL(t)}})
	_, err = dialWith(closed, "session=alice-cookie")
	var de *client.DialError
	if !errors.As(err, &de) || de.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("the connect hook down, failing closed: %v, want HTTP 503", err)
	}
	open := startHookedServer(t, hooks.Config{Connect: hooks.Hook{URL: deadURL(t), FailOpen: true}})
	c, err = dialWith(open, "session=alice-cookie")
	if err != nil {
		t.Fatalf("the connect hook down, failing open: %v", err)
	}
	if err := c.Hello(ctx, "guest", false); err != nil {
		t.Fatalf("hello by name after an open failure (anonymous names allowed here): %v", err)
	}
}
