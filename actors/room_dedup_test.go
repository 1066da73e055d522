package actors

import (
	"fmt"
	"strings"
	"testing"
)

func TestDedupWindowBounds(t *testing.T) {
	t.Parallel()
	t.Run("count", func(t *testing.T) {
		w := newDedupWindow(3, 1<<20)
		for i := range 5 {
			w.remember(dedupKey{"u", fmt.Sprint(i)}, uint64(i+1))
		}
		for i, want := range []bool{false, false, true, true, true} {
			if _, ok := w.lookup(dedupKey{"u", fmt.Sprint(i)}); ok != want {
				t.Errorf("id %d remembered %v, want %v", i, ok, want)
			}
		}
	})
	t.Run("bytes", func(t *testing.T) {
		// Long ids (as stored before ids were bounded) are forgotten by
		// memory, long before the count bound.
		long := strings.Repeat("x", 60000)
		w := newDedupWindow(10000, 200_000)
		for i := range 10 {
			w.remember(dedupKey{"u", long + fmt.Sprint(i)}, uint64(i+1))
		}
		if len(w.ids) != 3 || w.bytes > 200_000 {
			t.Fatalf("%d ids in %d bytes, want 3 within 200000", len(w.ids), w.bytes)
		}
		if _, ok := w.lookup(dedupKey{"u", long + "9"}); !ok {
			t.Fatal("the newest id was forgotten")
		}
	})
	t.Run("forget then remember again", func(t *testing.T) {
		w := newDedupWindow(2, 1<<20)
		a, b, c := dedupKey{"u", "a"}, dedupKey{"u", "b"}, dedupKey{"u", "c"}
		w.remember(a, 1)
		w.forget(a) // its batch failed
		w.remember(a, 2)
		w.remember(b, 3)
		if seq, ok := w.lookup(a); !ok || seq != 2 {
			t.Fatalf("a = %d, %v; want 2 (the stale entry must not evict it)", seq, ok)
		}
		w.remember(c, 4)
		if _, ok := w.lookup(a); ok {
			t.Fatal("a should be the oldest and forgotten")
		}
		if w.bytes != cost(b)+cost(c) {
			t.Fatalf("bytes %d, want %d", w.bytes, cost(b)+cost(c))
		}
	})
}
