package store

import (
	"context"
	"fmt"
	"time"
)

// The outbox holds what the application must be told (webhooks), written in
// the same transaction as the events it tells of (Batch.Outbox): an event is
// stored if and only if its entries are, so a crash between the two can
// neither lose a webhook nor announce an event that was never stored.
// Entries stay until the deliverer deletes them after the application
// acknowledged them, which makes delivery at least once.

// OutboxEntry is one webhook waiting to be delivered.
type OutboxEntry struct {
	// ID is unique across the outbox ("<room>/<seq>/<n>"): the receiver's
	// way to recognise a redelivery.
	ID   string
	Room string
	Type string
	// Payload is the JSON body sent as it is.
	Payload []byte
	Created time.Time
}

// OutboxStats describes the outbox for metrics.
type OutboxStats struct {
	Depth int
	// Oldest is when the first waiting entry (in commit order) was
	// created; zero when empty.
	Oldest time.Time
}

// Outbox is the store's side of webhook delivery.
type Outbox interface {
	// OutboxPending returns up to limit entries, oldest first, leaving out
	// the rooms in skip (rooms whose delivery is failing, so that their
	// backlog does not hide other rooms' entries). The entries of one room
	// come in the order they were committed.
	OutboxPending(ctx context.Context, limit int, skip []string) ([]OutboxEntry, error)
	// OutboxDelete deletes delivered entries; unknown ids are ignored.
	OutboxDelete(ctx context.Context, ids []string) error
	// OutboxStats reports the outbox's depth and oldest entry.
	OutboxStats(ctx context.Context) (OutboxStats, error)
	// OutboxLease takes or renews, for ttl, the right to deliver, and
	// reports whether holder has it. Only one deliverer of a shared store
	// (several nodes on one PostgreSQL) may send at a time, or two could
	// send one room's entries out of order; a store only one process can
	// open always grants it.
	OutboxLease(ctx context.Context, holder string, ttl time.Duration) (bool, error)
}

// checkOutbox enforces, for every backend, what an entry must be.
func checkOutbox(b Batch) error {
	for _, e := range b.Outbox {
		if e.ID == "" || e.Type == "" || e.Room != b.Room {
			return fmt.Errorf("store: commit to %q: outbox entry %q of type %q for room %q", b.Room, e.ID, e.Type, e.Room)
		}
		if err := storable("outbox entry", e.ID, e.Type); err != nil {
			return fmt.Errorf("store: commit to %q: %w", b.Room, err)
		}
	}
	return nil
}

func skipSet(skip []string) map[string]bool {
	if len(skip) == 0 {
		return nil
	}
	m := make(map[string]bool, len(skip))
	for _, r := range skip {
		m[r] = true
	}
	return m
}
