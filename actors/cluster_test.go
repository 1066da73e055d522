package actors

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/actors/actorpb"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/store"
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

// TestPresenceMergesPeerShares: other members' shares (from gossip) count
// only while their member is alive; this node publishes its own share.
func TestPresenceMergesPeerShares(t *testing.T) {
	t.Parallel()
	fc := &fakeCluster{}
	n := newTestNode(t, Config{Cluster: fc})
	mu := &fc.mu
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
	share := func(addr string, users ...string) *actorpb.NodePresence {
		s := &actorpb.NodePresence{Address: addr, StartedMs: 1}
		for _, u := range users {
			name, devices, _ := strings.Cut(u, ":")
			var d uint32
			fmt.Sscan(devices, &d)
			s.Users = append(s.Users, &parleypb.Member{Name: name, Devices: d})
		}
		return s
	}

	step("m1 is alive and shares bob and alice", "alice:1 bob:2 w:1",
		&actorpb.PeerSet{Addresses: []string{"host1:1"}},
		&actorpb.PeerPresence{MemberId: "m1", Share: share("host1:1", "alice:1", "bob:2")})
	phone := newProbe(t, n)
	step("alice also connects here", "alice:2 bob:2 w:1",
		&actorpb.Online{User: "alice", Session: phone.pid})
	step("m2's share arrives before m2 is in the topology", "alice:2 bob:2 w:1",
		&actorpb.PeerPresence{MemberId: "m2", Share: share("host2:1", "carol:1")})
	step("m2 joins the topology", "alice:2 bob:2 carol:1 w:1",
		&actorpb.PeerSet{Addresses: []string{"host1:1", "host2:1"}})
	step("bob closes one of two connections on m1", "alice:2 bob:1 carol:1 w:1",
		&actorpb.PeerPresence{MemberId: "m1", Share: share("host1:1", "alice:1", "bob:1")})
	step("m1 dies: its users leave, alice stays (connected here)", "alice:1 carol:1 w:1",
		&actorpb.PeerSet{Addresses: []string{"host2:1"}})
	step("m1's last gossip arrives late and is ignored", "alice:1 carol:1 w:1",
		&actorpb.PeerPresence{MemberId: "m1", Share: share("host1:1", "bob:3")})
	restarted := share("host2:1", "dan:1")
	restarted.StartedMs = 2
	step("m2 restarts at the same address: its new process's share replaces the old", "alice:1 dan:1 w:1",
		&actorpb.PeerPresence{MemberId: "m2b", Share: restarted})
	step("the old process's gossip still travels, and is outranked", "alice:1 dan:1 w:1",
		&actorpb.PeerPresence{MemberId: "m2", Share: share("host2:1", "carol:5")})
	next := func(users ...string) *actorpb.NodePresence {
		s := share("host2:1", users...)
		s.StartedMs = 2
		return s
	}
	step("m2b's share changes: dan goes, carl and erin come, alice connects there too", "alice:2 carl:1 erin:2 w:1",
		&actorpb.PeerPresence{MemberId: "m2b", Share: next("alice:1", "carl:1", "erin:2")})
	step("a share out of order (not as publish writes it) is counted all the same", "abe:1 alice:1 w:1 zed:3",
		&actorpb.PeerPresence{MemberId: "m2b", Share: next("zed:3", "abe:1")})

	// This node's own share: the users connected here, published after the
	// changes (coalesced).
	waitForCond(t, "this node's share to be published", func() bool {
		mu.Lock()
		defer mu.Unlock()
		if len(fc.published) == 0 {
			return false
		}
		last := fc.published[len(fc.published)-1]
		var got []string
		for _, m := range last.GetUsers() {
			got = append(got, fmt.Sprintf("%s:%d", m.GetName(), m.GetDevices()))
		}
		return strings.Join(got, " ") == "alice:1 w:1"
	})
}

// TestTwoActivationsNeverShareASeq: two nodes host the same room at once
// over one store (what a cluster can do for a moment while its members
// disagree). The store's (room, seq) key fences them: a loser's batch fails
// with a retryable error and its room reloads, so no two posts are ever
// acknowledged with the same seq and every acknowledged post is stored once.
func TestTwoActivationsNeverShareASeq(t *testing.T) {
	t.Parallel()
	shared := store.NewMemory()
	a, b := newTestNode(t, Config{Store: shared}), newTestNode(t, Config{Store: shared})
	provision(t, shared, "r", "ann", "ben")
	pa, pb := newProbe(t, a), newProbe(t, b)
	joinRoom(a, pa, "r", "ann", "ja", nil)
	joinRoom(b, pb, "r", "ben", "jb", nil)
	pa.ackFor(t, "ja")
	pb.ackFor(t, "jb")

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
	mu        sync.Mutex
	started   bool
	published []*actorpb.NodePresence
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

func (c *fakeCluster) PublishPresence(s *actorpb.NodePresence) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.published = append(c.published, s)
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
