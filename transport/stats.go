package transport

import (
	"sync"
	"sync/atomic"

	parleypb "github.com/parleychat/parley/proto"
)

// Stats counts what the transport did; every field is safe to read at any
// time (the metrics endpoint does, at scrape time). Counting costs an atomic
// add on the hot path, nothing more.
type Stats struct {
	// Open is the number of open connections per codec (parleypb.Codec).
	Open [4]atomic.Int64
	// FramesIn counts frames read; FramesOut frames written (a Batch frame
	// counts once), BatchedOut the frames that rode inside a Batch.
	FramesIn, FramesOut, BatchedOut atomic.Int64
	// QueueFull counts connections closed because they did not read (1013).
	QueueFull atomic.Int64
	// BadFrames counts frames that did not decode.
	BadFrames atomic.Int64

	mu      sync.Mutex
	closes  map[parleypb.CloseCode]*atomic.Int64
	refusal map[string]*atomic.Int64
}

func (s *Stats) open(k parleypb.Codec, d int64) { s.Open[k].Add(d) }

func (s *Stats) closed(code parleypb.CloseCode) { bump(&s.mu, &s.closes, code) }

func (s *Stats) refused(why string) { bump(&s.mu, &s.refusal, why) }

func bump[K comparable](mu *sync.Mutex, m *map[K]*atomic.Int64, k K) {
	mu.Lock()
	defer mu.Unlock()
	if *m == nil {
		*m = make(map[K]*atomic.Int64)
	}
	c := (*m)[k]
	if c == nil {
		c = new(atomic.Int64)
		(*m)[k] = c
	}
	c.Add(1)
}

// Closes reports how many connections ended with each close code.
func (s *Stats) Closes() map[parleypb.CloseCode]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[parleypb.CloseCode]int64, len(s.closes))
	for k, v := range s.closes {
		out[k] = v.Load()
	}
	return out
}

// Refusals reports how many handshakes were refused, by reason ("origin",
// "subprotocol", "limit", "draining", "auth").
func (s *Stats) Refusals() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int64, len(s.refusal))
	for k, v := range s.refusal {
		out[k] = v.Load()
	}
	return out
}
