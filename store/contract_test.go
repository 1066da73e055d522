package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// t0 is whole microseconds: PostgreSQL keeps no finer precision.
var t0 = time.Date(2025, 3, 14, 15, 9, 26, 535897000, time.UTC)

// batch returns messages seq from..from+n-1 of room, one minute apart
// starting at t0+from minutes.
func batch(room string, from uint64, n int) []Message {
	msgs := make([]Message, n)
	for i := range msgs {
		seq := from + uint64(i)
		msgs[i] = Message{
			Room:        room,
			Seq:         seq,
			Time:        t0.Add(time.Duration(seq) * time.Minute),
			Sender:      "user-" + fmt.Sprint(seq%7),
			Text:        fmt.Sprintf("message %d of %s", seq, room),
			ClientMsgID: fmt.Sprintf("c-%s-%d", room, seq),
		}
	}
	return msgs
}

// commitMessages commits a batch of messages only (posts), the room being
// the first message's.
func commitMessages(s Store, msgs []Message) error {
	room := ""
	if len(msgs) > 0 {
		room = msgs[0].Room
	}
	return s.Commit(context.Background(), Batch{Room: room, Messages: msgs})
}

func mustAppend(t testing.TB, s Store, msgs []Message) {
	t.Helper()
	if err := commitMessages(s, msgs); err != nil {
		t.Fatalf("Commit(%s %d..%d): %v", msgs[0].Room, msgs[0].Seq, msgs[len(msgs)-1].Seq, err)
	}
}

func after(t testing.TB, s Store, room string, seq uint64, limit int) []Message {
	t.Helper()
	msgs, err := s.After(context.Background(), room, seq, limit)
	if err != nil {
		t.Fatalf("After(%q, %d, %d): %v", room, seq, limit, err)
	}
	return msgs
}

func before(t testing.TB, s Store, room string, seq uint64, limit int) []Message {
	t.Helper()
	msgs, err := s.Before(context.Background(), room, seq, limit)
	if err != nil {
		t.Fatalf("Before(%q, %d, %d): %v", room, seq, limit, err)
	}
	return msgs
}

func bounds(t testing.TB, s Store, room string) Bounds {
	t.Helper()
	b, err := s.Bounds(context.Background(), room)
	if err != nil {
		t.Fatalf("Bounds(%q): %v", room, err)
	}
	return b
}

func wantBounds(t testing.TB, s Store, room string, want Bounds) {
	t.Helper()
	if got := bounds(t, s, room); got != want {
		t.Fatalf("Bounds(%q) = %+v, want %+v", room, got, want)
	}
}

func trim(t testing.TB, s Store, r Retention, now time.Time) int {
	t.Helper()
	n, err := s.Trim(context.Background(), r, now)
	if err != nil {
		t.Fatalf("Trim(%+v): %v", r, err)
	}
	return n
}

func sameMessages(t testing.TB, what string, got, want []Message) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d messages %v, want %d %v", what, len(got), seqsOf(got), len(want), seqsOf(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Room != w.Room || g.Seq != w.Seq || !g.Time.Equal(w.Time) || g.Sender != w.Sender ||
			g.Text != w.Text || g.ClientMsgID != w.ClientMsgID || g.SenderKind != w.SenderKind ||
			!bytes.Equal(g.Body, w.Body) || (len(w.Body) == 0 && g.Body != nil) {
			t.Fatalf("%s: message %d is\n  %+v\nwant\n  %+v", what, i, g, w)
		}
	}
}

func seqsOf(msgs []Message) []uint64 {
	seqs := make([]uint64, len(msgs))
	for i, m := range msgs {
		seqs[i] = m.Seq
	}
	return seqs
}

func seqRange(from, to uint64) []uint64 {
	var s []uint64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

// runContract is the behaviour every Store backend must share. open returns
// a new, empty store that the test owns.
func runContract(t *testing.T, open func(t *testing.T) Store) {
	ctx := context.Background()

	t.Run("Empty", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		wantBounds(t, s, "nobody", Bounds{})
		if m := after(t, s, "nobody", 0, 10); len(m) != 0 {
			t.Fatalf("After on empty room = %v", m)
		}
		for _, b := range []uint64{0, 1, 100} {
			if m := before(t, s, "nobody", b, 10); len(m) != 0 {
				t.Fatalf("Before(%d) on empty room = %v", b, m)
			}
		}
		if err := s.Commit(ctx, Batch{Room: "nobody"}); err != nil {
			t.Fatalf("Commit of an empty batch = %v", err)
		}
		wantBounds(t, s, "nobody", Bounds{})
		if _, ok, err := s.Room(ctx, "nobody"); ok || err != nil {
			t.Fatalf("Room after an empty batch = %v, %v; want none", ok, err)
		}
		if err := s.Commit(ctx, Batch{}); err == nil {
			t.Fatal("Commit of a batch without a room succeeded")
		}
		if n := trim(t, s, Retention{MaxCount: 1, MaxAge: time.Second}, t0); n != 0 {
			t.Fatalf("Trim of empty store = %d", n)
		}
	})

	t.Run("AppendAndRead", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		all := batch("lobby", 1, 10)
		mustAppend(t, s, all[:3])
		mustAppend(t, s, all[3:])
		wantBounds(t, s, "lobby", Bounds{Oldest: 1, Latest: 10})
		sameMessages(t, "After(0, 100)", after(t, s, "lobby", 0, 100), all)
		sameMessages(t, "After(3, 2)", after(t, s, "lobby", 3, 2), all[3:5])
		sameMessages(t, "After(9, 5)", after(t, s, "lobby", 9, 5), all[9:])
		sameMessages(t, "After(10, 5)", after(t, s, "lobby", 10, 5), nil)
		sameMessages(t, "After(0, 0)", after(t, s, "lobby", 0, 0), nil)
		sameMessages(t, "Before(0, 3)", before(t, s, "lobby", 0, 3), all[7:])
		sameMessages(t, "Before(0, 100)", before(t, s, "lobby", 0, 100), all)
		sameMessages(t, "Before(5, 10)", before(t, s, "lobby", 5, 10), all[:4])
		sameMessages(t, "Before(5, 2)", before(t, s, "lobby", 5, 2), all[2:4])
		sameMessages(t, "Before(1, 10)", before(t, s, "lobby", 1, 10), nil)
		sameMessages(t, "Before(11, 1)", before(t, s, "lobby", 11, 1), all[9:])
		sameMessages(t, "Before(1000, 2)", before(t, s, "lobby", 1000, 2), all[8:])
		sameMessages(t, "Before(0, 0)", before(t, s, "lobby", 0, 0), nil)
	})

	t.Run("Paging", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		const total = 500
		for from := uint64(1); from <= total; from += 50 {
			mustAppend(t, s, batch("paged", from, 50))
		}
		var got []uint64
		for cursor := uint64(0); ; {
			page := after(t, s, "paged", cursor, 7)
			if len(page) == 0 {
				break
			}
			if len(page) > 7 {
				t.Fatalf("After returned %d > limit 7", len(page))
			}
			got = append(got, seqsOf(page)...)
			cursor = page[len(page)-1].Seq
		}
		if !slices.Equal(got, seqRange(1, total)) {
			t.Fatalf("paging After gave %v", got)
		}
		got = nil
		for cursor := uint64(0); ; {
			page := before(t, s, "paged", cursor, 9)
			if len(page) == 0 {
				break
			}
			if !slices.IsSorted(seqsOf(page)) {
				t.Fatalf("Before page not ascending: %v", seqsOf(page))
			}
			got = append(seqsOf(page), got...)
			cursor = page[0].Seq
			if cursor == 1 {
				break
			}
		}
		if !slices.Equal(got, seqRange(1, total)) {
			t.Fatalf("paging Before gave %v", got)
		}
	})

	t.Run("Conflict", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		orig := batch("r", 1, 5)
		mustAppend(t, s, orig)
		imposter := func(from uint64, n int) []Message {
			msgs := batch("r", from, n)
			for i := range msgs {
				msgs[i].Text = "overwritten"
			}
			return msgs
		}
		for _, b := range [][]Message{imposter(5, 3), imposter(1, 1), imposter(3, 5), imposter(0, 2)} {
			if err := commitMessages(s, b); !errors.Is(err, ErrConflict) {
				t.Fatalf("Commit(%v) = %v, want ErrConflict", seqsOf(b), err)
			}
		}
		if err := commitMessages(s, batch("fresh", 0, 1)); !errors.Is(err, ErrConflict) {
			t.Fatalf("Commit of seq 0 to a new room = %v, want ErrConflict", err)
		}
		wantBounds(t, s, "fresh", Bounds{})
		mixed := append(batch("r", 6, 1), batch("other", 7, 1)...)
		gap := append(batch("r", 6, 1), batch("r", 8, 1)...)
		dup := append(batch("r", 6, 1), batch("r", 6, 1)...)
		backwards := append(batch("r", 7, 1), batch("r", 6, 1)...)
		for name, b := range map[string][]Message{"mixed rooms": mixed, "gap": gap, "duplicate": dup, "backwards": backwards} {
			err := commitMessages(s, b)
			if err == nil || errors.Is(err, ErrConflict) {
				t.Fatalf("Commit of %s batch = %v, want a non-conflict error", name, err)
			}
		}
		wantBounds(t, s, "r", Bounds{Oldest: 1, Latest: 5})
		wantBounds(t, s, "other", Bounds{})
		sameMessages(t, "after conflicts", after(t, s, "r", 0, 100), orig)
		next := batch("r", 6, 2)
		mustAppend(t, s, next)
		sameMessages(t, "after recovery", after(t, s, "r", 0, 100), append(orig, next...))
	})

	t.Run("OneWinnerPerSeq", func(t *testing.T) {
		t.Parallel()
		checkOneWinnerPerSeq(t, []Store{open(t)}, "contested", 15)
	})

	t.Run("ConcurrentAppenders", func(t *testing.T) {
		t.Parallel()
		checkConcurrentAppenders(t, []Store{open(t)}, "busy")
	})

	t.Run("RetentionByCount", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		a, b := batch("a", 1, 100), batch("b", 1, 10)
		mustAppend(t, s, a)
		mustAppend(t, s, b)
		if n := trim(t, s, Retention{MaxCount: 30}, t0); n != 70 {
			t.Fatalf("Trim(MaxCount 30) = %d, want 70", n)
		}
		wantBounds(t, s, "a", Bounds{Oldest: 71, Latest: 100})
		wantBounds(t, s, "b", Bounds{Oldest: 1, Latest: 10})
		sameMessages(t, "a after trim", after(t, s, "a", 0, 1000), a[70:])
		sameMessages(t, "a scrollback after trim", before(t, s, "a", 75, 1000), a[70:74])
		if n := trim(t, s, Retention{MaxCount: 30}, t0); n != 0 {
			t.Fatalf("second Trim(MaxCount 30) = %d, want 0", n)
		}
		if n := trim(t, s, Retention{MaxCount: 1}, t0); n != 29+9 {
			t.Fatalf("Trim(MaxCount 1) = %d, want 38", n)
		}
		wantBounds(t, s, "a", Bounds{Oldest: 100, Latest: 100})
		wantBounds(t, s, "b", Bounds{Oldest: 10, Latest: 10})
		mustAppend(t, s, batch("a", 101, 2))
		wantBounds(t, s, "a", Bounds{Oldest: 100, Latest: 102})
	})

	t.Run("RetentionByAge", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		msgs := batch("old", 1, 100) // seq i is at t0 + i minutes
		mustAppend(t, s, msgs)
		now := t0.Add(100 * time.Minute)
		if n := trim(t, s, Retention{MaxAge: 31 * time.Minute}, now); n != 68 {
			t.Fatalf("Trim(MaxAge 31m) = %d, want 68", n)
		}
		wantBounds(t, s, "old", Bounds{Oldest: 69, Latest: 100})
		sameMessages(t, "after age trim", after(t, s, "old", 0, 1000), msgs[68:])
		if n := trim(t, s, Retention{MaxAge: time.Minute}, now.Add(24*time.Hour)); n != 32 {
			t.Fatalf("Trim of everything = %d, want 32", n)
		}
		wantBounds(t, s, "old", Bounds{Latest: 100})
		sameMessages(t, "after trimming all", after(t, s, "old", 0, 1000), nil)
		sameMessages(t, "scrollback after trimming all", before(t, s, "old", 0, 1000), nil)
		if err := commitMessages(s, batch("old", 100, 1)); !errors.Is(err, ErrConflict) {
			t.Fatalf("Commit of the trimmed Latest = %v, want ErrConflict", err)
		}
		mustAppend(t, s, batch("old", 101, 1))
		wantBounds(t, s, "old", Bounds{Oldest: 101, Latest: 101})

		// Count and age together: the count limit drops seqs 1-5, age then
		// carries on from there to the first young message, seq 12.
		mustAppend(t, s, batch("both", 1, 20))
		if n := trim(t, s, Retention{MaxCount: 15, MaxAge: 10 * time.Minute}, t0.Add(22*time.Minute)); n != 11 {
			t.Fatalf("Trim(count and age) = %d, want 11", n)
		}
		wantBounds(t, s, "both", Bounds{Oldest: 12, Latest: 20})
	})

	t.Run("RoundTrip", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		ist := time.FixedZone("IST", 5*3600+1800)
		msgs := []Message{
			{Room: "ünïcödé 房间 🚀", Seq: 1, Time: t0, Sender: "", Text: "", ClientMsgID: ""},
			{Room: "ünïcödé 房间 🚀", Seq: 2, Time: t0.In(ist), Sender: "Zoë 🦊", Text: "héllo, 世界! 👋🏽 e\u0301 مرحبا", ClientMsgID: "🆔-1"},
			{Room: "ünïcödé 房间 🚀", Seq: 3, Time: time.Time{}, Sender: "s", Text: strings.Repeat("long ✓ ", 20000), ClientMsgID: "x"},
			{Room: "ünïcödé 房间 🚀", Seq: 4, Time: time.Date(2262, 4, 12, 0, 0, 0, 0, time.UTC), Sender: "tab\tnew\nline", Text: "\r\n\t\\'\"%_", ClientMsgID: "c"},
		}
		mustAppend(t, s, msgs)
		sameMessages(t, "round trip", after(t, s, msgs[0].Room, 0, 10), msgs)
		sameMessages(t, "round trip backwards", before(t, s, msgs[0].Room, 0, 10), msgs)

		bad := map[string]Message{
			"NUL in text":        {Room: "x", Seq: 1, Text: "a\x00b"},
			"invalid UTF-8":      {Room: "x", Seq: 1, Sender: "\xff"},
			"empty room":         {Room: "", Seq: 1},
			"NUL in client ID":   {Room: "x", Seq: 1, ClientMsgID: "\x00"},
			"NUL in room":        {Room: "x\x00", Seq: 1},
			"invalid UTF-8 room": {Room: "\xc3", Seq: 1},
		}
		for name, m := range bad {
			err := commitMessages(s, []Message{m})
			if err == nil || errors.Is(err, ErrConflict) {
				t.Fatalf("Commit with %s = %v, want a non-conflict error", name, err)
			}
		}
		wantBounds(t, s, "x", Bounds{})
	})

	t.Run("RoomIsolation", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		// Names that share prefixes or sort between each other catch rooms
		// leaking into neighbours through key or index ranges.
		rooms := []string{"a", "a/b", "ab", "a\u00e9", "b", "A", "a ", "room-10", "room-1", "room-100"}
		for i, r := range rooms {
			mustAppend(t, s, batch(r, 1, i+1))
		}
		excess := 0
		for i, r := range rooms {
			want := batch(r, 1, i+1)
			wantBounds(t, s, r, Bounds{Oldest: 1, Latest: uint64(i + 1)})
			sameMessages(t, "room "+r, after(t, s, r, 0, 100), want)
			sameMessages(t, "room "+r+" backwards", before(t, s, r, 0, 100), want)
			excess += max(i+1-3, 0)
		}
		if n := trim(t, s, Retention{MaxCount: 3}, t0); n != excess {
			t.Fatalf("Trim(MaxCount 3) = %d, want %d", n, excess)
		}
		for i, r := range rooms {
			want := batch(r, 1, i+1)
			sameMessages(t, "room "+r+" after trim", after(t, s, r, 0, 100), want[max(i+1-3, 0):])
		}
	})

	runRoomsContract(t, open)
	runOutboxContract(t, open)

	t.Run("Close", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		mustAppend(t, s, batch("r", 1, 3))
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		check := func(op string, err error) {
			t.Helper()
			if !errors.Is(err, ErrClosed) {
				t.Fatalf("%s after Close = %v, want ErrClosed", op, err)
			}
		}
		check("Commit", commitMessages(s, batch("r", 4, 1)))
		_, err := s.After(ctx, "r", 0, 10)
		check("After", err)
		_, err = s.Before(ctx, "r", 0, 10)
		check("Before", err)
		_, err = s.Bounds(ctx, "r")
		check("Bounds", err)
		_, err = s.Trim(ctx, Retention{MaxCount: 1}, t0)
		check("Trim", err)
		check("Commit of state", s.Commit(ctx, Batch{Room: "r", Info: &RoomRecord{Name: "r", Kind: KindPublic}}))
		check("Commit of nothing", s.Commit(ctx, Batch{Room: "r"}))
		_, _, err = s.Room(ctx, "r")
		check("Room", err)
		_, err = s.Members(ctx, "r", "", 10)
		check("Members", err)
		_, err = s.UserRooms(ctx, "u", "", 10)
		check("UserRooms", err)
		_, err = s.PublicRooms(ctx, "", 10)
		check("PublicRooms", err)
		if err := s.Close(); err != nil {
			t.Fatalf("second Close = %v, want nil", err)
		}
	})
}

// checkOneWinnerPerSeq lets every writer race for the same seq, round after
// round, and requires exactly one winner whose message is the one stored.
func checkOneWinnerPerSeq(t *testing.T, stores []Store, room string, rounds uint64) {
	const writers = 5
	for seq := uint64(1); seq <= rounds; seq++ {
		start := make(chan struct{})
		errs := make([]error, writers)
		var wg sync.WaitGroup
		for w := range writers {
			s := stores[w%len(stores)]
			wg.Go(func() {
				<-start
				errs[w] = commitMessages(s, []Message{{Room: room, Seq: seq, Time: t0, Sender: fmt.Sprint("w", w), Text: "mine"}})
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for w, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Fatalf("seq %d: writers %d and %d both won", seq, winner, w)
			case err == nil:
				winner = w
			case !errors.Is(err, ErrConflict):
				t.Fatalf("seq %d: writer %d: %v, want nil or ErrConflict", seq, w, err)
			}
		}
		if winner < 0 {
			t.Fatalf("seq %d: no writer won", seq)
		}
		got := after(t, stores[0], room, seq-1, 10)
		if len(got) != 1 || got[0].Seq != seq || got[0].Sender != fmt.Sprint("w", winner) {
			t.Fatalf("seq %d: stored %+v, want the message of winner w%d", seq, got, winner)
		}
	}
}

// checkConcurrentAppenders runs writers that each keep appending batches
// after the Latest they last saw, as competing activations of one room
// would, and checks that the stored history is exactly the union of the
// batches reported as stored: every seq once, no holes, no lost or phantom
// batch.
func checkConcurrentAppenders(t *testing.T, stores []Store, room string) {
	const (
		writers = 6
		target  = 150
	)
	ctx := context.Background()
	won := make([][]uint64, writers)
	var conflicts atomic.Int64
	var wg sync.WaitGroup
	for w := range writers {
		s := stores[w%len(stores)]
		rng := rand.New(rand.NewPCG(uint64(w), 42))
		wg.Go(func() {
			for {
				b, err := s.Bounds(ctx, room)
				if err != nil {
					t.Errorf("writer %d: Bounds: %v", w, err)
					return
				}
				if b.Latest >= target {
					return
				}
				msgs := batch(room, b.Latest+1, 1+rng.IntN(4))
				for i := range msgs {
					msgs[i].Sender = fmt.Sprint("w", w)
				}
				switch err := commitMessages(s, msgs); {
				case err == nil:
					won[w] = append(won[w], seqsOf(msgs)...)
				case errors.Is(err, ErrConflict):
					conflicts.Add(1)
				default:
					t.Errorf("writer %d: Commit: %v", w, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	// Not an assertion: how often writers collided is up to the scheduler.
	t.Logf("%d conflicts", conflicts.Load())
	stored := after(t, stores[0], room, 0, 1000)
	latest := bounds(t, stores[0], room).Latest
	if latest < target || !slices.Equal(seqsOf(stored), seqRange(1, latest)) {
		t.Fatalf("stored seqs %v, want 1..%d (>= %d) without holes", seqsOf(stored), latest, target)
	}
	owner := make(map[uint64]int)
	for w, seqs := range won {
		for _, seq := range seqs {
			if prev, dup := owner[seq]; dup {
				t.Fatalf("seq %d acknowledged to writers %d and %d", seq, prev, w)
			}
			owner[seq] = w
		}
	}
	for _, m := range stored {
		w, ok := owner[m.Seq]
		if !ok || m.Sender != fmt.Sprint("w", w) {
			t.Fatalf("stored seq %d from %s, but acknowledged to writer %d (acknowledged: %v)", m.Seq, m.Sender, w, ok)
		}
	}
	if len(owner) != len(stored) {
		t.Fatalf("%d seqs acknowledged, %d stored", len(owner), len(stored))
	}
}

// checkReopen writes through s, closes it, and requires reopen to see the
// same history, including a Latest that retention emptied and events'
// kinds and bodies, and the same rooms' state: records, members, the
// user index and the public listing.
func checkReopen(t *testing.T, s Store, reopen func() Store) {
	kept := batch("kept", 1, 40)
	kept[3].SenderKind, kept[3].Body = 2, []byte{0, 1, 2}
	kept[30].SenderKind = 1
	mustAppend(t, s, kept[:25])
	mustAppend(t, s, kept[25:])
	emptied := batch("emptied", 1, 5)
	for i := range emptied {
		emptied[i].Time = emptied[i].Time.Add(-24 * time.Hour)
	}
	mustAppend(t, s, emptied)
	if n := trim(t, s, Retention{MaxAge: time.Hour}, t0); n != 5 {
		t.Fatalf("Trim = %d, want 5", n)
	}
	keptInfo, emptiedInfo, gone := roomRec("kept", KindPublic), roomRec("emptied", KindPrivate), roomRec("gone", KindPublic)
	gone.Deleted = true
	alice := memberRec("kept", "alice", RoleOwner)
	bob := Member{Room: "kept", User: "bob", Since: t0, BannedUntil: Forever}
	mustCommit(t, s, Batch{Room: "kept", Info: &keptInfo, Members: []Member{alice, bob}})
	mustCommit(t, s, Batch{Room: "emptied", Info: &emptiedInfo, Members: []Member{memberRec("emptied", "alice", RoleMember)}})
	mustCommit(t, s, Batch{Room: "gone", Info: &gone, Members: []Member{memberRec("gone", "alice", RoleMember)}})
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s = reopen()
	defer s.Close()
	sameMessages(t, "after reopen", after(t, s, "kept", 0, 100), kept)
	wantBounds(t, s, "kept", Bounds{Oldest: 1, Latest: 40})
	wantBounds(t, s, "emptied", Bounds{Latest: 5})
	keptInfo.Latest, emptiedInfo.Latest = 40, 5
	wantRoom(t, s, keptInfo)
	wantRoom(t, s, gone)
	sameList(t, "members after reopen", listMembers(t, s, "kept", "", 10), []Member{alice, bob}, sameMember)
	sameList(t, "alice's rooms after reopen", listUserRooms(t, s, "alice", "", 10), []UserRoom{
		{emptiedInfo, memberRec("emptied", "alice", RoleMember)}, {keptInfo, alice},
	}, sameUserRoom)
	sameList(t, "public rooms after reopen", listPublic(t, s, "", 10), []RoomRecord{keptInfo}, sameRoom)
	if err := commitMessages(s, batch("kept", 40, 1)); !errors.Is(err, ErrConflict) {
		t.Fatalf("Commit of old Latest after reopen = %v, want ErrConflict", err)
	}
	if err := commitMessages(s, batch("emptied", 3, 1)); !errors.Is(err, ErrConflict) {
		t.Fatalf("Commit below trimmed Latest after reopen = %v, want ErrConflict", err)
	}
	mustAppend(t, s, batch("kept", 41, 1))
	mustAppend(t, s, batch("emptied", 6, 1))
	wantBounds(t, s, "emptied", Bounds{Oldest: 6, Latest: 6})
}

func TestMemoryContract(t *testing.T) {
	runContract(t, func(t *testing.T) Store {
		s := NewMemory()
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestBoltContract(t *testing.T) {
	runContract(t, func(t *testing.T) Store {
		s, err := OpenBolt(t.TempDir(), BoltOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestPostgresContract(t *testing.T) {
	runContract(t, func(t *testing.T) Store { return openTestPostgres(t, testPostgresDSN(t)) })
}
