package actors

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/actors/actorpb"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/proto/codec"
	"github.com/parleychat/parley/store"
)

// newTestNode starts a Node whose teardown is registered with t.
func newTestNode(t testing.TB, cfg Config) *Node {
	t.Helper()
	n, err := NewNode(cfg)
	if err != nil {
		t.Fatalf("NewNode: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := n.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return n
}

// probe is a fake session: a plain actor that records every Parley message
// it receives, in order, so a test can talk to rooms exactly as a session
// does (naming itself in the messages) and look at what came back.
type probe struct {
	pid    *actor.PID
	mu     sync.Mutex
	msgs   []proto.Message
	notify chan struct{} // a token after each message; waitFor drains it
}

func newProbe(t testing.TB, n *Node) *probe {
	t.Helper()
	p := &probe{notify: make(chan struct{}, 1)}
	p.pid = n.System.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		m, ok := c.Message().(proto.Message)
		if !ok || !actorpb.IsParley(m) {
			return
		}
		p.mu.Lock()
		p.msgs = append(p.msgs, m)
		p.mu.Unlock()
		select {
		case p.notify <- struct{}{}:
		default:
		}
	}))
	return p
}

func (p *probe) snapshot() []proto.Message {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]proto.Message(nil), p.msgs...)
}

// waitFor blocks until done accepts what the probe received, or fails the
// test after a deadline saying what was missing.
func (p *probe) waitFor(t testing.TB, what string, done func([]proto.Message) bool) []proto.Message {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for {
		msgs := p.snapshot()
		if done(msgs) {
			return msgs
		}
		select {
		case <-p.notify:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s; the probe has %d messages:\n%s", what, len(msgs), describe(msgs))
		}
	}
}

// answerTo waits for the Ack or the Error answering requestID; one of the
// two is nil.
func (p *probe) answerTo(t testing.TB, requestID string) (ack *parleypb.Ack, failed *parleypb.Error) {
	t.Helper()
	p.waitFor(t, "the answer to "+requestID, func(msgs []proto.Message) bool {
		for _, m := range msgs {
			switch m := m.(type) {
			case *parleypb.Ack:
				if m.GetRequestId() == requestID {
					ack = m
					return true
				}
			case *parleypb.Error:
				if m.GetRequestId() == requestID {
					failed = m
					return true
				}
			}
		}
		return false
	})
	return ack, failed
}

// ackFor waits for the Ack (or fails on the Error) answering requestID.
func (p *probe) ackFor(t testing.TB, requestID string) *parleypb.Ack {
	t.Helper()
	ack, failed := p.answerTo(t, requestID)
	if failed != nil {
		t.Fatalf("request %s failed: %v", requestID, failed)
	}
	return ack
}

// sync waits until the room has handled everything sent to it so far, and
// everything it sent this probe has arrived: a RoomWho goes behind the
// earlier messages in the room's mailbox and its answer behind the room's
// earlier sends to the probe.
func (p *probe) sync(t testing.TB, n *Node, room string) {
	t.Helper()
	before := len(p.snapshot())
	n.Directory().Tell(n.System.Root, &actorpb.RoomWho{Room: room, Session: p.pid})
	p.waitFor(t, "the room's who answer", func(msgs []proto.Message) bool {
		for _, m := range msgs[before:] {
			if pe, ok := m.(*parleypb.PresenceEvent); ok && pe.GetRoom() == room && pe.GetMembers() != nil {
				return true
			}
		}
		return false
	})
}

func describe(msgs []proto.Message) string {
	s := ""
	for i, m := range msgs {
		if d, ok := m.(*actorpb.Deliver); ok {
			if env, err := codec.Proto.Decode(d.GetProtoFrame()); err == nil {
				s += fmt.Sprintf("  %d: Deliver seq=%d %v\n", i, d.GetSeq(), env)
				continue
			}
		}
		s += fmt.Sprintf("  %d: %T %v\n", i, m, m)
	}
	return s
}

// delivered decodes the proto frames of the Delivers among msgs, in order,
// replay batches included.
func delivered(t testing.TB, msgs []proto.Message) []*parleypb.Envelope {
	t.Helper()
	var ds []*actorpb.Deliver
	for _, m := range msgs {
		switch m := m.(type) {
		case *actorpb.Deliver:
			ds = append(ds, m)
		case *actorpb.DeliverBatch:
			ds = append(ds, m.GetItems()...)
		}
	}
	var out []*parleypb.Envelope
	for _, d := range ds {
		if len(d.GetProtoFrame()) == 0 {
			continue
		}
		env, err := codec.Proto.Decode(d.GetProtoFrame())
		if err != nil {
			t.Fatalf("a Deliver carries a bad proto frame: %v", err)
		}
		if ev := env.GetEvent(); ev != nil && ev.GetSeq() != d.GetSeq() {
			t.Fatalf("Deliver seq %d carries event seq %d", d.GetSeq(), ev.GetSeq())
		}
		out = append(out, env)
	}
	return out
}

func events(t testing.TB, msgs []proto.Message) []*parleypb.RoomEvent {
	t.Helper()
	var out []*parleypb.RoomEvent
	for _, env := range delivered(t, msgs) {
		if ev := env.GetEvent(); ev != nil {
			out = append(out, ev)
		}
	}
	return out
}

func seqs(evs []*parleypb.RoomEvent) []uint64 {
	out := make([]uint64, len(evs))
	for i, ev := range evs {
		out[i] = ev.GetSeq()
	}
	return out
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

// presenceDeltas are the joined/left events delivered to a member.
func presenceDeltas(t testing.TB, msgs []proto.Message) []string {
	t.Helper()
	var out []string
	for _, env := range delivered(t, msgs) {
		if p := env.GetPresence(); p != nil {
			out = append(out, deltas(p)...)
		}
	}
	return out
}

// deltas writes a presence change as "+user" for each join, then "-user"
// for each departure.
func deltas(p *parleypb.PresenceEvent) []string {
	var out []string
	for _, u := range p.GetJoined() {
		out = append(out, "+"+u)
	}
	for _, u := range p.GetLeft() {
		out = append(out, "-"+u)
	}
	return out
}

func joinRoom(n *Node, p *probe, room, user, requestID string, since *uint64) {
	n.Directory().Tell(n.System.Root, &actorpb.RoomJoin{Room: room, User: user, Session: p.pid, Since: since, Codec: parleypb.Codec_CODEC_PROTO, RequestId: requestID})
}

func postTo(n *Node, p *probe, room, user, text, clientMsgID, requestID string) {
	n.Directory().Tell(n.System.Root, &actorpb.RoomPost{Room: room, User: user, Text: text, ClientMsgId: clientMsgID, RequestId: requestID, Session: p.pid})
}

// split is two nodes over one store, each running its own activation of
// one room, as two cluster members whose views of the membership differ
// for a moment: userA joined on a, userB on b.
type split struct {
	st     *store.Memory
	a, b   *Node
	pa, pb *probe
}

func newSplit(t testing.TB, room, userA, userB string) split {
	t.Helper()
	s := split{st: store.NewMemory()}
	s.a, s.b = newTestNode(t, Config{Store: s.st}), newTestNode(t, Config{Store: s.st})
	provision(t, s.st, room, userA, userB)
	s.pa, s.pb = newProbe(t, s.a), newProbe(t, s.b)
	joinRoom(s.a, s.pa, room, userA, "join", nil)
	s.pa.ackFor(t, "join")
	joinRoom(s.b, s.pb, room, userB, "join", nil)
	s.pb.ackFor(t, "join")
	return s
}

// gatedStore lets a test hold the room inside a store write, so that
// messages pile up in its mailbox behind the write.
type gatedStore struct {
	store.Store
	mu      sync.Mutex
	hold    chan struct{} // the next Append waits for it to close
	entered chan struct{} // a token when an Append starts waiting
	commits atomic.Int64
}

func newGatedStore() *gatedStore {
	return &gatedStore{Store: store.NewMemory(), entered: make(chan struct{}, 1)}
}

// holdNext makes the next Append wait; calling release lets it through.
func (g *gatedStore) holdNext() (release func()) {
	ch := make(chan struct{})
	g.mu.Lock()
	g.hold = ch
	g.mu.Unlock()
	return sync.OnceFunc(func() { close(ch) })
}

func (g *gatedStore) Commit(ctx context.Context, b store.Batch) error {
	g.commits.Add(1)
	g.mu.Lock()
	hold := g.hold
	g.hold = nil
	g.mu.Unlock()
	if hold != nil {
		g.entered <- struct{}{}
		<-hold
	}
	return g.Store.Commit(ctx, b)
}

// provision describes a room in the store (public, the system's) with
// users as its members, before it first activates, so that their joins
// change no membership and add no events: a test of fan-out or replay then
// sees only the posts it makes, at the seqs it expects.
func provision(t testing.TB, st store.Store, room string, users ...string) {
	t.Helper()
	b := store.Batch{Room: room, Info: &store.RoomRecord{Name: room, Kind: store.KindPublic, CreatedBy: SystemName, Members: len(users)}}
	for _, u := range users {
		b.Members = append(b.Members, store.Member{Room: room, User: u, Role: store.RoleMember})
	}
	if err := st.Commit(context.Background(), b); err != nil {
		t.Fatalf("provision %s: %v", room, err)
	}
}
