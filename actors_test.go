// End-to-end tests: a real server on 127.0.0.1, real WebSocket clients.
// Each test states the close code or error it expects.
package main_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/client"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/proto/codec"
	"github.com/parleychat/parley/server"
	"github.com/parleychat/parley/supervision"
)

func TestTwoUsersChat(t *testing.T) {
	for _, cd := range codecs {
		t.Run(cd.Subprotocol(), func(t *testing.T) {
			t.Parallel()
			srv := startServer(t, nil)
			ctx := testCtx(t, 10*time.Second)
			bob := login(t, ctx, srv, cd, "bob", "general")
			alice := login(t, ctx, srv, cd, "alice", "general")

			// The room's log: bob's join created it (seq 1, the system's
			// room) and made him a member (2), alice joined as a member
			// (3); then her connection is announced (presence).
			change := nextEvent(t, ctx, bob, "alice's membership", func(e *parleypb.Envelope) bool {
				c := e.GetEvent().GetChange()
				return c.GetKind() == parleypb.ChangeKind_CHANGE_KIND_JOINED && c.GetUser() == "alice"
			})
			if ev := change.GetEvent(); ev.GetSeq() != 3 || ev.GetSender() != "alice" || ev.GetSenderKind() != parleypb.SenderKind_SENDER_KIND_USER ||
				ev.GetChange().GetKind() != parleypb.ChangeKind_CHANGE_KIND_JOINED || ev.GetChange().GetUser() != "alice" {
				t.Fatalf("bob saw %v, want alice JOINED at seq 3", ev)
			}
			joined := nextEvent(t, ctx, bob, "alice's join", func(e *parleypb.Envelope) bool {
				return len(e.GetPresence().GetJoined()) == 1 && e.GetPresence().GetJoined()[0] == "alice"
			})
			if joined.GetPresence().GetRoom() != "general" {
				t.Fatalf("presence room = %q", joined.GetPresence().GetRoom())
			}
			seq, err := alice.Post(ctx, "general", "hi bob", "a-1")
			if err != nil {
				t.Fatalf("post: %v", err)
			}
			if seq != 4 {
				t.Fatalf("first post got seq %d, want 4 (after CREATED and two JOINED)", seq)
			}
			for _, c := range []*client.Client{alice, bob} {
				ev := roomEvent(t, ctx, c, "general")
				if ev.GetSender() != "alice" || ev.GetText() != "hi bob" || ev.GetSeq() != 4 || ev.GetTimeMs() == 0 || ev.GetSenderKind() != parleypb.SenderKind_SENDER_KIND_USER {
					t.Fatalf("event = %v", ev)
				}
			}
			if _, err := bob.Post(ctx, "general", "hello alice", "b-1"); err != nil {
				t.Fatalf("post: %v", err)
			}
			if ev := roomEvent(t, ctx, alice, "general"); ev.GetSeq() != 5 || ev.GetSender() != "bob" {
				t.Fatalf("event = %v", ev)
			}
			if err := bob.Leave(ctx, "general"); err != nil {
				t.Fatalf("leave: %v", err)
			}
			nextEvent(t, ctx, alice, "bob's leave", func(e *parleypb.Envelope) bool {
				return len(e.GetPresence().GetLeft()) == 1 && e.GetPresence().GetLeft()[0] == "bob"
			})
		})
	}
}

// legacyFrame is the tutorial's message, as its page reads it.
type legacyFrame struct {
	Type     string   `json:"type"`
	Content  string   `json:"content"`
	User     string   `json:"user"`
	From     string   `json:"from"`
	IP       string   `json:"ip"`
	UserList []string `json:"user_list"`
}

func readLegacy(t *testing.T, ctx context.Context, r *client.Raw) legacyFrame {
	t.Helper()
	var f legacyFrame
	if err := r.ReadJSON(ctx, &f); err != nil {
		t.Fatalf("read legacy frame: %v", err)
	}
	return f
}

func dialLegacy(t *testing.T, ctx context.Context, srv *server.Server) *client.Raw {
	t.Helper()
	r, err := client.DialRaw(ctx, srv.URL(), nil)
	if err != nil {
		t.Fatalf("dial legacy: %v", err)
	}
	t.Cleanup(func() { r.CloseNow() })
	return r
}

// TestLegacyConversation replays LEGACY-PROTOCOL.md step by step, HTML
// escaping included; a logout ends the connection with 1000.
func TestLegacyConversation(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	ctx := testCtx(t, 10*time.Second)

	ann := dialLegacy(t, ctx, srv)
	hs := readLegacy(t, ctx, ann)
	if hs.Type != "handshake" || !strings.HasPrefix(hs.IP, "127.0.0.1:") || len(hs.UserList) != 0 {
		t.Fatalf("handshake = %+v", hs)
	}
	if err := ann.WriteJSON(ctx, map[string]string{"type": "login", "content": "ann"}); err != nil {
		t.Fatal(err)
	}
	if f := readLegacy(t, ctx, ann); f.Type != "login" || f.Content != "ann" || f.User != "ann" || f.From != "ann" || fmt.Sprint(f.UserList) != "[ann]" {
		t.Fatalf("ann's own login = %+v", f)
	}

	ben := dialLegacy(t, ctx, srv)
	if hs := readLegacy(t, ctx, ben); hs.Type != "handshake" || fmt.Sprint(hs.UserList) != "[ann]" {
		t.Fatalf("ben's handshake = %+v", hs)
	}
	if err := ben.WriteJSON(ctx, map[string]string{"type": "login", "content": "<b>ben</b>"}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*client.Raw{ann, ben} {
		f := readLegacy(t, ctx, r)
		if f.Type != "login" || f.Content != "&lt;b&gt;ben&lt;/b&gt;" || fmt.Sprint(f.UserList) != "[ann &lt;b&gt;ben&lt;/b&gt;]" {
			t.Fatalf("login broadcast = %+v", f)
		}
	}

	xss := `<img src=x onerror=alert(1)>`
	if err := ann.WriteJSON(ctx, map[string]string{"type": "user", "content": xss}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*client.Raw{ann, ben} {
		f := readLegacy(t, ctx, r)
		if f.Type != "user" || f.Content != "&lt;img src=x onerror=alert(1)&gt;" || f.From != "ann" || f.User != "ann" {
			t.Fatalf("user broadcast = %+v", f)
		}
	}

	// Unknown types and bad JSON get a system notice, not silence.
	if err := ann.Write(ctx, false, []byte(`{"type":"dance"}`)); err != nil {
		t.Fatal(err)
	}
	if f := readLegacy(t, ctx, ann); f.Type != "system" || !strings.Contains(f.Content, "dance") {
		t.Fatalf("unknown type answer = %+v", f)
	}

	if err := ben.WriteJSON(ctx, map[string]string{"type": "logout"}); err != nil {
		t.Fatal(err)
	}
	if f := readLegacy(t, ctx, ann); f.Type != "logout" || f.Content != "&lt;b&gt;ben&lt;/b&gt;" || fmt.Sprint(f.UserList) != "[ann]" {
		t.Fatalf("logout broadcast = %+v", f)
	}
	_, err := ben.Read(ctx)
	if code := client.CloseCode(err); code != parleypb.CloseCode_CLOSE_CODE_NORMAL {
		t.Fatalf("after logout: close code %v (%v), want NORMAL (1000)", code, err)
	}

	// Closing the socket counts as a logout too.
	carl := dialLegacy(t, ctx, srv)
	readLegacy(t, ctx, carl)
	if err := carl.WriteJSON(ctx, map[string]string{"type": "login", "content": "carl"}); err != nil {
		t.Fatal(err)
	}
	readLegacy(t, ctx, carl)
	if f := readLegacy(t, ctx, ann); f.Type != "login" || f.Content != "carl" {
		t.Fatalf("carl's login = %+v", f)
	}
	carl.CloseNow()
	if f := readLegacy(t, ctx, ann); f.Type != "logout" || f.Content != "carl" || fmt.Sprint(f.UserList) != "[ann]" {
		t.Fatalf("carl's logout = %+v", f)
	}
}

// TestNativeAndLegacyInLobby: a parley.v1.json client in lobby and a
// tutorial client see each other's messages; only the legacy side escapes.
func TestNativeAndLegacyInLobby(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	ctx := testCtx(t, 10*time.Second)
	nat := login(t, ctx, srv, codec.JSON, "nat", "lobby")

	leg := dialLegacy(t, ctx, srv)
	if hs := readLegacy(t, ctx, leg); fmt.Sprint(hs.UserList) != "[nat]" {
		t.Fatalf("handshake = %+v", hs)
	}
	if err := leg.WriteJSON(ctx, map[string]string{"type": "login", "content": "leo"}); err != nil {
		t.Fatal(err)
	}
	if f := readLegacy(t, ctx, leg); f.Type != "login" || fmt.Sprint(f.UserList) != "[nat leo]" {
		t.Fatalf("login = %+v", f)
	}
	nextEvent(t, ctx, nat, "leo's join", func(e *parleypb.Envelope) bool {
		return len(e.GetPresence().GetJoined()) == 1 && e.GetPresence().GetJoined()[0] == "leo"
	})
	if err := leg.WriteJSON(ctx, map[string]string{"type": "user", "content": "a < b"}); err != nil {
		t.Fatal(err)
	}
	if ev := roomEvent(t, ctx, nat, "lobby"); ev.GetSender() != "leo" || ev.GetText() != "a < b" {
		t.Fatalf("native got %v", ev)
	}
	if _, err := nat.Post(ctx, "lobby", "x & y", "n1"); err != nil {
		t.Fatal(err)
	}
	for {
		f := readLegacy(t, ctx, leg)
		if f.Type == "user" && f.From == "nat" {
			if f.Content != "x &amp; y" {
				t.Fatalf("legacy got %+v", f)
			}
			break
		}
	}
}

// TestOriginPolicy: a foreign browser Origin is refused with HTTP 403 and a
// body naming the flag; allowed patterns, same-origin and (when allowed on
// purpose) "null" pass; an unknown subprotocol is refused with HTTP 400.
func TestOriginPolicy(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *server.Config) { c.Transport.OriginPatterns = []string{"*.trusted.example", "null"} })
	ctx := testCtx(t, 10*time.Second)
	dialOrigin := func(origin string, protos ...string) error {
		r, err := client.DialRaw(ctx, srv.URL(), &client.Options{Header: http.Header{"Origin": {origin}}}, protos...)
		if err == nil {
			r.CloseNow()
		}
		return err
	}
	err := dialOrigin("http://evil.example")
	var de *client.DialError
	if !errors.As(err, &de) || de.StatusCode != http.StatusForbidden || !strings.Contains(de.Body, "-origins") {
		t.Fatalf("evil origin: %v, want HTTP 403 naming -origins", err)
	}
	for _, ok := range []string{"https://chat.trusted.example", "null", "http://" + srv.Addr()} {
		if err := dialOrigin(ok); err != nil {
			t.Errorf("origin %s refused: %v", ok, err)
		}
	}
	err = dialOrigin("http://"+srv.Addr(), "chat.v9")
	if !errors.As(err, &de) || de.StatusCode != http.StatusBadRequest || !strings.Contains(de.Body, "parley.v1.json") {
		t.Fatalf("unknown subprotocol: %v, want HTTP 400 listing parley.v1.json", err)
	}

	strict := startServer(t, nil)
	r, err := client.DialRaw(ctx, strict.URL(), &client.Options{Header: http.Header{"Origin": {"null"}}})
	if !errors.As(err, &de) || de.StatusCode != http.StatusForbidden {
		t.Fatalf("Origin null without -origins=null: %v, want 403", err)
	}
	_ = r
}

// TestOversizedFrame: a frame over -max-message-bytes closes with 1009.
func TestOversizedFrame(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *server.Config) { c.Transport.MaxMessageBytes = 1024 })
	ctx := testCtx(t, 10*time.Second)
	c := login(t, ctx, srv, codec.JSON, "big", "r")
	if _, err := c.Post(ctx, "r", strings.Repeat("a", 500), "ok"); err != nil {
		t.Fatalf("a frame under the limit: %v", err)
	}
	big, _ := codec.JSON.Encode(&parleypb.Envelope{Body: &parleypb.Envelope_Post{Post: &parleypb.Post{Room: "r", Text: strings.Repeat("a", 2000)}}})
	if err := c.WriteRaw(ctx, big); err != nil {
		t.Fatal(err)
	}
	if code, reason := closeCode(t, ctx, c); code != parleypb.CloseCode_CLOSE_CODE_MESSAGE_TOO_BIG {
		t.Fatalf("close code %d (%q), want 1009", code, reason)
	}
	waitFor(t, 5*time.Second, noSessions(srv))
}

// TestDeadPeerLeavesPresence: a peer that stops answering pings is closed
// (4001 server-side) within ping-interval + pong-timeout and drops out of
// presence and of its rooms.
func TestDeadPeerLeavesPresence(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *server.Config) {
		c.Transport.PingInterval = 200 * time.Millisecond
		c.Transport.PongTimeout = 300 * time.Millisecond
	})
	ctx := testCtx(t, 10*time.Second)
	watcher := login(t, ctx, srv, codec.JSON, "watcher", "room")

	// A raw connection never reads, so it never answers a ping.
	stuck, err := client.DialRaw(ctx, srv.URL(), nil, codec.JSONSubprotocol)
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.CloseNow()
	stuck.Write(ctx, false, []byte(`{"id":"1","hello":{"name":"stuck"}}`))
	stuck.Write(ctx, false, []byte(`{"id":"2","join":{"room":"room"}}`))
	nextEvent(t, ctx, watcher, "stuck in the room", func(e *parleypb.Envelope) bool {
		return e.GetPresence().GetRoom() == "room" && slices.Contains(e.GetPresence().GetJoined(), "stuck")
	})
	start := time.Now()
	nextEvent(t, ctx, watcher, "stuck leaving the room", func(e *parleypb.Envelope) bool {
		return e.GetPresence().GetRoom() == "room" && slices.Contains(e.GetPresence().GetLeft(), "stuck")
	})
	// And offline everywhere (the operator's view).
	waitFor(t, 5*time.Second, func() error {
		online, err := srv.Node.Online(ctx, "stuck")
		if err != nil || len(online) != 0 {
			return fmt.Errorf("stuck still online: %v %v", online, err)
		}
		return nil
	})
	// Bound: a ping is due within one interval and fails after the timeout;
	// the rest is scheduling slack, generous for a loaded 2-core machine.
	if took, bound := time.Since(start), 200*time.Millisecond+300*time.Millisecond+2*time.Second; took > bound {
		t.Fatalf("dead peer removed after %v, want within %v", took, bound)
	}
}

// TestSlowReaderClosed: a client that stops reading is closed with 1013
// while a reader in the same room receives every message in order.
func TestSlowReaderClosed(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *server.Config) {
		c.Transport.QueueSize = 16
		c.Transport.PingInterval = time.Hour // the slow reader must fail on its queue, not on pings
		// The close frame waits behind what the slow reader has not read
		// yet; it reads only after the fast one got everything, which a
		// loaded machine can stretch past the default 10 s write bound.
		c.Transport.WriteTimeout = time.Minute
		c.Actors.Rate, c.Actors.Burst = 1e6, 1e6
		c.Actors.MaxTextRunes = 64 << 10
		c.Transport.MaxMessageBytes = 1 << 20
	})
	ctx := testCtx(t, 30*time.Second)
	fast := login(t, ctx, srv, codec.Proto, "fast", "news")
	slow, err := client.DialRaw(ctx, srv.URL(), nil, codec.ProtoSubprotocol)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.CloseNow()
	for _, env := range []*parleypb.Envelope{
		{Id: "1", Body: &parleypb.Envelope_Hello{Hello: &parleypb.Hello{Name: "slow"}}},
		{Id: "2", Body: &parleypb.Envelope_Join{Join: &parleypb.Join{Room: "news"}}},
	} {
		b, _ := codec.Proto.Encode(env)
		if err := slow.Write(ctx, true, b); err != nil {
			t.Fatal(err)
		}
	}
	nextEvent(t, ctx, fast, "slow's join", func(e *parleypb.Envelope) bool { return len(e.GetPresence().GetJoined()) == 1 })

	// 600 × 32 KiB ≈ 19 MiB: more than loopback's socket buffers hold, so
	// the slow reader's queue fills.
	const n = 600
	text := strings.Repeat("x", 32<<10)
	pub, base := loginAt(t, ctx, srv, codec.Proto, "pub", "news")
	// Each post waits until the fast reader has it, so the fast one is
	// never behind (however the machine schedules them) and only the
	// slow one's queue fills.
	last := base // pub's posts follow its join
	for i := 1; i <= n; i++ {
		if _, err := pub.Post(ctx, "news", text, fmt.Sprint(i)); err != nil {
			t.Fatalf("post %d: %v", i, err)
		}
		// Every room event (a member joining may come between posts) in
		// order, up to this post.
		for done := false; !done; {
			env, err := fast.Next(ctx)
			if err != nil {
				t.Fatalf("fast reader after seq %d: %v", last, err)
			}
			ev := env.GetEvent()
			if ev == nil || ev.GetSeq() <= base {
				continue
			}
			if ev.GetSeq() != last+1 {
				t.Fatalf("fast reader got seq %d after %d", ev.GetSeq(), last)
			}
			last = ev.GetSeq()
			done = ev.GetSender() == "pub" && ev.GetChange() == nil
		}
	}
	// Now read the slow one: whatever was in flight, then the close.
	for {
		if _, err := slow.Read(ctx); err != nil {
			if code := client.CloseCode(err); code != parleypb.CloseCode_CLOSE_CODE_TRY_AGAIN_LATER {
				t.Fatalf("slow reader closed with %d (%v), want 1013", code, err)
			}
			break
		}
	}
}

// TestSessionPanicKeepsSocket: a panic in a session restarts it in place;
// the socket stays open and the session is still in its room. Past its
// retry budget the session is stopped and the socket closed with 1011.
func TestSessionPanicKeepsSocket(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *server.Config) {
		c.Faults = &supervision.Faults{Marker: "💥", Kinds: []string{"session"}}
		c.Actors.SessionBudget = supervision.Options{MaxRestarts: 2, Window: time.Minute}
	})
	ctx := testCtx(t, 10*time.Second)
	c := login(t, ctx, srv, codec.JSON, "crashy", "r")
	other := login(t, ctx, srv, codec.JSON, "other", "r")

	if err := c.Send(ctx, &parleypb.Envelope{Id: "boom", Body: &parleypb.Envelope_Post{Post: &parleypb.Post{Room: "r", Text: "💥"}}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() error {
		if n := srv.Node.Stats.Sessions.Restarts.Load(); n != 1 {
			return fmt.Errorf("%d session restarts", n)
		}
		return nil
	})
	seq, err := c.Post(ctx, "r", "still here", "s1")
	if err != nil {
		t.Fatalf("post after restart: %v", err)
	}
	if ev := roomEvent(t, ctx, other, "r"); ev.GetSeq() != seq || ev.GetText() != "still here" {
		t.Fatalf("other got %v", ev)
	}
	if ev := roomEvent(t, ctx, c, "r"); ev.GetSeq() != seq {
		t.Fatalf("restarted session got %v, want seq %d exactly once", ev, seq)
	}
	if _, err := other.Post(ctx, "r", "to crashy", "o1"); err != nil {
		t.Fatal(err)
	}
	if ev := roomEvent(t, ctx, c, "r"); ev.GetText() != "to crashy" {
		t.Fatalf("restarted session got %v", ev)
	}

	for i := 0; i < 2; i++ { // the 2nd and 3rd failure: the 3rd is past the budget
		c.Send(ctx, &parleypb.Envelope{Body: &parleypb.Envelope_Post{Post: &parleypb.Post{Room: "r", Text: "💥"}}})
	}
	if code, reason := closeCode(t, ctx, c); code != parleypb.CloseCode_CLOSE_CODE_INTERNAL_ERROR {
		t.Fatalf("close code %d (%q), want 1011", code, reason)
	}
	nextEvent(t, ctx, other, "crashy leaving", func(e *parleypb.Envelope) bool {
		return len(e.GetPresence().GetLeft()) == 1 && e.GetPresence().GetLeft()[0] == "crashy"
	})
}

// TestShutdownSends1001: a graceful shutdown closes every socket with 1001
// and stops every session.
func TestShutdownSends1001(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	ctx := testCtx(t, 10*time.Second)
	a := login(t, ctx, srv, codec.Proto, "a", "r")
	b := login(t, ctx, srv, codec.JSON, "b", "r")
	leg := dialLegacy(t, ctx, srv)
	readLegacy(t, ctx, leg)

	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	for _, c := range []*client.Client{a, b} {
		if code, reason := closeCode(t, ctx, c); code != parleypb.CloseCode_CLOSE_CODE_GOING_AWAY || reason == "" {
			t.Fatalf("close %v %q, want GOING_AWAY (1001) with a reason", code, reason)
		}
	}
	if _, err := leg.Read(ctx); client.CloseCode(err) != parleypb.CloseCode_CLOSE_CODE_GOING_AWAY {
		t.Fatalf("legacy close: %v, want 1001", err)
	}
	if n := srv.Node.Sessions(); n != 0 {
		t.Fatalf("%d sessions alive after shutdown", n)
	}
	if _, err := client.Dial(ctx, srv.URL(), codec.JSON, nil); err == nil {
		t.Fatal("dial after shutdown succeeded")
	}
}
