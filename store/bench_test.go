package store

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkAppend measures acknowledged (durable, for bolt and postgres)
// messages per second of one room appending back to back.
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
						if err := s.Append(ctx, msgs); err != nil {
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
