package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// boltOutboxPut is one outbox entry of a Commit, encoded.
type boltOutboxPut struct {
	id, val []byte
}

// Outbox record: a version byte (outboxV1), the creation time as
// appendTimeField writes it, the room, id and type each as a uvarint length
// and bytes, then the payload, which runs to the end.
const outboxV1 = 1

func appendOutboxRecord(buf []byte, e *OutboxEntry) []byte {
	buf = slices.Grow(buf, 1+10+5+3*binary.MaxVarintLen64+len(e.Room)+len(e.ID)+len(e.Type)+len(e.Payload))
	buf = append(buf, outboxV1)
	buf = appendTimeField(buf, e.Created)
	for _, s := range [...]string{e.Room, e.ID, e.Type} {
		buf = binary.AppendUvarint(buf, uint64(len(s)))
		buf = append(buf, s...)
	}
	return append(buf, e.Payload...)
}

var errBadOutboxRecord = fmt.Errorf("%w: an outbox record that does not decode", ErrCorrupt)

func decodeOutboxRecord(v []byte) (OutboxEntry, error) {
	var e OutboxEntry
	if len(v) == 0 || len(v) > maxRecordBytes || v[0] != outboxV1 {
		return e, errBadOutboxRecord
	}
	t, rest, ok := decodeTimeField(v[1:])
	if !ok {
		return e, errBadOutboxRecord
	}
	e.Created = t
	for _, f := range [...]*string{&e.Room, &e.ID, &e.Type} {
		if *f, rest, ok = decodeString(rest); !ok {
			return e, errBadOutboxRecord
		}
	}
	e.Payload = slices.Clone(rest)
	return e, nil
}

// applyOutbox appends a Commit's outbox entries after everything already
// there: the bucket's sequence only grows, so commit order is key order.
func applyOutbox(tx *bolt.Tx, c *boltCommit) error {
	ob, ids := tx.Bucket(bucketOutbox), tx.Bucket(bucketOutboxIDs)
	ob.FillPercent = 1.0
	for _, e := range c.outbox {
		n, err := ob.NextSequence()
		if err != nil {
			return err
		}
		key := seqKey(n)
		if err := ob.Put(key, e.val); err != nil {
			return err
		}
		if err := ids.Put(e.id, key); err != nil {
			return err
		}
	}
	return nil
}

// checkOutboxBuckets reads every outbox record at open: the outbox is
// small unless the application has been unreachable for long, and a
// damaged entry would otherwise stop delivery later with no clear cause.
func checkOutboxBuckets(tx *bolt.Tx) error {
	return tx.Bucket(bucketOutbox).ForEach(func(k, v []byte) error {
		if len(k) != 8 {
			return fmt.Errorf("outbox: %w: corrupt key %x", ErrCorrupt, k)
		}
		if _, err := decodeOutboxRecord(v); err != nil {
			return fmt.Errorf("outbox entry %d: %w", binary.BigEndian.Uint64(k), err)
		}
		return nil
	})
}

// OutboxPending implements Outbox.
func (b *Bolt) OutboxPending(ctx context.Context, limit int, skip []string) ([]OutboxEntry, error) {
	if err := b.usable(ctx); err != nil {
		return nil, fmt.Errorf("store: read outbox: %w", err)
	}
	skipped := skipSet(skip)
	var out []OutboxEntry
	err := b.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketOutbox).Cursor()
		for k, v := c.First(); k != nil && len(out) < limit; k, v = c.Next() {
			e, err := decodeOutboxRecord(v)
			if err != nil {
				return fmt.Errorf("outbox entry %x: %w", k, err)
			}
			if !skipped[e.Room] {
				out = append(out, e)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: read outbox: %w", b.mapErr(err))
	}
	return out, nil
}

// OutboxDelete implements Outbox. It is one transaction (one fsync) for
// all of ids, so the deliverer deletes what it delivered in bulk.
func (b *Bolt) OutboxDelete(ctx context.Context, ids []string) error {
	if err := b.usable(ctx); err != nil {
		return fmt.Errorf("store: delete from outbox: %w", err)
	}
	if len(ids) == 0 {
		return nil
	}
	err := b.update(func(tx *bolt.Tx) error {
		ob, idx := tx.Bucket(bucketOutbox), tx.Bucket(bucketOutboxIDs)
		for _, id := range ids {
			key := idx.Get([]byte(id))
			if key == nil {
				continue
			}
			if err := ob.Delete(slices.Clone(key)); err != nil {
				return err
			}
			if err := idx.Delete([]byte(id)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: delete from outbox: %w", b.mapErr(err))
	}
	return nil
}

// OutboxStats implements Outbox.
func (b *Bolt) OutboxStats(ctx context.Context) (OutboxStats, error) {
	if err := b.usable(ctx); err != nil {
		return OutboxStats{}, fmt.Errorf("store: outbox stats: %w", err)
	}
	var st OutboxStats
	err := b.view(func(tx *bolt.Tx) error {
		ob := tx.Bucket(bucketOutbox)
		st.Depth = tx.Bucket(bucketOutboxIDs).Stats().KeyN
		if k, v := ob.Cursor().First(); k != nil {
			e, err := decodeOutboxRecord(v)
			if err != nil {
				return err
			}
			st.Oldest = e.Created
		}
		return nil
	})
	if err != nil {
		return OutboxStats{}, fmt.Errorf("store: outbox stats: %w", b.mapErr(err))
	}
	return st, nil
}

// OutboxLease implements Outbox: the file lock already makes this process
// the only one.
func (b *Bolt) OutboxLease(ctx context.Context, _ string, _ time.Duration) (bool, error) {
	if err := b.usable(ctx); err != nil {
		return false, fmt.Errorf("store: outbox lease: %w", err)
	}
	return true, nil
}
