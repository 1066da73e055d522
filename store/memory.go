package store

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"
)

// Memory is a Store kept in process memory: history survives a room's restart
// but not the process. It is the backend of -store memory and of tests.
type Memory struct {
	mu     sync.Mutex
	rooms  map[string]*memRoom
	closed bool
}

type memRoom struct {
	msgs   []Message // ascending seq, contiguous
	latest uint64
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory { return &Memory{rooms: make(map[string]*memRoom)} }

var _ Store = (*Memory)(nil)

func (m *Memory) room(name string) *memRoom {
	r := m.rooms[name]
	if r == nil {
		r = &memRoom{}
		m.rooms[name] = r
	}
	return r
}

// Append implements Store.
func (m *Memory) Append(_ context.Context, msgs []Message) error {
	if len(msgs) == 0 {
		return nil
	}
	if err := checkBatch(msgs); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	r := m.room(msgs[0].Room)
	if msgs[0].Seq <= r.latest {
		return fmt.Errorf("store: append to %q at seq %d: %w", msgs[0].Room, msgs[0].Seq, ErrConflict)
	}
	r.msgs = append(r.msgs, msgs...)
	r.latest = msgs[len(msgs)-1].Seq
	return nil
}

// After implements Store.
func (m *Memory) After(_ context.Context, room string, after uint64, limit int) ([]Message, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	r := m.rooms[room]
	if r == nil || limit <= 0 {
		return nil, nil
	}
	i := sort.Search(len(r.msgs), func(i int) bool { return r.msgs[i].Seq > after })
	j := min(i+limit, len(r.msgs))
	return append([]Message(nil), r.msgs[i:j]...), nil
}

// Before implements Store.
func (m *Memory) Before(_ context.Context, room string, before uint64, limit int) ([]Message, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	r := m.rooms[room]
	if r == nil || limit <= 0 {
		return nil, nil
	}
	j := len(r.msgs)
	if before > 0 {
		j = sort.Search(len(r.msgs), func(i int) bool { return r.msgs[i].Seq >= before })
	}
	i := max(j-limit, 0)
	return append([]Message(nil), r.msgs[i:j]...), nil
}

// Bounds implements Store.
func (m *Memory) Bounds(_ context.Context, room string) (Bounds, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return Bounds{}, ErrClosed
	}
	r := m.rooms[room]
	if r == nil {
		return Bounds{}, nil
	}
	b := Bounds{Latest: r.latest}
	if len(r.msgs) > 0 {
		b.Oldest = r.msgs[0].Seq
	}
	return b, nil
}

// Trim implements Store.
func (m *Memory) Trim(_ context.Context, ret Retention, now time.Time) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, ErrClosed
	}
	n := 0
	for _, r := range m.rooms {
		drop := 0
		if ret.MaxCount > 0 && len(r.msgs) > ret.MaxCount {
			drop = len(r.msgs) - ret.MaxCount
		}
		if ret.MaxAge > 0 {
			cutoff := now.Add(-ret.MaxAge)
			for drop < len(r.msgs) && r.msgs[drop].Time.Before(cutoff) {
				drop++
			}
		}
		if drop > 0 {
			r.msgs = append([]Message(nil), r.msgs[drop:]...)
			n += drop
		}
	}
	return n, nil
}

// Close implements Store.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}
