package testenv

import (
	"context"
	"crypto/rand"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresURL is the PostgreSQL the tests use: PARLEY_TEST_POSTGRES, or the
// server this machine kind runs at 127.0.0.1:5432 (test.sh starts it when
// it is down). Tests that need it fail, never skip, when it is missing.
//
// Tests do not use its default schema: they call PostgresSchema.
func PostgresURL() string {
	if v := os.Getenv("PARLEY_TEST_POSTGRES"); v != "" {
		return v
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// PostgresSchema returns a URL for PostgresURL's database whose search_path
// is a new, empty schema of the caller's own, dropped when the test ends.
// The database outlives every run (CI's too), so a test that migrated its
// default schema would leave it at this build's version and fail every
// older build that runs there after it ("schema version 2 is newer than
// this build supports"); a schema per test also keeps parallel tests from
// seeing each other's rows.
func PostgresSchema(t testing.TB) string {
	t.Helper()
	schema := "parley_test_" + strings.ToLower(rand.Text())
	exec(t, "CREATE SCHEMA "+schema)
	t.Cleanup(func() { exec(t, "DROP SCHEMA "+schema+" CASCADE") })
	base := PostgresURL()
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return base + " search_path=" + schema // key=value form
	}
	q := u.Query()
	q.Set("search_path", schema) // pgx sends unknown parameters as run-time settings
	u.RawQuery = q.Encode()
	return u.String()
}

func exec(t testing.TB, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, PostgresURL())
	if err != nil {
		t.Fatalf("this test needs PostgreSQL at %s (test.sh starts it; PARLEY_TEST_POSTGRES names another): %v", redacted(PostgresURL()), err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func redacted(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		return u.Redacted()
	}
	return dsn
}
