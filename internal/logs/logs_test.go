package logs

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestThrottleCountsWhatItDrops(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := slog.New(Throttle(slog.NewTextHandler(&buf, nil), time.Minute, 2)).With("conn", "c1")
	t0 := time.Now()
	rec := func(at time.Time, msg string) {
		r := slog.NewRecord(at, slog.LevelInfo, msg, 0)
		if err := log.Handler().Handle(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 10 {
		rec(t0.Add(time.Duration(i)*time.Millisecond), "bad frame")
	}
	rec(t0, "another line") // its own kind
	rec(t0.Add(2*time.Minute), "bad frame")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("wrote %d lines, want 2 + 1 + 1:\n%s", len(lines), buf.String())
	}
	if !strings.Contains(lines[3], "suppressed=8") || !strings.Contains(lines[3], "conn=c1") {
		t.Fatalf("the line after the interval should count the 8 dropped: %s", lines[3])
	}
	if strings.Contains(lines[0]+lines[1]+lines[2], "suppressed") {
		t.Fatalf("only the line after drops carries a count:\n%s", buf.String())
	}
}

func TestMinLevel(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := slog.New(MinLevel(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}), slog.LevelWarn))
	log.Info("chatter")
	log.With("a", 1).Warn("worth it")
	if got := buf.String(); strings.Contains(got, "chatter") || !strings.Contains(got, "worth it") {
		t.Fatalf("got %q", got)
	}
}
