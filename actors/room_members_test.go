package actors

import (
	"fmt"
	"slices"
	"testing"
)

// TestJoinOrder: users stay in the order they came through leaves (holes)
// and the compaction that fills them; one who comes back is last.
func TestJoinOrder(t *testing.T) {
	var o joinOrder
	var want []string
	for i := range 200 {
		u := fmt.Sprintf("u%03d", i)
		o.add(u)
		want = append(want, u)
	}
	for i := 0; i < 200; i += 3 { // a third leave: holes
		o.remove(fmt.Sprintf("u%03d", i))
	}
	for i := 1; i < 200; i += 3 { // another third: past half, compacted
		o.remove(fmt.Sprintf("u%03d", i))
	}
	o.remove("nobody")
	o.add("u000") // back, at the end
	want = slices.DeleteFunc(want, func(u string) bool { var i int; fmt.Sscanf(u, "u%d", &i); return i%3 != 2 })
	want = append(want, "u000")
	got := slices.DeleteFunc(slices.Clone(o.users), func(u string) bool { return u == "" })
	if !slices.Equal(got, want) {
		t.Fatalf("order %q\nwant  %q", got, want)
	}
	if len(o.users) > 2*len(want) {
		t.Errorf("%d slots for %d users: holes were not filled", len(o.users), len(want))
	}
	for u, i := range o.at {
		if o.users[i] != u {
			t.Fatalf("index of %s is %d, which holds %q", u, i, o.users[i])
		}
	}
}
