package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parleychat/parley/internal/testenv"
)

// PostgreSQL tests never skip: a missing server is a failed test, so a CI
// without one cannot silently pass.
// testPostgresDSN is a schema of the test's own (testenv.PostgresSchema).
func testPostgresDSN(t testing.TB) string { return testenv.PostgresSchema(t) }

func openTestPostgres(t testing.TB, dsn string) *Postgres {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := OpenPostgres(ctx, dsn, PostgresOptions{MaxConns: 8})
	if err != nil {
		t.Fatalf("OpenPostgres: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestPostgresReopen(t *testing.T) {
	dsn := testPostgresDSN(t)
	checkReopen(t, openTestPostgres(t, dsn), func() Store { return openTestPostgres(t, dsn) })
}

// TestPostgresFencing is two nodes' activations of one room, each with its
// own pool, racing to append: the loser must always see ErrConflict.
func TestPostgresFencing(t *testing.T) {
	dsn := testPostgresDSN(t)
	nodes := []Store{openTestPostgres(t, dsn), openTestPostgres(t, dsn)}
	t.Run("OneWinnerPerSeq", func(t *testing.T) { checkOneWinnerPerSeq(t, nodes, "contested", 15) })
	t.Run("ConcurrentAppenders", func(t *testing.T) { checkConcurrentAppenders(t, nodes, "busy") })
}

func TestPostgresUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := OpenPostgres(ctx, "postgres://postgres@127.0.0.1:1/test?sslmode=disable", PostgresOptions{})
	if err == nil {
		s.Close()
		t.Fatal("OpenPostgres of a closed port succeeded")
	}
	if ctx.Err() != nil {
		t.Fatalf("OpenPostgres used up its whole deadline: %v", err)
	}
	if !strings.Contains(err.Error(), "-store") || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("error %q does not name -store and the address", err)
	}
}

func TestPostgresBadDSN(t *testing.T) {
	_, err := OpenPostgres(context.Background(), "postgres://u:secret@h:notaport/db", PostgresOptions{})
	if err == nil || !strings.Contains(err.Error(), "-store") || strings.Contains(err.Error(), "secret") {
		t.Fatalf("OpenPostgres of a bad URL = %v, want an error naming -store without the password", err)
	}
}

func appliedMigrations(t *testing.T, dsn string) []int32 {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, _ := conn.Query(context.Background(), `SELECT version FROM parley_schema_migrations ORDER BY version`)
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		t.Fatal(err)
	}
	return versions
}

func TestPostgresMigrations(t *testing.T) {
	migs, err := pgMigrations()
	if err != nil || len(migs) == 0 {
		t.Fatalf("embedded migrations: %v, %d", err, len(migs))
	}
	var want []int32
	for _, m := range migs {
		want = append(want, int32(m.version))
	}
	dsn := testPostgresDSN(t)

	// Nodes starting together on an empty database.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			s, err := OpenPostgres(context.Background(), dsn, PostgresOptions{MaxConns: 2})
			if err != nil {
				t.Errorf("concurrent OpenPostgres: %v", err)
				return
			}
			s.Close()
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	if got := appliedMigrations(t, dsn); !slices.Equal(got, want) {
		t.Fatalf("applied migrations %v, want %v", got, want)
	}
	openTestPostgres(t, dsn).Close()
	if got := appliedMigrations(t, dsn); !slices.Equal(got, want) {
		t.Fatalf("after reopening, applied migrations %v, want %v", got, want)
	}

	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), `INSERT INTO parley_schema_migrations (version) VALUES ($1)`, len(migs)+1); err != nil {
		t.Fatal(err)
	}
	s, err := OpenPostgres(context.Background(), dsn, PostgresOptions{})
	if err == nil {
		s.Close()
		t.Fatal("OpenPostgres accepted a newer schema")
	}
	if !strings.Contains(err.Error(), "newer") {
		t.Fatalf("OpenPostgres of a newer schema = %v, want a clear refusal", err)
	}
}

// TestPostgresTrimBatches crosses pgTrimBatch within a room and
// pgTrimRoomsPage across rooms, and checks that the per-room count Trim
// relies on stays exact.
func TestPostgresTrimBatches(t *testing.T) {
	dsn := testPostgresDSN(t)
	s := openTestPostgres(t, dsn)
	const (
		rooms   = pgTrimRoomsPage*2 + 7
		perRoom = 3
		big     = pgTrimBatch*2 + 300
	)
	// Through Append for the large room; by SQL for the many small ones,
	// which would otherwise take a round trip each.
	for from := uint64(1); from <= big; from += 460 {
		mustAppend(t, s, batch("big", from, int(min(460, big-from+1))))
	}
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(context.Background(), `
		INSERT INTO parley_rooms (room, latest, count)
		SELECT 'room-' || r, $1, $1 FROM generate_series(1, $2) r`, perRoom, rooms)
	if err == nil {
		_, err = conn.Exec(context.Background(), `
			INSERT INTO parley_messages (room, seq, time, sender, text, client_msg_id)
			SELECT 'room-' || r, s, $1, 'u', 'hi', '' FROM generate_series(1, $2) r, generate_series(1, $3) s`,
			t0, rooms, perRoom)
	}
	if err != nil {
		t.Fatal(err)
	}

	if n := trim(t, s, Retention{MaxCount: 1}, t0); n != rooms*(perRoom-1)+big-1 {
		t.Fatalf("Trim = %d, want %d", n, rooms*(perRoom-1)+big-1)
	}
	wantBounds(t, s, "big", Bounds{Oldest: big, Latest: big})
	for _, r := range []int{1, pgTrimRoomsPage, pgTrimRoomsPage + 1, rooms} {
		wantBounds(t, s, fmt.Sprint("room-", r), Bounds{Oldest: perRoom, Latest: perRoom})
	}
	var drift int
	err = conn.QueryRow(context.Background(), `
		SELECT count(*) FROM parley_rooms r
		WHERE r.count <> (SELECT count(*) FROM parley_messages m WHERE m.room = r.room)`).Scan(&drift)
	if err != nil || drift != 0 {
		t.Fatalf("%d rooms with a wrong count (%v)", drift, err)
	}
	if n := trim(t, s, Retention{MaxCount: 1, MaxAge: time.Hour}, t0); n != 0 {
		t.Fatalf("second Trim = %d, want 0", n)
	}
}

// TestPostgresUpgrade opens a database at schema version 1 holding rows an
// older build wrote (no sender_kind, no body): migrations 2 and 3 add rooms' state and the outbox,
// the old rows read back with SenderKind 0 and no Body, and the
// log and state carry on from them.
func TestPostgresUpgrade(t *testing.T) {
	dsn := testPostgresDSN(t)
	migs, err := pgMigrations()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	old := batch("old", 1, 5)
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		for _, sql := range []string{
			`CREATE TABLE parley_schema_migrations (version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())`,
			migs[0].sql,
			`INSERT INTO parley_schema_migrations (version) VALUES (1)`,
			`INSERT INTO parley_rooms (room, latest, count) VALUES ('old', 5, 5)`,
		} {
			if _, err := tx.Exec(ctx, sql); err != nil {
				return err
			}
		}
		for _, m := range old {
			if _, err := tx.Exec(ctx, `INSERT INTO parley_messages (room, seq, time, sender, text, client_msg_id) VALUES ($1, $2, $3, $4, $5, $6)`,
				m.Room, int64(m.Seq), m.Time, m.Sender, m.Text, m.ClientMsgID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	s := openTestPostgres(t, dsn)
	var all []int32
	for _, m := range migs {
		all = append(all, int32(m.version))
	}
	if got := appliedMigrations(t, dsn); !slices.Equal(got, all) {
		t.Fatalf("applied migrations %v, want %v", got, all)
	}
	sameMessages(t, "old rows", after(t, s, "old", 0, 10), old)
	sameMessages(t, "old rows backwards", before(t, s, "old", 0, 10), old)
	wantNoRoom(t, s, "old")
	if err := commitMessages(s, batch("old", 5, 1)); !errors.Is(err, ErrConflict) {
		t.Fatalf("Commit of the old Latest = %v, want ErrConflict", err)
	}
	info := roomRec("old", KindPublic)
	alice := memberRec("old", "alice", RoleOwner)
	next := batch("old", 6, 2)
	next[0].SenderKind, next[0].Body = 2, []byte("joined")
	mustCommit(t, s, Batch{Room: "old", Messages: next, Info: &info, Members: []Member{alice}})
	sameMessages(t, "old and new rows", after(t, s, "old", 0, 10), append(old, next...))
	info.Latest = 7
	sameList(t, "public rooms", listPublic(t, s, "", 10), []RoomRecord{info}, sameRoom)
	sameList(t, "alice's rooms", listUserRooms(t, s, "alice", "", 10), []UserRoom{{info, alice}}, sameUserRoom)
}

// TestPostgresNamesSortBytewise: the listings' keys are collated "C"
// whatever the database's collation, so every backend pages in the same
// (byte) order; the contract's ordering checks cannot see this on a
// database whose own collation is C.
func TestPostgresNamesSortBytewise(t *testing.T) {
	dsn := testPostgresDSN(t)
	openTestPostgres(t, dsn)
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, _ := conn.Query(context.Background(), `
		SELECT table_name || '.' || column_name || ' ' || coalesce(collation_name, 'default')
		FROM information_schema.columns
		WHERE table_schema = current_schema() AND (table_name, column_name) IN
			(('parley_room_records', 'room'), ('parley_members', 'room'), ('parley_members', 'username'))
		ORDER BY 1`)
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"parley_members.room C", "parley_members.username C", "parley_room_records.room C"}
	if !slices.Equal(got, want) {
		t.Fatalf("collations %v, want %v", got, want)
	}
}
