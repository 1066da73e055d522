package actors

import (
	"fmt"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/actors/actorpb"
	parleypb "github.com/parleychat/parley/proto"
)

const fanOutMembers = 1000

// fanOutRoom starts a node with one room of fanOutMembers members and
// returns a function that posts one message to the room. Members are plain
// actors (no socket, no session): each calls the function member() returned
// for it on every event it receives, from its own Receive, so that function
// may keep unsynchronised per-member state.
func fanOutRoom(b *testing.B, member func() (delivered func())) (post func()) {
	b.Helper()
	n := newTestNode(b, Config{})
	// Joining makes each user a member, an event of the room's log that
	// reaches the members already there: setup's events (up to the last
	// join's seq) are not deliveries of the benchmark's posts.
	var setupSeq, lastJoin atomic.Uint64
	setupSeq.Store(math.MaxUint64)
	var joined sync.WaitGroup
	joined.Add(fanOutMembers)
	for i := range fanOutMembers {
		delivered := member()
		pid := n.System.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
			switch m := c.Message().(type) {
			case *parleypb.Ack:
				for seq := lastJoin.Load(); seq < m.GetSeq() && !lastJoin.CompareAndSwap(seq, m.GetSeq()); seq = lastJoin.Load() {
				}
				joined.Done()
			case *actorpb.Deliver:
				if m.GetSeq() > setupSeq.Load() {
					delivered()
				}
			case *actorpb.DeliverBatch: // a group commit of several posts
				for _, it := range m.GetItems() {
					if it.GetSeq() > setupSeq.Load() {
						delivered()
					}
				}
			}
		}))
		// Rejoin: the room announces no presence, so setup does not deliver
		// half a million presence events before the clock starts.
		n.Directory().Tell(n.System.Root, &actorpb.RoomJoin{Room: "bench", User: fmt.Sprint("user", i), Session: pid,
			Codec: parleypb.Codec_CODEC_PROTO, RequestId: "join", Rejoin: true})
	}
	joined.Wait()
	setupSeq.Store(lastJoin.Load())
	poster := n.System.Root.Spawn(actor.PropsFromFunc(func(actor.Context) {})) // takes the acks
	msg := &actorpb.RoomPost{Room: "bench", User: "user0", Session: poster,
		Text: "Has anyone tried the new build? The reconnect after a deploy is much faster now."}
	return func() {
		// A session builds a new RoomPost per post, and the room keeps it.
		n.Directory().Tell(n.System.Root, proto.Clone(msg).(*actorpb.RoomPost))
	}
}

// measure times loop between two MemStats readings and reports allocations
// per delivery and deliveries per second.
func measure(b *testing.B, loop func()) {
	b.Helper()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	start := time.Now()
	loop()
	elapsed := time.Since(start)
	b.StopTimer()
	runtime.ReadMemStats(&after)
	deliveries := float64(b.N) * fanOutMembers
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/deliveries, "allocs/delivery")
	b.ReportMetric(deliveries/elapsed.Seconds(), "deliveries/s")
}

// BenchmarkRoomFanOut measures one room delivering each of b.N posts to
// 1,000 members with every post sent at once: throughput under load. The
// cost is the room's (sequencing, group commit to the in-memory store,
// encoding once, one Send per member) plus the mailboxes'.
func BenchmarkRoomFanOut(b *testing.B) {
	var done sync.WaitGroup
	done.Add(fanOutMembers)
	post := fanOutRoom(b, func() func() {
		seen := 0
		return func() {
			if seen++; seen == b.N {
				done.Done()
			}
		}
	})
	measure(b, func() {
		for range b.N {
			post()
		}
		done.Wait()
	})
}

// BenchmarkRoomFanOutPaced posts one message at a time and waits until all
// 1,000 members have it: every delivery finds its member idle, as in a chat
// room where messages are seconds apart. Waking an idle mailbox costs more
// than adding to a busy one, so this is the per-delivery cost of a quiet
// room, where BenchmarkRoomFanOut is that of a busy one.
func BenchmarkRoomFanOutPaced(b *testing.B) {
	var done sync.WaitGroup
	post := fanOutRoom(b, func() func() { return done.Done })
	measure(b, func() {
		for range b.N {
			done.Add(fanOutMembers)
			post()
			done.Wait()
		}
	})
}
