package store

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkAppend measures acknowledged (durable, for bolt and postgres)
// messages per second of one room committing batches of messages only
// (posts: no room or member records) back to back.
func BenchmarkAppend(b *testing.B) {
	backends := []struct {
		name string
		open func(b *testing.B) Store
	}{
		{"memory", func(*testing.B) Store { return NewMemory() }},
		{"bolt", func(b *testing.B) Store {
			s, err := OpenBolt(b.TempDir(), BoltOptions{})
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
		{"postgres", func(b *testing.B) Store { return openTestPostgres(b, testPostgresDSN(b)) }},
	}
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			for _, size := range []int{1, 64} {
				b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
					s := be.open(b)
					defer s.Close()
					ctx := context.Background()
					msgs := batch("bench", 1, size)
					n := 0
					for b.Loop() {
						for i := range msgs {
							msgs[i].Seq = uint64(n + i + 1)
						}
						if err := s.Commit(ctx, Batch{Room: "bench", Messages: msgs}); err != nil {
							b.Fatal(err)
						}
						n += size
					}
					b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
				})
			}
		})
	}
}

// BenchmarkAppendRooms measures acknowledged messages per second when many
// rooms append at once, as in the load tool's rooms scenario: each of
// `rooms` goroutines commits one-message batches to its own room back to
// back. For bolt it also reports how many Commits shared one transaction.
func BenchmarkAppendRooms(b *testing.B) {
	for _, rooms := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("bolt/rooms=%d", rooms), func(b *testing.B) {
			s, err := OpenBolt(b.TempDir(), BoltOptions{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			var next atomic.Int64
			var wg sync.WaitGroup
			errs := make(chan error, rooms)
			b.ResetTimer()
			for r := range rooms {
				wg.Add(1)
				go func() {
					defer wg.Done()
					room := fmt.Sprintf("room-%d", r)
					msgs := batch(room, 1, 1)
					for seq := uint64(1); next.Add(1) <= int64(b.N); seq++ {
						msgs[0].Seq = seq
						if err := s.Commit(ctx, Batch{Room: room, Messages: msgs}); err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			close(errs)
			for err := range errs {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			if c, ok := any(s).(interface{ commitCount() int64 }); ok && c.commitCount() > 0 {
				b.ReportMetric(float64(b.N)/float64(c.commitCount()), "appends/commit")
			}
		})
	}
}

// BenchmarkCommitOutbox is the cost webhooks add to a commit: one room
// committing one-post batches back to back, with no outbox entry (webhooks
// off), one (message.created) or two (and a notify), each a payload the
// size rooms write.
func BenchmarkCommitOutbox(b *testing.B) {
	backends := []struct {
		name string
		open func(b *testing.B) Store
	}{
		{"memory", func(*testing.B) Store { return NewMemory() }},
		{"bolt", func(b *testing.B) Store {
			s, err := OpenBolt(b.TempDir(), BoltOptions{})
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
	}
	payload := []byte(`{"id":"bench/1/0","type":"message.created","room":"bench","seq":1,"time":"2026-12-01T12:00:00.123Z","event":{"sender":"user-1","senderKind":"user","text":"message 1 of bench","clientMsgId":"c-bench-1"}}`)
	for _, be := range backends {
		for _, entries := range []int{0, 1, 2} {
			b.Run(fmt.Sprintf("%s/outbox=%d", be.name, entries), func(b *testing.B) {
				s := be.open(b)
				defer s.Close()
				ctx := context.Background()
				msgs := batch("bench", 1, 1)
				ob := make([]OutboxEntry, entries)
				seq := uint64(0)
				for b.Loop() {
					seq++
					msgs[0].Seq = seq
					for i := range ob {
						ob[i] = OutboxEntry{ID: fmt.Sprintf("bench/%d/%d", seq, i), Room: "bench", Type: "message.created", Payload: payload, Created: msgs[0].Time}
					}
					if err := s.Commit(ctx, Batch{Room: "bench", Messages: msgs, Outbox: ob}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
