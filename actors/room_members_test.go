package actors

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/parleychat/parley/actors/actorpb"
	parleypb "github.com/parleychat/parley/proto"
)

// TestJoinOrder: users stay in the order they came through leaves (holes)
// and the compaction that fills them; one who comes back is last.
func TestJoinOrder(t *testing.T) {
	var o joinOrder
	var want []string
	for i := range 200 {
		u := fmt.Sprintf("u%03d", i)
		o.add(u)
		want = append(want, u)
	}
	for i := 0; i < 200; i += 3 { // a third leave: holes
		o.remove(fmt.Sprintf("u%03d", i))
	}
	for i := 1; i < 200; i += 3 { // another third: past half, compacted
		o.remove(fmt.Sprintf("u%03d", i))
	}
	o.remove("nobody")
	o.add("u000") // back, at the end
	want = slices.DeleteFunc(want, func(u string) bool { var i int; fmt.Sscanf(u, "u%d", &i); return i%3 != 2 })
	want = append(want, "u000")
	got := slices.DeleteFunc(slices.Clone(o.users), func(u string) bool { return u == "" })
	if !slices.Equal(got, want) {
		t.Fatalf("order %q\nwant  %q", got, want)
	}
	if len(o.users) > 2*len(want) {
		t.Errorf("%d slots for %d users: holes were not filled", len(o.users), len(want))
	}
	for u, i := range o.at {
		if o.users[i] != u {
			t.Fatalf("index of %s is %d, which holds %q", u, i, o.users[i])
		}
	}
}

// TestRoomDropsResentJoins: a resent join (the member saw no answer yet)
// from a session the room already has is dropped, not admitted again: in
// a reconnect storm every waiting member resends, and admitting each
// resend (an ack, a replay) is what a backed-up room cannot afford. A
// resend from a session the room does not have (the first join vanished
// with an earlier activation) is a join.
func TestRoomDropsResentJoins(t *testing.T) {
	t.Parallel()
	n := newTestNode(t, Config{})
	provision(t, n.cfg.Store, "busy", "alice", "bob")
	a, b := newProbe(t, n), newProbe(t, n)
	joinRoom(n, a, "busy", "alice", "join-a", nil)
	a.ackFor(t, "join-a")
	n.Directory().Tell(n.System.Root, &actorpb.RoomJoin{Room: "busy", User: "alice", Session: a.pid, Codec: parleypb.Codec_CODEC_PROTO, RequestId: "join-a", Resend: true})
	n.Directory().Tell(n.System.Root, &actorpb.RoomJoin{Room: "busy", User: "bob", Session: b.pid, Codec: parleypb.Codec_CODEC_PROTO, RequestId: "join-b", Resend: true})
	b.ackFor(t, "join-b")
	a.sync(t, n, "busy")
	acks := 0
	for _, m := range a.snapshot() {
		if ack, ok := m.(*parleypb.Ack); ok && ack.GetRequestId() == "join-a" {
			acks++
		}
	}
	if acks != 1 {
		t.Errorf("alice's join answered %d times, want once (the resend dropped)", acks)
	}
	if got := n.Stats.ResendsDropped.Load(); got != 1 {
		t.Errorf("Stats.ResendsDropped = %d, want 1", got)
	}
}

// TestJoinResendBacksOff: resends of one join wait longer each time, up to
// a cap, with jitter on top.
func TestJoinResendBacksOff(t *testing.T) {
	t.Parallel()
	for resends, want := range []time.Duration{2 * time.Second, 2 * time.Second, 2 * time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 16 * time.Second, 16 * time.Second} {
		for range 50 {
			if got := joinResendAfter(resends); got < want || got > want+want/4 {
				t.Fatalf("joinResendAfter(%d) = %v, want %v to %v", resends, got, want, want+want/4)
			}
		}
	}
}
