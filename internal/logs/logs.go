// Package logs holds the slog handlers Parley wraps around the operator's:
// one that drops records below a level (for a library's chatter), and one
// that throttles a line repeated again and again (a client sending garbage
// in a loop, a dead cluster peer polled twice a second) to a few per
// interval and a count. Both are safe for concurrent use, as slog requires.
package logs

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// MinLevel returns h without the records below min.
func MinLevel(h slog.Handler, min slog.Level) slog.Handler { return minLevel{h, min} }

type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(a), h.min}
}

func (h minLevel) WithGroup(g string) slog.Handler { return minLevel{h.Handler.WithGroup(g), h.min} }

// Throttle returns h writing at most burst records with the same level and
// message per interval; the others are counted, and the first record of
// that kind written after the interval carries the count of those dropped
// as "suppressed". Records differ only by level and message here, not by
// their attributes: a flood from many connections is one flood. Handlers
// derived with WithAttrs and WithGroup share the counts.
func Throttle(h slog.Handler, interval time.Duration, burst int) slog.Handler {
	return &throttle{h: h, s: &throttleState{interval: interval, burst: burst, kinds: make(map[throttleKey]*throttleKind)}}
}

type throttle struct {
	h slog.Handler
	s *throttleState
}

type throttleState struct {
	interval time.Duration
	burst    int
	mu       sync.Mutex
	kinds    map[throttleKey]*throttleKind
}

type throttleKey struct {
	level slog.Level
	msg   string
}

type throttleKind struct {
	start      time.Time // of the current interval
	written    int       // in the current interval
	suppressed int       // since the last record written
}

// maxKinds bounds the kinds remembered; past it, stale ones are dropped.
const maxKinds = 4096

func (t *throttle) Enabled(ctx context.Context, l slog.Level) bool { return t.h.Enabled(ctx, l) }

func (t *throttle) Handle(ctx context.Context, r slog.Record) error {
	n, ok := t.s.admit(throttleKey{r.Level, r.Message}, r.Time)
	if !ok {
		return nil
	}
	if n > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int("suppressed", n))
	}
	return t.h.Handle(ctx, r)
}

// admit reports whether a record of kind k at now is written, and how many
// of its kind were dropped since the last one written.
func (s *throttleState) admit(k throttleKey, now time.Time) (int, bool) {
	if now.IsZero() {
		now = time.Now()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	kd := s.kinds[k]
	if kd == nil {
		if len(s.kinds) >= maxKinds {
			for key, old := range s.kinds {
				if now.Sub(old.start) > s.interval && old.suppressed == 0 {
					delete(s.kinds, key)
				}
			}
		}
		kd = &throttleKind{start: now}
		s.kinds[k] = kd
	}
	if now.Sub(kd.start) >= s.interval {
		kd.start, kd.written = now, 0
	}
	if kd.written >= s.burst {
		kd.suppressed++
		return 0, false
	}
	kd.written++
	n := kd.suppressed
	kd.suppressed = 0
	return n, true
}

func (t *throttle) WithAttrs(a []slog.Attr) slog.Handler {
	return &throttle{h: t.h.WithAttrs(a), s: t.s}
}

func (t *throttle) WithGroup(g string) slog.Handler {
	return &throttle{h: t.h.WithGroup(g), s: t.s}
}
