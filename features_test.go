package main_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/client"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/proto/codec"
	"github.com/parleychat/parley/server"
	"github.com/parleychat/parley/supervision"
)

func u64(v uint64) *uint64 { return &v }

// TestIdempotentPostAndResume: a retried post is acked with its original
// seq and delivered once; a client that reconnects with since=last gets
// exactly the gap.
func TestIdempotentPostAndResume(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	ctx := testCtx(t, 10*time.Second)
	alice := login(t, ctx, srv, codec.Proto, "alice", "r")
	bob := login(t, ctx, srv, codec.JSON, "bob", "r")

	s1, err := alice.Post(ctx, "r", "once", "m-1")
	if err != nil {
		t.Fatal(err)
	}
	s2, err := alice.Post(ctx, "r", "once", "m-1")
	if err != nil || s2 != s1 {
		t.Fatalf("retry acked seq %d (%v), want the original %d", s2, err, s1)
	}
	if _, err := alice.Post(ctx, "r", "twice", "m-2"); err != nil {
		t.Fatal(err)
	}
	if ev := roomEvent(t, ctx, bob, "r"); ev.GetSeq() != s1 || ev.GetText() != "once" {
		t.Fatalf("bob got %v", ev)
	}
	if ev := roomEvent(t, ctx, bob, "r"); ev.GetText() != "twice" || ev.GetSeq() != s1+1 {
		t.Fatalf("bob got %v after 'once': the retry was delivered twice?", ev)
	}
	last := s1 + 1
	bob.CloseNow()

	for i := 0; i < 3; i++ {
		if _, err := alice.Post(ctx, "r", fmt.Sprint("missed ", i), fmt.Sprint("g", i)); err != nil {
			t.Fatal(err)
		}
	}
	bob2 := login(t, ctx, srv, codec.JSON, "bob")
	ack, err := bob2.Join(ctx, "r", u64(last))
	if err != nil {
		t.Fatal(err)
	}
	if ack.GetSeq() != last+3 {
		t.Fatalf("join ack seq %d, want %d", ack.GetSeq(), last+3)
	}
	for i := uint64(1); i <= 3; i++ {
		if ev := roomEvent(t, ctx, bob2, "r"); ev.GetSeq() != last+i {
			t.Fatalf("resume got seq %d, want %d", ev.GetSeq(), last+i)
		}
	}
	if _, err := alice.Post(ctx, "r", "live", "l1"); err != nil {
		t.Fatal(err)
	}
	if ev := roomEvent(t, ctx, bob2, "r"); ev.GetSeq() != last+4 || ev.GetText() != "live" {
		t.Fatalf("after resume got %v, want the live post with no duplicate before it", ev)
	}
}

// TestRequestErrors: every bad request gets an error frame with its code and
// the connection stays usable.
func TestRequestErrors(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *server.Config) {
		c.Actors.MaxRooms = 2
		c.Actors.MaxTextRunes = 10
	})
	ctx := testCtx(t, 10*time.Second)
	c := dial(t, ctx, srv, codec.JSON)
	want := func(what string, code parleypb.ErrorCode, err error) {
		t.Helper()
		if got := client.ErrorCode(err); got != code {
			t.Fatalf("%s: got %v (%v), want %v", what, got, err, code)
		}
	}
	_, err := c.Join(ctx, "r", nil)
	want("join before hello", parleypb.ErrorCode_ERROR_CODE_NOT_LOGGED_IN, err)
	want("empty name", parleypb.ErrorCode_ERROR_CODE_INVALID_NAME, c.Hello(ctx, "", false))
	want("long name", parleypb.ErrorCode_ERROR_CODE_INVALID_NAME, c.Hello(ctx, strings.Repeat("n", 33), false))
	want("control char", parleypb.ErrorCode_ERROR_CODE_INVALID_NAME, c.Hello(ctx, "a\x07b", false))
	want("emoji", parleypb.ErrorCode_ERROR_CODE_INVALID_NAME, c.Hello(ctx, "émile 🎲", false))
	if err := c.Hello(ctx, "émile 日本", false); err != nil {
		t.Fatalf("valid unicode name refused: %v", err)
	}
	want("second hello", parleypb.ErrorCode_ERROR_CODE_ALREADY_LOGGED_IN, c.Hello(ctx, "again", false))
	_, err = c.Post(ctx, "r", "hi", "x")
	want("post before join", parleypb.ErrorCode_ERROR_CODE_NOT_JOINED, err)
	for _, r := range []string{"a", "b"} {
		if _, err := c.Join(ctx, r, nil); err != nil {
			t.Fatal(err)
		}
	}
	_, err = c.Join(ctx, "c", nil)
	want("third room", parleypb.ErrorCode_ERROR_CODE_TOO_MANY_ROOMS, err)
	_, err = c.Post(ctx, "a", "0123456789!", "x")
	want("long text", parleypb.ErrorCode_ERROR_CODE_TOO_LONG, err)
	_, err = c.Post(ctx, "a", "nul\x00", "x")
	want("NUL in text", parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, err)
	want("leave unknown", parleypb.ErrorCode_ERROR_CODE_NOT_JOINED, c.Leave(ctx, "zzz"))
	err = c.History(ctx, "zzz", 0, 10)
	want("history of unknown", parleypb.ErrorCode_ERROR_CODE_NOT_JOINED, err)
	_, err = c.Request(ctx, &parleypb.Envelope{})
	want("empty envelope", parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, err)

	if err := c.WriteRaw(ctx, []byte("this is not json")); err != nil {
		t.Fatal(err)
	}
	bad := nextEvent(t, ctx, c, "an error for the garbage frame", func(e *parleypb.Envelope) bool { return e.GetError() != nil })
	if bad.GetError().GetCode() != parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST {
		t.Fatalf("garbage frame: %v", bad)
	}
	if err := c.Ping(ctx); err != nil {
		t.Fatalf("connection unusable after bad input: %v", err)
	}
}

// TestRateLimit: requests past the bucket get RATE_LIMITED errors; a
// session that keeps going is closed with 1008.
func TestRateLimit(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *server.Config) {
		c.Actors.Rate, c.Actors.Burst, c.Actors.Strikes = 1, 5, 5
	})
	ctx := testCtx(t, 10*time.Second)
	c := login(t, ctx, srv, codec.Proto, "spammer", "r")
	for i := 0; i < 40; i++ {
		env := &parleypb.Envelope{Id: fmt.Sprint(i), Body: &parleypb.Envelope_Post{Post: &parleypb.Post{Room: "r", Text: "spam"}}}
		if c.Send(ctx, env) != nil {
			break
		}
	}
	limited := nextEvent(t, ctx, c, "a RATE_LIMITED error", func(e *parleypb.Envelope) bool { return e.GetError() != nil })
	if limited.GetError().GetCode() != parleypb.ErrorCode_ERROR_CODE_RATE_LIMITED || limited.GetError().GetRequestId() == "" {
		t.Fatalf("got %v, want RATE_LIMITED naming the refused request", limited)
	}
	if code, reason := closeCode(t, ctx, c); code != parleypb.CloseCode_CLOSE_CODE_POLICY_VIOLATION {
		t.Fatalf("close %d %q, want 1008", code, reason)
	}
}

// TestIdleTimeout: a session that sends nothing for -idle-timeout is closed
// with 4000, even while it receives messages; pings keep it alive.
func TestIdleTimeout(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *server.Config) { c.Actors.IdleTimeout = 400 * time.Millisecond })
	ctx := testCtx(t, 10*time.Second)
	idle := login(t, ctx, srv, codec.JSON, "idle", "r")
	busy := login(t, ctx, srv, codec.JSON, "busy", "r")
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // busy keeps posting, which idle receives: receiving is not activity
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := busy.Post(ctx, "r", "tick", fmt.Sprint(i)); err != nil {
				return
			}
		}
	}()
	code, reason := closeCode(t, ctx, idle)
	close(stop)
	<-done
	if code != parleypb.CloseCode_CLOSE_CODE_IDLE_TIMEOUT {
		t.Fatalf("idle close %v %q, want IDLE_TIMEOUT (4000)", code, reason)
	}
	if err := busy.Err(); err != nil {
		t.Fatalf("busy client closed too: %v", err)
	}
}

// TestMultiDevicePresence: three connections of one user are one "joined"
// and one "left", in the room and online.
func TestMultiDevicePresence(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	ctx := testCtx(t, 10*time.Second)
	w := dial(t, ctx, srv, codec.JSON)
	if err := w.Hello(ctx, "watcher", true); err != nil {
		t.Fatal(err)
	}
	// watchOnline is deprecated: the server-wide online list is no more,
	// and the snapshot before the ack is empty.
	w.Next(ctx) // welcome
	snap, err := w.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p := snap.GetPresence(); p == nil || len(p.GetMembers()) != 0 {
		t.Fatalf("first event after hello = %v, want an empty snapshot", snap)
	}
	if _, err := w.Join(ctx, "r", nil); err != nil {
		t.Fatal(err)
	}
	login(t, ctx, srv, codec.JSON, "stranger", "elsewhere") // shares no room with the watcher
	var devs []*client.Client
	for i := 0; i < 3; i++ {
		devs = append(devs, login(t, ctx, srv, codec.Proto, "multi", "r"))
	}
	ack, err := w.Join(ctx, "r", nil) // a re-join answers with who is connected
	if err != nil {
		t.Fatal(err)
	}
	if got := devices(ack.GetMembers()); got["multi"] != 3 {
		t.Fatalf("members %v, want multi with 3 devices", got)
	}
	// What the watcher is told of multi in r: one join and one departure
	// for three devices.
	count := map[string]int{}
	// next reads events up to a who answer (a snapshot), counting deltas.
	next := func(room string) []*parleypb.Member {
		t.Helper()
		for {
			env, err := w.Next(ctx)
			if err != nil {
				t.Fatal(err)
			}
			p := env.GetPresence()
			if p == nil {
				continue
			}
			if p.GetRoom() == room && len(p.GetMembers()) > 0 {
				return p.GetMembers()
			}
			for _, n := range p.GetJoined() {
				count[p.GetRoom()+" joined "+n]++
			}
			for _, n := range p.GetLeft() {
				count[p.GetRoom()+" left "+n]++
			}
		}
	}
	// Who without a room: who is connected to any of my rooms, not the
	// whole server; a connection in two of them counts once.
	if _, err := w.Join(ctx, "r2", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := devs[0].Join(ctx, "r2", nil); err != nil {
		t.Fatal(err)
	}
	if err := w.Who(ctx); err != nil {
		t.Fatal(err)
	}
	if got := devices(next("")); fmt.Sprint(got) != "map[multi:3 watcher:1]" {
		t.Fatalf("who = %v, want multi (3 devices) and watcher, not the stranger", got)
	}
	devs[0].Close()
	devs[1].CloseNow()
	devs[2].Close()
	waitFor(t, 5*time.Second, func() error {
		if n := srv.Node.Sessions(); n != 2 {
			return fmt.Errorf("%d sessions", n)
		}
		return nil
	})
	if _, err := w.Request(ctx, &parleypb.Envelope{Body: &parleypb.Envelope_Who{Who: &parleypb.WhoRequest{Room: "r"}}}); err != nil {
		t.Fatal(err)
	}
	if got := next("r"); len(got) != 1 || got[0].GetName() != "watcher" {
		t.Fatalf("in r after all left: %v", got)
	}
	want := map[string]int{"r joined multi": 1, "r joined watcher": 1, "r left multi": 1, "r2 joined multi": 1, "r2 joined watcher": 1, "r2 left multi": 1}
	if fmt.Sprint(count) != fmt.Sprint(want) {
		t.Fatalf("presence events %v, want %v", count, want)
	}
}

// TestRoomRestartLosesNothing: a room that panics is restarted from the
// store; the post it was handling fails with UNAVAILABLE (retryable), and
// members see every acknowledged message once, in order.
func TestRoomRestartLosesNothing(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *server.Config) {
		c.Faults = &supervision.Faults{Marker: "💥", Kinds: []string{"room"}}
	})
	ctx := testCtx(t, 15*time.Second)
	alice := login(t, ctx, srv, codec.Proto, "alice", "r")
	bob, base := loginAt(t, ctx, srv, codec.JSON, "bob", "r")
	var acked []uint64
	post := func(text string) {
		t.Helper()
		seq, err := alice.Post(ctx, "r", text, text)
		if err != nil {
			t.Fatalf("post %q: %v", text, err)
		}
		acked = append(acked, seq)
	}
	for i := 0; i < 5; i++ {
		post(fmt.Sprint("before ", i))
	}
	_, err := alice.Post(ctx, "r", "💥", "boom")
	if client.ErrorCode(err) != parleypb.ErrorCode_ERROR_CODE_UNAVAILABLE {
		t.Fatalf("post that crashed the room: %v, want UNAVAILABLE", err)
	}
	for i := 0; i < 5; i++ {
		post(fmt.Sprint("after ", i))
	}
	for i, want := range acked {
		if want != base+uint64(i+1) {
			t.Fatalf("acked seqs %v, want %d..%d", acked, base+1, base+10)
		}
		if ev := roomEvent(t, ctx, bob, "r"); ev.GetSeq() != want {
			t.Fatalf("bob got seq %d, want %d", ev.GetSeq(), want)
		}
	}
	if n := srv.Node.Stats.Rooms.Restarts.Load(); n != 1 {
		t.Fatalf("%d room restarts, want 1", n)
	}
}

// TestRoomPassivation: an empty room stops after the linger time and comes
// back with its history and sequence on the next join.
func TestRoomPassivation(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *server.Config) { c.Actors.RoomLinger = 100 * time.Millisecond })
	ctx := testCtx(t, 10*time.Second)
	c, base := loginAt(t, ctx, srv, codec.JSON, "solo", "quiet")
	for i := 0; i < 3; i++ {
		if _, err := c.Post(ctx, "quiet", fmt.Sprint(i), fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Leave(ctx, "quiet"); err != nil { // a LEFT event, base+4
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() error {
		if n := srv.Node.Stats.ActiveRooms.Load(); n != 0 || srv.Node.Stats.Passivations.Load() == 0 {
			return fmt.Errorf("%d rooms active, %d passivations", n, srv.Node.Stats.Passivations.Load())
		}
		return nil
	})
	c = login(t, ctx, srv, codec.JSON, "solo2") // a fresh client: no events left over
	ack, err := c.Join(ctx, "quiet", u64(base))
	if err != nil {
		t.Fatal(err)
	}
	if ack.GetSeq() != base+5 { // solo2's JOINED
		t.Fatalf("re-created room at seq %d, want %d", ack.GetSeq(), base+5)
	}
	for _, want := range []uint64{base + 1, base + 2, base + 3} {
		if ev := roomEvent(t, ctx, c, "quiet"); ev.GetSeq() != want {
			t.Fatalf("replay seq %d, want %d", ev.GetSeq(), want)
		}
	}
	if seq, err := c.Post(ctx, "quiet", "back", "b"); err != nil || seq != base+6 {
		t.Fatalf("post after passivation: seq %d %v, want %d", seq, err, base+6)
	}
}

// TestHistoryScrollback pages backwards through a room.
func TestHistoryScrollback(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *server.Config) { c.Actors.History = 5 })
	ctx := testCtx(t, 10*time.Second)
	c, base := loginAt(t, ctx, srv, codec.JSON, "reader", "log") // the room's creation and the join are events too
	for i := 1; i <= 30; i++ {
		if _, err := c.Post(ctx, "log", fmt.Sprint(i), fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	before, pages := uint64(0), 0
	var seen []uint64
	for {
		if err := c.History(ctx, "log", before, 8); err != nil {
			t.Fatal(err)
		}
		page := nextEvent(t, ctx, c, "a history page", func(e *parleypb.Envelope) bool { return e.GetHistoryPage() != nil }).GetHistoryPage()
		pages++
		evs := page.GetEvents()
		for i := len(evs) - 1; i >= 0; i-- {
			seen = append(seen, evs[i].GetSeq())
		}
		if !page.GetHasMore() {
			break
		}
		before = evs[0].GetSeq()
		if pages > 10 {
			t.Fatal("history never ends")
		}
	}
	latest := base + 30
	if uint64(len(seen)) != latest || seen[0] != latest || seen[latest-1] != 1 || pages != int(latest+7)/8 {
		t.Fatalf("scrollback saw %v in %d pages, want %d..1 in %d", seen, pages, latest, (latest+7)/8)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] != seen[i-1]-1 {
			t.Fatalf("scrollback not contiguous: %v", seen)
		}
	}
}

// TestTypingWhoAndRooms covers the small requests.
func TestTypingWhoAndRooms(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	ctx := testCtx(t, 10*time.Second)
	alice := login(t, ctx, srv, codec.JSON, "alice", "a", "b")
	bob := login(t, ctx, srv, codec.JSON, "bob", "a")
	if err := alice.Typing(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	ty := nextEvent(t, ctx, bob, "alice typing", func(e *parleypb.Envelope) bool { return e.GetTyping() != nil })
	if ty.GetTyping().GetUser() != "alice" || ty.GetTyping().GetRoom() != "a" {
		t.Fatalf("typing = %v", ty)
	}
	if err := bob.Who(ctx); err != nil {
		t.Fatal(err)
	}
	who := nextEvent(t, ctx, bob, "online list", func(e *parleypb.Envelope) bool {
		return e.GetPresence().GetMembers() != nil && e.GetPresence().GetRoom() == ""
	})
	if got := fmt.Sprint(who.GetPresence().GetMembers()); !strings.Contains(got, "alice") || !strings.Contains(got, "bob") {
		t.Fatalf("who = %s", got)
	}
	if err := bob.Rooms(ctx); err != nil {
		t.Fatal(err)
	}
	rl := nextEvent(t, ctx, bob, "room list", func(e *parleypb.Envelope) bool { return e.GetRoomList() != nil }).GetRoomList()
	rooms := map[string]uint32{}
	for _, r := range rl.GetRooms() {
		rooms[r.GetName()] = r.GetMembers()
	}
	if rooms["a"] != 2 || rooms["b"] != 1 || len(rooms) != 2 {
		t.Fatalf("rooms = %v, want a:2 b:1", rooms)
	}
	// alice must not have been told about her own typing.
	if err := alice.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	for {
		env, err := alice.Next(testCtx(t, 200*time.Millisecond))
		if err != nil {
			break
		}
		if env.GetTyping() != nil {
			t.Fatalf("alice got her own typing event: %v", env)
		}
	}
}

// TestHealthAndReadiness: /healthz answers 200 while serving, /readyz 503
// until Start and 200 after.
func TestHealthAndReadiness(t *testing.T) {
	t.Parallel()
	srv, err := server.New(server.Config{Addr: "127.0.0.1:0", Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz before start: %d, want 503", rec.Code)
	}
	srv.Start()
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + srv.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
		}
	}
	srv.Shutdown(context.Background())
	rec = httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz after shutdown: %d, want 503", rec.Code)
	}
}

func devices(ms []*parleypb.Member) map[string]uint32 {
	out := map[string]uint32{}
	for _, m := range ms {
		out[m.GetName()] = m.GetDevices()
	}
	return out
}

// TestJoinAheadOfServer: a client that saw more of a room than the server
// has (the server lost its history) is told with a resetEvent and then gets
// the room from its start, live messages included.
func TestJoinAheadOfServer(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	ctx := testCtx(t, 10*time.Second)
	a, base := loginAt(t, ctx, srv, codec.JSON, "a", "r") // seq 1 and 2: the room's creation, a's join
	if _, err := a.Post(ctx, "r", "first", "f"); err != nil {
		t.Fatal(err)
	}
	b := login(t, ctx, srv, codec.JSON, "b")
	ack, err := b.Join(ctx, "r", u64(99))
	if err != nil {
		t.Fatal(err)
	}
	reset := nextEvent(t, ctx, b, "a reset", func(e *parleypb.Envelope) bool { return e.GetResetEvent() != nil }).GetResetEvent()
	// b's join is an event too (base+2): the room replays from its start.
	if reset.GetSince() != 99 || reset.GetOldestSeq() != 1 || ack.GetSeq() != base+2 || ack.GetOldestSeq() != 1 {
		t.Fatalf("reset %v, ack %v", reset, ack)
	}
	if ev := roomEvent(t, ctx, b, "r"); ev.GetSeq() != base+1 {
		t.Fatalf("after the reset got %v, want seq %d", ev, base+1)
	}
	if _, err := a.Post(ctx, "r", "second", "s"); err != nil {
		t.Fatal(err)
	}
	if ev := roomEvent(t, ctx, b, "r"); ev.GetSeq() != base+3 {
		t.Fatalf("live after the reset: %v, want seq %d", ev, base+3)
	}
}

// TestSubprotocolFollowsTheClient: the server speaks the first subprotocol
// the client offers that it knows, and says so in the handshake.
func TestSubprotocolFollowsTheClient(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	ctx := testCtx(t, 10*time.Second)
	for _, offer := range [][]string{
		{codec.JSONSubprotocol, codec.ProtoSubprotocol},
		{codec.ProtoSubprotocol, codec.JSONSubprotocol},
		{"chat.v9", codec.JSONSubprotocol},
	} {
		r, err := client.DialRaw(ctx, srv.URL(), nil, offer...)
		if err != nil {
			t.Fatal(err)
		}
		want := offer[0]
		if want == "chat.v9" {
			want = offer[1]
		}
		if r.Subprotocol() != want {
			t.Errorf("offered %v, server chose %q", offer, r.Subprotocol())
		}
		r.CloseNow()
	}
}
