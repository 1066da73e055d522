package actors

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/actors/actorpb"
	"github.com/parleychat/parley/auth"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/proto/codec"
)

// fakeConn is a socket that keeps what the session sends it.
type fakeConn struct {
	cd codec.Codec
	id string

	mu     sync.Mutex
	frames [][]byte
	closed []string // "code reason" of each Close, "abort" of each Abort
	notify chan struct{}
}

var _ Socket = (*fakeConn)(nil)

func newFakeConn(cd codec.Codec, id string) *fakeConn {
	return &fakeConn{cd: cd, id: id, notify: make(chan struct{}, 1)}
}

func (c *fakeConn) Send(frame []byte) bool {
	c.mu.Lock()
	c.frames = append(c.frames, frame)
	c.mu.Unlock()
	select {
	case c.notify <- struct{}{}:
	default:
	}
	return true
}

func (c *fakeConn) Close(how *parleypb.CloseError) {
	c.mu.Lock()
	c.closed = append(c.closed, fmt.Sprint(int32(how.Code), " ", how.Reason))
	c.mu.Unlock()
}

func (c *fakeConn) Abort() {
	c.mu.Lock()
	c.closed = append(c.closed, "abort")
	c.mu.Unlock()
}

func (c *fakeConn) RemoteAddr() string   { return "192.0.2.10:40000" }
func (c *fakeConn) Codec() codec.Codec   { return c.cd }
func (c *fakeConn) ID() string           { return c.id }
func (c *fakeConn) Claims() *auth.Claims { return nil }

// envelopes decodes every frame sent so far, flattening batches.
func (c *fakeConn) envelopes(t testing.TB) []*parleypb.Envelope {
	t.Helper()
	c.mu.Lock()
	frames := append([][]byte(nil), c.frames...)
	c.mu.Unlock()
	var out []*parleypb.Envelope
	for _, f := range frames {
		env, err := c.cd.Decode(f)
		if err != nil {
			t.Fatalf("the session sent a frame its own codec cannot decode: %q: %v", f, err)
		}
		if b := env.GetBatch(); b != nil {
			out = append(out, b.GetItems()...)
			continue
		}
		out = append(out, env)
	}
	return out
}

// answers are the acks and errors naming requestID.
func answers(envs []*parleypb.Envelope, requestID string) []*parleypb.Envelope {
	var out []*parleypb.Envelope
	for _, e := range envs {
		if (e.GetAck() != nil && e.GetAck().GetRequestId() == requestID) || (e.GetError() != nil && e.GetError().GetRequestId() == requestID) {
			out = append(out, e)
		}
	}
	return out
}

// waitAnswer waits until the client got an answer to requestID.
func (c *fakeConn) waitAnswer(t testing.TB, requestID string) *parleypb.Envelope {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		if a := answers(c.envelopes(t), requestID); len(a) > 0 {
			return a[0]
		}
		select {
		case <-c.notify:
		case <-deadline.C:
			t.Fatalf("no answer to %q; the client got:\n%v", requestID, c.envelopes(t))
		}
	}
}

// sessionHarness runs sessions on one Node, one client at a time.
type sessionHarness struct {
	n     *Node
	probe *probe
	count int
}

func newSessionHarness(t testing.TB) *sessionHarness {
	// A short linger passivates the many rooms fuzzing creates; passivation
	// is one more path the requests then cross.
	n := newTestNode(t, Config{RoomLinger: 20 * time.Millisecond})
	return &sessionHarness{n: n, probe: newProbe(t, n)}
}

// Harness request ids start with NUL, which no seed uses.
const harnessID = "\x00"

// roomOf names the room a request reaches, if it reaches one.
func roomOf(env *parleypb.Envelope) string {
	switch b := env.GetBody().(type) {
	case *parleypb.Envelope_Join:
		return b.Join.GetRoom()
	case *parleypb.Envelope_Leave:
		return b.Leave.GetRoom()
	case *parleypb.Envelope_Post:
		return b.Post.GetRoom()
	case *parleypb.Envelope_Typing:
		return b.Typing.GetRoom()
	case *parleypb.Envelope_History:
		return b.History.GetRoom()
	}
	return ""
}

// run logs a fresh session in (when login), joins lobby, sends it env, and
// checks the answers it got. It fails on any session, room or presence
// panic, and on a request that closes the connection.
func (h *sessionHarness) run(t testing.TB, cd codec.Codec, env *parleypb.Envelope, login bool) {
	t.Helper()
	h.count++
	fc := newFakeConn(cd, fmt.Sprint("fake", h.count))
	pr, err := h.n.Attach(fc)
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	pid := pr.pid
	defer func() {
		pr.Closed(parleypb.Close(parleypb.CloseCode_CLOSE_CODE_NORMAL, ""))
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, alive := h.n.System.ProcessRegistry.GetLocal(pid.GetId()); !alive {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the session did not stop after its socket closed")
			}
			time.Sleep(time.Millisecond)
		}
	}()

	if login {
		pr.Frame(&parleypb.Envelope{Id: harnessID + "hello", Body: &parleypb.Envelope_Hello{Hello: &parleypb.Hello{Name: "fuzzer"}}})
		if a := fc.waitAnswer(t, harnessID+"hello"); a.GetAck() == nil {
			t.Fatalf("hello failed: %v", a)
		}
		pr.Frame(&parleypb.Envelope{Id: harnessID + "join", Body: &parleypb.Envelope_Join{Join: &parleypb.Join{Room: "lobby"}}})
		if a := fc.waitAnswer(t, harnessID+"join"); a.GetAck() == nil {
			t.Fatalf("join failed: %v", a)
		}
	}

	env = proto.Clone(env).(*parleypb.Envelope)
	if strings.HasPrefix(env.GetId(), harnessID) {
		env.Id = "~" + env.GetId()
	}
	pr.Frame(env)
	h.settle(t, fc, pr, roomOf(env))

	// The protocol promises exactly one answer to a request with an id. A
	// request without one broke the contract, and its answers cannot be
	// told from the session's own: a re-join after a room passivated under
	// it is acknowledged with an empty id too.
	if env.GetId() != "" && len(env.GetId()) <= MaxRequestIDBytes { // a longer one is answered naming no request
		// Some answers come from a room's reader (history read from the
		// store), off the room's mailbox: wait for one, then settle once
		// more so a second would have arrived too.
		fc.waitAnswer(t, env.GetId())
		h.settle(t, fc, pr, roomOf(env))
		if got := answers(fc.envelopes(t), env.GetId()); len(got) != 1 {
			t.Fatalf("request %v (logged in: %v) got %d answers, want 1: %v", env, login, len(got), got)
		}
	}
	fc.mu.Lock()
	closed := fc.closed
	fc.mu.Unlock()
	if len(closed) > 0 {
		t.Fatalf("request %v closed the connection: %q", env, closed)
	}
	st := &h.n.Stats
	if f := st.Sessions.Failures.Load() + st.Rooms.Failures.Load() + st.Presence.Failures.Load(); f != 0 {
		t.Fatalf("request %v made an actor panic (%d sessions, %d rooms, %d presence)", env,
			st.Sessions.Failures.Load(), st.Rooms.Failures.Load(), st.Presence.Failures.Load())
	}
}

// settle returns once every answer to what the session was sent has reached
// the client: each step is a message queued behind the request's effects in
// one of the actors the request can reach.
func (h *sessionHarness) settle(t testing.TB, fc *fakeConn, pr *Inbox, room string) {
	t.Helper()
	ping := func(id string) {
		pr.Frame(&parleypb.Envelope{Id: id, Body: &parleypb.Envelope_Ping{Ping: &parleypb.Ping{}}})
		fc.waitAnswer(t, id)
	}
	// The session has handled the request and sent it on.
	ping(harnessID + "ping1")
	// Presence and the rooms router have handled what it sent them.
	h.n.System.Root.Send(h.n.presence, &actorpb.WhoQuery{RequestId: harnessID + "who", Session: h.probe.pid})
	h.probe.ackFor(t, harnessID+"who")
	h.n.Directory().ListRooms(h.n.System.Root, &actorpb.RoomsQuery{RequestId: harnessID + "rooms", Session: h.probe.pid})
	h.probe.ackFor(t, harnessID+"rooms")
	if room != "" {
		// Twice: a post's answer comes from a flush the room queues to
		// itself behind whatever is already in its mailbox.
		h.probe.sync(t, h.n, room)
		h.probe.sync(t, h.n, room)
	}
	// The session has forwarded everything the actors answered.
	ping(harnessID + "ping2")
	h.probe.mu.Lock()
	h.probe.msgs = nil // keep the probe small across iterations
	h.probe.mu.Unlock()
}

// requestSeeds are requests a client may send, each valid or nearly so.
func requestSeeds() []*parleypb.Envelope {
	since := uint64(3)
	return []*parleypb.Envelope{
		{Id: "1", Body: &parleypb.Envelope_Hello{Hello: &parleypb.Hello{Name: "alice", WatchOnline: true}}},
		{Id: "2", Body: &parleypb.Envelope_Hello{Hello: &parleypb.Hello{Name: "bad\x00name"}}},
		{Id: "3", Body: &parleypb.Envelope_Join{Join: &parleypb.Join{Room: "general"}}},
		{Id: "4", Body: &parleypb.Envelope_Join{Join: &parleypb.Join{Room: "lobby", Since: &since}}},
		{Id: "5", Body: &parleypb.Envelope_Join{Join: &parleypb.Join{Room: ""}}},
		{Id: "6", Body: &parleypb.Envelope_Leave{Leave: &parleypb.Leave{Room: "lobby"}}},
		{Id: "7", Body: &parleypb.Envelope_Leave{Leave: &parleypb.Leave{Room: "elsewhere"}}},
		{Id: "8", Body: &parleypb.Envelope_Post{Post: &parleypb.Post{Room: "lobby", Text: "hi", ClientMsgId: "c1"}}},
		{Id: "9", Body: &parleypb.Envelope_Post{Post: &parleypb.Post{Room: "lobby", Text: ""}}},
		{Id: "10", Body: &parleypb.Envelope_Post{Post: &parleypb.Post{Room: "general", Text: "not joined"}}},
		{Id: "11", Body: &parleypb.Envelope_Post{Post: &parleypb.Post{Room: "lobby", Text: strings.Repeat("x", 4001)}}},
		{Id: "12", Body: &parleypb.Envelope_Typing{Typing: &parleypb.Typing{Room: "lobby"}}},
		{Id: "13", Body: &parleypb.Envelope_History{History: &parleypb.HistoryRequest{Room: "lobby", BeforeSeq: 5, Limit: 2}}},
		{Id: "14", Body: &parleypb.Envelope_History{History: &parleypb.HistoryRequest{Room: "lobby", Limit: 1 << 31}}},
		{Id: "15", Body: &parleypb.Envelope_Ping{Ping: &parleypb.Ping{}}},
		{Id: "16", Body: &parleypb.Envelope_Who{Who: &parleypb.WhoRequest{}}},
		{Id: "17", Body: &parleypb.Envelope_Rooms{Rooms: &parleypb.RoomsRequest{}}},
		{Id: "18", Body: &parleypb.Envelope_Ack{Ack: &parleypb.Ack{RequestId: "x"}}},
		{Id: "19"},
		{Body: &parleypb.Envelope_Batch{Batch: &parleypb.Batch{Items: []*parleypb.Envelope{{Body: &parleypb.Envelope_Ping{Ping: &parleypb.Ping{}}}}}}},
		// What a hostile client sent (issue 13): oversized fields, names
		// that deceive, rooms with invisible characters.
		{Id: "20", Body: &parleypb.Envelope_Post{Post: &parleypb.Post{Room: "lobby", Text: "hi", ClientMsgId: strings.Repeat("c", 60000)}}},
		{Id: strings.Repeat("r", 1000), Body: &parleypb.Envelope_Ping{Ping: &parleypb.Ping{}}},
		{Id: "21", Body: &parleypb.Envelope_Refresh{Refresh: &parleypb.Refresh{Token: strings.Repeat("t", 9000)}}},
		{Id: "22", Body: &parleypb.Envelope_Hello{Hello: &parleypb.Hello{Name: "\u202Eecila"}}},
		{Id: "23", Body: &parleypb.Envelope_Hello{Hello: &parleypb.Hello{Name: "system"}}},
		{Id: "24", Body: &parleypb.Envelope_Join{Join: &parleypb.Join{Room: "room\u200B"}}},
		{Id: "25", Body: &parleypb.Envelope_Join{Join: &parleypb.Join{Room: "\u202Elobby"}}},
	}
}

// FuzzSessionRequest sends whatever a client frame decodes to, in either
// native codec, to a real session actor, logged in or not.
func FuzzSessionRequest(f *testing.F) {
	for _, env := range requestSeeds() {
		for _, cd := range []codec.Codec{codec.Proto, codec.JSON} {
			frame, err := cd.Encode(env)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(frame, true)
			f.Add(frame, false)
		}
	}
	h := newSessionHarness(f)
	f.Fuzz(func(t *testing.T, frame []byte, login bool) {
		for _, cd := range []codec.Codec{codec.Proto, codec.JSON} {
			env, err := cd.Decode(frame)
			if err != nil {
				continue
			}
			h.run(t, cd, env, login)
		}
	})
}

// TestSessionAnswersEachRequestOnce runs the seeds through the harness with
// names, so a failure reads better than a seed number.
func TestSessionAnswersEachRequestOnce(t *testing.T) {
	t.Parallel()
	h := newSessionHarness(t)
	for i, env := range requestSeeds() {
		for _, cd := range []codec.Codec{codec.Proto, codec.JSON} {
			for _, login := range []bool{true, false} {
				t.Run(fmt.Sprintf("%d/%s/login=%v", i, cd.Subprotocol(), login), func(t *testing.T) {
					h.run(t, cd, env, login)
				})
			}
		}
	}
}
