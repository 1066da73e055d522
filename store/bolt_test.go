package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func openTestBolt(t *testing.T, dir string) *Bolt {
	t.Helper()
	s, err := OpenBolt(dir, BoltOptions{})
	if err != nil {
		t.Fatalf("OpenBolt(%s): %v", dir, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestBoltReopen(t *testing.T) {
	dir := t.TempDir()
	checkReopen(t, openTestBolt(t, dir), func() Store { return openTestBolt(t, dir) })
}

func TestBoltCreatesDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	openTestBolt(t, dir)
	if _, err := os.Stat(filepath.Join(dir, BoltFile)); err != nil {
		t.Fatal(err)
	}
}

func TestBoltNoDirectory(t *testing.T) {
	_, err := OpenBolt("", BoltOptions{})
	if err == nil || !strings.Contains(err.Error(), "-data") {
		t.Fatalf("OpenBolt(\"\") = %v, want an error naming -data", err)
	}
}

func TestBoltCorruptFile(t *testing.T) {
	garbage := make([]byte, 64<<10)
	rand.NewChaCha8([32]byte{1}).Read(garbage)
	foreign := func(path string) {
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("theirs")); return err }); err != nil {
			t.Fatal(err)
		}
	}
	for name, write := range map[string]func(path string){
		"random 64KiB":       func(path string) { os.WriteFile(path, garbage, 0o600) },
		"short":              func(path string) { os.WriteFile(path, []byte("not a database"), 0o600) },
		"zeros":              func(path string) { os.WriteFile(path, make([]byte, 16<<10), 0o600) },
		"another bbolt file": foreign,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, BoltFile)
			write(path)
			s, err := OpenBolt(dir, BoltOptions{})
			if err == nil {
				s.Close()
				t.Fatal("OpenBolt of a corrupt file succeeded")
			}
			for _, want := range []string{path, "corrupt", "-data"} {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

func TestBoltCorruptRecord(t *testing.T) {
	dir := t.TempDir()
	s := openTestBolt(t, dir)
	mustAppend(t, s, batch("r", 1, 3))
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRooms).Bucket([]byte("r")).Put(seqKey(2), []byte{99, 1, 2})
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.After(context.Background(), "r", 0, 10); err == nil || !strings.Contains(err.Error(), "seq 2") {
		t.Fatalf("After over a corrupt record = %v, want an error naming seq 2", err)
	}
}

func TestBoltLocked(t *testing.T) {
	dir := t.TempDir()
	openTestBolt(t, dir)
	done := make(chan error, 1)
	go func() {
		s, err := OpenBolt(dir, BoltOptions{})
		if err == nil {
			s.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "-data") || !strings.Contains(err.Error(), "locked") {
			t.Fatalf("second OpenBolt = %v, want a lock error naming -data", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("second OpenBolt of a locked directory hangs")
	}
}

func TestBoltFormat(t *testing.T) {
	dir := t.TempDir()
	s := openTestBolt(t, dir)
	var got []byte
	s.db.View(func(tx *bolt.Tx) error {
		got = bytes.Clone(tx.Bucket(bucketMeta).Get(keyFormat))
		return nil
	})
	if !bytes.Equal(got, []byte{byte(boltFormat)}) {
		t.Fatalf("recorded format %v, want %d", got, boltFormat)
	}
	mustAppend(t, s, batch("r", 1, 1))
	s.Close()

	// Pretend a newer parley wrote the file.
	db, err := bolt.Open(filepath.Join(dir, BoltFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyFormat, []byte{byte(boltFormat + 1)}) })
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	_, err = OpenBolt(dir, BoltOptions{})
	if err == nil || !strings.Contains(err.Error(), "newer") || !strings.Contains(err.Error(), "-data") {
		t.Fatalf("OpenBolt of a newer format = %v, want a clear refusal", err)
	}
}

// TestBoltTrimLargeRoom crosses boltTrimBatch, so trimming takes several
// transactions.
func TestBoltTrimLargeRoom(t *testing.T) {
	s := openTestBolt(t, t.TempDir())
	const total = boltTrimBatch + 2500
	for from := uint64(1); from <= total; from += 2500 {
		mustAppend(t, s, batch("big", from, 2500))
	}
	mustAppend(t, s, batch("small", 1, 5))
	if n := trim(t, s, Retention{MaxCount: 10}, t0); n != total-10 {
		t.Fatalf("Trim = %d, want %d", n, total-10)
	}
	wantBounds(t, s, "big", Bounds{Oldest: total - 9, Latest: total})
	wantBounds(t, s, "small", Bounds{Oldest: 1, Latest: 5})
	if n := trim(t, s, Retention{MaxCount: 10}, t0); n != 0 {
		t.Fatalf("second Trim = %d, want 0", n)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	for _, m := range []Message{
		{},
		{Time: t0.Add(123 * time.Nanosecond), Sender: "s", Text: "t", ClientMsgID: "c"},
		{Time: time.Unix(-1, 999999999), Text: strings.Repeat("x", 300)},
		{Time: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), Sender: strings.Repeat("é", 200)},
	} {
		var got Message
		if err := decodeRecord(appendRecord(nil, &m), &got); err != nil {
			t.Fatalf("decode(%+v): %v", m, err)
		}
		if !got.Time.Equal(m.Time) || got.Sender != m.Sender || got.Text != m.Text || got.ClientMsgID != m.ClientMsgID {
			t.Fatalf("round trip of %+v gave %+v", m, got)
		}
	}
}

func FuzzDecodeRecord(f *testing.F) {
	good := appendRecord(nil, &Message{Time: t0, Sender: "s", Text: "hello", ClientMsgID: "c"})
	f.Add(good)
	f.Add([]byte{recordV1, 0x80})
	// What damaged pages hand the decoder: a record cut short, lengths past
	// the end, random bytes.
	f.Add(good[:len(good)/2])
	f.Add([]byte{recordV1, 0x02, 0x00, 0xff, 0xff, 0xff, 0xff, 0x0f, 's'})
	f.Add([]byte{recordV1, 0x02, 0x00, 0x01, 's', 0x90, 0x4e})
	f.Add(randomBytes(9, 64))
	f.Fuzz(func(t *testing.T, v []byte) {
		var m Message
		err := decodeRecord(v, &m)
		if cerr := checkRecord(v); (cerr == nil) != (err == nil) {
			t.Fatalf("checkRecord = %v but decodeRecord = %v", cerr, err)
		}
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decodeRecord = %v, want ErrCorrupt", err)
			}
			return
		}
		var again Message
		if err := decodeRecord(appendRecord(nil, &m), &again); err != nil ||
			!again.Time.Equal(m.Time) || again.Sender != m.Sender || again.Text != m.Text || again.ClientMsgID != m.ClientMsgID {
			t.Fatalf("re-encoding %+v: %+v, %v", m, again, err)
		}
	})
}

func TestBoltUnopenableFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, BoltFile), 0o700); err != nil {
		t.Fatal(err)
	}
	_, err := OpenBolt(dir, BoltOptions{})
	if err == nil || !strings.Contains(err.Error(), "-data") || strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("OpenBolt with a directory as %s = %v, want an error pointing at -data", BoltFile, err)
	}
}

// holdWriter takes bbolt's single writer lock until release is called, so
// that Appends queue up behind it as they do behind a slow fsync.
func holdWriter(t *testing.T, s *Bolt) (release func()) {
	t.Helper()
	held, rel, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		done <- s.db.Update(func(*bolt.Tx) error { close(held); <-rel; return nil })
	}()
	<-held
	return func() {
		close(rel)
		if err := <-done; err != nil {
			t.Errorf("holding transaction: %v", err)
		}
	}
}

// waitQueued waits until the commit loop holds one group (blocked behind
// holdWriter) and n more Appends are pending.
func waitQueued(t *testing.T, s *Bolt, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s.mu.Lock()
		committing, pending := s.committing, len(s.pending)
		s.mu.Unlock()
		if committing && pending == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10s: committing %v, %d Appends pending, want %d", committing, pending, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestBoltAppendsShareCommits: Appends of many rooms that arrive while a
// commit runs are written by the next commit together (one fsync), and
// every one of them is stored.
func TestBoltAppendsShareCommits(t *testing.T) {
	t.Parallel()
	s := openTestBolt(t, t.TempDir())
	ctx := context.Background()
	release := holdWriter(t, s)
	const rooms = 50
	errs := make(chan error, rooms)
	go func() { errs <- s.Append(ctx, batch("room-0", 1, 2)) }()
	waitQueued(t, s, 0)
	for i := 1; i < rooms; i++ {
		go func() { errs <- s.Append(ctx, batch(fmt.Sprintf("room-%d", i), 1, 2)) }()
	}
	waitQueued(t, s, rooms-1)
	release()
	for range rooms {
		if err := <-errs; err != nil {
			t.Errorf("Append: %v", err)
		}
	}
	if n := s.commits.Load(); n != 2 {
		t.Errorf("%d Appends took %d commits, want 2 (the one queued first, then all the others)", rooms, n)
	}
	for i := range rooms {
		room := fmt.Sprintf("room-%d", i)
		sameMessages(t, room, after(t, s, room, 0, 10), batch(room, 1, 2))
	}
}

// TestBoltSharedCommitIsolatesFailures: in a shared commit, a batch that
// conflicts fails alone with ErrConflict, a batch that fails otherwise
// (here a damaged room state) fails alone with its own error, and the other
// rooms' batches are stored.
func TestBoltSharedCommitIsolatesFailures(t *testing.T) {
	t.Parallel()
	s := openTestBolt(t, t.TempDir())
	ctx := context.Background()
	mustAppend(t, s, batch("taken", 1, 2))
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketState).Put([]byte("broken"), []byte("bad"))
	}); err != nil {
		t.Fatal(err)
	}
	release := holdWriter(t, s)
	first := make(chan error, 1)
	go func() { first <- s.Append(ctx, batch("first", 1, 1)) }()
	waitQueued(t, s, 0)
	rooms := []struct {
		msgs []Message
		err  chan error
	}{
		{batch("ok-1", 1, 3), make(chan error, 1)},
		{batch("taken", 2, 1), make(chan error, 1)}, // seq 2 is stored already
		{batch("broken", 1, 1), make(chan error, 1)},
		{batch("ok-2", 1, 3), make(chan error, 1)},
	}
	for i, r := range rooms {
		go func() { r.err <- s.Append(ctx, r.msgs) }()
		waitQueued(t, s, i+1) // in this order in the group
	}
	release()
	if err := <-first; err != nil {
		t.Errorf("Append(first): %v", err)
	}
	for _, r := range rooms {
		err := <-r.err
		switch room := r.msgs[0].Room; room {
		case "taken":
			if !errors.Is(err, ErrConflict) {
				t.Errorf("Append(%s) = %v, want ErrConflict", room, err)
			}
			sameMessages(t, room, after(t, s, room, 0, 10), batch(room, 1, 2))
		case "broken":
			if err == nil || errors.Is(err, ErrConflict) || !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "corrupt room state") {
				t.Errorf("Append(%s) = %v, want the corrupt room state error", room, err)
			}
		default:
			if err != nil {
				t.Errorf("Append(%s): %v", room, err)
			}
			sameMessages(t, room, after(t, s, room, 0, 10), r.msgs)
		}
	}
}
