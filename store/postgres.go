package store

import (
	"context"
	"embed"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"math"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PostgresOptions tunes OpenPostgres. The zero value is fine for production.
type PostgresOptions struct {
	// MaxConns caps the connection pool; 0 keeps the DSN's pool_max_conns or
	// pgxpool's default.
	MaxConns int32
	// Log, if set, records schema migrations as they are applied.
	Log *slog.Logger
}

// Postgres is a Store in PostgreSQL, shareable by every node of a cluster:
// the (room, seq) key and the guard on parley_rooms.latest make a second
// activation of a room fail with ErrConflict instead of overwriting history.
type Postgres struct {
	pool   *pgxpool.Pool
	closed atomic.Bool
}

var _ Store = (*Postgres)(nil)

// pgConnectTimeout bounds each connection attempt when the DSN sets no
// connect_timeout, so a silently dropped SYN cannot stall start-up or a
// room's Commit for the kernel's two minutes.
const pgConnectTimeout = 10 * time.Second

// pgTrimBatch caps the deletions of one Trim transaction, which holds the
// room's row lock and so delays that room's Commits while it runs.
const pgTrimBatch = 1000

// pgTrimRoomsPage is how many due rooms one Trim query fetches at a time.
const pgTrimRoomsPage = 500

// pgMigrationLock is the pg_advisory_xact_lock key serialising migrations
// of nodes starting together ("parley" in ASCII).
const pgMigrationLock int64 = 0x7061726c6579

//go:embed migrations/postgres/*.sql
var pgMigrationFS embed.FS

type pgMigration struct {
	version int
	name    string
	sql     string
}

// pgMigrations is the ordered schema history, read from
// migrations/postgres/NNNN_name.sql. To change the schema, add the next file;
// never edit one that has shipped.
var pgMigrations = sync.OnceValues(func() ([]pgMigration, error) {
	const dir = "migrations/postgres"
	entries, err := fs.ReadDir(pgMigrationFS, dir)
	if err != nil {
		return nil, err
	}
	var migs []pgMigration
	for _, e := range entries {
		num, name, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration file %s is not named NNNN_name.sql", e.Name())
		}
		sql, err := fs.ReadFile(pgMigrationFS, path.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		migs = append(migs, pgMigration{version: v, name: name, sql: string(sql)})
	}
	slices.SortFunc(migs, func(a, b pgMigration) int { return a.version - b.version })
	for i, m := range migs {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration versions must run 1, 2, 3…: found %d at position %d", m.version, i+1)
		}
	}
	return migs, nil
})

// OpenPostgres connects to dsn (a postgres:// URL or key=value string) and
// brings the schema up to date. It fails within ctx's deadline when the
// server is unreachable.
func OpenPostgres(ctx context.Context, dsn string, opts PostgresOptions) (*Postgres, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("store: bad PostgreSQL URL in -store: %w", err)
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = pgConnectTimeout
	}
	where := fmt.Sprintf("%s:%d/%s", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: PostgreSQL at %s: %w (check -store)", where, err)
	}
	// The pool connects lazily; find out now rather than at the first Commit.
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: connect to PostgreSQL at %s: %w; check the -store URL and that the server is up and reachable", where, err)
	}
	if err := migratePostgres(ctx, pool, opts.Log); err != nil {
		pool.Close()
		return nil, fmt.Errorf("store: migrate PostgreSQL schema at %s: %w", where, err)
	}
	return &Postgres{pool: pool}, nil
}

// migratePostgres applies the missing migrations in one transaction holding
// an advisory lock, so nodes starting together apply each exactly once and a
// failed migration leaves the schema as it was.
func migratePostgres(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) error {
	migs, err := pgMigrations()
	if err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, pgMigrationLock); err != nil {
			return fmt.Errorf("take migration lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS parley_schema_migrations (
			version    integer     PRIMARY KEY,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`); err != nil {
			return err
		}
		rows, _ := tx.Query(ctx, `SELECT version FROM parley_schema_migrations`)
		done, err := pgx.CollectRows(rows, pgx.RowTo[int32])
		if err != nil {
			return fmt.Errorf("read applied migrations: %w", err)
		}
		// A newer build has changed the schema in ways this one does not
		// know; writing to it could break that build's invariants.
		if newest := slices.Max(append(done, 0)); int(newest) > len(migs) {
			return fmt.Errorf("schema version %d is newer than this build supports (%d); run a newer parley", newest, len(migs))
		}
		for _, m := range migs {
			if slices.Contains(done, int32(m.version)) {
				continue
			}
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return fmt.Errorf("migration %04d_%s: %w", m.version, m.name, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO parley_schema_migrations (version) VALUES ($1)`, m.version); err != nil {
				return fmt.Errorf("record migration %d: %w", m.version, err)
			}
			if log != nil {
				log.Info("store: applied PostgreSQL migration", "version", m.version, "name", m.name)
			}
		}
		return nil
	})
}

// appendSQL appends a batch's messages in one statement, hence one round
// trip (and, for a batch of messages only, one transaction). The guard CTE
// raises the room's latest only if the batch follows it, and it row-locks
// the room either way, so concurrent writers of one room queue up and every
// loser sees the winner's latest: no row comes out of the guard, nothing is
// inserted, and Commit reports ErrConflict. A unique violation on (room,
// seq) (rows beyond latest, which only manual edits could leave) also fails
// the whole statement.
//
// appendBodiesSQL is the same with bodies. Posts have none, and a bytea[]
// of NULLs costs pgx an allocation per element: without it, a batch of
// posts costs what it did before messages had bodies.
const (
	appendSQL = appendGuard + `
INSERT INTO parley_messages (room, seq, time, sender, text, client_msg_id, sender_kind)
SELECT $1, m.seq, m.time, m.sender, m.text, m.client_msg_id, m.sender_kind
FROM guard, unnest($5::bigint[], $6::timestamptz[], $7::text[], $8::text[], $9::text[], $10::smallint[])
	AS m(seq, time, sender, text, client_msg_id, sender_kind)`

	appendBodiesSQL = appendGuard + `
INSERT INTO parley_messages (room, seq, time, sender, text, client_msg_id, sender_kind, body)
SELECT $1, m.seq, m.time, m.sender, m.text, m.client_msg_id, m.sender_kind, m.body
FROM guard, unnest($5::bigint[], $6::timestamptz[], $7::text[], $8::text[], $9::text[], $10::smallint[], $11::bytea[])
	AS m(seq, time, sender, text, client_msg_id, sender_kind, body)`

	appendGuard = `
WITH guard AS (
	INSERT INTO parley_rooms AS r (room, latest, count) VALUES ($1, $3, $4)
	ON CONFLICT (room) DO UPDATE SET latest = EXCLUDED.latest, count = r.count + EXCLUDED.count
	WHERE r.latest < $2
	RETURNING 1
)`
)

const upsertRoomSQL = `
INSERT INTO parley_room_records (room, kind, title, topic, created_by, created_at, peer, deleted, members, read_positions)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (room) DO UPDATE SET kind = EXCLUDED.kind, title = EXCLUDED.title, topic = EXCLUDED.topic,
	created_by = EXCLUDED.created_by, created_at = EXCLUDED.created_at, peer = EXCLUDED.peer,
	deleted = EXCLUDED.deleted, members = EXCLUDED.members, read_positions = EXCLUDED.read_positions`

const upsertMembersSQL = `
INSERT INTO parley_members (room, username, role, invited, invited_by, since, banned_until, muted_until, read_seq, mentions)
SELECT $1, u.username, u.role, u.invited, u.invited_by, u.since, u.banned_until, u.muted_until, u.read_seq, u.mentions
FROM unnest($2::text[], $3::smallint[], $4::boolean[], $5::text[], $6::timestamptz[], $7::timestamptz[], $8::timestamptz[], $9::bigint[], $10::bytea[])
	AS u(username, role, invited, invited_by, since, banned_until, muted_until, read_seq, mentions)
ON CONFLICT (room, username) DO UPDATE SET role = EXCLUDED.role, invited = EXCLUDED.invited,
	invited_by = EXCLUDED.invited_by, since = EXCLUDED.since,
	banned_until = EXCLUDED.banned_until, muted_until = EXCLUDED.muted_until,
	read_seq = EXCLUDED.read_seq, mentions = EXCLUDED.mentions`

const deleteMembersSQL = `DELETE FROM parley_members WHERE room = $1 AND username = ANY($2::text[])`

// Commit implements Store. PostgreSQL keeps times to the microsecond;
// finer precision is truncated. A batch of messages only is one statement
// (appendSQL); one with state or outbox entries is a transaction that sends all its
// statements at once.
func (p *Postgres) Commit(ctx context.Context, b Batch) error {
	if err := checkBatch(b); err != nil {
		return err
	}
	msgs := b.Messages
	if p.closed.Load() {
		return commitError(b, ErrClosed)
	}
	if len(msgs) > 0 {
		if msgs[0].Seq == 0 {
			// Latest is never below 0, so seq 0 can never follow it.
			return commitError(b, ErrConflict)
		}
		if last := msgs[len(msgs)-1].Seq; last > math.MaxInt64 {
			return commitError(b, fmt.Errorf("seq %d does not fit PostgreSQL bigint", last))
		}
	}
	var err error
	switch {
	case b.Info == nil && len(b.Members) == 0 && len(b.Rewrites) == 0 && len(msgs) == 0 && len(b.Outbox) == 0:
		return nil
	case b.Info == nil && len(b.Members) == 0 && len(b.Rewrites) == 0 && len(b.Outbox) == 0:
		var tag pgconn.CommandTag
		sql, args := appendStatement(b.Room, msgs)
		tag, err = p.pool.Exec(ctx, sql, args...)
		if err == nil {
			err = appended(tag, len(msgs))
		}
	default:
		err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error { return commitState(ctx, tx, b) })
	}
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "23505": // unique_violation
		err = ErrConflict
	case err != nil && !errors.Is(err, ErrConflict):
		err = p.fail(err)
	}
	if err != nil {
		return commitError(b, err)
	}
	return nil
}

// commitState sends a batch with state in one round trip inside tx. On a
// conflict the statements after the append run too, and are rolled back
// with it.
func commitState(ctx context.Context, tx pgx.Tx, b Batch) error {
	var q pgx.Batch
	if n := len(b.Messages); n > 0 {
		sql, args := appendStatement(b.Room, b.Messages)
		q.Queue(sql, args...).Exec(func(tag pgconn.CommandTag) error {
			return appended(tag, n)
		})
	}
	if r := b.Info; r != nil {
		q.Queue(upsertRoomSQL, b.Room, int16(r.Kind), r.Title, r.Topic, r.CreatedBy, r.CreatedAt, r.Peer, r.Deleted, int64(r.Members), r.ReadPositions)
	}
	// One statement may not change a row twice, so only each user's last
	// record goes out, as applying them in order would leave it; sorted, so
	// that two transactions writing the same users lock their rows in the
	// same order rather than deadlock.
	final := make(map[string]Member, len(b.Members))
	for _, m := range b.Members {
		final[m.User] = m
	}
	var gone, users, invitedBy []string
	var roles []int16
	var invited []bool
	var since []time.Time
	var banned, muted []*time.Time
	var readSeqs []int64
	var mentions [][]byte
	for _, user := range slices.Sorted(maps.Keys(final)) {
		m := final[user]
		if m.Empty() {
			gone = append(gone, user)
			continue
		}
		users, roles, invited, invitedBy = append(users, user), append(roles, int16(m.Role)), append(invited, m.Invited), append(invitedBy, m.InvitedBy)
		since, banned, muted = append(since, m.Since), append(banned, pgOptionalTime(m.BannedUntil)), append(muted, pgOptionalTime(m.MutedUntil))
		readSeqs, mentions = append(readSeqs, int64(m.ReadSeq)), append(mentions, pgSeqs(m.Mentions))
	}
	if len(gone) > 0 {
		q.Queue(deleteMembersSQL, b.Room, gone)
	}
	if len(users) > 0 {
		q.Queue(upsertMembersSQL, b.Room, users, roles, invited, invitedBy, since, banned, muted, readSeqs, mentions)
	}
	if len(b.Rewrites) > 0 {
		queueRewrites(&q, b)
	}
	if len(b.Outbox) > 0 {
		queueOutbox(&q, b)
	}
	return tx.SendBatch(ctx, &q).Close()
}

// rewriteSQL overwrites messages in place. The old row version stays in
// the table's heap until VACUUM reclaims it (autovacuum does, in time);
// no query sees it.
const rewriteSQL = `
UPDATE parley_messages AS p SET time = m.time, sender = m.sender, text = m.text,
	client_msg_id = m.client_msg_id, sender_kind = m.sender_kind, body = m.body
FROM unnest($2::bigint[], $3::timestamptz[], $4::text[], $5::text[], $6::text[], $7::smallint[], $8::bytea[])
	AS m(seq, time, sender, text, client_msg_id, sender_kind, body)
WHERE p.room = $1 AND p.seq = m.seq`

// queueRewrites queues a batch's rewrites, each seq's last one only (one
// statement may not change a row twice), sorted so that row locks are
// taken in one order.
func queueRewrites(q *pgx.Batch, b Batch) {
	final := make(map[uint64]*Message, len(b.Rewrites))
	for i := range b.Rewrites {
		final[b.Rewrites[i].Seq] = &b.Rewrites[i]
	}
	var seqs []int64
	var times []time.Time
	var senders, texts, ids []string
	var kinds []int16
	var bodies [][]byte
	for _, seq := range slices.Sorted(maps.Keys(final)) {
		m := final[seq]
		seqs, times, senders, texts = append(seqs, int64(seq)), append(times, m.Time), append(senders, m.Sender), append(texts, m.Text)
		ids, kinds, bodies = append(ids, m.ClientMsgID), append(kinds, int16(m.SenderKind)), append(bodies, m.Body)
	}
	q.Queue(rewriteSQL, b.Room, seqs, times, senders, texts, ids, kinds, bodies)
}

// pgSeqs and seqsOfPg keep a list of seqs in one bytea (big-endian
// uint64s): an array per row would not survive unnest.
func pgSeqs(seqs []uint64) []byte {
	b := make([]byte, 0, 8*len(seqs))
	for _, s := range seqs {
		b = binary.BigEndian.AppendUint64(b, s)
	}
	return b
}

func seqsOfPg(b []byte) []uint64 {
	var out []uint64
	for ; len(b) >= 8; b = b[8:] {
		out = append(out, binary.BigEndian.Uint64(b))
	}
	return out
}

// pgOptionalTime stores a zero time (not banned, not muted) as NULL.
func pgOptionalTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// appendStatement returns appendSQL or appendBodiesSQL and its arguments.
func appendStatement(room string, msgs []Message) (string, []any) {
	n := len(msgs)
	seqs := make([]int64, n)
	times := make([]time.Time, n)
	senders := make([]string, n)
	texts := make([]string, n)
	ids := make([]string, n)
	kinds := make([]int16, n)
	var bodies [][]byte
	for i := range msgs {
		m := &msgs[i]
		seqs[i], times[i], senders[i], texts[i], ids[i], kinds[i] =
			int64(m.Seq), m.Time, m.Sender, m.Text, m.ClientMsgID, int16(m.SenderKind)
		if len(m.Body) > 0 { // else NULL, which reads back as nil
			if bodies == nil {
				bodies = make([][]byte, n)
			}
			bodies[i] = m.Body
		}
	}
	args := []any{room, int64(msgs[0].Seq), int64(msgs[n-1].Seq), int64(n), seqs, times, senders, texts, ids, kinds}
	if bodies == nil {
		return appendSQL, args
	}
	return appendBodiesSQL, append(args, bodies)
}

// appended reads the outcome of appendSQL or appendBodiesSQL.
func appended(tag pgconn.CommandTag, n int) error {
	switch tag.RowsAffected() {
	case 0:
		return ErrConflict
	case int64(n):
		return nil
	}
	return fmt.Errorf("stored %d of %d messages", tag.RowsAffected(), n) // cannot happen: one statement
}

const selectMessage = `SELECT seq, time, sender, text, client_msg_id, sender_kind, body FROM parley_messages `

// After implements Store.
func (p *Postgres) After(ctx context.Context, room string, after uint64, limit int) ([]Message, error) {
	if p.closed.Load() {
		return nil, fmt.Errorf("store: read %q after %d: %w", room, after, ErrClosed)
	}
	if limit <= 0 || after >= math.MaxInt64 {
		return nil, nil
	}
	msgs, err := p.query(ctx, room, false, selectMessage+`WHERE room = $1 AND seq > $2 ORDER BY seq LIMIT $3`,
		room, int64(after), int64(limit))
	if err != nil {
		return nil, fmt.Errorf("store: read %q after %d: %w", room, after, err)
	}
	return msgs, nil
}

// Before implements Store.
func (p *Postgres) Before(ctx context.Context, room string, before uint64, limit int) ([]Message, error) {
	if p.closed.Load() {
		return nil, fmt.Errorf("store: read %q before %d: %w", room, before, ErrClosed)
	}
	if limit <= 0 {
		return nil, nil
	}
	var msgs []Message
	var err error
	// Two statements rather than "$2 = 0 OR seq < $2", which a generic plan
	// could not turn into an index bound.
	if before == 0 || before > math.MaxInt64 {
		msgs, err = p.query(ctx, room, true, selectMessage+`WHERE room = $1 ORDER BY seq DESC LIMIT $2`,
			room, int64(limit))
	} else {
		msgs, err = p.query(ctx, room, true, selectMessage+`WHERE room = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3`,
			room, int64(before), int64(limit))
	}
	if err != nil {
		return nil, fmt.Errorf("store: read %q before %d: %w", room, before, err)
	}
	return msgs, nil
}

func (p *Postgres) query(ctx context.Context, room string, reverse bool, sql string, args ...any) ([]Message, error) {
	rows, err := p.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, p.fail(err)
	}
	var msgs []Message
	var seq int64
	var kind int16
	m := Message{Room: room}
	_, err = pgx.ForEachRow(rows, []any{&seq, &m.Time, &m.Sender, &m.Text, &m.ClientMsgID, &kind, &m.Body}, func() error {
		m.Seq = uint64(seq)
		m.Time = m.Time.UTC()
		m.SenderKind = uint8(kind)
		msgs = append(msgs, m)
		return nil
	})
	if err != nil {
		return nil, p.fail(err)
	}
	if reverse {
		slices.Reverse(msgs)
	}
	return msgs, nil
}

// Bounds implements Store.
func (p *Postgres) Bounds(ctx context.Context, room string) (Bounds, error) {
	if p.closed.Load() {
		return Bounds{}, fmt.Errorf("store: bounds of %q: %w", room, ErrClosed)
	}
	var latest, oldest int64
	err := p.pool.QueryRow(ctx, `
		SELECT r.latest, coalesce((SELECT m.seq FROM parley_messages m WHERE m.room = r.room ORDER BY m.seq LIMIT 1), 0)
		FROM parley_rooms r WHERE r.room = $1`, room).Scan(&latest, &oldest)
	if errors.Is(err, pgx.ErrNoRows) {
		return Bounds{}, nil
	}
	if err != nil {
		return Bounds{}, fmt.Errorf("store: bounds of %q: %w", room, p.fail(err))
	}
	return Bounds{Oldest: uint64(oldest), Latest: uint64(latest)}, nil
}

// Trim implements Store. It pages through the rooms with something to
// delete and trims each in transactions of at most pgTrimBatch rows, so it
// never locks a large range and can run while rooms are busy.
func (p *Postgres) Trim(ctx context.Context, r Retention, now time.Time) (int, error) {
	if p.closed.Load() {
		return 0, fmt.Errorf("store: trim: %w", ErrClosed)
	}
	if r.MaxCount <= 0 && r.MaxAge <= 0 {
		return 0, nil
	}
	var cutoff *time.Time
	if r.MaxAge > 0 {
		c := now.Add(-r.MaxAge)
		cutoff = &c
	}
	maxCount := int64(max(r.MaxCount, 0))
	total := 0
	after := ""
	for {
		rows, _ := p.pool.Query(ctx, `
			SELECT r.room FROM parley_rooms r
			LEFT JOIN LATERAL (
				SELECT m.time FROM parley_messages m WHERE m.room = r.room ORDER BY m.seq LIMIT 1
			) o ON true
			WHERE r.room > $1 AND (($2::bigint > 0 AND r.count > $2::bigint) OR o.time < $3::timestamptz)
			ORDER BY r.room LIMIT $4`, after, maxCount, cutoff, pgTrimRoomsPage)
		rooms, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return total, fmt.Errorf("store: trim: list rooms: %w", p.fail(err))
		}
		for _, room := range rooms {
			for {
				n, more, err := p.trimRoom(ctx, room, maxCount, cutoff)
				total += n
				if err != nil {
					return total, fmt.Errorf("store: trim %q: %w", room, p.fail(err))
				}
				if !more {
					break
				}
			}
		}
		if len(rooms) < pgTrimRoomsPage {
			return total, nil
		}
		after = rooms[len(rooms)-1]
	}
}

// trimRoom deletes up to pgTrimBatch of room's oldest messages past
// retention, reporting whether there may be more.
func (p *Postgres) trimRoom(ctx context.Context, room string, maxCount int64, cutoff *time.Time) (n int, more bool, err error) {
	err = pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		// The row lock keeps count exact against Commits and other nodes'
		// Trims of this room until commit.
		var count int64
		if err := tx.QueryRow(ctx, `SELECT count FROM parley_rooms WHERE room = $1 FOR UPDATE`, room).Scan(&count); err != nil {
			return err
		}
		excess := int64(0)
		if maxCount > 0 {
			excess = max(count-maxCount, 0)
		}
		rows, _ := tx.Query(ctx, `SELECT seq, time FROM parley_messages WHERE room = $1 ORDER BY seq LIMIT $2`, room, pgTrimBatch)
		var seq, last int64
		var t time.Time
		k := 0
		_, err := pgx.ForEachRow(rows, []any{&seq, &t}, func() error {
			if int64(k) < excess || (cutoff != nil && t.Before(*cutoff)) {
				last, k = seq, k+1
				return nil
			}
			return errStopRows
		})
		if err != nil && !errors.Is(err, errStopRows) {
			return err
		}
		if k == 0 {
			return nil
		}
		tag, err := tx.Exec(ctx, `DELETE FROM parley_messages WHERE room = $1 AND seq <= $2`, room, last)
		if err != nil {
			return err
		}
		n = int(tag.RowsAffected())
		more = k == pgTrimBatch
		_, err = tx.Exec(ctx, `UPDATE parley_rooms SET count = greatest(count - $2, 0) WHERE room = $1`, room, n)
		return err
	})
	if err != nil {
		return 0, false, err
	}
	return n, more, nil
}

// errStopRows ends a pgx.ForEachRow early.
var errStopRows = errors.New("stop")

// Close implements Store. It waits for queries in flight.
func (p *Postgres) Close() error {
	if !p.closed.Swap(true) {
		p.pool.Close()
	}
	return nil
}

// fail reports a pool error after Close as ErrClosed.
func (p *Postgres) fail(err error) error {
	if p.closed.Load() {
		return ErrClosed
	}
	return err
}
