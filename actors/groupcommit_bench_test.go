package actors

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/parleychat/parley/actors/actorpb"
	"github.com/parleychat/parley/internal/testenv"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/store"
)

// countingStore counts Commit calls: posts per commit shows group commit.
type countingStore struct {
	store.Store
	appends atomic.Int64
}

func (c *countingStore) Commit(ctx context.Context, b store.Batch) error {
	c.appends.Add(1)
	return c.Store.Commit(ctx, b)
}

// BenchmarkGroupCommit measures acknowledged posts per second through one
// room with each history backend, fsync on: 64 posters each send a post,
// wait for its ack, and send the next, as clients do. Posts that arrive
// while a batch is being written form the next batch (one transaction), so
// throughput is far above one fsync per post.
//
//	go test -run '^$' -bench GroupCommit -benchtime 2000x ./actors/
func BenchmarkGroupCommit(b *testing.B) {
	for _, backend := range []string{"memory", "bolt", "postgres"} {
		b.Run(backend, func(b *testing.B) {
			var st store.Store
			var err error
			switch backend {
			case "memory":
				st = store.NewMemory()
			case "bolt":
				st, err = store.OpenBolt(b.TempDir(), store.BoltOptions{})
			case "postgres":
				st, err = store.OpenPostgres(context.Background(), testenv.PostgresSchema(b), store.PostgresOptions{})
			}
			if err != nil {
				b.Fatalf("open %s: %v (PostgreSQL must run at 127.0.0.1:5432; test.sh starts it)", backend, err)
			}
			// After the node's shutdown (cleanups run last first): the
			// PostgreSQL pool's health checker would outlive the benchmark
			// and fail the package's leak check.
			b.Cleanup(func() { st.Close() })
			cs := &countingStore{Store: st}
			n := newTestNode(b, Config{Store: cs})
			room := fmt.Sprintf("bench-%x", rand.Uint64())
			const posters = 64
			per := max(1, b.N/posters)
			// Posters are members first (a room takes posts from its
			// members only); the clock starts once all have joined.
			var joined, done sync.WaitGroup
			joined.Add(posters)
			done.Add(posters)
			start := make(chan struct{})
			for p := range posters {
				sent := 0
				user := fmt.Sprint("p", p)
				n.System.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
					post := func() {
						sent++
						n.Directory().Tell(c, &actorpb.RoomPost{Room: room, User: user, Text: "benchmark post", ClientMsgId: fmt.Sprint(sent), RequestId: "r", Session: c.Self()})
					}
					switch m := c.Message().(type) {
					case *actor.Started:
						n.Directory().Tell(c, &actorpb.RoomJoin{Room: room, User: user, Session: c.Self(), Codec: parleypb.Codec_CODEC_PROTO, RequestId: "join"})
					case *parleypb.Ack:
						if m.GetRequestId() == "join" {
							joined.Done()
							<-start
							post()
							return
						}
						if sent == per {
							done.Done()
							return
						}
						post()
					case *parleypb.Error:
						b.Errorf("%s failed: %v", m.GetRequestId(), m)
						if m.GetRequestId() == "join" {
							joined.Done()
						}
						done.Done()
					}
				}))
			}
			joined.Wait()
			cs.appends.Store(0) // the joins' commits are setup
			b.ResetTimer()
			t0 := time.Now()
			close(start)
			done.Wait()
			elapsed := time.Since(t0)
			b.StopTimer()
			total := posters * per
			b.ReportMetric(float64(total)/elapsed.Seconds(), "posts/s")
			b.ReportMetric(float64(total)/float64(cs.appends.Load()), "posts/commit")
		})
	}
}
