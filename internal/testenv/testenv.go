// Package testenv holds what Parley's tests share across packages: a
// logger that writes to the test's log, where the test PostgreSQL is, free
// loopback addresses, and polling with a deadline. Only tests import it.
package testenv

import (
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// FreeAddrs picks n distinct free loopback addresses (host:port): all n
// listeners are open at once, so the kernel cannot hand the same port out
// twice (picked one at a time, a process's -addr and its cluster health
// port once came out equal).
func FreeAddrs(t testing.TB, n int) []string {
	t.Helper()
	addrs := make([]string, n)
	for i := range addrs {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		addrs[i] = ln.Addr().String()
	}
	return addrs
}

// WaitFor polls try until it returns nil, and fails the test with try's
// last error once d has passed.
func WaitFor(t testing.TB, d time.Duration, try func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for err := try(); err != nil; err = try() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", d, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Logger sends records at level and above to t.Log until the test ends;
// actors may log a moment later, and those lines are dropped rather than
// panicking t.Log.
func Logger(t testing.TB, level slog.Level) *slog.Logger {
	w := &writer{t: t}
	t.Cleanup(w.stop)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

type writer struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func (w *writer) stop() {
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}
