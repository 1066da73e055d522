// Package store owns what Parley keeps: every event a room acknowledged, by
// room and sequence number (the room's log), and the state derived from it
// (rooms and their members: rooms.go), behind one interface.
//
// A room is the only writer of its own log and state: it assigns sequence
// numbers and commits its events and their effects in batches (group
// commit), atomically. Backends must keep (room, seq) unique and reject a
// batch that reuses one with ErrConflict, which is what fences two
// activations of one room in a cluster. Every method is safe for
// concurrent use by many rooms.
//
// Backends: NewMemory (tests, and -store memory), and the durable ones that
// Open picks from a -store value.
package store

import (
	"context"
	"errors"
	"time"
)

// ErrConflict reports that a batch reused a sequence number already stored
// for that room: another writer got there first. Nothing of the batch is
// stored.
var ErrConflict = errors.New("store: sequence number already taken")

// ErrClosed reports a call after Close.
var ErrClosed = errors.New("store: closed")

// ErrCorrupt reports history that cannot be read because what is stored is
// damaged (a bolt file with bad pages or records). The error wrapping it
// names the file and what was wrong; retrying does not help.
var ErrCorrupt = errors.New("store: history is damaged")

// Message is one event of a room's log: a post (Text), or a change to the
// room (Body).
type Message struct {
	Room        string
	Seq         uint64
	Time        time.Time
	Sender      string
	Text        string
	ClientMsgID string
	// SenderKind is the wire protocol's SenderKind of Sender (0: a user,
	// for events stored before kinds were).
	SenderKind uint8
	// Body is the event's structured part, encoded by the actors (a change
	// to the room: who did what to whom); opaque to the store.
	Body []byte
}

// Bounds describes what a room has stored. Both are zero for an empty room.
type Bounds struct {
	// Oldest is the smallest seq still stored (retention deletes older ones).
	Oldest uint64
	// Latest is the largest seq ever stored; it never goes back, even when
	// retention deleted every message.
	Latest uint64
}

// Retention says which messages Trim deletes. A zero field means no limit
// of that kind.
type Retention struct {
	// MaxCount keeps at most this many newest messages per room.
	MaxCount int
	// MaxAge deletes messages older than this.
	MaxAge time.Duration
}

// Store is rooms' logs and state.
type Store interface {
	// Commit stores a batch atomically (all or nothing, durable on return):
	// its messages must belong to its room and have consecutive seqs
	// following the room's Latest.
	Commit(ctx context.Context, b Batch) error
	Rooms
	Outbox
	// After returns up to limit messages of room with seq > after, ascending.
	After(ctx context.Context, room string, after uint64, limit int) ([]Message, error)
	// Before returns up to limit messages of room with seq < before (0: no
	// bound), the newest of them, in ascending order.
	Before(ctx context.Context, room string, before uint64, limit int) ([]Message, error)
	// Bounds returns the oldest and latest stored seq of room.
	Bounds(ctx context.Context, room string) (Bounds, error)
	// Trim deletes messages past retention in every room and reports how many.
	// It never changes a room's Latest.
	Trim(ctx context.Context, r Retention, now time.Time) (int, error)
	// Close releases the backend; later calls fail with ErrClosed.
	Close() error
}
