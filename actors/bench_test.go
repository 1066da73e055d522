package actors

import (
	"fmt"
	"runtime"
	"sync"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	parleypb "github.com/parleychat/parley/proto"
)

// BenchmarkRoomFanOut measures one room delivering each of b.N posts to
// 1,000 members. Members are plain actors that count Delivers, so the cost
// is the room's (sequencing, group commit to the in-memory store, encoding
// once, one Send per member) plus the mailboxes', without any socket.
func BenchmarkRoomFanOut(b *testing.B) {
	const members = 1000
	n := newTestNode(b, Config{})
	want := b.N
	var joined, done sync.WaitGroup
	joined.Add(members)
	done.Add(members)
	for i := range members {
		seen := 0 // only this member's Receive touches it
		pid := n.System.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
			switch m := c.Message().(type) {
			case *parleypb.Ack:
				joined.Done()
			case *parleypb.Deliver:
				if m.GetSeq() == 0 {
					return
				}
				if seen++; seen == want {
					done.Done()
				}
			}
		}))
		// Rejoin: the room announces nothing, so setup does not deliver
		// half a million presence events before the clock starts.
		n.Directory.Tell(n.System.Root, &parleypb.RoomJoin{Room: "bench", User: fmt.Sprint("user", i), Session: pid,
			Codec: parleypb.Codec_CODEC_PROTO, RequestId: "join", Rejoin: true})
	}
	joined.Wait()
	poster := n.System.Root.Spawn(actor.PropsFromFunc(func(actor.Context) {})) // takes the acks
	post := &parleypb.RoomPost{Room: "bench", User: "user0", Session: poster,
		Text: "Has anyone tried the new build? The reconnect after a deploy is much faster now."}

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for range b.N {
		// The room keeps the message (history window): one per post.
		n.Directory.Tell(n.System.Root, proto.Clone(post).(*parleypb.RoomPost))
	}
	done.Wait()
	b.StopTimer()
	runtime.ReadMemStats(&after)

	deliveries := float64(b.N) * members
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/deliveries, "allocs/delivery")
	b.ReportMetric(deliveries/b.Elapsed().Seconds(), "deliveries/s")
}
