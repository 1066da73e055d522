package store

import (
	"context"
	"sort"
	"sync"
	"time"
)

// Memory is a Store kept in process memory: history survives a room's restart
// but not the process. It is the backend of -store memory and of tests.
type Memory struct {
	mu     sync.Mutex
	rooms  map[string]*memRoom
	outbox []OutboxEntry // in commit order
	closed bool
}

type memRoom struct {
	msgs    []Message // ascending seq, contiguous
	latest  uint64
	info    *RoomRecord
	members map[string]Member
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

// Commit implements Store.
func (m *Memory) Commit(_ context.Context, b Batch) error {
	if err := checkBatch(b); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	r := m.room(b.Room)
	if len(b.Messages) > 0 && b.Messages[0].Seq <= r.latest {
		return commitError(b, ErrConflict)
	}
	for _, msg := range b.Messages {
		msg.Body = append([]byte(nil), msg.Body...)
		r.msgs = append(r.msgs, msg)
	}
	if n := len(b.Messages); n > 0 {
		r.latest = b.Messages[n-1].Seq
	}
	for _, msg := range b.Rewrites {
		i := sort.Search(len(r.msgs), func(i int) bool { return r.msgs[i].Seq >= msg.Seq })
		if i < len(r.msgs) && r.msgs[i].Seq == msg.Seq {
			msg.Body = append([]byte(nil), msg.Body...)
			r.msgs[i] = msg
		}
	}
	if b.Info != nil {
		info := *b.Info
		info.Latest = 0
		r.info = &info
	}
	for _, mem := range b.Members {
		if mem.Empty() {
			delete(r.members, mem.User)
			continue
		}
		if r.members == nil {
			r.members = make(map[string]Member)
		}
		mem.Mentions = append([]uint64(nil), mem.Mentions...)
		r.members[mem.User] = mem
	}
	for _, e := range b.Outbox {
		e.Payload = append([]byte(nil), e.Payload...)
		m.outbox = append(m.outbox, e)
	}
	return nil
}

// Room implements Rooms.
func (m *Memory) Room(_ context.Context, name string) (RoomRecord, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return RoomRecord{}, false, ErrClosed
	}
	r := m.rooms[name]
	if r == nil || r.info == nil {
		return RoomRecord{}, false, nil
	}
	info := *r.info
	info.Latest = r.latest
	return info, true, nil
}

// Members implements Rooms.
func (m *Memory) Members(_ context.Context, room, after string, limit int) ([]Member, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	r := m.rooms[room]
	if r == nil {
		return nil, nil
	}
	var out []Member
	for _, mem := range r.members {
		if mem.User > after {
			out = append(out, mem)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].User < out[j].User })
	return out[:min(len(out), max(limit, 0))], nil
}

// UserRooms implements Rooms.
func (m *Memory) UserRooms(_ context.Context, user, after string, limit int) ([]UserRoom, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	var out []UserRoom
	for name, r := range m.rooms {
		mem, ok := r.members[user]
		if !ok || name <= after || r.info == nil || r.info.Deleted {
			continue
		}
		info := *r.info
		info.Latest = r.latest
		out = append(out, UserRoom{Room: info, Member: mem})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Room.Name < out[j].Room.Name })
	return out[:min(len(out), max(limit, 0))], nil
}

// PublicRooms implements Rooms.
func (m *Memory) PublicRooms(_ context.Context, after string, limit int) ([]RoomRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	var out []RoomRecord
	for name, r := range m.rooms {
		if r.info == nil || r.info.Kind != KindPublic || r.info.Deleted || name <= after {
			continue
		}
		info := *r.info
		info.Latest = r.latest
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out[:min(len(out), max(limit, 0))], nil
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
	return copyMessages(r.msgs[i:j]), nil
}

// copyMessages gives a reader messages of its own: a Body shared with the
// stored one would let the reader rewrite history.
func copyMessages(msgs []Message) []Message {
	out := append([]Message(nil), msgs...)
	for i := range out {
		if out[i].Body != nil {
			out[i].Body = append([]byte(nil), out[i].Body...)
		}
	}
	return out
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
	return copyMessages(r.msgs[i:j]), nil
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

// OutboxPending implements Outbox.
func (m *Memory) OutboxPending(_ context.Context, limit int, skip []string) ([]OutboxEntry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	skipped := skipSet(skip)
	var out []OutboxEntry
	for _, e := range m.outbox {
		if len(out) >= limit {
			break
		}
		if !skipped[e.Room] {
			e.Payload = append([]byte(nil), e.Payload...)
			out = append(out, e)
		}
	}
	return out, nil
}

// OutboxDelete implements Outbox.
func (m *Memory) OutboxDelete(_ context.Context, ids []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	gone := skipSet(ids)
	kept := m.outbox[:0]
	for _, e := range m.outbox {
		if !gone[e.ID] {
			kept = append(kept, e)
		}
	}
	clear(m.outbox[len(kept):])
	m.outbox = kept
	return nil
}

// OutboxStats implements Outbox.
func (m *Memory) OutboxStats(context.Context) (OutboxStats, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return OutboxStats{}, ErrClosed
	}
	st := OutboxStats{Depth: len(m.outbox)}
	if len(m.outbox) > 0 {
		st.Oldest = m.outbox[0].Created
	}
	return st, nil
}

// OutboxLease implements Outbox: one process has the store.
func (m *Memory) OutboxLease(context.Context, string, time.Duration) (bool, error) {
	return !m.isClosed(), nil
}

func (m *Memory) isClosed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closed
}
