package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// BoltFile is the name of the history file OpenBolt keeps in its directory.
const BoltFile = "history.db"

// BoltOptions tunes OpenBolt. The zero value is what production uses.
type BoltOptions struct {
	// LockTimeout bounds the wait for the file lock; 0 means one second. The
	// lock only ever waits on another process using the same directory, and
	// failing soon with a clear error beats hanging at start-up.
	LockTimeout time.Duration
	// Log, if set, records format upgrades as they are applied, and what
	// the check at open read.
	Log *slog.Logger
	// CheckLimit is how many records (messages, member records, entries
	// of the user index) the check at open reads; rooms' messages, rooms'
	// members and users' rooms past it are checked at their ends only. 0
	// means 10,000,000 (about 0.4 s when the file is in the page cache:
	// 1,000,000 messages, 81 MB, take 40 ms); negative checks only the
	// ends. Room states and records, one of each per room, are always read.
	CheckLimit int
}

// Bolt is a durable Store in a single bbolt file: every Commit is fsynced
// before it returns. Only one process may have a directory open at a time.
//
// Commits from many rooms share transactions (group commit across rooms): a
// Commit that finds no transaction running starts one at once, with no
// delay; those that arrive while it writes and fsyncs wait and go together
// into the next transaction. One fsync then serves every room that committed
// meanwhile, instead of one fsync per room per batch.
type Bolt struct {
	db     *bolt.DB
	path   string
	closed atomic.Bool

	mu         sync.Mutex
	pending    []*boltCommit // waiting for the next transaction
	committing bool          // a commitLoop goroutine runs
	loops      sync.WaitGroup
	commits    atomic.Int64 // write transactions of Commit, for tests and benchmarks
	// scrubMu: readers hold it shared, scrubFree exclusively.
	scrubMu sync.RWMutex
}

// boltCommit is one Commit waiting for a transaction, encoded in advance.
type boltCommit struct {
	room        string
	first, last uint64
	keys        []byte // 8 bytes per message
	vals        [][]byte
	info        []byte // the encoded room record; nil: unchanged
	public      bool   // info lists the room in bucketPublic
	members     []boltMemberPut
	rewrites    []boltMemberPut // a message's key (8 bytes) and new record
	erased      bool            // a rewrite erased a text: scrub the file's free pages
	outbox      []boltOutboxPut
	err         error         // set before done is closed
	done        chan struct{} // closed when the transaction holding it is durable, or failed
}

// boltMemberPut is one member record of a Commit: val nil deletes it.
type boltMemberPut struct {
	user []byte
	val  []byte
}

func (b *Bolt) commitCount() int64 { return b.commits.Load() }

// boltMaxGroup caps the Commits one transaction carries.
const boltMaxGroup = 1000

var _ Store = (*Bolt)(nil)

// Layout (format version 3). Every room gets its own bucket nested in
// bucketRooms, keyed by big-endian seq, rather than one big bucket with
// room-prefixed keys: keys stay 8 bytes instead of repeating the room name in
// every one, cursors need no prefix checks, and reads of one room touch only
// that room's pages. The nesting keeps room names, which are arbitrary, from
// colliding with the store's own top-level buckets.
//
// bucketState holds each room's roomState, which outlives the room's
// messages: Latest must survive retention deleting everything, and keeping
// the count there makes MaxCount trimming O(1) per untouched room.
//
// Rooms' state (format 2): bucketRecords maps a room to its RoomRecord,
// bucketMembers nests a bucket per room mapping users to their Member
// records, and two indexes make the listings reads of their own pages
// instead of scans of every room: bucketUserRooms nests a bucket per user
// naming the rooms where the user has a record (UserRooms), and
// bucketPublic names the public rooms that are not deleted (PublicRooms;
// direct rooms, one per pair of users who ever wrote, would otherwise
// dominate that scan). Index entries hold indexMark; the records themselves
// are only in bucketRecords and bucketMembers.
//
// The outbox (format 3): bucketOutbox maps a big-endian number from the
// bucket's own sequence, so a cursor walks entries in commit order, to an
// outbox record (bolt_outbox.go); bucketOutboxIDs maps entry ids to those
// keys, for OutboxDelete.
var (
	bucketMeta      = []byte("meta")
	bucketRooms     = []byte("rooms")
	bucketState     = []byte("room_state")
	bucketRecords   = []byte("room_records")
	bucketMembers   = []byte("members")
	bucketUserRooms = []byte("user_rooms")
	bucketPublic    = []byte("public_rooms")
	bucketOutbox    = []byte("outbox")
	bucketOutboxIDs = []byte("outbox_ids")
	keyFormat       = []byte("format")
	indexMark       = []byte{1}
	boltTopLevel    = [][]byte{bucketMeta, bucketRooms, bucketState, bucketRecords, bucketMembers, bucketUserRooms, bucketPublic, bucketOutbox, bucketOutboxIDs}
)

// boltMigrations[i] upgrades a file from format i to format i+1; format 0 is
// a file bbolt has just created. To change the layout, append a function and
// everything older is upgraded in order at open. A shipped function never
// changes: files of every format go through it.
var boltMigrations = []func(tx *bolt.Tx) error{
	func(tx *bolt.Tx) error { return createBuckets(tx, bucketMeta, bucketRooms, bucketState) },
	// Rooms' state. Message records need no rewrite: recordV1 still
	// decodes (SenderKind 0, no Body); new ones are written as recordV2.
	func(tx *bolt.Tx) error {
		return createBuckets(tx, bucketRecords, bucketMembers, bucketUserRooms, bucketPublic)
	},
	// The webhook outbox; nothing else changes.
	func(tx *bolt.Tx) error { return createBuckets(tx, bucketOutbox, bucketOutboxIDs) },
	// Read cursors (format 4): member records may be memberRecordV2, which
	// a build of format 3 would refuse as damaged; V1 ones still decode,
	// so nothing is rewritten.
	func(*bolt.Tx) error { return nil },
	// Read positions (format 5): room records may carry flag 2 (the room
	// shows read positions), which a build of format 4 would refuse as
	// damaged; nothing is rewritten.
	func(*bolt.Tx) error { return nil },
}

func createBuckets(tx *bolt.Tx, names ...[]byte) error {
	for _, name := range names {
		if _, err := tx.CreateBucket(name); err != nil {
			return fmt.Errorf("create bucket %q: %w", name, err)
		}
	}
	return nil
}

// boltFormat is the layout this build writes.
var boltFormat = len(boltMigrations)

// boltTrimBatch caps the deletions of one Trim transaction, so a room with a
// huge backlog never holds the single bbolt writer (and every room's Commit)
// for long.
const boltTrimBatch = 10000

// OpenBolt opens (creating if needed) the history in dir/history.db. A file
// that is damaged (shorter than its pages, pages bbolt cannot read, records
// that do not decode, within the check's bound) is refused with an error
// naming it and -data; see checkBolt.
func OpenBolt(dir string, opts BoltOptions) (*Bolt, error) {
	if dir == "" {
		return nil, errors.New("store: no data directory for bolt history: set -data")
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("store: create data directory: %w (check -data)", err)
	}
	path := filepath.Join(dir, BoltFile)
	timeout := opts.LockTimeout
	if timeout <= 0 {
		timeout = time.Second
	}
	if err := checkBoltSize(path); err != nil {
		return nil, corruptError(path, err)
	}
	var db *bolt.DB
	err := guard(path, func() (err error) {
		db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
		return err
	})
	switch {
	case err == nil:
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("store: open %s: locked by another process after waiting %v; is another parley running with the same -data directory? Stop it or choose another -data", path, timeout)
	case errors.As(err, new(*fs.PathError)):
		// The file could not even be opened (permissions, a directory in
		// its place...): a problem with -data, not with the history in it.
		return nil, fmt.Errorf("store: open %s: %w (check the -data directory)", path, err)
	default:
		// A panic inside bolt.Open (recovered by guard) leaves its file
		// open and locked; start-up fails here anyway.
		return nil, corruptError(path, err)
	}
	if err := migrateBolt(db, path, opts.Log); err != nil {
		_ = db.Close()
		return nil, err
	}
	limit := opts.CheckLimit
	if limit == 0 {
		limit = boltCheckLimit
	}
	if err := checkBolt(db, path, limit, opts.Log); err != nil {
		_ = db.Close()
		return nil, corruptError(path, err)
	}
	return &Bolt{db: db, path: path}, nil
}

func corruptError(path string, err error) error {
	return fmt.Errorf("store: open %s: %w: the file is corrupt or not a Parley history file; check it (bbolt check %s) or move the -data directory aside to start with empty history", path, err, path)
}

// guard runs fn, which uses the bbolt file at path, and turns a panic or a
// memory fault inside bbolt into an error wrapping ErrCorrupt. bbolt trusts
// its file: on a damaged page it panics (a page that does not carry its own
// id, an impossible page type) or follows a page id outside its memory map,
// which is a fault (SIGSEGV, or SIGBUS past the end of the file) that only
// debug.SetPanicOnFault makes recoverable. Every bbolt call goes through
// guard, so a damaged room fails its own reads instead of panicking the
// goroutine that asked (a room actor, the commit loop, start-up).
func guard(path string, fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %s: %v", ErrCorrupt, path, r)
		}
	}()
	return fn()
}

func (b *Bolt) view(fn func(*bolt.Tx) error) error {
	b.scrubMu.RLock()
	defer b.scrubMu.RUnlock()
	return guard(b.path, func() error { return b.db.View(fn) })
}

func (b *Bolt) update(fn func(*bolt.Tx) error) error {
	return guard(b.path, func() error { return b.db.Update(fn) })
}

// bbolt's meta page, as checkBoltSize reads it: a 16-byte page header, then
// magic, version, page size and flags (uint32 each), the root bucket (page
// id, sequence), the freelist's page id, the high-water page id, the
// transaction id, and an FNV-64a checksum of the fields before it, all in
// the machine's byte order.
const (
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	boltPageHeader = 16
	boltMetaSum    = 56 // offset of the checksum in the meta
	boltNoFreelist = ^uint64(0)

	boltBranchPage   = 0x01
	boltLeafPage     = 0x02
	boltFreelistPage = 0x10
)

type boltMeta struct{ pageSize, root, freelist, pgid, txid uint64 }

func parseBoltMeta(page []byte) (boltMeta, bool) {
	if len(page) < boltPageHeader+boltMetaSum+8 {
		return boltMeta{}, false
	}
	m, e := page[boltPageHeader:], binary.NativeEndian
	if e.Uint32(m) != boltMagic || e.Uint32(m[4:]) != boltVersion {
		return boltMeta{}, false
	}
	h := fnv.New64a()
	h.Write(m[:boltMetaSum])
	if h.Sum64() != e.Uint64(m[boltMetaSum:]) {
		return boltMeta{}, false
	}
	return boltMeta{pageSize: uint64(e.Uint32(m[8:])), root: e.Uint64(m[16:]), freelist: e.Uint64(m[32:]),
		pgid: e.Uint64(m[40:]), txid: e.Uint64(m[48:])}, true
}

// checkBoltSize refuses a file shorter than its own meta page says it is
// (truncated by a full disk, a bad copy, a damaged filesystem) before bbolt
// maps it: bbolt would read past the end of the file, which faults or
// panics on whatever it finds there ("invalid freelist page"). It also
// checks that the freelist and root pages the meta page names are what it
// says they are, since bbolt reads the freelist inside bolt.Open and a panic
// there leaves the file open and locked. A file with no valid meta page is
// left to bbolt, which refuses it with an error.
func checkBoltSize(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return nil // missing (bbolt creates it) or unreadable (bbolt says why)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() || fi.Size() == 0 {
		return nil
	}
	read := func(off int64) []byte {
		buf := make([]byte, 4096)
		n, err := f.ReadAt(buf, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil
		}
		return buf[:n]
	}
	var best *boltMeta
	consider := func(m boltMeta, ok bool) {
		if ok && m.pageSize >= 512 && (best == nil || m.txid > best.txid) {
			best = &m
		}
	}
	m0, ok0 := parseBoltMeta(read(0))
	consider(m0, ok0)
	if ok0 {
		consider(parseBoltMeta(read(int64(m0.pageSize))))
	} else {
		// As bbolt does: the page size is unknown, so try each.
		for off := int64(1024); off < fi.Size(); off <<= 1 {
			consider(parseBoltMeta(read(off)))
		}
	}
	if best == nil {
		return nil
	}
	if best.root >= best.pgid || (best.freelist != boltNoFreelist && best.freelist >= best.pgid) {
		return fmt.Errorf("%w: its meta page points past its last page (%d)", ErrCorrupt, best.pgid)
	}
	if best.pgid > uint64(fi.Size())/best.pageSize {
		return fmt.Errorf("%w: it is %d bytes long but holds %d pages of %d bytes: it was cut short", ErrCorrupt, fi.Size(), best.pgid, best.pageSize)
	}
	pageIs := func(id uint64, flags uint16) bool {
		h := read(int64(id * best.pageSize))
		return len(h) >= boltPageHeader && binary.NativeEndian.Uint64(h) == id && binary.NativeEndian.Uint16(h[8:])&flags != 0
	}
	if !pageIs(best.root, boltBranchPage|boltLeafPage) {
		return fmt.Errorf("%w: page %d is not the root its meta page names", ErrCorrupt, best.root)
	}
	if best.freelist == boltNoFreelist {
		return nil
	}
	if !pageIs(best.freelist, boltFreelistPage) {
		return fmt.Errorf("%w: page %d is not the freelist its meta page names", ErrCorrupt, best.freelist)
	}
	// The freelist lists pages the next commit may overwrite: one that
	// names a page outside the file would be written past its end, and
	// bbolt reads it inside bolt.Open. Every id must be a data page.
	h := read(int64(best.freelist * best.pageSize))
	count, overflow := uint64(binary.NativeEndian.Uint16(h[10:])), uint64(binary.NativeEndian.Uint32(h[12:]))
	at := int64(best.freelist*best.pageSize) + boltPageHeader
	if count == 0xFFFF { // the count did not fit: it is the first element
		count = binary.NativeEndian.Uint64(h[boltPageHeader:])
		at += 8
	}
	if best.freelist+overflow >= best.pgid || count > (overflow+1)*best.pageSize/8 {
		return fmt.Errorf("%w: the freelist (page %d) runs past its pages", ErrCorrupt, best.freelist)
	}
	ids := make([]byte, 8*count)
	if _, err := f.ReadAt(ids, at); err != nil {
		return fmt.Errorf("%w: the freelist (page %d) cannot be read: %v", ErrCorrupt, best.freelist, err)
	}
	for i := 0; i < len(ids); i += 8 {
		if id := binary.NativeEndian.Uint64(ids[i:]); id < 2 || id >= best.pgid {
			return fmt.Errorf("%w: the freelist (page %d) names page %d, outside the file's %d pages", ErrCorrupt, best.freelist, id, best.pgid)
		}
	}
	return nil
}

// boltCheckLimit is how many records checkBolt reads when
// BoltOptions.CheckLimit is 0.
const boltCheckLimit = 10_000_000

// checkBolt reads the file once at open, so that a damaged file stops
// start-up with one message rather than failing rooms one by one later:
// every room's state and room record and the index of public rooms, then
// every member record, every entry of the user index and every message
// until limit of them were read; each bucket after that (a room's members,
// a user's rooms, a room's messages) is checked at its ends, which is
// where reads start. bbolt's own Tx.Check is not used: it walks pages on a
// goroutine of its own, where a damaged page crashes the process.
func checkBolt(db *bolt.DB, path string, limit int, log *slog.Logger) error {
	start := time.Now()
	c := boltChecker{limit: limit}
	records := 0
	err := guard(path, func() error {
		return db.View(func(tx *bolt.Tx) error {
			for _, name := range boltTopLevel {
				if tx.Bucket(name) == nil {
					return fmt.Errorf("%w: the top-level bucket %q is missing", ErrCorrupt, name)
				}
			}
			if err := tx.Bucket(bucketState).ForEach(func(room, v []byte) error {
				if _, err := decodeRoomState(v); err != nil {
					return fmt.Errorf("room %q: %w", room, err)
				}
				return nil
			}); err != nil {
				return err
			}
			rb := tx.Bucket(bucketRecords)
			if err := rb.ForEach(func(room, v []byte) error {
				records++
				if _, err := decodeRoomRecord(v); err != nil {
					return fmt.Errorf("room %q: %w", room, err)
				}
				return nil
			}); err != nil {
				return err
			}
			if err := tx.Bucket(bucketPublic).ForEach(func(room, v []byte) error {
				_, err := publicRecord(rb, room, v)
				return err
			}); err != nil {
				return err
			}
			if err := c.nested(tx.Bucket(bucketMembers), "members of room", checkMemberEntry); err != nil {
				return err
			}
			if err := c.nested(tx.Bucket(bucketUserRooms), "rooms of user", checkIndexEntry); err != nil {
				return err
			}
			if err := checkOutboxBuckets(tx); err != nil {
				return err
			}
			return c.nested(tx.Bucket(bucketRooms), "room", checkEntry)
		})
	})
	if err != nil {
		return err
	}
	if log != nil {
		log.Info("store: checked history file", "path", path, "room_records", records, "buckets", c.buckets,
			"records_read", c.read, "buckets_checked_at_ends_only", c.ends, "took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// boltChecker walks nested buckets for checkBolt, sharing one budget of
// records across them.
type boltChecker struct{ limit, read, buckets, ends int }

// nested checks every bucket nested in parent (which holds nothing else)
// with check: whole while the budget lasts, then at its ends.
func (c *boltChecker) nested(parent *bolt.Bucket, what string, check func(k, v []byte) error) error {
	return parent.ForEach(func(name, v []byte) error {
		nb := parent.Bucket(name)
		if v != nil || nb == nil {
			return fmt.Errorf("%s %q: %w: a record where a bucket belongs", what, name, ErrCorrupt)
		}
		c.buckets++
		cur := nb.Cursor()
		if c.read < c.limit {
			for k, v := cur.First(); k != nil; k, v = cur.Next() {
				if err := check(k, v); err != nil {
					return fmt.Errorf("%s %q: %w", what, name, err)
				}
				c.read++
			}
			return nil
		}
		c.ends++
		if k, v := cur.First(); k != nil {
			if err := check(k, v); err != nil {
				return fmt.Errorf("%s %q: %w", what, name, err)
			}
		}
		if k, v := cur.Last(); k != nil {
			if err := check(k, v); err != nil {
				return fmt.Errorf("%s %q: %w", what, name, err)
			}
		}
		return nil
	})
}

// checkEntry checks one stored message without copying it.
func checkEntry(k, v []byte) error {
	if len(k) != 8 {
		return fmt.Errorf("%w: corrupt key %x", ErrCorrupt, k)
	}
	if err := checkRecord(v); err != nil {
		return fmt.Errorf("seq %d: %w", binary.BigEndian.Uint64(k), err)
	}
	return nil
}

// migrateBolt brings the file to boltFormat in one transaction, so a crash
// mid-upgrade leaves the old format intact.
func migrateBolt(db *bolt.DB, path string, log *slog.Logger) error {
	from := boltFormat
	// guard: bbolt panics on some damaged pages instead of returning an
	// error; at open that is a bad file, not a bug, and deserves the same
	// advice.
	err := guard(path, func() error {
		return db.Update(func(tx *bolt.Tx) error {
			version, err := boltFileFormat(tx)
			if err != nil {
				return err
			}
			if version > boltFormat {
				return fmt.Errorf("store: open %s: history format %d is newer than this build supports (%d); run a newer parley or use another -data directory", path, version, boltFormat)
			}
			if version == boltFormat {
				return nil
			}
			for v := version; v < boltFormat; v++ {
				if err := boltMigrations[v](tx); err != nil {
					return fmt.Errorf("store: upgrade %s from format %d to %d: %w", path, v, v+1, err)
				}
			}
			from = version
			return tx.Bucket(bucketMeta).Put(keyFormat, []byte{byte(boltFormat)})
		})
	})
	var cerr *corruptFileError
	switch {
	case errors.As(err, &cerr):
		return corruptError(path, cerr.err)
	case errors.Is(err, ErrCorrupt):
		return corruptError(path, err)
	case err != nil && strings.HasPrefix(err.Error(), "store: "):
		return err
	case err != nil:
		return fmt.Errorf("store: open %s: %w (check the -data directory and the disk it is on)", path, err)
	case log == nil || from == boltFormat:
	case from == 0:
		log.Info("store: created history file", "path", path, "format", boltFormat)
	default:
		log.Info("store: upgraded history file", "path", path, "from", from, "to", boltFormat)
	}
	return nil
}

type corruptFileError struct{ err error }

func (e *corruptFileError) Error() string { return e.err.Error() }

// boltFileFormat reads the layout version; 0 means a new, empty file.
func boltFileFormat(tx *bolt.Tx) (int, error) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		empty := true
		_ = tx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
		if !empty {
			return 0, &corruptFileError{errors.New("bbolt file without Parley metadata")}
		}
		return 0, nil
	}
	v := meta.Get(keyFormat)
	if len(v) != 1 || v[0] == 0 {
		return 0, &corruptFileError{fmt.Errorf("bad format version record %x", v)}
	}
	return int(v[0]), nil
}

// roomState is a room's entry in bucketState: Latest, then how many messages
// are stored, each as 8 bytes big-endian.
type roomState struct {
	latest uint64
	count  uint64
}

func getRoomState(b *bolt.Bucket, room []byte) (roomState, error) {
	return decodeRoomState(b.Get(room))
}

func decodeRoomState(v []byte) (roomState, error) {
	switch len(v) {
	case 0:
		return roomState{}, nil
	case 16:
		return roomState{latest: binary.BigEndian.Uint64(v), count: binary.BigEndian.Uint64(v[8:])}, nil
	}
	return roomState{}, fmt.Errorf("%w: corrupt room state record (%d bytes)", ErrCorrupt, len(v))
}

func putRoomState(b *bolt.Bucket, room []byte, s roomState) error {
	var v [16]byte
	binary.BigEndian.PutUint64(v[:], s.latest)
	binary.BigEndian.PutUint64(v[8:], s.count)
	return b.Put(room, v[:])
}

func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), seq) }

// Commit implements Store.
func (b *Bolt) Commit(ctx context.Context, bt Batch) error {
	if err := checkBatch(bt); err != nil {
		return err
	}
	if err := b.usable(ctx); err != nil {
		return commitError(bt, err)
	}
	if len(bt.Messages) == 0 && bt.Info == nil && len(bt.Members) == 0 && len(bt.Rewrites) == 0 && len(bt.Outbox) == 0 {
		return nil
	}
	c := encodeCommit(bt)
	b.mu.Lock()
	if b.closed.Load() {
		b.mu.Unlock()
		return commitError(bt, ErrClosed)
	}
	b.pending = append(b.pending, c)
	if !b.committing {
		b.committing = true
		b.loops.Add(1)
		go b.commitLoop()
	}
	b.mu.Unlock()
	// Not ctx: once queued, the batch may be committed; returning early
	// would report a failure for a batch that is stored.
	<-c.done
	if c.err != nil {
		return commitError(bt, b.mapErr(c.err))
	}
	return nil
}

// encodeCommit encodes a batch before it is queued for the single writer,
// so the transaction only copies bytes; message keys share one allocation.
func encodeCommit(bt Batch) *boltCommit {
	msgs := bt.Messages
	c := &boltCommit{room: bt.Room, done: make(chan struct{})}
	if n := len(msgs); n > 0 {
		c.first, c.last = msgs[0].Seq, msgs[n-1].Seq
		c.keys, c.vals = make([]byte, 8*n), make([][]byte, n)
		for i := range msgs {
			c.vals[i] = appendRecord(nil, &msgs[i])
			binary.BigEndian.PutUint64(c.keys[8*i:], msgs[i].Seq)
		}
	}
	for i := range bt.Rewrites {
		c.rewrites = append(c.rewrites, boltMemberPut{user: seqKey(bt.Rewrites[i].Seq), val: appendRecord(nil, &bt.Rewrites[i])})
	}
	if bt.Info != nil {
		c.info = appendRoomRecord(nil, bt.Info)
		c.public = bt.Info.Kind == KindPublic && !bt.Info.Deleted
	}
	if len(bt.Members) > 0 {
		c.members = make([]boltMemberPut, len(bt.Members))
		for i := range bt.Members {
			m := &bt.Members[i]
			c.members[i].user = []byte(m.User)
			if !m.Empty() {
				c.members[i].val = appendMemberRecord(nil, m)
			}
		}
	}
	if len(bt.Outbox) > 0 {
		c.outbox = make([]boltOutboxPut, len(bt.Outbox))
		for i := range bt.Outbox {
			c.outbox[i] = boltOutboxPut{id: []byte(bt.Outbox[i].ID), val: appendOutboxRecord(nil, &bt.Outbox[i])}
		}
	}
	return c
}

// commitLoop commits what is pending, one transaction at a time, until
// nothing is; Close waits for it.
func (b *Bolt) commitLoop() {
	defer b.loops.Done()
	for {
		b.mu.Lock()
		n := min(len(b.pending), boltMaxGroup)
		if n == 0 {
			b.pending = nil
			b.committing = false
			b.mu.Unlock()
			return
		}
		group := slices.Clone(b.pending[:n])
		m := copy(b.pending, b.pending[n:])
		clear(b.pending[m:])
		b.pending = b.pending[:m]
		b.mu.Unlock()
		b.commit(group)
	}
}

// commit writes a group of Commits in one transaction. A batch that
// conflicts is left out of it (nothing of it was written: neither its
// messages nor its state) and fails alone with ErrConflict. Any other
// failure inside the transaction rolls it back and each Commit is retried
// in a transaction of its own, so that one bad batch fails only its own
// room; a failed commit (fsync) fails them all.
func (b *Bolt) commit(group []*boltCommit) {
	defer func() {
		for _, c := range group {
			close(c.done)
		}
	}()
	b.commits.Add(1)
	err := b.update(func(tx *bolt.Tx) error {
		for _, c := range group {
			if err := applyCommit(tx, c); errors.Is(err, ErrConflict) {
				c.err = err
			} else if err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil || len(group) == 1 {
		for _, c := range group {
			if c.err == nil {
				c.err = err
			}
		}
		b.scrubAfter(group)
		return
	}
	for _, c := range group {
		b.commits.Add(1)
		c.err = b.update(func(tx *bolt.Tx) error { return applyCommit(tx, c) })
	}
	b.scrubAfter(group)
}

// scrubAfter scrubs the file's free pages when a committed batch of group
// erased a text, before any of them returns: a delete is not done while
// the erased words can still be read out of the file.
func (b *Bolt) scrubAfter(group []*boltCommit) {
	for _, c := range group {
		if c.err == nil && c.erased {
			if err := b.scrubFree(); err != nil {
				for _, c := range group {
					if c.err == nil && c.erased {
						c.err = fmt.Errorf("scrub the erased text from %s: %w", b.path, err)
					}
				}
			}
			return
		}
	}
}

// scrubFree zeroes every free page of the file. bbolt copies a page on
// write and leaves the old copy in the file, on a free page, until a later
// transaction reuses it: an overwritten text is gone from the tree, not
// from the disk. No reader may be open meanwhile (one reading an older
// snapshot could be reading those pages), so scrubMu shuts them out; the
// write transaction shuts out writers and keeps the freelist still. The
// newest meta page, which a crash falls back to, references none of the
// pages freed before it, so zeroing them is safe for recovery too.
func (b *Bolt) scrubFree() error {
	b.scrubMu.Lock()
	defer b.scrubMu.Unlock()
	f, err := os.OpenFile(b.path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	err = b.update(func(tx *bolt.Tx) error {
		size := tx.DB().Info().PageSize
		zero := make([]byte, size)
		for id := 2; ; id++ {
			p, err := tx.Page(id)
			if err != nil {
				return err
			}
			if p == nil {
				return f.Sync()
			}
			if p.Type == "free" {
				if _, err := f.WriteAt(zero, int64(id)*int64(size)); err != nil {
					return err
				}
			}
		}
	})
	if err != nil {
		return err
	}
	return f.Close()
}

// applyCommit puts one Commit's messages and its room's new state, then
// its room and member records. It checks for a conflict before writing
// anything.
func applyCommit(tx *bolt.Tx, c *boltCommit) error {
	if len(c.vals) > 0 {
		if err := applyMessages(tx, c); err != nil {
			return err
		}
	}
	if c.info != nil {
		if err := applyRoomRecord(tx, c); err != nil {
			return err
		}
	}
	if len(c.members) > 0 {
		if err := applyMembers(tx, c); err != nil {
			return err
		}
	}
	if len(c.rewrites) > 0 {
		if err := applyRewrites(tx, c); err != nil {
			return err
		}
	}
	if len(c.outbox) > 0 {
		return applyOutbox(tx, c)
	}
	return nil
}

// applyRewrites replaces stored messages; one whose text goes from
// something to nothing marks the commit as erasing, for scrubFree.
func applyRewrites(tx *bolt.Tx, c *boltCommit) error {
	rb := tx.Bucket(bucketRooms).Bucket([]byte(c.room))
	if rb == nil {
		return nil
	}
	for _, w := range c.rewrites {
		old := rb.Get(w.user)
		if old == nil {
			continue // retention deleted it
		}
		var was, now Message
		if err := decodeRecord(old, &was); err != nil {
			return fmt.Errorf("seq %d: %w", binary.BigEndian.Uint64(w.user), err)
		}
		if err := decodeRecord(w.val, &now); err != nil {
			return err
		}
		if was.Text != "" && now.Text == "" {
			c.erased = true
		}
		if err := rb.Put(w.user, w.val); err != nil {
			return err
		}
	}
	return nil
}

func applyMessages(tx *bolt.Tx, c *boltCommit) error {
	states := tx.Bucket(bucketState)
	st, err := getRoomState(states, []byte(c.room))
	if err != nil {
		return err
	}
	if c.first <= st.latest {
		return ErrConflict
	}
	rb, err := tx.Bucket(bucketRooms).CreateBucketIfNotExists([]byte(c.room))
	if err != nil {
		return err
	}
	// Keys only ever arrive in ascending order, so full pages are never
	// split by a later insert; the default 0.5 would waste half of each.
	rb.FillPercent = 1.0
	for i := range c.vals {
		if err := rb.Put(c.keys[8*i:8*i+8], c.vals[i]); err != nil {
			return err
		}
	}
	return putRoomState(states, []byte(c.room), roomState{latest: c.last, count: st.count + uint64(len(c.vals))})
}

// After implements Store.
func (b *Bolt) After(ctx context.Context, room string, after uint64, limit int) ([]Message, error) {
	if err := b.usable(ctx); err != nil {
		return nil, fmt.Errorf("store: read %q after %d: %w", room, after, err)
	}
	if limit <= 0 || after == ^uint64(0) {
		return nil, nil
	}
	var out []Message
	err := b.view(func(tx *bolt.Tx) error {
		rb := tx.Bucket(bucketRooms).Bucket([]byte(room))
		if rb == nil {
			return nil
		}
		out = make([]Message, 0, min(limit, 256))
		c := rb.Cursor()
		for k, v := c.Seek(seqKey(after + 1)); k != nil && len(out) < limit; k, v = c.Next() {
			m, err := decodeEntry(room, k, v)
			if err != nil {
				return err
			}
			out = append(out, m)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: read %q after %d: %w", room, after, b.mapErr(err))
	}
	return out, nil
}

// Before implements Store.
func (b *Bolt) Before(ctx context.Context, room string, before uint64, limit int) ([]Message, error) {
	if err := b.usable(ctx); err != nil {
		return nil, fmt.Errorf("store: read %q before %d: %w", room, before, err)
	}
	if limit <= 0 {
		return nil, nil
	}
	var out []Message
	err := b.view(func(tx *bolt.Tx) error {
		rb := tx.Bucket(bucketRooms).Bucket([]byte(room))
		if rb == nil {
			return nil
		}
		c := rb.Cursor()
		var k, v []byte
		if before == 0 {
			k, v = c.Last()
		} else if k, _ = c.Seek(seqKey(before)); k == nil {
			k, v = c.Last()
		} else {
			k, v = c.Prev()
		}
		out = make([]Message, 0, min(limit, 256))
		for ; k != nil && len(out) < limit; k, v = c.Prev() {
			m, err := decodeEntry(room, k, v)
			if err != nil {
				return err
			}
			out = append(out, m)
		}
		slices.Reverse(out)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: read %q before %d: %w", room, before, b.mapErr(err))
	}
	return out, nil
}

// Bounds implements Store.
func (b *Bolt) Bounds(ctx context.Context, room string) (Bounds, error) {
	if err := b.usable(ctx); err != nil {
		return Bounds{}, fmt.Errorf("store: bounds of %q: %w", room, err)
	}
	var bd Bounds
	err := b.view(func(tx *bolt.Tx) error {
		st, err := getRoomState(tx.Bucket(bucketState), []byte(room))
		if err != nil {
			return err
		}
		bd.Latest = st.latest
		if rb := tx.Bucket(bucketRooms).Bucket([]byte(room)); rb != nil {
			if k, _ := rb.Cursor().First(); k != nil {
				if len(k) != 8 {
					return fmt.Errorf("%w: corrupt key %x", ErrCorrupt, k)
				}
				bd.Oldest = binary.BigEndian.Uint64(k)
			}
		}
		return nil
	})
	if err != nil {
		return Bounds{}, fmt.Errorf("store: bounds of %q: %w", room, b.mapErr(err))
	}
	return bd, nil
}

// Trim implements Store. A read-only pass picks the rooms with something to
// delete; only those get (bounded) write transactions, since every bbolt
// commit is an fsync that stalls all rooms' Commits.
func (b *Bolt) Trim(ctx context.Context, r Retention, now time.Time) (int, error) {
	if err := b.usable(ctx); err != nil {
		return 0, fmt.Errorf("store: trim: %w", err)
	}
	if r.MaxCount <= 0 && r.MaxAge <= 0 {
		return 0, nil
	}
	var cutoff time.Time
	if r.MaxAge > 0 {
		cutoff = now.Add(-r.MaxAge)
	}
	var todo [][]byte
	err := b.view(func(tx *bolt.Tx) error {
		rooms := tx.Bucket(bucketRooms)
		return tx.Bucket(bucketState).ForEach(func(room, v []byte) error {
			st, err := decodeRoomState(v)
			if err != nil {
				return fmt.Errorf("room %q: %w", room, err)
			}
			due := r.MaxCount > 0 && st.count > uint64(r.MaxCount)
			if !due && r.MaxAge > 0 {
				if rb := rooms.Bucket(room); rb != nil {
					if _, v := rb.Cursor().First(); v != nil {
						t, err := recordTime(v)
						if err != nil {
							return fmt.Errorf("room %q: %w", room, err)
						}
						due = t.Before(cutoff)
					}
				}
			}
			if due {
				todo = append(todo, slices.Clone(room))
			}
			return nil
		})
	})
	if err != nil {
		return 0, fmt.Errorf("store: trim: %w", b.mapErr(err))
	}
	total := 0
	for _, room := range todo {
		for {
			if err := b.usable(ctx); err != nil {
				return total, fmt.Errorf("store: trim: %w", err)
			}
			n, err := b.trimRoom(room, r, cutoff)
			total += n
			if err != nil {
				return total, fmt.Errorf("store: trim %q: %w", room, b.mapErr(err))
			}
			if n < boltTrimBatch {
				break
			}
		}
	}
	return total, nil
}

// trimRoom deletes up to boltTrimBatch of room's oldest messages that are
// past r, in one transaction.
func (b *Bolt) trimRoom(room []byte, r Retention, cutoff time.Time) (int, error) {
	n := 0
	err := b.update(func(tx *bolt.Tx) error {
		states := tx.Bucket(bucketState)
		st, err := getRoomState(states, room)
		if err != nil {
			return err
		}
		rb := tx.Bucket(bucketRooms).Bucket(room)
		if rb == nil {
			return nil
		}
		var excess uint64
		if r.MaxCount > 0 && st.count > uint64(r.MaxCount) {
			excess = st.count - uint64(r.MaxCount)
		}
		// Collect first: deleting under a live bbolt cursor can skip keys.
		var doomed [][]byte
		c := rb.Cursor()
		for k, v := c.First(); k != nil && len(doomed) < boltTrimBatch; k, v = c.Next() {
			if uint64(len(doomed)) >= excess {
				if r.MaxAge <= 0 {
					break
				}
				t, err := recordTime(v)
				if err != nil {
					return fmt.Errorf("seq %x: %w", k, err)
				}
				if !t.Before(cutoff) {
					break
				}
			}
			doomed = append(doomed, slices.Clone(k))
		}
		if len(doomed) == 0 {
			return nil
		}
		for _, k := range doomed {
			if err := rb.Delete(k); err != nil {
				return err
			}
		}
		st.count -= min(st.count, uint64(len(doomed)))
		if err := putRoomState(states, room, st); err != nil {
			return err
		}
		n = len(doomed)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// Close implements Store. It waits for transactions in flight, and for
// the Commits already queued to be committed.
func (b *Bolt) Close() error {
	b.mu.Lock()
	already := b.closed.Swap(true)
	b.mu.Unlock()
	if already {
		return nil
	}
	b.loops.Wait()
	if err := b.db.Close(); err != nil {
		return fmt.Errorf("store: close %s: %w", b.path, err)
	}
	return nil
}

func (b *Bolt) usable(ctx context.Context) error {
	if b.closed.Load() {
		return ErrClosed
	}
	return ctx.Err()
}

// mapErr turns bbolt's "not open", seen by calls racing Close, into ErrClosed.
func (b *Bolt) mapErr(err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// Record format: a version byte (recordV2), the time as a signed varint of
// Unix seconds and a uvarint of nanoseconds (which, unlike UnixNano, covers
// every time.Time including the zero one), sender and client_msg_id each as
// a uvarint length and bytes, the sender kind as one byte, the body as a
// uvarint length and bytes, then the text, which runs to the end. Room and
// seq are the bucket and key, so they are not repeated. recordV1, written
// before messages had kinds and bodies, lacks the kind and the body; it
// still decodes, so files need no rewrite.
const (
	recordV1 = 1
	recordV2 = 2
)

func appendRecord(buf []byte, m *Message) []byte {
	buf = slices.Grow(buf, 1+10+5+3*binary.MaxVarintLen64+1+len(m.Sender)+len(m.ClientMsgID)+len(m.Body)+len(m.Text))
	buf = append(buf, recordV2)
	buf = binary.AppendVarint(buf, m.Time.Unix())
	buf = binary.AppendUvarint(buf, uint64(m.Time.Nanosecond()))
	buf = binary.AppendUvarint(buf, uint64(len(m.Sender)))
	buf = append(buf, m.Sender...)
	buf = binary.AppendUvarint(buf, uint64(len(m.ClientMsgID)))
	buf = append(buf, m.ClientMsgID...)
	buf = append(buf, m.SenderKind)
	buf = binary.AppendUvarint(buf, uint64(len(m.Body)))
	buf = append(buf, m.Body...)
	return append(buf, m.Text...)
}

var errBadRecord = fmt.Errorf("%w: a message record that does not decode", ErrCorrupt)

// recordTime decodes only the time, which is all Trim needs.
func recordTime(v []byte) (time.Time, error) {
	t, _, err := decodeTime(v)
	return t, err
}

// maxRecordBytes bounds a record: far above any message (a frame is at
// most -max-message-bytes), it keeps a damaged page from making a read copy
// gigabytes.
const maxRecordBytes = 16 << 20

func decodeTime(v []byte) (time.Time, []byte, error) {
	if len(v) == 0 || len(v) > maxRecordBytes || (v[0] != recordV1 && v[0] != recordV2) {
		return time.Time{}, nil, errBadRecord
	}
	t, v, ok := decodeTimeField(v[1:])
	if !ok {
		return time.Time{}, nil, errBadRecord
	}
	return t, v, nil
}

// decodeTimeField decodes a time as appendTimeField wrote it, in UTC.
func decodeTimeField(v []byte) (time.Time, []byte, bool) {
	sec, n := binary.Varint(v)
	if n <= 0 {
		return time.Time{}, nil, false
	}
	v = v[n:]
	nsec, n := binary.Uvarint(v)
	if n <= 0 || nsec >= 1e9 {
		return time.Time{}, nil, false
	}
	return time.Unix(sec, int64(nsec)).UTC(), v[n:], true
}

func appendTimeField(buf []byte, t time.Time) []byte {
	buf = binary.AppendVarint(buf, t.Unix())
	return binary.AppendUvarint(buf, uint64(t.Nanosecond()))
}

func decodeRecord(v []byte, m *Message) error {
	t, rest, err := decodeTime(v)
	if err != nil {
		return err
	}
	m.Time = t
	var ok bool
	if m.Sender, rest, ok = decodeString(rest); !ok {
		return errBadRecord
	}
	if m.ClientMsgID, rest, ok = decodeString(rest); !ok {
		return errBadRecord
	}
	m.SenderKind, m.Body = 0, nil
	if v[0] == recordV2 {
		if len(rest) == 0 {
			return errBadRecord
		}
		m.SenderKind = rest[0]
		l, n := binary.Uvarint(rest[1:])
		if n <= 0 || l > uint64(len(rest)-1-n) {
			return errBadRecord
		}
		if l > 0 {
			m.Body = bytes.Clone(rest[1+n : 1+n+int(l)])
		}
		rest = rest[1+n+int(l):]
	}
	m.Text = string(rest)
	return nil
}

// checkRecord reports whether v decodes as a record, without copying it.
func checkRecord(v []byte) error {
	_, rest, err := decodeTime(v)
	if err != nil {
		return err
	}
	for range 2 { // sender, client_msg_id
		if rest, err = skipBytes(rest); err != nil {
			return err
		}
	}
	if v[0] == recordV2 {
		if len(rest) == 0 {
			return errBadRecord
		}
		if _, err = skipBytes(rest[1:]); err != nil { // body, after the kind
			return err
		}
	}
	return nil
}

// skipBytes skips a uvarint length and that many bytes.
func skipBytes(v []byte) ([]byte, error) {
	l, n := binary.Uvarint(v)
	if n <= 0 || l > uint64(len(v)-n) {
		return nil, errBadRecord
	}
	return v[n+int(l):], nil
}

func decodeString(v []byte) (string, []byte, bool) {
	l, n := binary.Uvarint(v)
	if n <= 0 || l > uint64(len(v)-n) {
		return "", nil, false
	}
	v = v[n:]
	return string(v[:l]), v[l:], true
}

// decodeEntry copies a stored message out of bbolt's memory map, which is
// only valid during the transaction.
func decodeEntry(room string, k, v []byte) (Message, error) {
	if len(k) != 8 {
		return Message{}, fmt.Errorf("%w: corrupt key %x", ErrCorrupt, k)
	}
	m := Message{Room: room, Seq: binary.BigEndian.Uint64(k)}
	if err := decodeRecord(v, &m); err != nil {
		return Message{}, fmt.Errorf("seq %d: %w", m.Seq, err)
	}
	return m, nil
}
