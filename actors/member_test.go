package actors

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/parleychat/parley/actors/actorpb"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/store"
	"github.com/parleychat/parley/supervision"
)

// memberActor is the smallest actor type: it joins one room through the
// member contract and records the seqs of the events it is handed.
type memberActor struct {
	m  *Member
	mu *sync.Mutex
	// seqs are the room events handed over, in order; batches counts the
	// deliveries that came as a whole DeliverBatch.
	seqs    *[]uint64
	batches *int
	joined  chan struct{}
}

func (a *memberActor) Receive(ctx actor.Context) {
	if d, done := a.m.Receive(ctx); done {
		a.mu.Lock()
		for _, item := range d.Items {
			if ev := item.GetEvent(); ev != nil {
				*a.seqs = append(*a.seqs, ev.GetSeq())
			}
		}
		if d.Batch != nil {
			*a.batches++
		}
		a.mu.Unlock()
		return
	}
	switch m := ctx.Message().(type) {
	case *actor.Started:
		a.m.Join(ctx, "r", JoinOptions{Since: new(uint64), RequestID: "join"})
	case *parleypb.Ack:
		if m.GetRequestId() == "join" {
			close(a.joined)
		}
	}
}

// TestMemberHandsOverEveryEventOnce drives the member contract through
// everything that delivers events: a replay from the store in pages and
// from the window, live posts, a burst committed together, a gap (a
// delivery that never came), and a restart of the room. The actor sees
// each event once, in order.
func TestMemberHandsOverEveryEventOnce(t *testing.T) {
	t.Parallel()
	st := store.NewMemory()
	const stored = 600 // more than the window (100) and two replay pages
	msgs := make([]store.Message, stored)
	for i := range msgs {
		msgs[i] = store.Message{Room: "r", Seq: uint64(i + 1), Time: time.Now(), Sender: "old", Text: fmt.Sprint(i + 1)}
	}
	if err := st.Commit(t.Context(), store.Batch{Room: "r", Messages: msgs}); err != nil {
		t.Fatal(err)
	}
	provision(t, st, "r", "bot")
	gs := &gatedStore{Store: st, entered: make(chan struct{}, 1)}
	faults := &supervision.Faults{Kinds: []string{"room"}}
	n := newTestNode(t, Config{Store: gs, Faults: faults})

	var mu sync.Mutex
	var seqs []uint64
	batches := 0
	a := &memberActor{m: NewMember(n, MemberOptions{User: "bot", Codec: parleypb.Codec_CODEC_UNSPECIFIED}),
		mu: &mu, seqs: &seqs, batches: &batches, joined: make(chan struct{})}
	pid := n.System.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return a }))
	select {
	case <-a.joined:
	case <-time.After(10 * time.Second):
		t.Fatal("the join was never answered")
	}
	p := newProbe(t, n)
	want := uint64(stored)
	check := func(what string) {
		t.Helper()
		waitForCond(t, what, func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(seqs) >= int(want)
		})
		mu.Lock()
		defer mu.Unlock()
		if !slices.Equal(seqs, seqRange(1, want)) {
			t.Fatalf("%s: the actor got %d events, not 1..%d once each in order: %v", what, len(seqs), want, seqs)
		}
	}
	check("the replay")
	post := func(id string) {
		postTo(n, p, "r", "alice", "hi", id, id)
		p.ackFor(t, id)
		want++
	}
	post("live")
	check("a live post")

	// A burst committed together arrives as one DeliverBatch.
	mu.Lock()
	before := batches
	mu.Unlock()
	release := gs.holdNext()
	postTo(n, p, "r", "alice", "warm-up", "w", "w")
	<-gs.entered
	for i := range 20 {
		postTo(n, p, "r", "alice", "burst", fmt.Sprint("b", i), fmt.Sprint("b", i))
	}
	waitForCond(t, "the burst to queue", func() bool {
		d := n.Stats.BusiestRooms(1)
		return len(d) == 1 && d[0].Depth >= 20
	})
	release()
	p.ackFor(t, "b19")
	want += 21
	check("a burst")
	mu.Lock()
	if batches == before {
		t.Error("the burst never came as one DeliverBatch; the test proves less than it says")
	}
	mu.Unlock()

	// Deliveries that never came: what arrives next leaves a gap (here a
	// batch that starts past it), the member drops all of it, re-joins
	// from its last seq and the room fills the hole in order.
	ev := func(seq uint64) *actorpb.Deliver {
		return &actorpb.Deliver{Room: "r", Seq: seq, Event: &parleypb.RoomEvent{Room: "r", Seq: seq}}
	}
	n.System.Root.Send(pid, &actorpb.DeliverBatch{Room: "r", Items: []*actorpb.Deliver{ev(want + 2), ev(want + 3)}})
	post("after-gap")
	post("after-gap-2")
	post("after-gap-3")
	check("a gap")

	// The room restarts: the member re-joins from its last seq.
	if !n.InjectFault("room", "r", false) {
		t.Fatal("no fault injected")
	}
	waitForCond(t, "the room to restart", func() bool { return n.Stats.Rooms.Failures.Load() == 1 })
	post("after-restart")
	check("a room restart")
}
