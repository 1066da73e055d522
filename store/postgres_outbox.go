package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

const insertOutboxSQL = `
INSERT INTO parley_outbox (id, room, type, payload, created)
SELECT e.id, $1, e.type, e.payload, e.created
FROM unnest($2::text[], $3::text[], $4::bytea[], $5::timestamptz[]) WITH ORDINALITY AS e(id, type, payload, created, n)
ORDER BY e.n`

// queueOutbox adds a batch's outbox entries to a commit's statements.
func queueOutbox(q *pgx.Batch, b Batch) {
	n := len(b.Outbox)
	ids, types := make([]string, n), make([]string, n)
	payloads, created := make([][]byte, n), make([]time.Time, n)
	for i, e := range b.Outbox {
		ids[i], types[i], payloads[i], created[i] = e.ID, e.Type, e.Payload, e.Created
		if payloads[i] == nil {
			payloads[i] = []byte{}
		}
	}
	q.Queue(insertOutboxSQL, b.Room, ids, types, payloads, created)
}

// OutboxPending implements Outbox.
func (p *Postgres) OutboxPending(ctx context.Context, limit int, skip []string) ([]OutboxEntry, error) {
	if p.closed.Load() {
		return nil, fmt.Errorf("store: read outbox: %w", ErrClosed)
	}
	if skip == nil {
		skip = []string{} // NULL would make the filter NULL, and skip everything
	}
	rows, _ := p.pool.Query(ctx, `SELECT id, room, type, payload, created FROM parley_outbox
		WHERE room <> ALL($2::text[]) ORDER BY pos LIMIT $1`, int64(max(limit, 0)), skip)
	var out []OutboxEntry
	var e OutboxEntry
	_, err := pgx.ForEachRow(rows, []any{&e.ID, &e.Room, &e.Type, &e.Payload, &e.Created}, func() error {
		e.Created = e.Created.UTC()
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: read outbox: %w", p.fail(err))
	}
	return out, nil
}

// OutboxDelete implements Outbox.
func (p *Postgres) OutboxDelete(ctx context.Context, ids []string) error {
	if p.closed.Load() {
		return fmt.Errorf("store: delete from outbox: %w", ErrClosed)
	}
	if len(ids) == 0 {
		return nil
	}
	if _, err := p.pool.Exec(ctx, `DELETE FROM parley_outbox WHERE id = ANY($1::text[])`, ids); err != nil {
		return fmt.Errorf("store: delete from outbox: %w", p.fail(err))
	}
	return nil
}

// OutboxStats implements Outbox.
func (p *Postgres) OutboxStats(ctx context.Context) (OutboxStats, error) {
	if p.closed.Load() {
		return OutboxStats{}, fmt.Errorf("store: outbox stats: %w", ErrClosed)
	}
	var st OutboxStats
	var depth int64
	var oldest *time.Time
	if err := p.pool.QueryRow(ctx, `SELECT count(*), (SELECT created FROM parley_outbox ORDER BY pos LIMIT 1) FROM parley_outbox`).Scan(&depth, &oldest); err != nil {
		return OutboxStats{}, fmt.Errorf("store: outbox stats: %w", p.fail(err))
	}
	st.Depth = int(depth)
	if oldest != nil {
		st.Oldest = oldest.UTC()
	}
	return st, nil
}

// OutboxLease implements Outbox with the one row of parley_outbox_lease:
// holder takes it when it is free or expired, and renews it while it
// holds it. Expiry is by the database's clock, so nodes' clocks need not
// agree.
func (p *Postgres) OutboxLease(ctx context.Context, holder string, ttl time.Duration) (bool, error) {
	if p.closed.Load() {
		return false, fmt.Errorf("store: outbox lease: %w", ErrClosed)
	}
	tag, err := p.pool.Exec(ctx, `
		INSERT INTO parley_outbox_lease AS l (id, holder, expires)
		VALUES (1, $1, now() + $2::bigint * interval '1 millisecond')
		ON CONFLICT (id) DO UPDATE SET holder = EXCLUDED.holder, expires = EXCLUDED.expires
		WHERE l.holder = EXCLUDED.holder OR l.expires < now()`, holder, ttl.Milliseconds())
	if err != nil {
		return false, fmt.Errorf("store: outbox lease: %w", p.fail(err))
	}
	return tag.RowsAffected() == 1, nil
}
