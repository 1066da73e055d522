package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

func outboxEntry(room string, seq uint64, n int) OutboxEntry {
	return OutboxEntry{
		ID: fmt.Sprintf("%s/%d/%d", room, seq, n), Room: room, Type: "message.created",
		Payload: fmt.Appendf(nil, `{"room":%q,"seq":%d}`, room, seq),
		Created: t0.Add(time.Duration(seq) * time.Minute),
	}
}

// commitWithOutbox commits messages from..from+n-1 of room with one outbox
// entry each.
func commitWithOutbox(t testing.TB, s Store, room string, from uint64, n int) []OutboxEntry {
	t.Helper()
	msgs := batch(room, from, n)
	var ob []OutboxEntry
	for _, m := range msgs {
		ob = append(ob, outboxEntry(room, m.Seq, 0))
	}
	mustCommit(t, s, Batch{Room: room, Messages: msgs, Outbox: ob})
	return ob
}

func pending(t testing.TB, s Store, limit int, skip ...string) []OutboxEntry {
	t.Helper()
	got, err := s.OutboxPending(context.Background(), limit, skip)
	if err != nil {
		t.Fatalf("OutboxPending(%d, %v): %v", limit, skip, err)
	}
	return got
}

func sameOutbox(t testing.TB, what string, got, want []OutboxEntry) {
	t.Helper()
	ids := func(es []OutboxEntry) []string {
		var out []string
		for _, e := range es {
			out = append(out, e.ID)
		}
		return out
	}
	if len(got) != len(want) {
		t.Fatalf("%s: got %v, want %v", what, ids(got), ids(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.ID != w.ID || g.Room != w.Room || g.Type != w.Type || string(g.Payload) != string(w.Payload) || !g.Created.Equal(w.Created) {
			t.Fatalf("%s: entry %d is\n  %+v\nwant\n  %+v", what, i, g, w)
		}
	}
}

// runOutboxContract is what every backend's outbox must do: entries are
// stored with their batch or not at all, come back in commit order (so in
// order within a room), and stay until deleted.
func runOutboxContract(t *testing.T, open func(t *testing.T) Store) {
	t.Run("OutboxOrderAndDelete", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		ctx := context.Background()
		if st, err := s.OutboxStats(ctx); err != nil || st.Depth != 0 || !st.Oldest.IsZero() {
			t.Fatalf("OutboxStats of an empty outbox = %+v, %v", st, err)
		}
		var all []OutboxEntry
		all = append(all, commitWithOutbox(t, s, "a", 1, 3)...)
		all = append(all, commitWithOutbox(t, s, "b", 1, 2)...)
		all = append(all, commitWithOutbox(t, s, "a", 4, 1)...)
		// A batch of state and outbox entries only (a room created with no
		// event of its own would be one).
		info := roomRec("c", KindPublic)
		only := OutboxEntry{ID: "c/0/0", Room: "c", Type: "room.created", Payload: []byte(`{}`), Created: t0}
		mustCommit(t, s, Batch{Room: "c", Info: &info, Outbox: []OutboxEntry{only}})
		all = append(all, only)
		sameOutbox(t, "all pending", pending(t, s, 100), all)
		sameOutbox(t, "first 2", pending(t, s, 2), all[:2])
		var notA []OutboxEntry
		for _, e := range all {
			if e.Room != "a" {
				notA = append(notA, e)
			}
		}
		sameOutbox(t, "skipping a", pending(t, s, 100, "a"), notA)
		st, err := s.OutboxStats(ctx)
		if err != nil || st.Depth != len(all) || !st.Oldest.Equal(all[0].Created) {
			t.Fatalf("OutboxStats = %+v, %v; want depth %d, oldest %v", st, err, len(all), all[0].Created)
		}
		if err := s.OutboxDelete(ctx, []string{all[0].ID, all[3].ID, "no/such/id"}); err != nil {
			t.Fatalf("OutboxDelete: %v", err)
		}
		rest := slices.Concat(all[1:3], all[4:])
		sameOutbox(t, "after delete", pending(t, s, 100), rest)
		if err := s.OutboxDelete(ctx, nil); err != nil {
			t.Fatalf("OutboxDelete(nil): %v", err)
		}
		// Entries committed after a delete still come after the older ones.
		rest = append(rest, commitWithOutbox(t, s, "b", 3, 1)...)
		sameOutbox(t, "after a later commit", pending(t, s, 100), rest)
	})

	t.Run("OutboxAtomicWithBatch", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		commitWithOutbox(t, s, "r", 1, 2)
		// A batch that conflicts stores none of its entries.
		msgs := batch("r", 2, 1)
		err := s.Commit(context.Background(), Batch{Room: "r", Messages: msgs, Outbox: []OutboxEntry{outboxEntry("r", 2, 9)}})
		if !errors.Is(err, ErrConflict) {
			t.Fatalf("conflicting Commit = %v, want ErrConflict", err)
		}
		if got := pending(t, s, 100); len(got) != 2 {
			t.Fatalf("after a conflict the outbox holds %d entries, want 2", len(got))
		}
		// A bad entry fails the whole batch.
		err = s.Commit(context.Background(), Batch{Room: "r", Messages: batch("r", 3, 1), Outbox: []OutboxEntry{{ID: "x", Room: "other", Type: "t"}}})
		if err == nil {
			t.Fatal("Commit with another room's outbox entry succeeded")
		}
		wantBounds(t, s, "r", Bounds{Oldest: 1, Latest: 2})
	})

	t.Run("OutboxLease", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		ctx := context.Background()
		for range 2 { // taken, then renewed
			if ok, err := s.OutboxLease(ctx, "node-1", time.Minute); err != nil || !ok {
				t.Fatalf("OutboxLease(node-1) = %v, %v; want it granted", ok, err)
			}
		}
		if _, shared := s.(*Postgres); !shared {
			return
		}
		if ok, err := s.OutboxLease(ctx, "node-2", time.Minute); err != nil || ok {
			t.Fatalf("OutboxLease(node-2) while node-1 holds it = %v, %v; want refused", ok, err)
		}
		if ok, err := s.OutboxLease(ctx, "node-1", time.Millisecond); err != nil || !ok {
			t.Fatalf("OutboxLease(node-1) renewal = %v, %v", ok, err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			ok, err := s.OutboxLease(ctx, "node-2", time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("node-2 never got an expired lease")
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}
