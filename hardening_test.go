package main_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parleychat/parley/bots"
	"github.com/parleychat/parley/client"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/proto/codec"
	"github.com/parleychat/parley/server"
	"github.com/parleychat/parley/store"
)

// What a crowd and a hostile client do to Parley: each test names the
// error or close code it expects.

// TestReplaysDoNotStarveLivePosts: members that keep asking for the whole
// history of a big room (join since 0, under the rate limit) are served
// from the store off the room's mailbox, so the room's live posts are
// acknowledged meanwhile; a member that asks again while its own replay
// runs, or when too many others catch up, gets RATE_LIMITED.
func TestReplaysDoNotStarveLivePosts(t *testing.T) {
	t.Parallel()
	const stored = 3000
	st := store.NewMemory()
	msgs := make([]store.Message, stored)
	for i := range msgs {
		msgs[i] = store.Message{Room: "busy", Seq: uint64(i + 1), Time: time.Now(), Sender: "old", Text: fmt.Sprintf("old message %d", i+1)}
	}
	if err := st.Commit(t.Context(), store.Batch{Room: "busy", Messages: msgs}); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, func(c *server.Config) {
		c.Store = st
		c.Logger = quietLogger(t)
		c.Actors.Rate, c.Actors.Burst = 20, 40 // the defaults: the spammers stay under them
	})
	ctx := testCtx(t, 90*time.Second)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var joins, limited, replayed atomic.Int64
	for i := range 10 {
		// The spammers send a join every 55 ms without waiting for the
		// answer, as a client with a bug (or a grudge) would; the answers
		// come back as events.
		c, err := client.Dial(ctx, srv.URL(), codec.JSON, &client.Options{
			OnRoomEvent: func(client.RawEvent) { replayed.Add(1) }, // read cheaply, never fall behind
			OnEvent: func(env *parleypb.Envelope) {
				switch {
				case env.GetAck().GetRoom() == "busy":
					joins.Add(1)
				case env.GetError().GetCode() == parleypb.ErrorCode_ERROR_CODE_RATE_LIMITED:
					limited.Add(1)
				case env.GetError() != nil:
					t.Errorf("spammer join: %v, want an ack or RATE_LIMITED", env.GetError())
				}
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.CloseNow() })
		if err := c.Hello(ctx, fmt.Sprint("spammer", i), false); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			zero := uint64(0)
			tick := time.NewTicker(55 * time.Millisecond) // 18 joins/s: under the rate limit
			defer tick.Stop()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				join := &parleypb.Envelope{Id: fmt.Sprint("j", n), Body: &parleypb.Envelope_Join{Join: &parleypb.Join{Room: "busy", Since: &zero}}}
				if c.Send(ctx, join) != nil {
					return
				}
			}
		}()
	}
	// The room's mailbox is sampled all along: replays must not pile up
	// in it (they did: 1,465 messages deep, every post timing out).
	var deepest atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			for _, d := range srv.Node.Stats.BusiestRooms(1) {
				if d.Depth > deepest.Load() {
					deepest.Store(d.Depth)
				}
			}
		}
	}()
	// Let the replays start, then post as a member while they run.
	waitFor(t, 20*time.Second, func() error {
		if joins.Load() < 5 {
			return fmt.Errorf("%d replays served", joins.Load())
		}
		return nil
	})
	// Post for as long as it takes the spammers to be served 100 more
	// replays (at least 20 posts), so posts and replays overlap; on a
	// loaded machine replays come slower, so at most 30 s, and then at
	// least 20 replays must have run meanwhile.
	poster := login(t, ctx, srv, codec.Proto, "poster", "busy")
	from := joins.Load()
	until, deadline := from+100, time.Now().Add(30*time.Second)
	posts := 0
	pace := time.NewTicker(60 * time.Millisecond) // under the rate limit too
	defer pace.Stop()
	for i := 0; i < 20 || (joins.Load() < until && time.Now().Before(deadline)); i++ {
		<-pace.C
		posts++
		pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		seq, err := poster.Post(pctx, "busy", "live", fmt.Sprint("live-", i))
		cancel()
		if err != nil {
			t.Fatalf("post %d while %d replays ran: %v (the room is starved)", i, joins.Load(), err)
		}
		if seq <= stored {
			t.Fatalf("post %d got seq %d", i, seq)
		}
	}
	if overlap := joins.Load() - from; overlap < 20 {
		t.Fatalf("only %d replays were served while %d posts were acknowledged: they did not overlap", overlap, posts)
	}
	close(stop)
	wg.Wait()
	t.Logf("%d full replays served (%d events), %d joins refused with RATE_LIMITED, while %d posts were acknowledged; the room's mailbox was at most %d deep",
		joins.Load(), replayed.Load(), limited.Load(), posts, deepest.Load())
	if d := deepest.Load(); d > 200 {
		t.Fatalf("the room's mailbox grew to %d messages: replays are piling up in it", d)
	}
}

// TestLegacyCrowd: 200 tutorial-protocol clients log in to lobby at once.
// Their logins are coalesced in the room, and each legacy client still
// gets one login frame per user, in the room's order, each with the
// online list after that login: every client sees its own login and every
// later one. Then half log out, and the others see each logout the same way.
func TestLegacyCrowd(t *testing.T) {
	t.Parallel()
	const crowd = 200
	srv := startServer(t, func(c *server.Config) {
		c.Logger = quietLogger(t)
		c.Transport.MaxConnsPerIP, c.Transport.HandshakesPerSecond = 0, 0
	})
	ctx := testCtx(t, 120*time.Second) // 200 clients under -race on a loaded 2-core machine
	// A native member of lobby from the start sees the room's order of
	// joins (its presence deltas, in order).
	watcher := login(t, ctx, srv, codec.JSON, "watcher", "lobby")

	type seen struct {
		logins, logouts []string
		lists           map[string][]string // user -> user_list of the frame announcing it
		err             error
	}
	results := make([]seen, crowd)
	conns := make([]*client.Raw, crowd)
	var wg sync.WaitGroup
	for i := range crowd {
		conns[i] = dialLegacy(t, ctx, srv)
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, res := conns[i], &results[i]
			res.lists = map[string][]string{}
			var f legacyFrame
			if res.err = r.ReadJSON(ctx, &f); res.err != nil || f.Type != "handshake" {
				res.err = fmt.Errorf("handshake: %v %+v", res.err, f)
				return
			}
			if res.err = r.WriteJSON(ctx, map[string]string{"type": "login", "content": fmt.Sprintf("u%03d", i)}); res.err != nil {
				return
			}
			for dones := 0; dones < 2; {
				f = legacyFrame{}
				if res.err = r.ReadJSON(ctx, &f); res.err != nil {
					return
				}
				switch f.Type {
				case "login":
					res.logins = append(res.logins, f.Content)
					res.lists["+"+f.Content] = f.UserList
				case "logout":
					res.logouts = append(res.logouts, f.Content)
					res.lists["-"+f.Content] = f.UserList
				case "user":
					if f.Content == "done" {
						dones++
						if dones == 1 && i%2 == 0 {
							res.err = r.WriteJSON(ctx, map[string]string{"type": "logout"})
							return // the server closes the connection
						}
					}
				}
			}
		}()
	}
	// The room's order, as the native watcher saw it.
	var order []string
	waitJoins := func(want int, left bool) {
		for len(order) < want {
			env := nextEvent(t, ctx, watcher, "presence in lobby", func(e *parleypb.Envelope) bool { return e.GetPresence().GetRoom() == "lobby" })
			names := env.GetPresence().GetJoined()
			if left {
				names = env.GetPresence().GetLeft()
			}
			for _, n := range names {
				if n != "watcher" { // its own join
					order = append(order, n)
				}
			}
		}
	}
	waitJoins(crowd, false)
	joinOrder := order
	if _, err := watcher.Post(ctx, "lobby", "done", "done-1"); err != nil {
		t.Fatal(err)
	}
	order = nil
	waitJoins(crowd/2, true)
	leaveOrder := order
	if _, err := watcher.Post(ctx, "lobby", "done", "done-2"); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	pos := map[string]int{}
	for i, u := range joinOrder {
		pos[u] = i
	}
	online := func(upto int) []string { // the legacy user_list: watcher first (it joined first), then login order
		return append([]string{"watcher"}, joinOrder[:upto+1]...)
	}
	for i, res := range results {
		me := fmt.Sprintf("u%03d", i)
		if res.err != nil {
			t.Fatalf("%s: %v", me, res.err)
		}
		// Its logins are the room's order from some point at or before its
		// own login to the end: its own and every later one, in order.
		k := len(joinOrder) - len(res.logins)
		if k < 0 || k > pos[me] || fmt.Sprint(res.logins) != fmt.Sprint(joinOrder[k:]) {
			t.Fatalf("%s saw logins %v; want the room's order from at most its own (#%d) on: %v", me, res.logins, pos[me], joinOrder)
		}
		for _, u := range res.logins {
			if got, want := res.lists["+"+u], online(pos[u]); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("%s: the login of %s listed %v, want %v", me, u, got, want)
			}
		}
		if i%2 == 1 && fmt.Sprint(res.logouts) != fmt.Sprint(leaveOrder) {
			t.Fatalf("%s saw logouts %v, want all %d in the room's order %v", me, res.logouts, len(leaveOrder), leaveOrder)
		}
	}
}

// countingHandler counts the records of each message, then passes them on.
type countingHandler struct {
	slog.Handler
	mu     *sync.Mutex
	counts map[string]int
}

func (h countingHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	h.mu.Lock()
	h.counts[r.Message]++
	h.mu.Unlock()
	if !h.Handler.Enabled(ctx, r.Level) {
		return nil
	}
	return h.Handler.Handle(ctx, r)
}

func (h countingHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return countingHandler{h.Handler.WithAttrs(a), h.mu, h.counts}
}

func (h countingHandler) count(msg string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.counts[msg]
}

// TestGarbageFramesAreRateLimited: frames that do not decode count
// against the rate limit like any other (BAD_REQUEST, then RATE_LIMITED,
// then close POLICY_VIOLATION, 1008), and the log says so a few times
// with a count, not once per frame.
func TestGarbageFramesAreRateLimited(t *testing.T) {
	t.Parallel()
	logs := countingHandler{quietLogger(t).Handler(), &sync.Mutex{}, map[string]int{}}
	srv := startServer(t, func(c *server.Config) {
		c.Logger = slog.New(logs)
		c.Actors.Rate, c.Actors.Burst = 20, 40 // the defaults
	})
	ctx := testCtx(t, 20*time.Second)
	c := dial(t, ctx, srv, codec.JSON)
	for range 5000 {
		if c.WriteRaw(ctx, []byte("{garbage")) != nil {
			break // closed under us: expected
		}
	}
	var codes []parleypb.ErrorCode
	for {
		env, err := c.Next(ctx)
		if err != nil {
			if code := client.CloseCode(err); code != parleypb.CloseCode_CLOSE_CODE_POLICY_VIOLATION {
				t.Fatalf("closed with %v (%v), want POLICY_VIOLATION (1008)", code, err)
			}
			break
		}
		if e := env.GetError(); e != nil && (len(codes) == 0 || codes[len(codes)-1] != e.GetCode()) {
			codes = append(codes, e.GetCode())
		}
	}
	// The limiter refills as frames trickle in on a loaded machine, so
	// BAD_REQUEST may come back between RATE_LIMITEDs; what matters is
	// that the garbage is answered, then limited, and nothing else.
	limited := false
	for i, code := range codes {
		switch {
		case i == 0 && code != parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST,
			code != parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST && code != parleypb.ErrorCode_ERROR_CODE_RATE_LIMITED:
			t.Fatalf("errors went %v, want BAD_REQUEST, then RATE_LIMITED", codes)
		}
		limited = limited || code == parleypb.ErrorCode_ERROR_CODE_RATE_LIMITED
	}
	if !limited {
		t.Fatalf("errors went %v: the garbage was never RATE_LIMITED", codes)
	}
	if n := logs.count("bad frame from client"); n == 0 || n > 10 {
		t.Fatalf("%d log lines for the bad frames; want a few (throttled), not one each", n)
	}
}

// TestPingFloodIsAbuseNotSlowness: a client that reads as fast as it can
// but sends a thousand pings at once is closed for abuse (1008), never
// told it is too slow (1013): pings count against the rate limit.
func TestPingFloodIsAbuseNotSlowness(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *server.Config) { c.Actors.Rate, c.Actors.Burst = 20, 40 })
	ctx := testCtx(t, 20*time.Second)
	c := login(t, ctx, srv, codec.Proto, "pinger")
	for i := range 1000 {
		if c.Send(ctx, &parleypb.Envelope{Id: fmt.Sprint("p", i), Body: &parleypb.Envelope_Ping{Ping: &parleypb.Ping{}}}) != nil {
			break
		}
	}
	if code, reason := closeCode(t, ctx, c); code != parleypb.CloseCode_CLOSE_CODE_POLICY_VIOLATION {
		t.Fatalf("closed with %v %q, want POLICY_VIOLATION (1008)", code, reason)
	}
}

// TestClientFieldsAreBounded: every field a client sends is bounded, with
// TOO_LONG naming it; nothing too long is stored or delivered.
func TestClientFieldsAreBounded(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	ctx := testCtx(t, 10*time.Second)
	c, base := loginAt(t, ctx, srv, codec.JSON, "alice", "r")
	longID := strings.Repeat("x", 60000)
	_, err := c.Post(ctx, "r", "hello", longID)
	if client.ErrorCode(err) != parleypb.ErrorCode_ERROR_CODE_TOO_LONG || !strings.Contains(err.Error(), "client_msg_id") {
		t.Fatalf("post with a 60,000-byte client_msg_id: %v, want TOO_LONG naming client_msg_id", err)
	}
	// A request id too long to echo: the error names no request.
	if err := c.Send(ctx, &parleypb.Envelope{Id: strings.Repeat("r", 1000), Body: &parleypb.Envelope_Ping{Ping: &parleypb.Ping{}}}); err != nil {
		t.Fatal(err)
	}
	env := nextEvent(t, ctx, c, "the error for a long request id", func(e *parleypb.Envelope) bool { return e.GetError() != nil })
	if e := env.GetError(); e.GetCode() != parleypb.ErrorCode_ERROR_CODE_TOO_LONG || e.GetRequestId() != "" || !strings.Contains(e.GetText(), "request id") {
		t.Fatalf("got %v, want TOO_LONG about the request id, naming no request", e)
	}
	if _, err := c.Request(ctx, &parleypb.Envelope{Body: &parleypb.Envelope_Refresh{Refresh: &parleypb.Refresh{Token: strings.Repeat("t", 9000)}}}); client.ErrorCode(err) != parleypb.ErrorCode_ERROR_CODE_TOO_LONG {
		t.Fatalf("refresh with a 9,000-byte token: %v, want TOO_LONG", err)
	}
	// Nothing was stored: the next post comes right after the join.
	if seq, err := c.Post(ctx, "r", "hello", "short"); err != nil || seq != base+1 {
		t.Fatalf("post after the refusals: seq %d, %v; want %d", seq, err, base+1)
	}
}

// TestNamesThatDeceive: names are PRECIS usernames (RFC 8265), and a name
// that looks like a different user online, or like a bot's or the
// system's, is refused: INVALID_NAME, and the connection may try another.
func TestNamesThatDeceive(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	if err := bots.Start(srv.Node, []bots.Spec{{Name: "dice", Rooms: []string{"games"}}}); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t, 20*time.Second)
	login(t, ctx, srv, codec.JSON, "alice")
	for _, name := range []string{
		"\u202Eecila", "ad\u200Dmin", "\u200B", "\u3164", "\u2800", "alice ", // not PRECIS usernames
		"аlice", "Alice", "ALICE", // look like alice, who is online
		"dicebot", "dicebоt", "System", // reserved, or looks like it
	} {
		c := dial(t, ctx, srv, codec.JSON)
		if err := c.Hello(ctx, name, false); client.ErrorCode(err) != parleypb.ErrorCode_ERROR_CODE_INVALID_NAME {
			t.Errorf("hello %q: %v, want INVALID_NAME", name, err)
			continue
		}
		// The connection stays open and may log in under another name.
		if err := c.Hello(ctx, "someone else", false); err != nil {
			t.Errorf("after %q was refused, another name: %v", name, err)
		}
		c.CloseNow()
	}
	// Requests sent right behind a Hello wait for its answer: refused with
	// it, they are answered NOT_LOGGED_IN, after it.
	pipelined := dial(t, ctx, srv, codec.JSON)
	for _, env := range []*parleypb.Envelope{
		{Id: "h", Body: &parleypb.Envelope_Hello{Hello: &parleypb.Hello{Name: "аlice"}}},
		{Id: "j", Body: &parleypb.Envelope_Join{Join: &parleypb.Join{Room: "r"}}},
	} {
		if err := pipelined.Send(ctx, env); err != nil {
			t.Fatal(err)
		}
	}
	var answers []string
	for len(answers) < 2 {
		env := nextEvent(t, ctx, pipelined, "the answers", func(e *parleypb.Envelope) bool { return e.GetError() != nil })
		answers = append(answers, env.GetError().GetRequestId()+":"+env.GetError().GetCode().String())
	}
	if fmt.Sprint(answers) != "[h:ERROR_CODE_INVALID_NAME j:ERROR_CODE_NOT_LOGGED_IN]" {
		t.Fatalf("pipelined hello and join answered %v", answers)
	}
	// A fullwidth alice is alice herself (the same canonical name), not a
	// look-alike: another of her devices.
	c := dial(t, ctx, srv, codec.JSON)
	if err := c.Hello(ctx, "ａｌｉｃｅ", false); err != nil {
		t.Fatalf("hello in fullwidth letters: %v", err)
	}
	welcome := nextEvent(t, ctx, c, "the welcome", func(e *parleypb.Envelope) bool { return e.GetWelcome() != nil })
	if got := welcome.GetWelcome().GetName(); got != "alice" {
		t.Fatalf("logged in as %q, want the canonical alice", got)
	}
	for _, room := range []string{"\u202Elobby", "room\u200B", "ｌｏｂｂｙ"} {
		if _, err := c.Join(ctx, room, nil); client.ErrorCode(err) != parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST {
			t.Errorf("join %q: %v, want BAD_REQUEST", room, err)
		}
	}
}
