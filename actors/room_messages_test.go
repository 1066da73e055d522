package actors

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/actors/actorpb"
	parleypb "github.com/parleychat/parley/proto"
)

// TestRoomCoalescesReactions: reactions that arrive while the room writes
// are stored in one commit and reach each member as one DeliverBatch.
func TestRoomCoalescesReactions(t *testing.T) {
	t.Parallel()
	gs := newGatedStore()
	n := newTestNode(t, Config{Store: gs})
	const crowd = 20
	users := []string{"olga"}
	for i := range crowd {
		users = append(users, fmt.Sprint("u", i))
	}
	provision(t, gs, "r", users...)
	olga := newProbe(t, n)
	joinRoom(n, olga, "r", "olga", "j", nil)
	olga.ackFor(t, "j")
	postTo(n, olga, "r", "olga", "lunch?", "c1", "p1")
	target := olga.ackFor(t, "p1").GetSeq()
	olga.sync(t, n, "r")
	before := len(olga.snapshot())

	release := gs.holdNext()
	postTo(n, olga, "r", "olga", "anyone?", "c2", "p2")
	<-gs.entered
	crowdProbe := newProbe(t, n)
	for i := range crowd {
		n.Directory().Tell(n.System.Root, &actorpb.RoomPost{Room: "r", User: users[i+1], Op: actorpb.PostOp_POST_OP_REACT, TargetSeq: target,
			Emoji: "👍", ClientMsgId: fmt.Sprint("r", i), RequestId: fmt.Sprint("react-", i), Session: crowdProbe.pid})
	}
	waitForCond(t, "the reactions to queue in the room", func() bool {
		d := n.Stats.BusiestRooms(1)
		return len(d) == 1 && d[0].Depth >= crowd
	})
	commits := gs.commits.Load() // the held post's counted
	release()
	for i := range crowd {
		crowdProbe.ackFor(t, fmt.Sprint("react-", i))
	}
	olga.sync(t, n, "r")
	if got := gs.commits.Load() - commits; got != 1 {
		t.Fatalf("%d commits for %d reactions, want 1", got, crowd)
	}
	frames, reactions := 0, 0
	var last *parleypb.RoomEvent
	for _, m := range olga.snapshot()[before:] {
		has := false
		for _, ev := range events(t, []proto.Message{m}) {
			if ev.GetChange().GetKind() == parleypb.ChangeKind_CHANGE_KIND_REACTED {
				has, last = true, ev
				reactions++
			}
		}
		if has {
			frames++
		}
	}
	if frames != 1 || reactions != crowd || last.GetChange().GetCount() != crowd {
		t.Fatalf("olga got %d reactions in %d deliveries (last %v); want %d in 1", reactions, frames, last, crowd)
	}
}

// TestRoomCoalescesReadCursors: a hundred cursor moves of one member that
// arrive while the room writes are one store commit, each acked.
func TestRoomCoalescesReadCursors(t *testing.T) {
	t.Parallel()
	gs := newGatedStore()
	n := newTestNode(t, Config{Store: gs})
	provision(t, gs, "r", "olga", "bob")
	olga := newProbe(t, n)
	joinRoom(n, olga, "r", "olga", "j", nil)
	olga.ackFor(t, "j")
	var last uint64
	for i := range 100 {
		postTo(n, olga, "r", "olga", "hi", fmt.Sprint("c", i), fmt.Sprint("p", i))
		last = olga.ackFor(t, fmt.Sprint("p", i)).GetSeq()
	}
	release := gs.holdNext()
	postTo(n, olga, "r", "olga", "held", "held", "held")
	<-gs.entered
	bob := newProbe(t, n)
	for i := range uint64(100) {
		n.Directory().Tell(n.System.Root, &actorpb.RoomMarkRead{Room: "r", User: "bob", Seq: last - 99 + i, RequestId: fmt.Sprint("m", i), Session: bob.pid})
	}
	waitForCond(t, "the cursor moves to queue in the room", func() bool {
		d := n.Stats.BusiestRooms(1)
		return len(d) == 1 && d[0].Depth >= 100
	})
	commits := gs.commits.Load()
	release()
	for i := range 100 {
		if ack := bob.ackFor(t, fmt.Sprint("m", i)); ack.GetSeq() != last-99+uint64(i) {
			t.Fatalf("move %d acked %v", i, ack)
		}
	}
	if got := gs.commits.Load() - commits; got != 1 {
		t.Fatalf("%d commits for 100 cursor moves, want 1", got)
	}
	ms, err := gs.Members(context.Background(), "r", "", 10)
	if err != nil || len(ms) != 2 || ms[0].User != "bob" || ms[0].ReadSeq != last {
		t.Fatalf("stored members %+v, %v; want bob's cursor at %d", ms, err, last)
	}
}
