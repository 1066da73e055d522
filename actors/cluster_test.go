package actors

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/actors/actorpb"
	parleypb "github.com/parleychat/parley/proto"
)

// What a cluster relies on from a node, tested in one process (the
// multi-process tests in the repository root run the real thing).

// who asks presence for the online list, as "name:devices" sorted.
func who(t *testing.T, n *Node, p *probe, id string) string {
	t.Helper()
	n.System.Root.Send(n.presence, &actorpb.WhoQuery{RequestId: id, Session: p.pid})
	p.ackFor(t, id)
	var list []string
	msgs := p.snapshot()
	for i := len(msgs) - 1; i >= 0; i-- {
		if pe, ok := msgs[i].(*parleypb.PresenceEvent); ok && pe.GetMembers() != nil {
			for _, m := range pe.GetMembers() {
				list = append(list, fmt.Sprintf("%s:%d", m.GetName(), m.GetDevices()))
			}
			break
		}
	}
	sort.Strings(list)
	return strings.Join(list, " ")
}

// TestPresenceMergesPeerShares: other members' shares count only while
// their member is alive, the latest process's at an address; a whole share
// replaces, a delta applies in sequence and one that skips asks for the
// whole share; this node sends its own share whole to a member it has not
// told, then what changed.
func TestPresenceMergesPeerShares(t *testing.T) {
	t.Parallel()
	fc := &fakeCluster{}
	var peers atomic.Pointer[map[string]*actor.PID]
	n := newTestNode(t, Config{Cluster: fc, peerPID: func(addr string) *actor.PID {
		if m := peers.Load(); m != nil && (*m)[addr] != nil {
			return (*m)[addr]
		}
		return actor.NewPID("nonhost", "nobody")
	}})
	host1, host2 := newProbe(t, n), newProbe(t, n) // what this node sends to each member's presence
	peers.Store(&map[string]*actor.PID{"host1:1": host1.pid, "host2:1": host2.pid})
	w := newProbe(t, n)
	n.System.Root.Send(n.presence, &actorpb.Online{User: "w", Session: w.pid, RequestId: "hello"})
	w.waitFor(t, "the login", func(msgs []proto.Message) bool {
		return slices.ContainsFunc(msgs, func(m proto.Message) bool { _, ok := m.(*actorpb.LoggedIn); return ok })
	})

	// step sends msgs to presence and checks the online list afterwards.
	step := func(what string, wantWho string, msgs ...proto.Message) {
		t.Helper()
		for _, m := range msgs {
			n.System.Root.Send(n.presence, m)
		}
		got := who(t, n, w, what) // behind msgs in presence's mailbox
		if got != wantWho {
			t.Fatalf("%s: online %q, want %q", what, got, wantWho)
		}
	}
	share := func(addr string, started int64, users ...string) *actorpb.PeerPresence {
		s := &actorpb.NodePresence{Address: addr, StartedMs: started}
		for _, u := range users {
			name, devices, _ := strings.Cut(u, ":")
			var d uint32
			fmt.Sscan(devices, &d)
			s.Users = append(s.Users, &parleypb.Member{Name: name, Devices: d})
		}
		return &actorpb.PeerPresence{Share: s}
	}
	delta := func(seq uint64, users ...string) *actorpb.PeerPresence {
		p := share("host2:1", 2, users...)
		p.Share.Seq, p.Share.Delta = seq, true
		return p
	}

	step("m1 is alive and shares bob and alice", "alice:1 bob:2 w:1",
		&actorpb.PeerSet{Addresses: []string{"host1:1"}},
		share("host1:1", 1, "alice:1", "bob:2"))
	phone := newProbe(t, n)
	step("alice also connects here", "alice:2 bob:2 w:1",
		&actorpb.Online{User: "alice", Session: phone.pid})
	step("m2's share arrives before m2 is in the topology", "alice:2 bob:2 w:1",
		share("host2:1", 1, "carol:1"))
	step("m2 joins the topology", "alice:2 bob:2 carol:1 w:1",
		&actorpb.PeerSet{Addresses: []string{"host1:1", "host2:1"}})
	step("bob closes one of two connections on m1", "alice:2 bob:1 carol:1 w:1",
		share("host1:1", 1, "alice:1", "bob:1"))
	step("m1 dies: its users leave, alice stays (connected here)", "alice:1 carol:1 w:1",
		&actorpb.PeerSet{Addresses: []string{"host2:1"}})
	step("m1's last share arrives late and is ignored", "alice:1 carol:1 w:1",
		share("host1:1", 1, "bob:3"))
	step("m2 restarts at the same address: its new process's share replaces the old", "alice:1 dan:1 w:1",
		share("host2:1", 2, "dan:1"))
	step("the old process's share still travels, and is outranked", "alice:1 dan:1 w:1",
		share("host2:1", 1, "carol:5"))
	step("a share from this node's own address (an earlier process's) is not a peer's", "alice:1 dan:1 w:1",
		share("self:1", 0, "w:5"))
	step("deltas in sequence: dan goes, carl and erin come, alice connects there too", "alice:2 carl:1 erin:2 w:1",
		delta(1, "dan:0", "carl:1"), delta(2, "alice:1", "erin:2"))
	step("a delta already had is ignored", "alice:2 carl:1 erin:2 w:1",
		delta(2, "erin:7"))
	step("a delta that skips one is not applied", "alice:2 carl:1 erin:2 w:1",
		delta(4, "zed:1"))
	host2.waitFor(t, "m2 asked for its whole share", func(msgs []proto.Message) bool {
		return slices.ContainsFunc(msgs, func(m proto.Message) bool {
			r, ok := m.(*actorpb.PresenceResync)
			return ok && r.GetAddress() == "self:1"
		})
	})
	whole := share("host2:1", 2, "zed:3", "abe:1")
	whole.Share.Seq = 4
	step("its whole share answers (in any order) and replaces", "abe:1 alice:1 w:1 zed:3",
		whole)
	step("and deltas go on from its seq", "abe:1 alice:1 w:1",
		delta(5, "zed:0"))

	// What this node told m2: its whole share when m2 joined the topology,
	// then deltas; applied in order they are the users connected here.
	waitForCond(t, "m2 to know this node's users", func() bool {
		users := map[string]uint32{}
		var seq uint64
		for _, m := range host2.snapshot() {
			pp, ok := m.(*actorpb.PeerPresence)
			if !ok {
				continue
			}
			s := pp.GetShare()
			if s.GetAddress() != "self:1" || s.GetStartedMs() != 1 {
				t.Fatalf("a share from %s started %d; want self:1, 1", s.GetAddress(), s.GetStartedMs())
			}
			if !s.GetDelta() {
				users, seq = map[string]uint32{}, s.GetSeq()
			} else if s.GetSeq() != seq+1 {
				continue
			} else {
				seq = s.GetSeq()
			}
			for _, u := range s.GetUsers() {
				users[u.GetName()] = u.GetDevices()
				if u.GetDevices() == 0 {
					delete(users, u.GetName())
				}
			}
		}
		return len(users) == 2 && users["alice"] == 1 && users["w"] == 1
	})
	// The phone goes: m2 is told by a delta with alice at 0.
	n.System.Root.Send(n.presence, &actorpb.Offline{Session: phone.pid})
	host2.waitFor(t, "a delta with alice gone", func(msgs []proto.Message) bool {
		return slices.ContainsFunc(msgs, func(m proto.Message) bool {
			pp, ok := m.(*actorpb.PeerPresence)
			return ok && pp.GetShare().GetDelta() && slices.ContainsFunc(pp.GetShare().GetUsers(), func(u *parleypb.Member) bool {
				return u.GetName() == "alice" && u.GetDevices() == 0
			})
		})
	})
}

// TestTwoActivationsNeverShareASeq: two nodes host the same room at once
// over one store (what a cluster can do for a moment while its members
// disagree). The store's (room, seq) key fences them: a loser's batch fails
// with a retryable error and its activation stops (the next one loads from
// the store), so no two posts are ever acknowledged with the same seq and
// every acknowledged post is stored once.
func TestTwoActivationsNeverShareASeq(t *testing.T) {
	t.Parallel()
	s := newSplit(t, "r", "ann", "ben")
	shared, a, b, pa, pb := s.st, s.a, s.b, s.pa, s.pb

	const each = 50
	acked := map[string]uint64{} // client msg id -> seq
	conflicts := 0
	for i := 0; i < each; i++ {
		for _, side := range []struct {
			n    *Node
			p    *probe
			user string
		}{{a, pa, "ann"}, {b, pb, "ben"}} {
			id := fmt.Sprintf("%s-%d", side.user, i)
			for attempt := 0; ; attempt++ {
				req := fmt.Sprintf("%s/%d", id, attempt)
				postTo(side.n, side.p, "r", side.user, "hi", id, req)
				ack, failed := side.p.answerTo(t, req)
				if failed != nil {
					if failed.GetCode() != parleypb.ErrorCode_ERROR_CODE_UNAVAILABLE {
						t.Fatalf("%s: %v, want UNAVAILABLE", req, failed)
					}
					conflicts++
					if attempt == 5 {
						t.Fatalf("%s still failing after %d attempts", id, attempt)
					}
					continue // retried with the same client_msg_id
				}
				acked[id] = ack.GetSeq()
				break
			}
		}
	}
	bySeq := map[uint64]string{}
	for id, seq := range acked {
		if other, dup := bySeq[seq]; dup {
			t.Fatalf("seq %d acknowledged to both %s and %s", seq, other, id)
		}
		bySeq[seq] = id
	}
	stored, err := shared.After(t.Context(), "r", 0, 10*each)
	if err != nil {
		t.Fatal(err)
	}
	if len(stored) != len(acked) {
		t.Fatalf("%d stored, %d acknowledged", len(stored), len(acked))
	}
	for i, m := range stored {
		if m.Seq != uint64(i+1) || acked[m.ClientMsgID] != m.Seq {
			t.Fatalf("stored #%d: seq %d %s, acknowledged as %d", i, m.Seq, m.ClientMsgID, acked[m.ClientMsgID])
		}
	}
	if conflicts == 0 {
		t.Fatal("the two activations never collided; the test proves nothing")
	}
	t.Logf("%d posts through two activations: %d fenced by the store and retried; seqs 1..%d each acknowledged once", len(acked), conflicts, len(stored))
}

// fakeCluster is a cluster of one node that records the presence shares
// the node publishes; rooms are the node's own.
type fakeCluster struct {
	mu      sync.Mutex
	started bool
}

func (c *fakeCluster) Directory() Directory {
	// "nonhost" is a local actor system's address before remoting starts.
	return localDirectory{rooms: actor.NewPID("nonhost", RoomsName)}
}

func (c *fakeCluster) Start(ClusterHost) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.started = true
	return nil
}

func (c *fakeCluster) PresenceOrigin() (string, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.started {
		return "", 0
	}
	return "self:1", 1
}

func (c *fakeCluster) PeerPresences() []*actor.PID { return nil }
func (c *fakeCluster) Leave(context.Context) error { return nil }

// waitForCond polls cond until it holds, or fails the test after a deadline.
func waitForCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
}
