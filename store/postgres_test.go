package store

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/url"
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
func testPostgresBaseDSN() string { return testenv.PostgresURL() }

func connectTestPostgres(t testing.TB) *pgx.Conn {
	t.Helper()
	dsn := testPostgresBaseDSN()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("this test needs PostgreSQL at %s (set PARLEY_TEST_POSTGRES to another URL): %v", redact(dsn), err)
	}
	return conn
}

// testPostgresDSN returns a DSN whose search_path is a new schema of its
// own, dropped when the test ends, so tests run in parallel without seeing
// each other's rows and each starts from an unmigrated database.
func testPostgresDSN(t testing.TB) string {
	t.Helper()
	conn := connectTestPostgres(t)
	defer conn.Close(context.Background())
	schema := "parley_test_" + strings.ToLower(rand.Text())
	if _, err := conn.Exec(context.Background(), "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create test schema: %v", err)
	}
	t.Cleanup(func() {
		conn := connectTestPostgres(t)
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop test schema: %v", err)
		}
	})
	base := testPostgresBaseDSN()
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return base + " search_path=" + schema
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

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
