package cluster

import (
	"fmt"
	"slices"
	"testing"
)

func TestRemovedBy(t *testing.T) {
	t.Parallel()
	ids := func(s ...string) []string { return s }
	for _, c := range []struct {
		name  string
		views []view // the cluster's members, each with its report
		gone  []string
	}{
		{"one cluster: nobody goes", []view{
			{ID: "a", Members: ids("a", "b", "c")}, {ID: "b", Members: ids("a", "b", "c")}, {ID: "c", Members: ids("a", "b", "c")}}, nil},
		{"a paused member the others dropped wakes with its old view: it goes, they stay", []view{
			{ID: "a", Members: ids("a", "b"), Blocked: ids("v")}, {ID: "b", Members: ids("a", "b"), Blocked: ids("v")},
			{ID: "v", Members: ids("a", "b", "v")}}, ids("v")},
		{"it goes too once it blocked them on waking", []view{
			{ID: "a", Members: ids("a", "b"), Blocked: ids("v")}, {ID: "b", Members: ids("a", "b"), Blocked: ids("v")},
			{ID: "v", Members: ids("v"), Blocked: ids("a", "b")}}, ids("v")},
		{"a woken member that blocked the others, who kept it: it goes", []view{
			{ID: "a", Members: ids("a", "b", "v")}, {ID: "b", Members: ids("a", "b", "v")},
			{ID: "v", Members: ids("v"), Blocked: ids("a", "b")}}, ids("v")},
		{"one member dropped another that the rest still see: as split, the higher id goes", []view{
			{ID: "1", Members: ids("1", "2", "4", "5"), Blocked: ids("3")}, {ID: "2", Members: ids("1", "2", "3", "4", "5")},
			{ID: "3", Members: ids("1", "2", "3", "4", "5")}, {ID: "4", Members: ids("1", "2", "3", "4", "5")},
			{ID: "5", Members: ids("1", "2", "3", "4", "5")}}, ids("3")},
		{"everyone dropped everyone: the lowest id stays", []view{
			{ID: "a", Members: ids("a"), Blocked: ids("b", "c")}, {ID: "b", Members: ids("b"), Blocked: ids("a", "c")},
			{ID: "c", Members: ids("c"), Blocked: ids("a", "b")}}, ids("b", "c")},
		{"an id blocked long ago (a process since restarted) is no one here", []view{
			{ID: "a", Members: ids("a", "new"), Blocked: ids("old")}, {ID: "new", Members: ids("a", "new")}}, nil},
	} {
		var gone []string
		for i, self := range c.views {
			peers := slices.Delete(slices.Clone(c.views), i, i+1)
			if g, by := removedBy(self, peers); g {
				gone = append(gone, self.ID)
				if by == "" || by == self.ID {
					t.Errorf("%s: %s goes, split from %q", c.name, self.ID, by)
				}
			}
		}
		if !slices.Equal(gone, c.gone) {
			t.Errorf("%s: %v go, want %v", c.name, gone, c.gone)
		}
	}
}

// TestRemovedByHeals: whatever blocks a cluster of four holds, the members
// that do not go are pairwise unsplit, and at least one stays, when every
// member judges from the same reports.
func TestRemovedByHeals(t *testing.T) {
	t.Parallel()
	ids := []string{"a", "b", "c", "d"}
	// Each of the 12 ordered pairs may be blocked: 4,096 cases.
	for mask := 0; mask < 1<<12; mask++ {
		blocked := map[[2]string]bool{}
		k := 0
		for _, x := range ids {
			for _, y := range ids {
				if x != y {
					blocked[[2]string{x, y}] = mask&(1<<k) != 0
					k++
				}
			}
		}
		var views []view
		for _, x := range ids {
			v := view{ID: x}
			for _, y := range ids {
				if x == y || !blocked[[2]string{x, y}] {
					v.Members = append(v.Members, y)
				} else {
					v.Blocked = append(v.Blocked, y)
				}
			}
			views = append(views, v)
		}
		var stay []string
		for i, self := range views {
			if g, _ := removedBy(self, slices.Delete(slices.Clone(views), i, i+1)); !g {
				stay = append(stay, self.ID)
			}
		}
		desc := fmt.Sprintf("blocks %012b", mask)
		if len(stay) == 0 {
			t.Fatalf("%s: every member goes", desc)
		}
		for _, x := range stay {
			for _, y := range stay {
				if blocked[[2]string{x, y}] {
					t.Fatalf("%s: %s and %s both stay, split (%v)", desc, x, y, stay)
				}
			}
		}
	}
}
