package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
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
		{Time: t0, SenderKind: 2, Body: []byte{0, 1, 0xff}, Text: "after the body"},
		{SenderKind: 255, Body: bytes.Repeat([]byte{7}, 200), ClientMsgID: "c"},
	} {
		var got Message
		if err := decodeRecord(appendRecord(nil, &m), &got); err != nil {
			t.Fatalf("decode(%+v): %v", m, err)
		}
		if !sameRecord(got, m) {
			t.Fatalf("round trip of %+v gave %+v", m, got)
		}
	}
}

// sameRecord compares what a message record holds (not room and seq: they
// are the bucket and key).
func sameRecord(a, b Message) bool {
	return a.Time.Equal(b.Time) && a.Sender == b.Sender && a.Text == b.Text && a.ClientMsgID == b.ClientMsgID &&
		a.SenderKind == b.SenderKind && bytes.Equal(a.Body, b.Body) && (a.Body == nil) == (len(b.Body) == 0)
}

// appendRecordV1 is the record format of files written before messages had
// kinds and bodies (format 1), frozen here to build such files.
func appendRecordV1(buf []byte, m *Message) []byte {
	buf = append(buf, recordV1)
	buf = binary.AppendVarint(buf, m.Time.Unix())
	buf = binary.AppendUvarint(buf, uint64(m.Time.Nanosecond()))
	buf = binary.AppendUvarint(buf, uint64(len(m.Sender)))
	buf = append(buf, m.Sender...)
	buf = binary.AppendUvarint(buf, uint64(len(m.ClientMsgID)))
	buf = append(buf, m.ClientMsgID...)
	return append(buf, m.Text...)
}

func TestRecordV1Decodes(t *testing.T) {
	m := Message{Time: t0, Sender: "s", Text: "from before kinds", ClientMsgID: "c"}
	got := Message{SenderKind: 9, Body: []byte("stale")} // a reused Message: nothing may leak through
	if err := decodeRecord(appendRecordV1(nil, &m), &got); err != nil || !sameRecord(got, m) {
		t.Fatalf("decode of a v1 record = %+v, %v; want %+v", got, err, m)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	good := appendRecord(nil, &Message{Time: t0, Sender: "s", Text: "hello", ClientMsgID: "c", SenderKind: 2, Body: []byte{0, 1, 2}})
	f.Add(good)
	f.Add(appendRecord(nil, &Message{Time: t0, Sender: "s", Text: "no body"}))
	f.Add(appendRecordV1(nil, &Message{Time: t0, Sender: "s", Text: "hello", ClientMsgID: "c"}))
	f.Add([]byte{recordV1, 0x80})
	// What damaged pages hand the decoder: a record cut short (in the body
	// too), lengths past the end, an unknown version, random bytes.
	f.Add(good[:len(good)/2])
	f.Add(good[:len(good)-len("hello")-2])
	f.Add([]byte{recordV1, 0x02, 0x00, 0xff, 0xff, 0xff, 0xff, 0x0f, 's'})
	f.Add([]byte{recordV1, 0x02, 0x00, 0x01, 's', 0x90, 0x4e})
	f.Add([]byte{recordV2, 0x02, 0x00, 0x00, 0x00, 0x03, 0xff, 0xff, 0x0f})
	f.Add([]byte{recordV2, 0x02, 0x00, 0x00, 0x00})
	f.Add([]byte{3, 0x02, 0x00, 0x00, 0x00})
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
		if len(m.Body) == 0 && m.Body != nil {
			t.Fatalf("decodeRecord gave an empty, non-nil body")
		}
		var again Message
		if err := decodeRecord(appendRecord(nil, &m), &again); err != nil || !sameRecord(again, m) {
			t.Fatalf("re-encoding %+v: %+v, %v", m, again, err)
		}
	})
}

func TestStateRecordRoundTrip(t *testing.T) {
	for _, r := range []RoomRecord{
		{},
		{Kind: KindDirect, Title: "t", Topic: "é", CreatedBy: "a", CreatedAt: t0.Add(1), Peer: "b", Deleted: true, Members: -5},
		{Kind: 255, CreatedAt: Forever, Members: 1 << 30, Title: strings.Repeat("x", 300)},
	} {
		got, err := decodeRoomRecord(appendRoomRecord(nil, &r))
		if err != nil || !sameRoom(got, r) {
			t.Fatalf("round trip of %+v gave %+v, %v", r, got, err)
		}
	}
	for _, m := range []Member{
		{},
		{Role: RoleOwner, Invited: true, InvitedBy: "Zoë", Since: t0.Add(1), BannedUntil: Forever, MutedUntil: t0},
		{Role: 200, Since: time.Unix(-1, 5)},
	} {
		got, err := decodeMemberRecord(appendMemberRecord(nil, &m))
		if err != nil || !sameMember(got, m) {
			t.Fatalf("round trip of %+v gave %+v, %v", m, got, err)
		}
	}
}

// FuzzDecodeState: room and member records either decode to what encodes
// back to the same, or fail with ErrCorrupt; never a panic.
func FuzzDecodeState(f *testing.F) {
	room := appendRoomRecord(nil, &RoomRecord{Kind: KindPublic, Title: "t", CreatedAt: t0, Members: 3, Peer: "p"})
	member := appendMemberRecord(nil, &Member{Role: RoleMember, Invited: true, InvitedBy: "i", Since: t0, BannedUntil: Forever})
	for _, v := range [][]byte{room, member, room[:len(room)-1], append(slices.Clone(member), 0), {roomRecordV1, 1, 2}, randomBytes(10, 40)} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		if r, err := decodeRoomRecord(v); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decodeRoomRecord = %v, want ErrCorrupt", err)
			}
		} else if again, err := decodeRoomRecord(appendRoomRecord(nil, &r)); err != nil || !sameRoom(again, r) {
			t.Fatalf("re-encoding %+v: %+v, %v", r, again, err)
		}
		if m, err := decodeMemberRecord(v); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decodeMemberRecord = %v, want ErrCorrupt", err)
			}
		} else if again, err := decodeMemberRecord(appendMemberRecord(nil, &m)); err != nil || !sameMember(again, m) {
			t.Fatalf("re-encoding %+v: %+v, %v", m, again, err)
		}
	})
}

// TestBoltFormat1 opens a file as the build before rooms' state wrote it
// (format 1: messages and room states only, records in recordV1): it is
// upgraded in place, its messages read back with SenderKind 0 and no Body,
// and rooms' state and new messages are written to it and kept.
func TestBoltFormat1(t *testing.T) {
	dir := t.TempDir()
	db, err := bolt.Open(filepath.Join(dir, BoltFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	old := batch("old", 1, 30)
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketMeta, bucketRooms, bucketState} {
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketMeta).Put(keyFormat, []byte{1}); err != nil {
			return err
		}
		rb, err := tx.Bucket(bucketRooms).CreateBucket([]byte("old"))
		if err != nil {
			return err
		}
		for i := range old {
			if err := rb.Put(seqKey(old[i].Seq), appendRecordV1(nil, &old[i])); err != nil {
				return err
			}
		}
		return putRoomState(tx.Bucket(bucketState), []byte("old"), roomState{latest: 30, count: 30})
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}

	var logged bytes.Buffer
	s, err := OpenBolt(dir, BoltOptions{Log: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatalf("OpenBolt of a format 1 file: %v", err)
	}
	defer s.Close()
	if !strings.Contains(logged.String(), "upgraded history file") || !strings.Contains(logged.String(), fmt.Sprintf("from=1 to=%d", boltFormat)) {
		t.Errorf("log %q does not tell of the upgrade from 1 to %d", logged.String(), boltFormat)
	}
	sameMessages(t, "old messages", after(t, s, "old", 0, 100), old)
	sameMessages(t, "old messages backwards", before(t, s, "old", 0, 100), old)
	wantBounds(t, s, "old", Bounds{Oldest: 1, Latest: 30})
	wantNoRoom(t, s, "old")
	if err := commitMessages(s, batch("old", 30, 1)); !errors.Is(err, ErrConflict) {
		t.Fatalf("Commit of the old Latest = %v, want ErrConflict", err)
	}
	info := roomRec("old", KindPublic)
	alice := memberRec("old", "alice", RoleOwner)
	next := batch("old", 31, 2)
	next[0].SenderKind, next[0].Body = 2, []byte("joined")
	mustCommit(t, s, Batch{Room: "old", Messages: next, Info: &info, Members: []Member{alice}})
	s.Close()

	s = openTestBolt(t, dir)
	all := append(slices.Clone(old), next...)
	sameMessages(t, "old and new messages", after(t, s, "old", 0, 100), all)
	info.Latest = 32
	wantRoom(t, s, info)
	sameList(t, "alice's rooms", listUserRooms(t, s, "alice", "", 10), []UserRoom{{info, alice}}, sameUserRoom)
	if n := trim(t, s, Retention{MaxCount: 5}, t0); n != 27 {
		t.Fatalf("Trim over old and new records = %d, want 27", n)
	}
	sameMessages(t, "after trim", after(t, s, "old", 0, 100), all[27:])
}

// TestBoltPostsWriteNoState: batches of messages only touch none of the
// state buckets (so they cost what Append did).
func TestBoltPostsWriteNoState(t *testing.T) {
	s := openTestBolt(t, t.TempDir())
	mustAppend(t, s, batch("r", 1, 10))
	s.db.View(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketRecords, bucketMembers, bucketUserRooms, bucketPublic} {
			if n := tx.Bucket(name).Stats().KeyN; n != 0 {
				t.Errorf("bucket %s has %d keys after posts only", name, n)
			}
		}
		return nil
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
	release := holdWriter(t, s)
	const rooms = 50
	errs := make(chan error, rooms)
	// Odd rooms commit their record and a member with their messages.
	commit := func(i int) error {
		room := fmt.Sprintf("room-%d", i)
		b := Batch{Room: room, Messages: batch(room, 1, 2)}
		if i%2 == 1 {
			info := roomRec(room, KindPublic)
			b.Info, b.Members = &info, []Member{memberRec(room, "alice", RoleMember)}
		}
		return s.Commit(context.Background(), b)
	}
	go func() { errs <- commit(0) }()
	waitQueued(t, s, 0)
	for i := 1; i < rooms; i++ {
		go func() { errs <- commit(i) }()
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
	if n := len(listUserRooms(t, s, "alice", "", 100)); n != rooms/2 {
		t.Errorf("alice is in %d rooms, want %d", n, rooms/2)
	}
}

// TestBoltSharedCommitIsolatesFailures: in a shared commit, a batch that
// conflicts fails alone with ErrConflict and none of its state is written,
// a batch that fails otherwise (here a damaged room state, and a damaged
// members bucket) fails alone with its own error, and the other rooms'
// batches, state included, are stored.
func TestBoltSharedCommitIsolatesFailures(t *testing.T) {
	t.Parallel()
	s := openTestBolt(t, t.TempDir())
	mustAppend(t, s, batch("taken", 1, 2))
	if err := s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketState).Put([]byte("broken"), []byte("bad")); err != nil {
			return err
		}
		return tx.Bucket(bucketMembers).Put([]byte("no members"), []byte("a record where a bucket belongs"))
	}); err != nil {
		t.Fatal(err)
	}
	release := holdWriter(t, s)
	first := make(chan error, 1)
	go func() { first <- commitMessages(s, batch("first", 1, 1)) }()
	waitQueued(t, s, 0)
	withState := func(b Batch) Batch {
		info := roomRec(b.Room, KindPublic)
		b.Info, b.Members = &info, []Member{memberRec(b.Room, "alice", RoleOwner)}
		return b
	}
	rooms := []struct {
		b   Batch
		err chan error
	}{
		{Batch{Room: "ok-1", Messages: batch("ok-1", 1, 3)}, make(chan error, 1)},
		{withState(Batch{Room: "taken", Messages: batch("taken", 2, 1)}), make(chan error, 1)}, // seq 2 is stored already
		{Batch{Room: "broken", Messages: batch("broken", 1, 1)}, make(chan error, 1)},
		{withState(Batch{Room: "ok-2", Messages: batch("ok-2", 1, 3)}), make(chan error, 1)},
		{withState(Batch{Room: "no members"}), make(chan error, 1)},
		{withState(Batch{Room: "ok-3"}), make(chan error, 1)},
	}
	for i, r := range rooms {
		go func() { r.err <- s.Commit(context.Background(), r.b) }()
		waitQueued(t, s, i+1) // in this order in the group
	}
	release()
	if err := <-first; err != nil {
		t.Errorf("Commit(first): %v", err)
	}
	for _, r := range rooms {
		err := <-r.err
		switch room := r.b.Room; room {
		case "taken":
			if !errors.Is(err, ErrConflict) {
				t.Errorf("Commit(%s) = %v, want ErrConflict", room, err)
			}
			sameMessages(t, room, after(t, s, room, 0, 10), batch(room, 1, 2))
			wantNoRoom(t, s, room)
			sameList(t, room+" members", listMembers(t, s, room, "", 10), nil, sameMember)
		case "broken":
			if err == nil || errors.Is(err, ErrConflict) || !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "corrupt room state") {
				t.Errorf("Commit(%s) = %v, want the corrupt room state error", room, err)
			}
		case "no members":
			if err == nil || errors.Is(err, ErrConflict) {
				t.Errorf("Commit(%s) = %v, want an error", room, err)
			}
			wantNoRoom(t, s, room)
		default:
			if err != nil {
				t.Errorf("Commit(%s): %v", room, err)
			}
			sameMessages(t, room, after(t, s, room, 0, 10), r.b.Messages)
			if r.b.Info != nil {
				want := *r.b.Info
				want.Latest = uint64(len(r.b.Messages))
				wantRoom(t, s, want)
				sameList(t, room+" members", listMembers(t, s, room, "", 10), r.b.Members, sameMember)
			}
		}
	}
	ok2, ok3 := roomRec("ok-2", KindPublic), roomRec("ok-3", KindPublic)
	ok2.Latest = 3
	sameList(t, "alice's rooms", listUserRooms(t, s, "alice", "", 10), []UserRoom{
		{ok2, memberRec("ok-2", "alice", RoleOwner)}, {ok3, memberRec("ok-3", "alice", RoleOwner)},
	}, sameUserRoom)
}

// TestBoltFormat2 opens a file as the build before the outbox and read
// cursors wrote it (format 2: no outbox buckets, member records in
// memberRecordV1): it is upgraded, its history kept, its members read back
// with no cursor; a cursor and outbox entries written to it are kept.
func TestBoltFormat2(t *testing.T) {
	dir := t.TempDir()
	s := openTestBolt(t, dir)
	mustAppend(t, s, batch("old", 1, 5))
	info := roomRec("r", KindPublic)
	mustCommit(t, s, Batch{Room: "r", Info: &info, Members: []Member{memberRec("r", "alice", RoleMember)}})
	s.Close()
	// Back to what format 2 wrote: the record in V1, no outbox, the format
	// number 2.
	db, err := bolt.Open(filepath.Join(dir, BoltFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		m := memberRec("r", "alice", RoleMember)
		var flags byte
		v := append([]byte{memberRecordV1, m.Role, flags}, appendTimeField(nil, m.Since)...)
		v = appendTimeField(appendTimeField(v, m.BannedUntil), m.MutedUntil)
		v = appendStrings(v, m.InvitedBy)
		if err := tx.Bucket(bucketMembers).Bucket([]byte("r")).Put([]byte("alice"), v); err != nil {
			return err
		}
		for _, name := range [][]byte{bucketOutbox, bucketOutboxIDs} { // format 3 added them
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keyFormat, []byte{2})
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	var logged bytes.Buffer
	s, err = OpenBolt(dir, BoltOptions{Log: slog.New(slog.NewTextHandler(&logged, nil))})
	if err != nil {
		t.Fatalf("OpenBolt of a format 2 file: %v", err)
	}
	defer s.Close()
	if !strings.Contains(logged.String(), fmt.Sprintf("from=2 to=%d", boltFormat)) {
		t.Errorf("log %q does not tell of the upgrade from 2 to %d", logged.String(), boltFormat)
	}
	sameMessages(t, "old messages", after(t, s, "old", 0, 100), batch("old", 1, 5))
	ms, err := s.Members(context.Background(), "r", "", 10)
	if err != nil || len(ms) != 1 || ms[0].User != "alice" || ms[0].Role != RoleMember || ms[0].ReadSeq != 0 {
		t.Fatalf("the V1 member record read back as %+v, %v", ms, err)
	}
	alice := ms[0]
	alice.ReadSeq, alice.Mentions = 3, []uint64{5}
	mustCommit(t, s, Batch{Room: "r", Members: []Member{alice}})
	if ms, _ := s.Members(context.Background(), "r", "", 10); ms[0].ReadSeq != 3 || len(ms[0].Mentions) != 1 {
		t.Fatalf("the cursor written to an upgraded file: %+v", ms)
	}
	want := commitWithOutbox(t, s, "old", 6, 1)
	sameOutbox(t, "outbox after the upgrade", pending(t, s, 100), want)
}

// TestBoltOutboxReopen: entries survive a reopen, in order, and keep their
// place ahead of entries committed after it.
func TestBoltOutboxReopen(t *testing.T) {
	dir := t.TempDir()
	s := openTestBolt(t, dir)
	want := commitWithOutbox(t, s, "a", 1, 3)
	want = append(want, commitWithOutbox(t, s, "b", 1, 2)...)
	if err := s.OutboxDelete(context.Background(), []string{want[1].ID}); err != nil {
		t.Fatal(err)
	}
	want = slices.Delete(want, 1, 2)
	s.Close()
	s = openTestBolt(t, dir)
	want = append(want, commitWithOutbox(t, s, "a", 4, 1)...)
	sameOutbox(t, "after reopen", pending(t, s, 100), want)
}

// TestBoltCorruptOutbox: an outbox record that does not decode stops the
// open with the file named, rather than stopping delivery later.
func TestBoltCorruptOutbox(t *testing.T) {
	dir := t.TempDir()
	s := openTestBolt(t, dir)
	commitWithOutbox(t, s, "r", 1, 2)
	s.Close()
	db, err := bolt.Open(filepath.Join(dir, BoltFile), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketOutbox).Put(seqKey(2), []byte{9, 9, 9}) })
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	_, err = OpenBolt(dir, BoltOptions{})
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "outbox entry 2") || !strings.Contains(err.Error(), BoltFile) {
		t.Fatalf("OpenBolt with a damaged outbox record = %v", err)
	}
}

func TestOutboxRecordRoundTrip(t *testing.T) {
	e := OutboxEntry{ID: "r/1/0", Room: "r", Type: "notify", Payload: []byte(`{"a":1}`), Created: t0}
	got, err := decodeOutboxRecord(appendOutboxRecord(nil, &e))
	if err != nil || got.ID != e.ID || got.Room != e.Room || got.Type != e.Type || string(got.Payload) != string(e.Payload) || !got.Created.Equal(e.Created) {
		t.Fatalf("round trip of %+v: %+v, %v", e, got, err)
	}
	for _, bad := range [][]byte{nil, {2}, {outboxV1}, {outboxV1, 0, 0, 5, 'a'}} {
		if _, err := decodeOutboxRecord(bad); !errors.Is(err, ErrCorrupt) {
			t.Errorf("decode %x: %v, want ErrCorrupt", bad, err)
		}
	}
}
