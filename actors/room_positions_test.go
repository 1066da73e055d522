package actors

import (
	"fmt"
	"maps"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/actors/actorpb"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/store"
)

// readPositions are the ReadPositions frames delivered to a probe.
func readPositions(t testing.TB, msgs []proto.Message) []*parleypb.ReadPositions {
	t.Helper()
	var out []*parleypb.ReadPositions
	for _, env := range delivered(t, msgs) {
		if rp := env.GetReadPositions(); rp != nil {
			out = append(out, rp)
		}
	}
	return out
}

// positionsSeen folds frames into the positions they tell, user -> seq.
func positionsSeen(frames []*parleypb.ReadPositions) map[string]uint64 {
	seen := make(map[string]uint64)
	for _, rp := range frames {
		for _, p := range rp.GetPositions() {
			seen[p.GetUser()] = p.GetSeq()
		}
	}
	return seen
}

func markRead(n *Node, p *probe, room, user string, seq uint64, requestID string) {
	n.Directory().Tell(n.System.Root, &actorpb.RoomMarkRead{Room: room, User: user, Seq: seq, RequestId: requestID, Session: p.pid})
}

// TestRoomReadPositions: a room shows read positions only once an owner
// or moderator turns the setting on (an UPDATED event; a plain member is
// refused FORBIDDEN); then a hundred quick cursor moves of four members
// reach a connection in a few ReadPositions frames with the last cursors,
// and a connection that joins gets the positions as they stand.
func TestRoomReadPositions(t *testing.T) {
	t.Parallel()
	st := store.NewMemory()
	n := newTestNode(t, Config{Store: st})
	readers := []string{"bob", "carol", "dave", "erin"}
	provision(t, st, "r", append([]string{"olga"}, readers...)...)
	olga := newProbe(t, n)
	joinRoom(n, olga, "r", "olga", "j", nil)
	olga.ackFor(t, "j")
	var last uint64
	for i := range 100 {
		postTo(n, olga, "r", "olga", "hi", fmt.Sprint("c", i), fmt.Sprint("p", i))
		last = olga.ackFor(t, fmt.Sprint("p", i)).GetSeq()
	}
	others := newProbe(t, n)

	// Off (the default): moves tell nobody but their own user.
	markRead(n, others, "r", "bob", 10, "off")
	others.ackFor(t, "off")

	// A plain member may not turn it on; nothing changes.
	on := true
	n.Directory().Tell(n.System.Root, &actorpb.RoomUpdate{Room: "r", User: "bob", Kind: parleypb.SenderKind_SENDER_KIND_USER,
		ReadPositions: &on, Session: others.pid, RequestId: "bob-on"})
	if _, failed := others.answerTo(t, "bob-on"); failed.GetCode() != parleypb.ErrorCode_ERROR_CODE_FORBIDDEN {
		t.Fatalf("a member turning read positions on: %v, want FORBIDDEN", failed)
	}
	// A moderator may (here the system): an UPDATED event, then a snapshot.
	n.Directory().Tell(n.System.Root, &actorpb.RoomUpdate{Room: "r", User: SystemName, Kind: parleypb.SenderKind_SENDER_KIND_SYSTEM,
		ReadPositions: &on, Session: others.pid, RequestId: "on"})
	updated := others.ackFor(t, "on").GetSeq()
	msgs := olga.waitFor(t, "the snapshot after the setting", func(msgs []proto.Message) bool { return len(readPositions(t, msgs)) > 0 })
	var change *parleypb.RoomChange
	for _, ev := range events(t, msgs) {
		if ev.GetSeq() == updated {
			change = ev.GetChange()
		}
	}
	if change.GetKind() != parleypb.ChangeKind_CHANGE_KIND_UPDATED || !change.GetReadPositions() {
		t.Fatalf("the setting's event is %v, want UPDATED with read_positions", change)
	}
	if frames := readPositions(t, msgs); !frames[0].GetSnapshot() || !maps.Equal(positionsSeen(frames), map[string]uint64{"bob": 10}) {
		t.Fatalf("after the setting, olga got %v; want a snapshot of bob at 10", frames)
	}
	before := len(olga.snapshot())

	// A hundred quick moves, interleaved among four members.
	want := make(map[string]uint64)
	for i := range 100 {
		u, seq := readers[i%len(readers)], last-99+uint64(i)
		markRead(n, others, "r", u, seq, fmt.Sprint("m", i))
		want[u] = seq
	}
	for i := range 100 {
		others.ackFor(t, fmt.Sprint("m", i))
	}
	msgs = olga.waitFor(t, "the final positions", func(msgs []proto.Message) bool {
		return maps.Equal(positionsSeen(readPositions(t, msgs[before:])), want)
	})
	frames := readPositions(t, msgs[before:])
	if len(frames) > 3 {
		t.Fatalf("100 moves reached olga in %d ReadPositions frames, want at most 3: %v", len(frames), frames)
	}
	for _, rp := range frames {
		if rp.GetSnapshot() || rp.GetRoom() != "r" {
			t.Fatalf("a move's frame %v", rp)
		}
	}

	// A connection joining now gets the positions after its Ack.
	late := newProbe(t, n)
	joinRoom(n, late, "r", "erin", "late", nil)
	late.ackFor(t, "late")
	msgs = late.waitFor(t, "the join's snapshot", func(msgs []proto.Message) bool { return len(readPositions(t, msgs)) > 0 })
	if rp := readPositions(t, msgs)[0]; !rp.GetSnapshot() || !maps.Equal(positionsSeen([]*parleypb.ReadPositions{rp}), want) {
		t.Fatalf("the join's snapshot %v, want %v", rp, want)
	}
	if rec, _, _ := st.Room(t.Context(), "r"); !rec.ReadPositions {
		t.Fatalf("the stored record %+v does not keep the setting", rec)
	}
}

// TestRoomReadPositionsOff: with the setting off, cursor moves send no
// frame to anyone, and a join gets no snapshot: one move made after the
// setting is turned on is the only one ever told.
func TestRoomReadPositionsOff(t *testing.T) {
	t.Parallel()
	st := store.NewMemory()
	n := newTestNode(t, Config{Store: st})
	provision(t, st, "r", "olga", "bob", "carol")
	olga := newProbe(t, n)
	joinRoom(n, olga, "r", "olga", "j", nil)
	olga.ackFor(t, "j")
	for i := range 20 {
		postTo(n, olga, "r", "olga", "hi", fmt.Sprint("c", i), fmt.Sprint("p", i))
		olga.ackFor(t, fmt.Sprint("p", i))
	}
	bob := newProbe(t, n)
	for i := range 20 {
		markRead(n, bob, "r", "bob", uint64(i+1), fmt.Sprint("m", i))
	}
	for i := range 20 {
		bob.ackFor(t, fmt.Sprint("m", i))
	}
	joinRoom(n, bob, "r", "bob", "jb", nil)
	bob.ackFor(t, "jb")
	bob.sync(t, n, "r")
	if frames := readPositions(t, bob.snapshot()); len(frames) != 0 {
		t.Fatalf("bob joined a room without the setting and got %v", frames)
	}
	on := true
	n.Directory().Tell(n.System.Root, &actorpb.RoomUpdate{Room: "r", User: SystemName, Kind: parleypb.SenderKind_SENDER_KIND_SYSTEM,
		ReadPositions: &on, Session: bob.pid, RequestId: "on"})
	bob.ackFor(t, "on")
	markRead(n, bob, "r", "carol", 5, "carol")
	bob.ackFor(t, "carol")
	// The moves made while off would have had their frame before this one.
	msgs := olga.waitFor(t, "carol's move", func(msgs []proto.Message) bool {
		return positionsSeen(readPositions(t, msgs))["carol"] == 5
	})
	frames := readPositions(t, msgs)
	if len(frames) != 2 || !frames[0].GetSnapshot() || frames[1].GetSnapshot() ||
		!maps.Equal(positionsSeen(frames[1:]), map[string]uint64{"carol": 5}) {
		t.Fatalf("olga got %v; want the setting's snapshot, then carol's move alone", frames)
	}
}
