package store

import (
	"context"
	"encoding/binary"
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

// Damaged history files: bbolt trusts its file, and on a damaged page it
// panics or reads outside its memory map. A Bolt store must turn every such
// failure into an error naming the file (at open: naming -data too), never
// a panic or a crash, and a damaged room must not take the others with it.

// historyFile writes a history with a big room (many pages under a branch
// page) and two small ones into dir, the small ones with room and member
// records, closes it, and returns the path.
func historyFile(t testing.TB, dir string) string {
	t.Helper()
	s, err := OpenBolt(dir, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for from := uint64(1); from <= 2000; from += 500 {
		mustAppend(t, s, batch("big", from, 500))
	}
	for _, room := range []string{"small", "other"} {
		info := roomRec(room, KindPublic)
		var members []Member
		for i := range 40 {
			members = append(members, memberRec(room, fmt.Sprint("user-", i), RoleMember))
		}
		mustCommit(t, s, Batch{Room: room, Messages: batch(room, 1, 20), Info: &info, Members: members})
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, BoltFile)
}

// boltLayout is what the damage tests need to know about a file.
type boltLayout struct {
	pageSize  int
	pages     int      // high-water mark: pages in use
	freelist  uint64   // the freelist's page
	roomPages []uint64 // the big room's pages, root first
	leaves    []uint64 // the big room's leaf pages
}

func layoutOf(t testing.TB, path string) boltLayout {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var l boltLayout
	err = db.View(func(tx *bolt.Tx) error {
		l.pageSize = db.Info().PageSize
		l.pages = int(tx.Size()) / l.pageSize
		root := tx.Bucket(bucketRooms).Bucket([]byte("big")).RootPage()
		if root == 0 {
			return errors.New("the big room is an inline bucket")
		}
		todo := []uint64{uint64(root)}
		for len(todo) > 0 {
			id := todo[0]
			todo = todo[1:]
			l.roomPages = append(l.roomPages, id)
			p := raw[int(id)*l.pageSize:]
			flags, count := binary.NativeEndian.Uint16(p[8:]), int(binary.NativeEndian.Uint16(p[10:]))
			if flags&boltBranchPage == 0 {
				l.leaves = append(l.leaves, id)
				continue
			}
			for i := range count { // branch elements: pos, ksize (uint32), pgid (uint64)
				todo = append(todo, binary.NativeEndian.Uint64(p[boltPageHeader+16*i+8:]))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	m0, _ := parseBoltMeta(raw)
	m1, _ := parseBoltMeta(raw[l.pageSize:])
	if l.freelist = m0.freelist; m1.txid > m0.txid {
		l.freelist = m1.freelist
	}
	if len(l.leaves) < 3 || len(l.roomPages) == len(l.leaves) {
		t.Fatalf("the big room has %d pages, %d of them leaves: want a branch over several leaves", len(l.roomPages), len(l.leaves))
	}
	return l
}

// overwrite writes b at page id of the file (b may be shorter than a page).
func overwrite(t testing.TB, path string, pageSize int, id uint64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, int64(id)*int64(pageSize)); err != nil {
		t.Fatal(err)
	}
}

func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 7}).Read(b)
	return b
}

func copyFile(t testing.TB, from, dir string) string {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	to := filepath.Join(dir, BoltFile)
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return to
}

func wantCorruptAtOpen(t *testing.T, dir string, opts BoltOptions) {
	t.Helper()
	s, err := OpenBolt(dir, opts)
	if err == nil {
		s.Close()
		t.Fatal("OpenBolt of a damaged file succeeded")
	}
	path := filepath.Join(dir, BoltFile)
	for _, want := range []string{path, "corrupt", "-data"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not mention %q", err, want)
		}
	}
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("error %q does not wrap ErrCorrupt", err)
	}
}

// TestBoltDamagedFileRefusedAtOpen: a truncated file, or one with bad
// pages or records where the check at open reads, is refused with an error
// naming the file and -data, not a panic (bbolt on its own panics with
// "invalid freelist page" or faults on most of these).
func TestBoltDamagedFileRefusedAtOpen(t *testing.T) {
	t.Parallel()
	tmpl := historyFile(t, t.TempDir())
	l := layoutOf(t, tmpl)
	ps := l.pageSize
	for _, tc := range []struct {
		name   string
		damage func(path string)
	}{
		{"truncated to half", func(p string) { os.Truncate(p, int64(l.pages*ps/2)) }},
		{"truncated after the meta pages", func(p string) { os.Truncate(p, int64(3*ps)) }},
		{"truncated by one page", func(p string) { os.Truncate(p, int64((l.pages-1)*ps)) }},
		{"truncated mid-page", func(p string) { os.Truncate(p, int64(l.pages*ps-ps/2)) }},
		{"freelist zeroed", func(p string) { overwrite(t, p, ps, l.freelist, make([]byte, ps)) }},
		{"freelist random", func(p string) { overwrite(t, p, ps, l.freelist, randomBytes(1, ps)) }},
		{"room root random", func(p string) { overwrite(t, p, ps, l.roomPages[0], randomBytes(2, ps)) }},
		{"room leaf random", func(p string) { overwrite(t, p, ps, l.leaves[len(l.leaves)/2], randomBytes(3, ps)) }},
		{"room leaf body random", func(p string) {
			overwrite(t, p, ps, l.leaves[1], randomBytes(4, ps)[boltPageHeader:])
		}},
		{"every room page random", func(p string) {
			for i, id := range l.roomPages {
				overwrite(t, p, ps, id, randomBytes(uint64(10+i), ps))
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			tc.damage(copyFile(t, tmpl, dir))
			wantCorruptAtOpen(t, dir, BoltOptions{})
		})
	}

	// The file's tail past its last page is bbolt's preallocation: cutting
	// it is harmless.
	dir := t.TempDir()
	os.Truncate(copyFile(t, tmpl, dir), int64(l.pages*ps))
	s := openTestBolt(t, dir)
	if got := after(t, s, "big", 0, 5000); len(got) != 2000 {
		t.Fatalf("after cutting the preallocated tail: %d messages, want 2000", len(got))
	}
}

// TestBoltDamagedRecordRefusedAtOpen: a record that does not decode is
// found by the check at open within its limit; past the limit (here a
// check of the rooms' ends only) it is found when read, as ErrCorrupt.
func TestBoltDamagedRecordRefusedAtOpen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openTestBolt(t, dir)
	mustAppend(t, s, batch("r", 1, 5))
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRooms).Bucket([]byte("r")).Put(seqKey(3), []byte{recordV1, 0x80})
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	wantCorruptAtOpen(t, dir, BoltOptions{})
	_, err := OpenBolt(dir, BoltOptions{})
	if !strings.Contains(err.Error(), `room "r": seq 3`) {
		t.Fatalf("error %q does not name the room and seq", err)
	}
	s, err = OpenBolt(dir, BoltOptions{CheckLimit: -1})
	if err != nil {
		t.Fatalf("OpenBolt checking the rooms' ends only: %v", err)
	}
	defer s.Close()
	if _, err := s.After(context.Background(), "r", 0, 10); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "seq 3") {
		t.Fatalf("After over the damaged record = %v, want ErrCorrupt naming seq 3", err)
	}
}

// TestBoltDamagedStateRefusedAtOpen: room records, member records and
// index entries that do not decode, an index that disagrees with the
// records, and a missing bucket are refused at open, naming what is
// wrong. Past the check's limit a damaged member record is found when
// read, as ErrCorrupt; so is a user index entry whose member record is
// gone, which the check does not cross-check.
func TestBoltDamagedStateRefusedAtOpen(t *testing.T) {
	t.Parallel()
	tmpl := historyFile(t, t.TempDir())
	for _, tc := range []struct {
		name, want string
		damage     func(tx *bolt.Tx) error
	}{
		{"room record", `room "small"`, func(tx *bolt.Tx) error {
			return tx.Bucket(bucketRecords).Put([]byte("small"), []byte{roomRecordV1, 1})
		}},
		{"room record of an unknown version", `room "other"`, func(tx *bolt.Tx) error {
			return tx.Bucket(bucketRecords).Put([]byte("other"), []byte{9})
		}},
		{"member record", `members of room "small": user "user-7"`, func(tx *bolt.Tx) error {
			return tx.Bucket(bucketMembers).Bucket([]byte("small")).Put([]byte("user-7"), []byte{memberRecordV1, 1, 4})
		}},
		{"user index entry", `rooms of user "user-3": room "other"`, func(tx *bolt.Tx) error {
			return tx.Bucket(bucketUserRooms).Bucket([]byte("user-3")).Put([]byte("other"), []byte("?"))
		}},
		{"public index naming a private room", `public room "small"`, func(tx *bolt.Tx) error {
			info := roomRec("small", KindPrivate)
			return tx.Bucket(bucketRecords).Put([]byte("small"), appendRoomRecord(nil, &info))
		}},
		{"a record where a room's members belong", `members of room "x"`, func(tx *bolt.Tx) error {
			return tx.Bucket(bucketMembers).Put([]byte("x"), []byte("y"))
		}},
		{"a missing bucket", `"user_rooms" is missing`, func(tx *bolt.Tx) error {
			return tx.DeleteBucket(bucketUserRooms)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			damage(t, copyFile(t, tmpl, dir), tc.damage)
			wantCorruptAtOpen(t, dir, BoltOptions{})
			if _, err := OpenBolt(dir, BoltOptions{}); !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not name %s", err, tc.want)
			}
		})
	}

	dir := t.TempDir()
	damage(t, copyFile(t, tmpl, dir), func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketMembers).Bucket([]byte("small")).Put([]byte("user-20"), []byte{memberRecordV1}); err != nil {
			return err
		}
		return tx.Bucket(bucketMembers).Bucket([]byte("other")).Delete([]byte("user-5"))
	})
	s, err := OpenBolt(dir, BoltOptions{CheckLimit: -1})
	if err != nil {
		t.Fatalf("OpenBolt checking the ends only: %v", err)
	}
	defer s.Close()
	ctx := context.Background()
	if _, err := s.Members(ctx, "small", "", 100); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), `user "user-20"`) {
		t.Errorf("Members over the damaged record = %v, want ErrCorrupt naming the user", err)
	}
	if _, err := s.UserRooms(ctx, "user-5", "", 100); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), `room "other"`) {
		t.Errorf("UserRooms with an index entry and no record = %v, want ErrCorrupt naming the room", err)
	}
	if got := listMembers(t, s, "other", "user-4", 1); len(got) != 1 || got[0].User != "user-6" {
		t.Errorf("the other room's members = %+v, want user-6 after user-4", got)
	}
}

// damage changes the bolt file at path with bbolt itself, as records
// that decode wrongly or disagree would be after damage.
func damage(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

// TestBoltDamagedAtRunTime: pages damaged under a running store (the file
// is mapped, so what is written to it shows at once) fail the damaged
// room's calls with ErrCorrupt; the other rooms are read and written as
// before.
func TestBoltDamagedAtRunTime(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tmpl := historyFile(t, dir)
	l := layoutOf(t, tmpl)
	s := openTestBolt(t, dir)
	ctx := context.Background()
	overwrite(t, tmpl, l.pageSize, l.roomPages[0], randomBytes(5, l.pageSize))

	if _, err := s.Bounds(ctx, "big"); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tmpl) {
		t.Errorf("Bounds of the damaged room = %v, want ErrCorrupt naming the file", err)
	}
	if _, err := s.After(ctx, "big", 0, 10); !errors.Is(err, ErrCorrupt) {
		t.Errorf("After = %v, want ErrCorrupt", err)
	}
	if _, err := s.Before(ctx, "big", 0, 10); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Before = %v, want ErrCorrupt", err)
	}
	if err := commitMessages(s, batch("big", 2001, 3)); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Append = %v, want ErrCorrupt", err)
	}
	mustAppend(t, s, batch("small", 21, 5))
	sameMessages(t, "small", after(t, s, "small", 0, 100), batch("small", 1, 25))
	sameMessages(t, "other", before(t, s, "other", 0, 100), batch("other", 1, 20))
	if _, err := s.Trim(ctx, Retention{MaxCount: 10}, t0); err != nil && !errors.Is(err, ErrCorrupt) {
		t.Errorf("Trim = %v, want nil or ErrCorrupt", err)
	}
}

// TestBoltDamagedPages damages every page of a history file in turn (random
// bytes over the whole page, then over its body with the header kept) and
// opens it with a check of the rooms' ends only, so that most damage is met
// by reads: each open and each call either works or fails with an error
// naming the file; none panics.
func TestBoltDamagedPages(t *testing.T) {
	t.Parallel()
	tmpl := historyFile(t, t.TempDir())
	l := layoutOf(t, tmpl)
	ctx := context.Background()
	opened, refused := 0, 0
	for id := uint64(0); id < uint64(l.pages); id++ {
		for _, body := range []bool{false, true} {
			dir := t.TempDir()
			path := copyFile(t, tmpl, dir)
			b := randomBytes(100+id, l.pageSize)
			if body {
				b = b[boltPageHeader:]
				overwrite(t, path, l.pageSize, id, nil)
				f, _ := os.OpenFile(path, os.O_WRONLY, 0)
				f.WriteAt(b, int64(id)*int64(l.pageSize)+boltPageHeader)
				f.Close()
			} else {
				overwrite(t, path, l.pageSize, id, b)
			}
			what := fmt.Sprintf("page %d (body only: %v)", id, body)
			s, err := OpenBolt(dir, BoltOptions{CheckLimit: -1})
			if err != nil {
				refused++
				if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "-data") {
					t.Errorf("%s: OpenBolt = %v, want an error naming the file and -data", what, err)
				}
				continue
			}
			opened++
			for _, room := range []string{"big", "small", "other", "new"} {
				named := func(op string, err error) {
					if err != nil && !strings.Contains(err.Error(), path) && !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrConflict) {
						t.Errorf("%s: %s(%s) = %v, want ErrCorrupt naming the file", what, op, room, err)
					}
				}
				_, err := s.Bounds(ctx, room)
				named("Bounds", err)
				_, err = s.After(ctx, room, 0, 5000)
				named("After", err)
				_, err = s.Before(ctx, room, 1000, 5000)
				named("Before", err)
				named("Commit", commitMessages(s, batch(room, 3000, 2)))
				_, _, err = s.Room(ctx, room)
				named("Room", err)
				_, err = s.Members(ctx, room, "", 100)
				named("Members", err)
				info := roomRec(room, KindPrivate)
				named("Commit of state", s.Commit(ctx, Batch{Room: room, Info: &info,
					Members: []Member{memberRec(room, "user-1", RoleOwner), {Room: room, User: "user-2"}}}))
			}
			for _, user := range []string{"user-1", "user-3", "nobody"} {
				_, err := s.UserRooms(ctx, user, "", 100)
				if err != nil && !strings.Contains(err.Error(), path) && !errors.Is(err, ErrCorrupt) {
					t.Errorf("%s: UserRooms(%s) = %v, want ErrCorrupt naming the file", what, user, err)
				}
			}
			if _, err := s.PublicRooms(ctx, "", 100); err != nil && !strings.Contains(err.Error(), path) && !errors.Is(err, ErrCorrupt) {
				t.Errorf("%s: PublicRooms = %v, want ErrCorrupt naming the file", what, err)
			}
			_, err = s.Trim(ctx, Retention{MaxCount: 5}, t0.Add(time.Hour))
			if err != nil && !errors.Is(err, ErrCorrupt) {
				t.Errorf("%s: Trim = %v", what, err)
			}
			s.Close()
		}
	}
	t.Logf("%d pages damaged twice each: %d opens refused, %d served with errors confined to calls", l.pages, refused, opened)
}
