package main

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestHistQuantiles(t *testing.T) {
	h := new(hist)
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Millisecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Millisecond}, {0.9, 900 * time.Millisecond}, {0.99, 990 * time.Millisecond}, {1, time.Second}} {
		got := h.Quantile(c.q)
		if got < c.want || float64(got) > float64(c.want)*1.04 {
			t.Errorf("q%.2f = %v, want %v (+4%%)", c.q, got, c.want)
		}
	}
	if h.Summary().Max != 1000 {
		t.Errorf("max %v", h.Summary().Max)
	}
	for _, v := range []int64{0, 1, 63, 64, 65, 1 << 20, 1<<40 + 12345} {
		if i := histIndex(v); histUpper(i) < v || (i > 0 && histUpper(i-1) >= v) {
			t.Errorf("value %d in bucket %d [%d, %d]", v, i, histUpper(i-1)+1, histUpper(i))
		}
	}
}

func TestBitsetMissing(t *testing.T) {
	var want, got bitset
	ref := map[uint64]bool{}
	for range 3000 {
		n := rand.Uint64N(700)
		want.set(n)
		if rand.IntN(3) > 0 {
			got.set(n)
		} else {
			ref[n] = true
		}
	}
	for _, r := range [][2]uint64{{0, 700}, {5, 6}, {63, 129}, {100, 100}, {640, 1000}} {
		var n uint64
		for k := range ref {
			if k >= r[0] && k < r[1] && !got.has(k) {
				n++
			}
		}
		if m := got.missing(want, r[0], r[1]); m != n {
			t.Errorf("missing in %v = %d, want %d", r, m, n)
		}
	}
}

func (b bitset) has(i uint64) bool { return b.word(int(i/64))&(1<<(i%64)) != 0 }

func TestPayload(t *testing.T) {
	p := makePayload(nil, 42, 123456789*time.Nanosecond, 64)
	if len(p) != 64 {
		t.Errorf("len %d", len(p))
	}
	n, sent, ok := parsePayload(p)
	if !ok || n != 42 || sent != 123456789 {
		t.Errorf("parse %q = %d %v %v", p, n, sent, ok)
	}
	for _, bad := range []string{"", "plt ", "plt 1", "plt x 2 ", "hello 1 2 "} {
		if _, _, ok := parsePayload([]byte(bad)); ok {
			t.Errorf("parsed %q", bad)
		}
	}
}
