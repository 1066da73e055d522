package store

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
)

// Open returns the Store a -store flag value names:
//
//   - "" or "bolt": durable history in dataDir (the -data flag), see OpenBolt;
//   - "memory": history that dies with the process, see NewMemory;
//   - a postgres:// or postgresql:// URL: history in PostgreSQL, shareable by
//     a cluster, see OpenPostgres.
//
// log may be nil.
func Open(ctx context.Context, spec string, dataDir string, log *slog.Logger) (Store, error) {
	var (
		s    Store
		err  error
		what string
	)
	switch {
	case spec == "" || spec == "bolt":
		var b *Bolt
		b, err = OpenBolt(dataDir, BoltOptions{Log: log})
		s, what = b, "bolt "+filepath.Join(dataDir, BoltFile)
	case spec == "memory":
		s, what = NewMemory(), "memory (history is lost on exit)"
	case strings.HasPrefix(spec, "postgres://") || strings.HasPrefix(spec, "postgresql://"):
		var p *Postgres
		p, err = OpenPostgres(ctx, spec, PostgresOptions{Log: log})
		s, what = p, "PostgreSQL "+redact(spec)
	default:
		return nil, fmt.Errorf("store: unknown -store %q: use \"bolt\" (the default: history in the -data directory), \"memory\", or a postgres://user@host:5432/db URL", redact(spec))
	}
	if err != nil {
		return nil, err
	}
	if log != nil {
		log.Info("store: opened history", "store", what)
	}
	return s, nil
}

// redact hides a password in a URL-like spec, which may end up in logs.
func redact(spec string) string {
	if u, err := url.Parse(spec); err == nil && u.User != nil {
		return u.Redacted()
	}
	if strings.Contains(spec, "@") {
		return "(a value containing credentials)"
	}
	return spec
}
