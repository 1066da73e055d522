package actors

import (
	"fmt"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/actors/actorpb"
	parleypb "github.com/parleychat/parley/proto"
)

// TestRoomFencedByAnotherActivation: two nodes whose views of a cluster
// differ both activate one room over one store. The activation that
// commits second is refused by the store (the seq is taken), answers the
// post UNAVAILABLE, and stops: its member is told to re-join, and the
// re-join replays what the other activation stored, so the member misses
// nothing it would otherwise never have seen (no later seq would show it
// a hole).
func TestRoomFencedByAnotherActivation(t *testing.T) {
	t.Parallel()
	s := newSplit(t, "split", "alice", "bob")
	a, b, pa, pb := s.a, s.b, s.pa, s.pb

	postTo(b, pb, "split", "bob", "stored by b", "b1", "post-b")
	if ack := pb.ackFor(t, "post-b"); ack.GetSeq() != 1 {
		t.Fatalf("b's post acked as %d, want 1", ack.GetSeq())
	}
	postTo(a, pa, "split", "alice", "refused on a", "a1", "post-a")
	_, failed := pa.answerTo(t, "post-a")
	if failed == nil || failed.GetCode() != parleypb.ErrorCode_ERROR_CODE_UNAVAILABLE {
		t.Fatalf("a post to the fenced activation: %v, want UNAVAILABLE", failed)
	}
	pa.waitFor(t, "the fenced room telling its member to re-join", func(msgs []proto.Message) bool {
		return slices.ContainsFunc(msgs, func(m proto.Message) bool {
			r, ok := m.(*actorpb.RoomRestarted)
			return ok && r.GetRoom() == "split"
		})
	})
	if got := a.Stats.Fenced.Load(); got != 1 {
		t.Errorf("Stats.Fenced = %d on the fenced node, want 1", got)
	}
	if got := b.Stats.Fenced.Load(); got != 0 {
		t.Errorf("Stats.Fenced = %d on the node that stored first, want 0", got)
	}

	// The member re-joins from where it was (seq 0), as a session does: the
	// room's next activation replays seq 1, which it had never seen.
	since := uint64(0)
	joinRoom(a, pa, "split", "alice", "rejoin", &since)
	if ack := pa.ackFor(t, "rejoin"); ack.GetSeq() != 1 {
		t.Fatalf("re-join ack seq %d, want 1", ack.GetSeq())
	}
	pa.waitFor(t, "the replay of b's post", func(msgs []proto.Message) bool {
		return slices.ContainsFunc(events(t, msgs), func(ev *parleypb.RoomEvent) bool {
			return ev.GetSeq() == 1 && ev.GetText() == "stored by b"
		})
	})
	// The retried post (same client_msg_id) is stored once, after it.
	postTo(a, pa, "split", "alice", "refused on a", "a1", "post-a-again")
	if ack := pa.ackFor(t, "post-a-again"); ack.GetSeq() != 2 {
		t.Fatalf("the retried post acked as %d, want 2", ack.GetSeq())
	}
	if got := a.Stats.Fenced.Load(); got != 1 {
		t.Errorf("Stats.Fenced = %d after the re-join, want still 1", got)
	}
}

// TestRoomCatchesUpWithAMemberAhead: a member that followed another
// activation has seen a seq this one never stored. The room reloads from
// the store instead of taking the member for ahead of history (a Reset and
// a replay from the start, a duplicate of everything to the member).
func TestRoomCatchesUpWithAMemberAhead(t *testing.T) {
	t.Parallel()
	s := newSplit(t, "ahead", "alice", "bob") // a's activation: committed 0
	a, b, pa, pb := s.a, s.b, s.pa, s.pb
	for i := range 3 {
		id := fmt.Sprint("b", i)
		postTo(b, pb, "ahead", "bob", "from b", id, id)
		pb.ackFor(t, id)
	}
	// bob, having seen seq 3 on b, joins a's activation from there.
	pc := newProbe(t, a)
	since := uint64(3)
	joinRoom(a, pc, "ahead", "bob", "rejoin", &since)
	if ack := pc.ackFor(t, "rejoin"); ack.GetSeq() != 3 {
		t.Fatalf("join ack seq %d, want 3 (the store's head)", ack.GetSeq())
	}
	pc.sync(t, a, "ahead")
	for _, m := range pc.snapshot() {
		if r, ok := m.(*parleypb.Reset); ok {
			t.Fatalf("a member ahead of a stale activation was reset: %v", r)
		}
	}
	if evs := events(t, pc.snapshot()); len(evs) != 0 {
		t.Fatalf("replayed %v to a member that had seen everything", seqs(evs))
	}
	// The activation is whole again: the next post is seq 4.
	postTo(a, pa, "ahead", "alice", "from a", "a1", "post-a")
	if ack := pa.ackFor(t, "post-a"); ack.GetSeq() != 4 {
		t.Fatalf("post after the catch-up acked as %d, want 4", ack.GetSeq())
	}
}
