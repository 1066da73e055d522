package cluster

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/actors"
	"github.com/parleychat/parley/actors/actorpb"
	"github.com/parleychat/parley/internal/testenv"
	parleypb "github.com/parleychat/parley/proto"
)

func TestConfigErrorsNameTheFlag(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "no -cluster-provider"},
		{Config{Provider: "zookeeper"}, `-cluster-provider "zookeeper"`},
		{Config{Provider: "automanaged"}, "-cluster-peers"},
		{Config{Provider: "automanaged", Peers: []string{"127.0.0.1:6330"}}, "-cluster-health"},
		{Config{Provider: "automanaged", Peers: []string{"127.0.0.1:6330"}, Health: 6331}, "must include this member's own"},
		{Config{Provider: "automanaged", Peers: []string{"nonsense"}, Health: 6331}, "-cluster-peers \"nonsense\""},
		{Config{Provider: "etcd"}, "-cluster-etcd"},
	} {
		_, err := newProvider(tc.cfg.withDefaults())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("newProvider(%+v) = %v, want an error naming %q", tc.cfg, err, tc.want)
		}
	}
	for bind, want := range map[string]string{
		"nope":         "-cluster-bind",
		"0.0.0.0:7070": "-cluster-advertise",
		"host:99999":   "port from 1 to 65535",
	} {
		_, err := New(Config{Provider: "automanaged", Bind: bind, Peers: []string{"127.0.0.1:1"}, Health: 1})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New with -cluster-bind %s = %v, want an error naming %q", bind, err, want)
		}
	}
	if _, err := New(Config{Provider: "zookeeper"}); err == nil || !strings.Contains(err.Error(), "-cluster-provider") {
		t.Errorf("New with an unknown provider = %v, want an error naming -cluster-provider", err)
	}
}

// recorder is a fake session that keeps what rooms send it.
type recorder struct {
	pid  *actor.PID
	mu   sync.Mutex
	msgs []proto.Message
}

func newRecorder(n *actors.Node) *recorder {
	r := &recorder{}
	r.pid = n.System.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		if m, ok := c.Message().(proto.Message); ok {
			r.mu.Lock()
			r.msgs = append(r.msgs, m)
			r.mu.Unlock()
		}
	}))
	return r
}

// ack waits for the Ack answering id.
func (r *recorder) ack(t *testing.T, id string) *parleypb.Ack {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		for _, m := range r.msgs {
			switch m := m.(type) {
			case *parleypb.Ack:
				if m.GetRequestId() == id {
					r.mu.Unlock()
					return m
				}
			case *parleypb.Error:
				if m.GetRequestId() == id {
					r.mu.Unlock()
					t.Fatalf("%s: %v", id, m)
				}
			}
		}
		r.mu.Unlock()
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
	t.Fatalf("no answer to %s", id)
	return nil
}

// TestOneMemberCluster runs a real one-member cluster in this process: a
// room is activated as a grain through the clustered directory, answers,
// passivates when empty (the grain stops with it), and the next message
// activates it again with its history. (Several members cannot share a
// process under -race: see docs/PROTOACTOR.md; the repository root's
// tests run three processes.)
func TestOneMemberCluster(t *testing.T) {
	addrs := testenv.FreeAddrs(t, 2)
	_, port, _ := net.SplitHostPort(addrs[0])
	health, _ := strconv.Atoi(port)
	cl, err := New(Config{Provider: "automanaged", Bind: addrs[1],
		Peers: []string{addrs[0]}, Health: health, Refresh: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	n, err := actors.NewNode(actors.Config{RoomLinger: 100 * time.Millisecond, Cluster: cl})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if _, err := n.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	}()
	if !n.Clustered() || cl.Owner("r") != cl.Address() {
		t.Fatalf("clustered=%v owner of r=%q, this member=%q", n.Clustered(), cl.Owner("r"), cl.Address())
	}
	s := newRecorder(n)
	dir := n.Directory()
	root := n.System.Root
	dir.Tell(root, &actorpb.RoomJoin{Room: "r", User: "ann", Session: s.pid, Codec: parleypb.Codec_CODEC_PROTO, RequestId: "j1"})
	// The join created the room and made ann a member: events with seqs.
	joined := s.ack(t, "j1").GetSeq()
	if joined == 0 {
		t.Fatal("the join that created the room answered seq 0")
	}
	dir.Tell(root, &actorpb.RoomPost{Room: "r", User: "ann", Text: "hello", ClientMsgId: "c1", RequestId: "p1", Session: s.pid})
	first := s.ack(t, "p1").GetSeq()
	if first != joined+1 {
		t.Fatalf("first post seq %d, want %d (after the join's %d)", first, joined+1, joined)
	}
	rooms, err := n.ListRooms(t.Context())
	if err != nil || len(rooms) != 1 || rooms[0].GetName() != "r" || rooms[0].GetMembers() != 1 {
		t.Fatalf("ListRooms = %v, %v; want r with 1 member", rooms, err)
	}

	// Leave; the room passivates after its linger and the grain with it.
	dir.Tell(root, &actorpb.RoomLeave{Room: "r", Session: s.pid, RequestId: "l1"})
	s.ack(t, "l1")
	deadline := time.Now().Add(10 * time.Second)
	for n.Stats.ActiveRooms.Load() != 0 || n.Stats.Passivations.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("room did not passivate: active %d, passivations %d", n.Stats.ActiveRooms.Load(), n.Stats.Passivations.Load())
		}
		time.Sleep(10 * time.Millisecond) // polling with a deadline
	}
	// The next message activates it again, with its history; the retried
	// post is recognised.
	dir.Tell(root, &actorpb.RoomPost{Room: "r", User: "ann", Text: "hello", ClientMsgId: "c1", RequestId: "p2", Session: s.pid})
	if got := s.ack(t, "p2").GetSeq(); got != first {
		t.Fatalf("retried post after re-activation: seq %d, want %d (deduplicated)", got, first)
	}
	dir.Tell(root, &actorpb.RoomPost{Room: "r", User: "ann", Text: "again", ClientMsgId: "c2", RequestId: "p3", Session: s.pid})
	if got := s.ack(t, "p3").GetSeq(); got != first+1 {
		t.Fatalf("post after re-activation: seq %d, want %d", got, first+1)
	}
}
