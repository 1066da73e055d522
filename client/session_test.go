package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/actors"
	"github.com/parleychat/parley/auth"
	"github.com/parleychat/parley/client"
	"github.com/parleychat/parley/internal/testenv"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/proto/codec"
	"github.com/parleychat/parley/server"
	"github.com/parleychat/parley/store"
)

// Session tests: real servers on 127.0.0.1, in process. Waits poll a
// condition against a deadline; nothing asserts on elapsed time.

func startServer(t *testing.T, addr string, edit func(*server.Config)) *server.Server {
	t.Helper()
	cfg := server.Config{Addr: addr, Logger: testenv.Logger(t, slog.LevelWarn), Actors: actors.Config{Rate: 10000, Burst: 10000}}
	if edit != nil {
		edit(&cfg)
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return srv
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func connect(t *testing.T, ctx context.Context, url string, o client.SessionOptions) *client.Session {
	t.Helper()
	s, err := client.Connect(ctx, url, o)
	if err != nil {
		t.Fatalf("connect %s: %v", o.Name, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// recorder drains a Session's events on a goroutine of its own, as an
// application would, and keeps them for the test to look at.
type recorder struct {
	mu     sync.Mutex
	events []client.Event
	paused chan struct{} // while open, events are not read
}

func record(t *testing.T, s *client.Session) *recorder {
	r := &recorder{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			r.mu.Lock()
			p := r.paused
			r.mu.Unlock()
			if p != nil {
				<-p
			}
			ev, err := s.Next(context.Background())
			if err != nil {
				return
			}
			r.mu.Lock()
			r.events = append(r.events, ev)
			r.mu.Unlock()
		}
	}()
	t.Cleanup(func() { s.Close(); <-done })
	return r
}

func (r *recorder) pause() {
	r.mu.Lock()
	r.paused = make(chan struct{})
	r.mu.Unlock()
}

func (r *recorder) resume() {
	r.mu.Lock()
	close(r.paused)
	r.paused = nil
	r.mu.Unlock()
}

// messages returns the texts of room's posts, and fails unless the seqs of
// its posts and changes together are 1..n once each in order (a change
// takes a seq like a post), and unless every change came as a Change.
func (r *recorder) messages(t *testing.T, room string) []string {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var texts []string
	var last uint64
	for _, ev := range r.events {
		var re *parleypb.RoomEvent
		switch ev := ev.(type) {
		case *client.Message:
			if ev.GetChange() != nil {
				t.Fatalf("%s: a change came as a Message: %v", room, ev.RoomEvent)
			}
			re = ev.RoomEvent
		case *client.Change:
			if ev.GetChange() == nil {
				t.Fatalf("%s: a post came as a Change: %v", room, ev.RoomEvent)
			}
			re = ev.RoomEvent
		}
		if re == nil || re.GetRoom() != room {
			continue
		}
		if re.GetSeq() != last+1 {
			t.Fatalf("%s: seq %d after %d: a hole or a duplicate", room, re.GetSeq(), last)
		}
		last = re.GetSeq()
		if re.GetChange() == nil {
			texts = append(texts, re.GetText())
		}
	}
	return texts
}

// changes returns room's changes as "sender KIND user" lines.
func (r *recorder) changes(room string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, ev := range r.events {
		if c, ok := ev.(*client.Change); ok && c.Room == room {
			out = append(out, fmt.Sprintf("%s %s %s", c.Sender, strings.TrimPrefix(c.Change.GetKind().String(), "CHANGE_KIND_"), c.Change.GetUser()))
		}
	}
	return out
}

func (r *recorder) count(t *testing.T, room string) int { return len(r.messages(t, room)) }

func (r *recorder) find(match func(client.Event) bool) client.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range r.events {
		if match(ev) {
			return ev
		}
	}
	return nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, 60*time.Second, func() error {
		if cond() {
			return nil
		}
		return errors.New("waiting for " + what)
	})
}

func TestSessionChat(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "127.0.0.1:0", nil)
	ctx := testCtx(t, 60*time.Second)
	ann := connect(t, ctx, srv.URL(), client.SessionOptions{Name: "ann"})
	bob := connect(t, ctx, srv.URL(), client.SessionOptions{Name: "bob", Codec: codec.JSON})
	annEv, bobEv := record(t, ann), record(t, bob)
	if got := ann.Welcome().GetName(); got != "ann" {
		t.Fatalf("welcome name %q", got)
	}
	j, err := ann.Join(ctx, "general")
	if err != nil || j.Resumed || len(j.Members) != 1 {
		t.Fatalf("ann's join: %+v, %v", j, err)
	}
	bj, err := bob.Join(ctx, "general")
	if err != nil {
		t.Fatal(err)
	}
	// The joins are in the room's log (the first one created the room):
	// the posts' seqs follow the last join's.
	if bj.Seq <= j.Seq {
		t.Fatalf("bob's join acked seq %d, after ann's %d", bj.Seq, j.Seq)
	}
	annSeq, err := ann.Post(ctx, "general", "hello bob", "")
	if err != nil || annSeq != bj.Seq+1 {
		t.Fatalf("post: %d, %v; want %d", annSeq, err, bj.Seq+1)
	}
	bobSeq, err := bob.Post(ctx, "general", "hi ann", "b-1")
	if err != nil || bobSeq != annSeq+1 {
		t.Fatalf("post: %d, %v; want %d", bobSeq, err, annSeq+1)
	}
	// The same clientMsgID again: acknowledged with the same seq, stored once.
	if seq, err := bob.Post(ctx, "general", "hi ann", "b-1"); err != nil || seq != bobSeq {
		t.Fatalf("retried post: %d, %v; want %d", seq, err, bobSeq)
	}
	if err := bob.Typing(ctx, "general"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ann to see both messages and bob typing", func() bool {
		return annEv.count(t, "general") == 2 && annEv.find(func(e client.Event) bool { ty, ok := e.(*client.Typing); return ok && ty.User == "bob" }) != nil
	})
	waitFor(t, "bob to see both", func() bool { return bobEv.count(t, "general") == 2 })
	if got := annEv.messages(t, "general"); !slices.Equal(got, []string{"hello bob", "hi ann"}) {
		t.Fatalf("ann got %q", got)
	}
	if annEv.find(func(e client.Event) bool {
		p, ok := e.(*client.Presence)
		return ok && p.Room == "general" && slices.Contains(p.Joined, "bob")
	}) == nil {
		t.Error("ann saw no presence for bob's join")
	}

	if got, want := annEv.changes("general"), []string{"system CREATED ", "ann JOINED ann", "bob JOINED bob"}; !slices.Equal(got, want) {
		t.Fatalf("ann's changes to general: %q, want %q", got, want)
	}
	// History holds the changes too, in the same sequence.
	page, err := ann.History(ctx, "general", bobSeq, 10)
	if err != nil || len(page.GetEvents()) != int(annSeq) || page.GetEvents()[annSeq-1].GetText() != "hello bob" || page.GetEvents()[0].GetChange().GetKind() != parleypb.ChangeKind_CHANGE_KIND_CREATED {
		t.Fatalf("history: %v, %v", page, err)
	}
	who, err := ann.Who(ctx)
	if err != nil || len(who) != 2 {
		t.Fatalf("who: %v, %v", who, err)
	}
	rooms, err := ann.ListRooms(ctx)
	if err != nil || len(rooms) != 1 || rooms[0].GetName() != "general" || rooms[0].GetMembers() != 2 || rooms[0].GetRole() != parleypb.Role_ROLE_MEMBER {
		t.Fatalf("rooms: %v, %v", rooms, err)
	}
	if err := ann.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := ann.Post(ctx, "elsewhere", "x", ""); !errors.Is(err, client.ErrNotJoined) {
		t.Fatalf("post to a room not joined: %v", err)
	}
	_, err = ann.Request(ctx, &parleypb.Envelope{Body: &parleypb.Envelope_Leave{Leave: &parleypb.Leave{Room: "elsewhere"}}})
	if client.ErrorCode(err) != parleypb.ErrorCode_ERROR_CODE_NOT_JOINED {
		t.Fatalf("leave a room not joined: %v", err)
	}
	if err := bob.Leave(ctx, "general"); err != nil {
		t.Fatal(err)
	}
	if len(bob.Rooms()) != 0 {
		t.Fatalf("bob still in %v", bob.Rooms())
	}
	waitFor(t, "ann to see bob leave", func() bool {
		return annEv.find(func(e client.Event) bool { p, ok := e.(*client.Presence); return ok && slices.Contains(p.Left, "bob") }) != nil &&
			slices.Contains(annEv.changes("general"), "bob LEFT bob")
	})
	annEv.messages(t, "general") // every seq once, the LEFT change included
	ann.Close()
	if _, err := ann.Post(ctx, "general", "after close", ""); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("post after close: %v", err)
	}
}

// keepOpen is a store that outlives its server, as a database does.
type keepOpen struct{ store.Store }

func (keepOpen) Close() error { return nil }

// TestSessionResume: the server restarts (same address, same store) while
// another node takes posts; the Session reconnects by itself, resumes
// every room with no hole and no duplicate, and a post made while offline
// is stored once.
func TestSessionResume(t *testing.T) {
	t.Parallel()
	mem := store.NewMemory()
	t.Cleanup(func() { mem.Close() })
	first := startServer(t, "127.0.0.1:0", func(c *server.Config) { c.Store = keepOpen{mem} })
	addr := first.Addr()
	ctx := testCtx(t, 90*time.Second)
	fast := client.Backoff{Base: 20 * time.Millisecond, Cap: 200 * time.Millisecond}
	ann := connect(t, ctx, first.URL(), client.SessionOptions{Name: "ann", Backoff: fast})
	annEv := record(t, ann)
	for _, room := range []string{"news", "sports"} {
		if _, err := ann.Join(ctx, room); err != nil {
			t.Fatal(err)
		}
	}
	bob := connect(t, ctx, first.URL(), client.SessionOptions{Name: "bob", Backoff: fast})
	record(t, bob)
	for _, room := range []string{"news", "sports"} {
		if _, err := bob.Join(ctx, room); err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= 3; i++ {
			if _, err := bob.Post(ctx, room, fmt.Sprint(room, " ", i), ""); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, "ann to have 3 + 3", func() bool { return annEv.count(t, "news") == 3 && annEv.count(t, "sports") == 3 })

	if err := first.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ann to notice", func() bool {
		return annEv.find(func(e client.Event) bool { d, ok := e.(*client.Disconnected); return ok && d.Reconnecting }) != nil
	})
	d := annEv.find(func(e client.Event) bool { _, ok := e.(*client.Disconnected); return ok }).(*client.Disconnected)
	if d.Code != parleypb.CloseCode_CLOSE_CODE_GOING_AWAY {
		t.Errorf("first disconnect: %+v, want GOING_AWAY", d)
	}
	// Posted while the server is down: Post waits, then sends once.
	offline := make(chan error, 1)
	go func() {
		_, err := ann.Post(ctx, "news", "written offline", "ann-offline")
		offline <- err
	}()
	// Meanwhile another node on the same store takes a post.
	other := startServer(t, "127.0.0.1:0", func(c *server.Config) { c.Store = keepOpen{mem} })
	carl := connect(t, ctx, other.URL(), client.SessionOptions{Name: "carl"})
	if _, err := carl.Join(ctx, "sports"); err != nil {
		t.Fatal(err)
	}
	if _, err := carl.Post(ctx, "sports", "sports during", ""); err != nil {
		t.Fatal(err)
	}
	carl.Close()
	if err := other.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	startServer(t, addr, func(c *server.Config) { c.Store = keepOpen{mem} })
	if err := <-offline; err != nil {
		t.Fatalf("the offline post: %v", err)
	}
	if _, err := bob.Post(ctx, "news", "news after", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ann to catch up", func() bool { return annEv.count(t, "news") == 5 && annEv.count(t, "sports") == 4 })
	if got, want := annEv.messages(t, "news"), []string{"news 1", "news 2", "news 3", "written offline", "news after"}; !slices.Equal(got, want) {
		t.Fatalf("ann's news: %q, want %q", got, want)
	}
	if got := annEv.messages(t, "sports"); got[3] != "sports during" {
		t.Fatalf("ann's sports: %q", got)
	}
	// carl's join during the outage is in the gap the resume replayed: a
	// change, counted like a post (messages checked there is no hole).
	if !slices.Contains(annEv.changes("sports"), "carl JOINED carl") {
		t.Fatalf("ann's changes to sports: %q", annEv.changes("sports"))
	}
	if annEv.find(func(e client.Event) bool { j, ok := e.(*client.Joined); return ok && j.Resumed && j.Room == "news" }) == nil {
		t.Error("no resumed join of news")
	}
	stored, err := mem.After(ctx, "news", 0, 100)
	posts := 0
	for _, m := range stored {
		if len(m.Body) == 0 {
			posts++
		}
	}
	if err != nil || posts != 5 {
		t.Fatalf("the store holds %d news posts (%v), want 5", posts, err)
	}
}

const secret = "client-test-secret-0123456789abcdefghij"

func TestSessionTokens(t *testing.T) {
	t.Parallel()
	v, err := auth.NewVerifier(auth.Options{HMACSecret: []byte(secret)})
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, "127.0.0.1:0", func(c *server.Config) {
		c.Auth = v
		c.Actors.RequireToken = true
	})
	ctx := testCtx(t, 60*time.Second)
	issue := func(sub string, ttl time.Duration) string {
		tok, err := auth.Issue([]byte(secret), sub, ttl, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	for _, in := range []client.TokenPlacement{client.TokenInHello, client.TokenInHeader, client.TokenInQuery} {
		name := "dana-" + strconv.Itoa(int(in))
		s := connect(t, ctx, srv.URL(), client.SessionOptions{Token: issue(name, time.Hour), TokenIn: in})
		if s.Welcome().GetName() != name || s.Welcome().GetTokenExpiresMs() == 0 {
			t.Errorf("placement %d: welcome %v", in, s.Welcome())
		}
		s.Close()
	}
	bad, err := auth.Issue([]byte("another-secret-0123456789abcdefghijkl"), "eve", time.Hour, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var de *client.DialError
	if _, err := client.Connect(ctx, srv.URL(), client.SessionOptions{Token: bad, TokenIn: client.TokenInHeader}); !errors.As(err, &de) || de.StatusCode != http.StatusUnauthorized {
		t.Errorf("a bad token in the handshake: %v, want HTTP 401", err)
	}
	if _, err := client.Connect(ctx, srv.URL(), client.SessionOptions{Token: bad}); client.ErrorCode(err) != parleypb.ErrorCode_ERROR_CODE_FORBIDDEN {
		t.Errorf("a bad token in hello: %v, want FORBIDDEN", err)
	}
	if _, err := client.Connect(ctx, srv.URL(), client.SessionOptions{Name: "anon"}); client.ErrorCode(err) != parleypb.ErrorCode_ERROR_CODE_NOT_LOGGED_IN {
		t.Errorf("no token: %v, want NOT_LOGGED_IN", err)
	}
	// A token source is asked again on reconnect and before expiry.
	var mu sync.Mutex
	calls := 0
	s := connect(t, ctx, srv.URL(), client.SessionOptions{TokenSource: func(context.Context) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		return issue("fay", time.Hour), nil
	}})
	if s.Welcome().GetName() != "fay" {
		t.Fatalf("welcome %v", s.Welcome())
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 1 {
		t.Errorf("token source asked %d times, want 1", calls)
	}
}

// TestSessionRefresh: with a token source, a Session sends refresh before
// its token expires, so the server does not close it with 4003.
func TestSessionRefresh(t *testing.T) {
	t.Parallel()
	v, err := auth.NewVerifier(auth.Options{HMACSecret: []byte(secret)})
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, "127.0.0.1:0", func(c *server.Config) {
		c.Auth = v
		c.Actors.RequireToken = true
	})
	ctx := testCtx(t, 60*time.Second)
	var mu sync.Mutex
	calls := 0
	s := connect(t, ctx, srv.URL(), client.SessionOptions{TokenSource: func(context.Context) (string, error) {
		mu.Lock()
		defer mu.Unlock()
		calls++
		ttl := time.Hour
		if calls == 1 {
			ttl = 6 * time.Second // refreshed about a second after the login
		}
		return auth.Issue([]byte(secret), "hal", ttl, nil, nil)
	}})
	ev := record(t, s)
	first := time.UnixMilli(s.Welcome().GetTokenExpiresMs())
	waitFor(t, "a refresh", func() bool { mu.Lock(); defer mu.Unlock(); return calls >= 2 })
	waitFor(t, "the first token to expire", func() bool { return time.Now().After(first.Add(2 * time.Second)) })
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	if d := ev.find(func(e client.Event) bool { _, ok := e.(*client.Disconnected); return ok }); d != nil {
		t.Fatalf("disconnected: %+v", d)
	}
}

// TestSessionSlowReader: a program that stops taking events stops the
// Session reading its socket; the server closes it with 1013, which comes
// out as a Disconnected event, and the Session resumes: every message
// once, in order.
func TestSessionSlowReader(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "127.0.0.1:0", func(c *server.Config) {
		c.Transport.QueueSize = 8
		c.Transport.PingInterval = time.Hour
		c.Transport.WriteTimeout = 2 * time.Minute // the close frame waits behind unread data
		c.Actors.MaxTextRunes = 32 << 10
		c.Transport.MaxMessageBytes = 1 << 20
		c.AdminAddr = "127.0.0.1:0"
	})
	ctx := testCtx(t, 120*time.Second)
	slow := connect(t, ctx, srv.URL(), client.SessionOptions{Name: "slow", EventBuffer: 1, Backoff: client.Backoff{Base: 20 * time.Millisecond, Cap: 200 * time.Millisecond}})
	slowEv := record(t, slow)
	if _, err := slow.Join(ctx, "firehose"); err != nil {
		t.Fatal(err)
	}
	pub := connect(t, ctx, srv.URL(), client.SessionOptions{Name: "pub"})
	record(t, pub)
	if _, err := pub.Join(ctx, "firehose"); err != nil {
		t.Fatal(err)
	}
	slowEv.pause()
	dropped := func() bool {
		resp, err := http.Get("http://" + srv.AdminAddr() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, `parley_drops_total{reason="slow_client"} `); ok {
				return v != "0"
			}
		}
		return false
	}
	text := strings.Repeat("z", 32<<10)
	sent := 0
	for round := 0; round < 100 && !dropped(); round++ {
		for range 20 {
			if _, err := pub.Post(ctx, "firehose", text, ""); err != nil {
				t.Fatal(err)
			}
			sent++
		}
	}
	if !dropped() {
		t.Fatalf("after %d posts the server has not closed the slow reader", sent)
	}
	slowEv.resume()
	waitFor(t, fmt.Sprintf("slow to catch up on %d", sent), func() bool { return slowEv.count(t, "firehose") == sent })
	d, _ := slowEv.find(func(e client.Event) bool { _, ok := e.(*client.Disconnected); return ok }).(*client.Disconnected)
	if d == nil || d.Code != parleypb.CloseCode_CLOSE_CODE_TRY_AGAIN_LATER || !d.Reconnecting {
		t.Fatalf("slow's disconnect: %+v, want 1013 and reconnecting", d)
	}
}

// TestSessionNoReconnect: with NoReconnect the first connection's end is
// the Session's, with its close code in Err and a final Disconnected.
func TestSessionNoReconnect(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "127.0.0.1:0", nil)
	ctx := testCtx(t, 30*time.Second)
	s := connect(t, ctx, srv.URL(), client.SessionOptions{Name: "gus", NoReconnect: true})
	ev := record(t, s)
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	<-s.Done()
	if client.CloseCode(s.Err()) != parleypb.CloseCode_CLOSE_CODE_GOING_AWAY {
		t.Fatalf("Err: %v", s.Err())
	}
	waitFor(t, "the final Disconnected", func() bool {
		return ev.find(func(e client.Event) bool { d, ok := e.(*client.Disconnected); return ok && !d.Reconnecting }) != nil
	})
}

// TestSessionMembership: a private room, an invitation, a join, a ban,
// a direct conversation, a new topic and the listings, through a Session:
// changes come as *Change events in the room's sequence (never as empty
// messages), the user's standing as *RoomUpdate events that MyRooms
// follows, and refusals match the client's Err values.
func TestSessionMembership(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "127.0.0.1:0", nil)
	ctx := testCtx(t, 60*time.Second)
	alice := connect(t, ctx, srv.URL(), client.SessionOptions{Name: "alice"})
	bob := connect(t, ctx, srv.URL(), client.SessionOptions{Name: "bob", Codec: codec.JSON})
	aliceEv, bobEv := record(t, alice), record(t, bob)
	update := func(r *recorder, room string, match func(*client.RoomUpdate) bool) *client.RoomUpdate {
		t.Helper()
		var got *client.RoomUpdate
		waitFor(t, "news of "+room, func() bool {
			ev, _ := r.find(func(e client.Event) bool {
				u, ok := e.(*client.RoomUpdate)
				return ok && u.GetName() == room && match(u)
			}).(*client.RoomUpdate)
			got = ev
			return ev != nil
		})
		return got
	}

	if err := alice.CreateRoom(ctx, client.NewRoom{Name: "team", Kind: parleypb.RoomKind_ROOM_KIND_PRIVATE, Title: "The team"}); err != nil {
		t.Fatal(err)
	}
	if err := bob.CreateRoom(ctx, client.NewRoom{Name: "team"}); !errors.Is(err, client.ErrRoomExists) {
		t.Fatalf("creating a room that exists: %v, want ErrRoomExists", err)
	}
	update(aliceEv, "team", func(u *client.RoomUpdate) bool { return u.GetRole() == parleypb.Role_ROLE_OWNER })
	if mine := alice.MyRooms(); len(mine) != 1 || mine[0].GetName() != "team" || mine[0].GetTitle() != "The team" {
		t.Fatalf("alice's rooms: %v", mine)
	}
	if _, err := bob.Join(ctx, "team"); !errors.Is(err, client.ErrForbidden) || len(bob.Rooms()) != 0 {
		t.Fatalf("joining a private room uninvited: %v (in %v), want ErrForbidden", err, bob.Rooms())
	}
	if rooms, err := bob.ListRooms(ctx); err != nil || len(rooms) != 0 {
		t.Fatalf("the rooms listed to bob: %v, %v; want none", rooms, err)
	}

	// An invitation reaches bob as news of his standing, and lets him in.
	if _, err := alice.Moderate(ctx, client.Moderation{Room: "team", User: "bob", Action: parleypb.ModAction_MOD_ACTION_INVITE}); err != nil {
		t.Fatal(err)
	}
	update(bobEv, "team", func(u *client.RoomUpdate) bool { return u.GetInvited() })
	if mine := bob.MyRooms(); len(mine) != 1 || !mine[0].GetInvited() {
		t.Fatalf("bob's rooms once invited: %v", mine)
	}
	if _, err := alice.Join(ctx, "team"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Join(ctx, "team"); err != nil {
		t.Fatalf("joining with an invitation: %v", err)
	}
	if _, err := bob.Post(ctx, "team", "thanks for having me", ""); err != nil {
		t.Fatal(err)
	}
	members, err := alice.Members(ctx, "team", "", 0)
	if err != nil || len(members.GetMembers()) != 2 || members.GetMembers()[0].GetRole() != parleypb.Role_ROLE_OWNER || members.GetMembers()[1].GetRole() != parleypb.Role_ROLE_MEMBER {
		t.Fatalf("team's members: %v, %v", members, err)
	}
	who, err := alice.WhoPage(ctx, "team", "", 1)
	if err != nil || len(who.GetMembers()) != 1 || who.GetMembers()[0].GetName() != "alice" || who.GetNext() != "alice" {
		t.Fatalf("who is in team, a page of one: %v, %v", who, err)
	}
	if who, err = alice.WhoPage(ctx, "team", who.GetNext(), 1); err != nil || len(who.GetMembers()) != 1 || who.GetMembers()[0].GetName() != "bob" {
		t.Fatalf("the next page: %v, %v", who, err)
	}

	// A ban: bob sees it happen, is out of the room for good, and is told
	// why; his standing says until when.
	banSeq, err := alice.Moderate(ctx, client.Moderation{Room: "team", User: "bob", Action: parleypb.ModAction_MOD_ACTION_BAN, Reason: "spam"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "bob to be out of team", func() bool {
		return bobEv.find(func(e client.Event) bool { c, ok := e.(*client.RoomClosed); return ok && c.Room == "team" }) != nil
	})
	closed := bobEv.find(func(e client.Event) bool { _, ok := e.(*client.RoomClosed); return ok }).(*client.RoomClosed)
	if closed.Text != "you were banned by alice: spam" {
		t.Errorf("bob was told %q", closed.Text)
	}
	ban := bobEv.find(func(e client.Event) bool { c, ok := e.(*client.Change); return ok && c.Seq == banSeq })
	if c, _ := ban.(*client.Change); c == nil || c.Sender != "alice" || c.Change.GetKind() != parleypb.ChangeKind_CHANGE_KIND_BANNED || c.Change.GetUser() != "bob" || c.Change.GetReason() != "spam" {
		t.Fatalf("bob's event at the ban's seq %d: %v", banSeq, ban)
	}
	update(bobEv, "team", func(u *client.RoomUpdate) bool {
		return u.GetBannedUntilMs() > 0 && u.GetRole() == parleypb.Role_ROLE_NONE
	})
	if len(bob.Rooms()) != 0 || len(bob.MyRooms()) != 0 {
		t.Fatalf("bob still has %v, %v", bob.Rooms(), bob.MyRooms())
	}
	if _, err := bob.Join(ctx, "team"); !errors.Is(err, client.ErrBanned) {
		t.Fatalf("joining while banned: %v, want ErrBanned", err)
	}
	if _, err := bob.Post(ctx, "team", "let me back", ""); !errors.Is(err, client.ErrNotJoined) {
		t.Fatalf("posting while banned: %v, want ErrNotJoined", err)
	}
	// (The owner was a member from the start: her join changed nothing.)
	want := []string{"alice CREATED alice", "alice INVITED bob", "bob JOINED bob", "alice BANNED bob"}
	waitFor(t, "alice to see the ban", func() bool { return len(aliceEv.changes("team")) == len(want) })
	if got := aliceEv.changes("team"); !slices.Equal(got, want) {
		t.Fatalf("alice's changes to team: %q, want %q", got, want)
	}
	if got := aliceEv.messages(t, "team"); !slices.Equal(got, []string{"thanks for having me"}) {
		t.Fatalf("alice's posts in team: %q", got)
	}

	// A direct conversation: bob starts it, alice hears of it and joins.
	dm, seq, err := bob.Direct(ctx, "alice", "no hard feelings?", "")
	if err != nil || !strings.HasPrefix(dm, "@") || seq == 0 {
		t.Fatalf("bob's direct message: %q %d %v", dm, seq, err)
	}
	update(aliceEv, dm, func(u *client.RoomUpdate) bool {
		return u.GetDirectWith() == "bob" && u.GetKind() == parleypb.RoomKind_ROOM_KIND_DIRECT
	})
	if _, err := alice.Join(ctx, dm); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "alice to read bob's message", func() bool { return slices.Equal(aliceEv.messages(t, dm), []string{"no hard feelings?"}) })
	if _, _, err := bob.Direct(ctx, "bob", "me", ""); client.ErrorCode(err) != parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST {
		t.Fatalf("a direct message to oneself: %v", err)
	}

	// A new topic is a change like the rest; the listings page.
	topicSeq, err := alice.UpdateRoom(ctx, "team", nil, proto.String("ship it"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "alice to see the new topic", func() bool {
		return aliceEv.find(func(e client.Event) bool {
			c, ok := e.(*client.Change)
			return ok && c.Seq == topicSeq && c.Change.GetTopic() == "ship it" && c.Change.GetTitle() == "The team"
		}) != nil
	})
	first, err := alice.RoomsPage(ctx, client.RoomsQuery{Limit: 1, Mine: true})
	if err != nil || len(first.GetRooms()) != 1 || first.GetRooms()[0].GetName() != dm || first.GetNext() == "" {
		t.Fatalf("alice's rooms, a page of one: %v, %v", first, err)
	}
	second, err := alice.RoomsPage(ctx, client.RoomsQuery{After: first.GetNext(), Limit: 1, Mine: true})
	if err != nil || len(second.GetRooms()) != 1 || second.GetRooms()[0].GetName() != "team" || second.GetRooms()[0].GetTopic() != "ship it" {
		t.Fatalf("the next page: %v, %v", second, err)
	}

	// The owner deletes the room: she is out of it too.
	if err := bob.DeleteRoom(ctx, "team", ""); !errors.Is(err, client.ErrForbidden) {
		t.Fatalf("a banned user deleting the room: %v, want ErrForbidden", err)
	}
	if err := alice.DeleteRoom(ctx, "team", "done"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "alice out of team", func() bool {
		return aliceEv.find(func(e client.Event) bool { c, ok := e.(*client.RoomClosed); return ok && c.Room == "team" }) != nil
	})
	if slices.Contains(alice.Rooms(), "team") {
		t.Fatalf("alice still in %v", alice.Rooms())
	}
	if _, err := alice.Join(ctx, "team"); !errors.Is(err, client.ErrNoSuchRoom) {
		t.Fatalf("joining a deleted room: %v, want ErrNoSuchRoom", err)
	}
}

// TestSessionBannedWhileAway: a user banned while their Session is
// disconnected is not let back in when it reconnects: the re-join is
// refused, which comes out as a RoomClosed with the refusal's code, and
// the Session stops re-joining the room.
func TestSessionBannedWhileAway(t *testing.T) {
	t.Parallel()
	mem := store.NewMemory()
	t.Cleanup(func() { mem.Close() })
	first := startServer(t, "127.0.0.1:0", func(c *server.Config) { c.Store = keepOpen{mem} })
	addr := first.Addr()
	ctx := testCtx(t, 60*time.Second)
	fast := client.Backoff{Base: 20 * time.Millisecond, Cap: 200 * time.Millisecond}
	olga := connect(t, ctx, first.URL(), client.SessionOptions{Name: "olga"})
	if err := olga.CreateRoom(ctx, client.NewRoom{Name: "club"}); err != nil {
		t.Fatal(err)
	}
	olga.Close()
	tom := connect(t, ctx, first.URL(), client.SessionOptions{Name: "tom", Backoff: fast})
	tomEv := record(t, tom)
	for _, room := range []string{"club", "lounge"} {
		if _, err := tom.Join(ctx, room); err != nil {
			t.Fatal(err)
		}
	}
	if err := first.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	// Meanwhile, on another node over the same store, the owner bans tom.
	other := startServer(t, "127.0.0.1:0", func(c *server.Config) { c.Store = keepOpen{mem} })
	olga = connect(t, ctx, other.URL(), client.SessionOptions{Name: "olga"})
	if _, err := olga.Moderate(ctx, client.Moderation{Room: "club", User: "tom", Action: parleypb.ModAction_MOD_ACTION_BAN, Reason: "rude"}); err != nil {
		t.Fatal(err)
	}
	olga.Close()
	if err := other.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	startServer(t, addr, func(c *server.Config) { c.Store = keepOpen{mem} })
	waitFor(t, "tom's re-join of club to be refused", func() bool {
		return tomEv.find(func(e client.Event) bool { c, ok := e.(*client.RoomClosed); return ok && c.Room == "club" }) != nil
	})
	closed := tomEv.find(func(e client.Event) bool { _, ok := e.(*client.RoomClosed); return ok }).(*client.RoomClosed)
	if closed.Code != parleypb.ErrorCode_ERROR_CODE_BANNED {
		t.Fatalf("tom was told %+v, want BANNED", closed)
	}
	waitFor(t, "tom back in lounge", func() bool {
		return tomEv.find(func(e client.Event) bool { j, ok := e.(*client.Joined); return ok && j.Room == "lounge" && j.Resumed }) != nil
	})
	if got := tom.Rooms(); !slices.Equal(got, []string{"lounge"}) {
		t.Fatalf("tom's rooms: %v, want [lounge]", got)
	}
	if _, err := tom.Join(ctx, "club"); !errors.Is(err, client.ErrBanned) {
		t.Fatalf("joining again: %v, want ErrBanned", err)
	}
}

// TestSessionRewound: the server comes back without its history (a fresh
// in-memory store), so the room's seqs start over below the Session's
// resume point. The Session says so (Rewound) and follows the new history
// from its start, changes included, every seq once, still a member of the
// room: no LEFT change of hers in it.
func TestSessionRewound(t *testing.T) {
	t.Parallel()
	first := startServer(t, "127.0.0.1:0", nil)
	addr := first.Addr()
	ctx := testCtx(t, 60*time.Second)
	fast := client.Backoff{Base: 20 * time.Millisecond, Cap: 200 * time.Millisecond}
	kim := connect(t, ctx, first.URL(), client.SessionOptions{Name: "kim", Backoff: fast})
	kimEv := record(t, kim)
	if _, err := kim.Join(ctx, "general"); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := kim.Post(ctx, "general", fmt.Sprint("old ", i), ""); err != nil {
			t.Fatal(err)
		}
	}
	// Her resume point must be past what the new history will hold when
	// she is back (a rewind shows as an ack below it).
	waitFor(t, "kim to read her posts", func() bool { return kimEv.count(t, "general") == 3 })
	if err := first.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	second := startServer(t, addr, nil)
	bob := connect(t, ctx, second.URL(), client.SessionOptions{Name: "bob"})
	if _, err := bob.Join(ctx, "general"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Post(ctx, "general", "new 1", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "kim to rewind", func() bool {
		return kimEv.find(func(e client.Event) bool { r, ok := e.(*client.Rewound); return ok && r.Room == "general" }) != nil
	})
	if _, err := bob.Post(ctx, "general", "new 2", ""); err != nil {
		t.Fatal(err)
	}
	// After the Rewound: the new history from seq 1, each once, in order.
	after := func() (seqs []uint64, texts, changes []string) {
		kimEv.mu.Lock()
		defer kimEv.mu.Unlock()
		rewound := false
		for _, ev := range kimEv.events {
			switch ev := ev.(type) {
			case *client.Rewound:
				rewound = true
			case *client.Message:
				if rewound {
					seqs, texts = append(seqs, ev.Seq), append(texts, ev.Text)
				}
			case *client.Change:
				if rewound {
					seqs, changes = append(seqs, ev.Seq), append(changes, ev.Sender+" "+ev.Change.GetKind().String())
				}
			}
		}
		return
	}
	waitFor(t, "kim to read the new history", func() bool { _, texts, _ := after(); return slices.Contains(texts, "new 2") })
	seqs, texts, changes := after()
	for i, seq := range seqs {
		if seq != uint64(i+1) {
			t.Fatalf("kim's seqs after the rewind: %v, want 1..%d", seqs, len(seqs))
		}
	}
	if !slices.Equal(texts, []string{"new 1", "new 2"}) {
		t.Fatalf("kim's posts after the rewind: %q", texts)
	}
	for _, c := range changes {
		if c == "kim CHANGE_KIND_LEFT" {
			t.Fatalf("the rewind ended kim's membership: %q", changes)
		}
	}
	if _, err := kim.Post(ctx, "general", "still here", ""); err != nil {
		t.Fatal(err)
	}
}

// TestSessionEditDeleteReact: the typed calls for a post's life after it
// is posted, their refusals as errors.Is values, and the events they make.
func TestSessionEditDeleteReact(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "127.0.0.1:0", nil)
	ctx := testCtx(t, 60*time.Second)
	ann := connect(t, ctx, srv.URL(), client.SessionOptions{Name: "ann"})
	bob := connect(t, ctx, srv.URL(), client.SessionOptions{Name: "bob", Codec: codec.JSON})
	bobEv := record(t, bob)
	for _, s := range []*client.Session{ann, bob} {
		if _, err := s.Join(ctx, "general"); err != nil {
			t.Fatal(err)
		}
	}
	seq, err := ann.Post(ctx, "general", "helo", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Edit(ctx, "general", seq, "mine now", ""); !errors.Is(err, client.ErrNotYours) {
		t.Fatalf("bob editing ann's post: %v", err)
	}
	if _, err := bob.DeleteMessage(ctx, "general", seq, "", ""); !errors.Is(err, client.ErrNotYours) {
		t.Fatalf("bob deleting ann's post: %v", err)
	}
	if _, err := ann.Edit(ctx, "general", seq+100, "x", ""); !errors.Is(err, client.ErrNoSuchMessage) {
		t.Fatalf("editing no message: %v", err)
	}
	edit, err := ann.Edit(ctx, "general", seq, "hello", "e-1")
	if err != nil {
		t.Fatal(err)
	}
	if again, err := ann.Edit(ctx, "general", seq, "hello", "e-1"); err != nil || again != edit {
		t.Fatalf("the retried edit: %d, %v; want %d", again, err, edit)
	}
	if _, err := bob.React(ctx, "general", seq, "👍", false, ""); err != nil {
		t.Fatal(err)
	}
	reply, err := bob.Reply(ctx, "general", "hi", seq, []string{"ann"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ann.DeleteMessage(ctx, "general", seq, "", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.React(ctx, "general", seq, "👍", true, ""); !errors.Is(err, client.ErrAlreadyDeleted) {
		t.Fatalf("reacting to a deleted post: %v", err)
	}
	waitFor(t, "bob to see the edit, reaction and delete", func() bool {
		ch := bobEv.changes("general")
		return len(ch) > 0 && ch[len(ch)-1] == "ann MESSAGE_DELETED "
	})
	got := bobEv.changes("general")
	want := []string{"ann EDITED ", "bob REACTED ", "ann MESSAGE_DELETED "}
	if !slices.Equal(got[len(got)-3:], want) {
		t.Fatalf("bob's changes: %q, want them to end %q", got, want)
	}
	page, err := bob.History(ctx, "general", 0, 50)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range page.GetEvents() {
		if ev.GetSeq() == seq && (!ev.GetDeleted() || ev.GetText() != "") {
			t.Fatalf("the deleted post in history: %v", ev)
		}
		if ev.GetSeq() == reply && (ev.GetReplyTo() != seq || !slices.Equal(ev.GetMentions(), []string{"ann"})) {
			t.Fatalf("the reply in history: %v", ev)
		}
	}
}

// TestSessionReadPositions: a member may not turn read positions on; once
// the owner has, another member's MarkReads reach the owner's Session as
// ReadPositions events, a snapshot first.
func TestSessionReadPositions(t *testing.T) {
	t.Parallel()
	srv := startServer(t, "127.0.0.1:0", nil)
	ctx := testCtx(t, 60*time.Second)
	ann := connect(t, ctx, srv.URL(), client.SessionOptions{Name: "ann"})
	bob := connect(t, ctx, srv.URL(), client.SessionOptions{Name: "bob", Codec: codec.JSON})
	annEv := record(t, ann)
	if err := ann.CreateRoom(ctx, client.NewRoom{Name: "club"}); err != nil {
		t.Fatal(err)
	}
	var last uint64
	for _, s := range []*client.Session{ann, bob} {
		if _, err := s.Join(ctx, "club"); err != nil {
			t.Fatal(err)
		}
	}
	for _, text := range []string{"one", "two", "three"} {
		seq, err := ann.Post(ctx, "club", text, "")
		if err != nil {
			t.Fatal(err)
		}
		last = seq
	}
	if _, err := bob.SetReadPositions(ctx, "club", true); !errors.Is(err, client.ErrForbidden) {
		t.Fatalf("bob turning read positions on: %v, want ErrForbidden", err)
	}
	if _, err := ann.SetReadPositions(ctx, "club", true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ann's snapshot", func() bool {
		return annEv.find(func(ev client.Event) bool { rp, ok := ev.(*client.ReadPositions); return ok && rp.GetSnapshot() }) != nil
	})
	for seq := last - 2; seq <= last; seq++ {
		if cursor, err := bob.MarkRead(ctx, "club", seq); err != nil || cursor != seq {
			t.Fatalf("bob marking %d read: %d, %v", seq, cursor, err)
		}
	}
	waitFor(t, "bob's position at ann's", func() bool {
		return annEv.find(func(ev client.Event) bool {
			rp, ok := ev.(*client.ReadPositions)
			if !ok || rp.GetSnapshot() || rp.GetRoom() != "club" {
				return false
			}
			for _, p := range rp.GetPositions() {
				if p.GetUser() == "bob" && p.GetSeq() == last {
					return true
				}
			}
			return false
		}) != nil
	})
}
