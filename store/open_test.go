package store

import (
	"context"
	"strings"
	"testing"
)

func TestOpen(t *testing.T) {
	ctx := context.Background()
	pg := testPostgresDSN(t)
	for _, tc := range []struct {
		spec string
		want string // type name
	}{
		{"", "*store.Bolt"},
		{"bolt", "*store.Bolt"},
		{"memory", "*store.Memory"},
		{pg, "*store.Postgres"},
		{"postgresql" + strings.TrimPrefix(pg, "postgres"), "*store.Postgres"},
	} {
		s, err := Open(ctx, tc.spec, t.TempDir(), nil)
		if err != nil {
			t.Fatalf("Open(%q): %v", tc.spec, err)
		}
		if got := typeName(s); got != tc.want {
			t.Errorf("Open(%q) is a %s, want %s", tc.spec, got, tc.want)
		}
		mustAppend(t, s, batch("room of "+tc.spec, 1, 2)) // pg's two specs share a schema
		s.Close()
	}

	for _, tc := range []struct {
		spec, dataDir string
		want          []string
		hide          string
	}{
		{"mysql://u:secret@h/db", "", []string{"-store", "bolt", "memory", "postgres://"}, "secret"},
		{"Memory", "", []string{"-store"}, ""},
		{"bolt", "", []string{"-data"}, ""},
		{"postgres://u:secret@127.0.0.1:1/db?sslmode=disable&connect_timeout=5", "", []string{"-store"}, "secret"},
	} {
		s, err := Open(ctx, tc.spec, tc.dataDir, nil)
		if err == nil {
			s.Close()
			t.Fatalf("Open(%q, %q) succeeded", tc.spec, tc.dataDir)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Open(%q, %q) = %q, does not mention %q", tc.spec, tc.dataDir, err, w)
			}
		}
		if tc.hide != "" && strings.Contains(err.Error(), tc.hide) {
			t.Errorf("Open(%q) error %q leaks the password", tc.spec, err)
		}
	}
}

func typeName(s Store) string {
	switch s.(type) {
	case *Bolt:
		return "*store.Bolt"
	case *Memory:
		return "*store.Memory"
	case *Postgres:
		return "*store.Postgres"
	}
	return "unknown"
}
