package store

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// runRewriteContract checks Batch.Rewrites on a backend: what an edit, a
// reaction and a delete of a message write.
func runRewriteContract(t *testing.T, open func(t *testing.T) Store) {
	ctx := context.Background()

	t.Run("Rewrite", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		mustAppend(t, s, batch("r", 1, 3))
		edited := batch("r", 2, 1)[0]
		edited.Text, edited.Body = "edited text", []byte{0, 1, 2}
		// An edit event and its target's new version, in one commit.
		ev := batch("r", 4, 1)[0]
		ev.Text, ev.Body = "edited text", []byte{9}
		mustCommit(t, s, Batch{Room: "r", Messages: []Message{ev}, Rewrites: []Message{edited}})
		got := after(t, s, "r", 0, 10)
		if len(got) != 4 {
			t.Fatalf("After = %d messages, want 4", len(got))
		}
		if got[1].Text != "edited text" || !bytes.Equal(got[1].Body, []byte{0, 1, 2}) || got[1].ClientMsgID != edited.ClientMsgID {
			t.Fatalf("rewritten seq 2 = %+v", got[1])
		}
		if got[0].Text != batch("r", 1, 1)[0].Text || got[2].Text != batch("r", 3, 1)[0].Text {
			t.Fatalf("a rewrite changed other messages: %+v", got)
		}
		wantBounds(t, s, "r", Bounds{Oldest: 1, Latest: 4})
	})

	t.Run("RewriteOwnMessage", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		msgs := batch("r", 1, 2)
		erased := msgs[0]
		erased.Text = ""
		mustCommit(t, s, Batch{Room: "r", Messages: msgs, Rewrites: []Message{erased}})
		if got := after(t, s, "r", 0, 10); len(got) != 2 || got[0].Text != "" || got[1].Text != msgs[1].Text {
			t.Fatalf("After = %+v", got)
		}
	})

	t.Run("RewriteMissingIsSkipped", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		mustAppend(t, s, batch("r", 1, 2))
		gone := batch("r", 9, 1)[0]
		other := batch("other", 1, 1)[0]
		mustCommit(t, s, Batch{Room: "r", Rewrites: []Message{gone}})
		mustCommit(t, s, Batch{Room: "other", Rewrites: []Message{other}})
		if got := after(t, s, "r", 0, 10); len(got) != 2 {
			t.Fatalf("After = %+v", got)
		}
		if got := after(t, s, "other", 0, 10); len(got) != 0 {
			t.Fatalf("a rewrite created a message: %+v", got)
		}
	})

	t.Run("RewriteConflictWritesNothing", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		mustAppend(t, s, batch("r", 1, 2))
		erased := batch("r", 1, 1)[0]
		erased.Text = ""
		err := s.Commit(ctx, Batch{Room: "r", Messages: batch("r", 2, 1), Rewrites: []Message{erased}})
		if !errors.Is(err, ErrConflict) {
			t.Fatalf("Commit = %v, want ErrConflict", err)
		}
		if got := after(t, s, "r", 0, 1); got[0].Text == "" {
			t.Fatal("a conflicting batch's rewrite was applied")
		}
	})

	t.Run("RewriteOfAnotherRoomRefused", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		if err := s.Commit(ctx, Batch{Room: "r", Rewrites: []Message{batch("x", 1, 1)[0]}}); err == nil || errors.Is(err, ErrConflict) {
			t.Fatalf("Commit of another room's rewrite = %v, want a non-conflict error", err)
		}
	})
}

// runCursorContract: a member record keeps its read cursor and unread
// mentions, and reads them back from every listing.
func runCursorContract(t *testing.T, open func(t *testing.T) Store) {
	t.Run("Cursor", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		info := RoomRecord{Name: "r", Kind: KindPublic, CreatedBy: "system", Members: 2}
		bob := memberRec("r", "bob", RoleMember)
		bob.ReadSeq, bob.Mentions = 7, []uint64{9, 12, 1 << 40}
		mustCommit(t, s, Batch{Room: "r", Info: &info, Members: []Member{memberRec("r", "alice", RoleMember), bob}})
		ms, err := s.Members(context.Background(), "r", "", 10)
		if err != nil || len(ms) != 2 {
			t.Fatalf("Members = %v, %v", ms, err)
		}
		if got := ms[1]; got.ReadSeq != 7 || len(got.Mentions) != 3 || got.Mentions[2] != 1<<40 || ms[0].ReadSeq != 0 || ms[0].Mentions != nil {
			t.Fatalf("member records read back %+v", ms)
		}
		ur, err := s.UserRooms(context.Background(), "bob", "", 10)
		if err != nil || len(ur) != 1 || ur[0].Member.ReadSeq != 7 || len(ur[0].Member.Mentions) != 3 {
			t.Fatalf("UserRooms = %+v, %v", ur, err)
		}
		// The cursor moves on: the record is replaced, mentions and all.
		bob.ReadSeq, bob.Mentions = 12, nil
		mustCommit(t, s, Batch{Room: "r", Members: []Member{bob}})
		ms, _ = s.Members(context.Background(), "r", "bob", 10)
		ms2, _ := s.Members(context.Background(), "r", "alice", 10)
		if len(ms) != 0 || len(ms2) != 1 || ms2[0].ReadSeq != 12 || ms2[0].Mentions != nil {
			t.Fatalf("after the move: %+v", ms2)
		}
	})
}

func TestMemoryRewriteContract(t *testing.T) {
	runCursorContract(t, func(t *testing.T) Store {
		s := NewMemory()
		t.Cleanup(func() { s.Close() })
		return s
	})
	runRewriteContract(t, func(t *testing.T) Store {
		s := NewMemory()
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestBoltRewriteContract(t *testing.T) {
	open := func(t *testing.T) Store {
		s, err := OpenBolt(t.TempDir(), BoltOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	runRewriteContract(t, open)
	runCursorContract(t, open)
}

func TestPostgresRewriteContract(t *testing.T) {
	open := func(t *testing.T) Store { return openTestPostgres(t, testPostgresDSN(t)) }
	runRewriteContract(t, open)
	runCursorContract(t, open)
}

// secret is a text that must not survive its erasure anywhere in a file.
const secret = "the launch code is 0451-sentinel-ZQX"

// TestBoltEraseLeavesNoCopy: after a rewrite erases a text, its bytes are
// in no page of the file, free ones included (bbolt leaves the old copy of
// a rewritten page behind), while the other messages are intact.
func TestBoltEraseLeavesNoCopy(t *testing.T) {
	dir := t.TempDir()
	s, err := OpenBolt(dir, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	msgs := batch("r", 1, 50)
	msgs[20].Text = secret
	mustAppend(t, s, msgs)
	// More commits, so the page the secret was first written on is an
	// old copy too.
	for i := range 5 {
		mustAppend(t, s, batch("r", uint64(51+i), 1))
	}
	file := filepath.Join(dir, BoltFile)
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte(secret)) {
		t.Fatal("the secret is not in the file before the erase: the test proves nothing")
	}
	erased := msgs[20]
	erased.Text = ""
	mustCommit(t, s, Batch{Room: "r", Rewrites: []Message{erased}})
	raw, err = os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(secret)) {
		t.Fatal("the erased text is still in the bolt file")
	}
	got := after(t, s, "r", 0, 100)
	if len(got) != 55 || got[20].Text != "" || got[19].Text != msgs[19].Text {
		t.Fatalf("after the erase: %d messages, seq 21 %q", len(got), got[20].Text)
	}
	// And after a reopen: the file is whole.
	s.Close()
	s2, err := OpenBolt(dir, BoltOptions{})
	if err != nil {
		t.Fatalf("reopen after the erase: %v", err)
	}
	defer s2.Close()
	if got := after(t, s2, "r", 0, 100); len(got) != 55 || got[20].Text != "" {
		t.Fatalf("after reopen: %d messages", len(got))
	}
}

// TestPostgresEraseOverwritesRow: the erased text is not in the row.
func TestPostgresEraseOverwritesRow(t *testing.T) {
	dsn := testPostgresDSN(t)
	s := openTestPostgres(t, dsn)
	msgs := batch("r", 1, 3)
	msgs[1].Text = secret
	mustAppend(t, s, msgs)
	erased := msgs[1]
	erased.Text = ""
	mustCommit(t, s, Batch{Room: "r", Rewrites: []Message{erased}})
	var n int
	if err := s.pool.QueryRow(context.Background(), `SELECT count(*) FROM parley_messages WHERE text LIKE '%' || $1 || '%' OR position(convert_to($1, 'UTF8') in coalesce(body, ''::bytea)) > 0`, secret).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("%d rows still hold the erased text", n)
	}
	var text string
	if err := s.pool.QueryRow(context.Background(), `SELECT text FROM parley_messages WHERE room = 'r' AND seq = 2`).Scan(&text); err != nil || text != "" {
		t.Fatalf("row of seq 2: %q, %v", text, err)
	}
}
