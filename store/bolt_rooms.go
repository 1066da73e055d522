package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Rooms' state in a Bolt file: see the layout next to bucketRecords.

// applyRoomRecord replaces the room's record and keeps bucketPublic in step
// with it.
func applyRoomRecord(tx *bolt.Tx, c *boltCommit) error {
	room := []byte(c.room)
	if err := tx.Bucket(bucketRecords).Put(room, c.info); err != nil {
		return err
	}
	if c.public {
		return tx.Bucket(bucketPublic).Put(room, indexMark)
	}
	return tx.Bucket(bucketPublic).Delete(room)
}

// applyMembers writes the member records in order (a later record for the
// same user wins) and keeps bucketUserRooms in step. Buckets left empty are
// deleted, so that users who left every room and rooms without records
// cost nothing.
func applyMembers(tx *bolt.Tx, c *boltCommit) error {
	room := []byte(c.room)
	all, users := tx.Bucket(bucketMembers), tx.Bucket(bucketUserRooms)
	mb, err := all.CreateBucketIfNotExists(room)
	if err != nil {
		return err
	}
	for _, m := range c.members {
		if m.val != nil {
			if err := mb.Put(m.user, m.val); err != nil {
				return err
			}
			ub, err := users.CreateBucketIfNotExists(m.user)
			if err != nil {
				return err
			}
			if err := ub.Put(room, indexMark); err != nil {
				return err
			}
			continue
		}
		if err := mb.Delete(m.user); err != nil {
			return err
		}
		ub := users.Bucket(m.user)
		if ub == nil {
			continue
		}
		if err := ub.Delete(room); err != nil {
			return err
		}
		if k, _ := ub.Cursor().First(); k == nil {
			if err := users.DeleteBucket(m.user); err != nil {
				return err
			}
		}
	}
	if k, _ := mb.Cursor().First(); k == nil {
		return all.DeleteBucket(room)
	}
	return nil
}

// Room implements Rooms.
func (b *Bolt) Room(ctx context.Context, name string) (RoomRecord, bool, error) {
	if err := b.usable(ctx); err != nil {
		return RoomRecord{}, false, fmt.Errorf("store: room %q: %w", name, err)
	}
	var r RoomRecord
	var ok bool
	err := b.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketRecords).Get([]byte(name))
		if v == nil {
			return nil
		}
		var err error
		r, err = roomRecordAt(tx, []byte(name), v)
		ok = err == nil
		return err
	})
	if err != nil {
		return RoomRecord{}, false, fmt.Errorf("store: room %q: %w", name, b.mapErr(err))
	}
	return r, ok, nil
}

// Members implements Rooms.
func (b *Bolt) Members(ctx context.Context, room, after string, limit int) ([]Member, error) {
	if err := b.usable(ctx); err != nil {
		return nil, fmt.Errorf("store: members of %q: %w", room, err)
	}
	if limit <= 0 {
		return nil, nil
	}
	var out []Member
	err := b.view(func(tx *bolt.Tx) error {
		mb := tx.Bucket(bucketMembers).Bucket([]byte(room))
		if mb == nil {
			return nil
		}
		c := mb.Cursor()
		for k, v := seekAfter(c, after); k != nil && len(out) < limit; k, v = c.Next() {
			m, err := decodeMemberRecord(v)
			if err != nil {
				return fmt.Errorf("user %q: %w", k, err)
			}
			m.Room, m.User = room, string(k)
			out = append(out, m)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: members of %q: %w", room, b.mapErr(err))
	}
	return out, nil
}

// UserRooms implements Rooms. Rooms without a record (history from before
// rooms had records) are left out, as deleted ones are.
func (b *Bolt) UserRooms(ctx context.Context, user, after string, limit int) ([]UserRoom, error) {
	if err := b.usable(ctx); err != nil {
		return nil, fmt.Errorf("store: rooms of %q: %w", user, err)
	}
	if limit <= 0 {
		return nil, nil
	}
	var out []UserRoom
	err := b.view(func(tx *bolt.Tx) error {
		ub := tx.Bucket(bucketUserRooms).Bucket([]byte(user))
		if ub == nil {
			return nil
		}
		records, members := tx.Bucket(bucketRecords), tx.Bucket(bucketMembers)
		c := ub.Cursor()
		for k, v := seekAfter(c, after); k != nil && len(out) < limit; k, v = c.Next() {
			if err := checkIndexEntry(k, v); err != nil {
				return err
			}
			rv := records.Get(k)
			if rv == nil {
				continue
			}
			r, err := roomRecordAt(tx, k, rv)
			if err != nil {
				return err
			}
			if r.Deleted {
				continue
			}
			var mv []byte
			if mb := members.Bucket(k); mb != nil {
				mv = mb.Get([]byte(user))
			}
			if mv == nil {
				return fmt.Errorf("room %q: %w: the user index names it, but the user has no record there", k, ErrCorrupt)
			}
			m, err := decodeMemberRecord(mv)
			if err != nil {
				return fmt.Errorf("room %q: %w", k, err)
			}
			m.Room, m.User = r.Name, user
			out = append(out, UserRoom{Room: r, Member: m})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: rooms of %q: %w", user, b.mapErr(err))
	}
	return out, nil
}

// PublicRooms implements Rooms.
func (b *Bolt) PublicRooms(ctx context.Context, after string, limit int) ([]RoomRecord, error) {
	if err := b.usable(ctx); err != nil {
		return nil, fmt.Errorf("store: public rooms: %w", err)
	}
	if limit <= 0 {
		return nil, nil
	}
	var out []RoomRecord
	err := b.view(func(tx *bolt.Tx) error {
		records, states := tx.Bucket(bucketRecords), tx.Bucket(bucketState)
		c := tx.Bucket(bucketPublic).Cursor()
		for k, v := seekAfter(c, after); k != nil && len(out) < limit; k, v = c.Next() {
			r, err := publicRecord(records, k, v)
			if err != nil {
				return err
			}
			st, err := getRoomState(states, k)
			if err != nil {
				return fmt.Errorf("room %q: %w", k, err)
			}
			r.Latest = st.latest
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: public rooms: %w", b.mapErr(err))
	}
	return out, nil
}

// seekAfter positions c on the first key strictly after after.
func seekAfter(c *bolt.Cursor, after string) ([]byte, []byte) {
	k, v := c.Seek([]byte(after))
	if k != nil && string(k) == after {
		k, v = c.Next()
	}
	return k, v
}

// roomRecordAt decodes room's record v with its Latest.
func roomRecordAt(tx *bolt.Tx, room, v []byte) (RoomRecord, error) {
	r, err := decodeRoomRecord(v)
	if err != nil {
		return RoomRecord{}, fmt.Errorf("room %q: %w", room, err)
	}
	st, err := getRoomState(tx.Bucket(bucketState), room)
	if err != nil {
		return RoomRecord{}, fmt.Errorf("room %q: %w", room, err)
	}
	r.Name, r.Latest = string(room), st.latest
	return r, nil
}

// publicRecord reads the record of a room bucketPublic lists (v is the
// index entry), which must be a public room that is not deleted: both are
// written in one transaction, so anything else is damage.
func publicRecord(records *bolt.Bucket, room, v []byte) (RoomRecord, error) {
	if err := checkIndexEntry(room, v); err != nil {
		return RoomRecord{}, fmt.Errorf("public rooms: %w", err)
	}
	r, err := decodeRoomRecord(records.Get(room))
	if err != nil {
		return RoomRecord{}, fmt.Errorf("public room %q: %w", room, err)
	}
	if r.Kind != KindPublic || r.Deleted {
		return RoomRecord{}, fmt.Errorf("public room %q: %w: listed as public, but its record is not", room, ErrCorrupt)
	}
	r.Name = string(room)
	return r, nil
}

// checkIndexEntry checks an entry of bucketPublic or of a user's bucket in
// bucketUserRooms.
func checkIndexEntry(k, v []byte) error {
	if !bytes.Equal(v, indexMark) {
		return fmt.Errorf("room %q: %w: a corrupt index entry", k, ErrCorrupt)
	}
	return nil
}

// checkMemberEntry checks a member record in a room's bucketMembers bucket.
func checkMemberEntry(k, v []byte) error {
	if _, err := decodeMemberRecord(v); err != nil {
		return fmt.Errorf("user %q: %w", k, err)
	}
	return nil
}

// Room and member records: a version byte, then fixed fields, then
// strings, each as a uvarint length and bytes. Times are as in message
// records (appendTimeField). Names are keys, and Latest is the room's
// roomState, so none is repeated. Decoding is strict (every byte used,
// flags known) so that damage is caught rather than read as a record.
//
// Room record (roomRecordV1): kind, flags (1: deleted, 2: read positions
// shown, since format 5), created at,
// members (varint), title, topic, created by, peer.
//
// Member record (memberRecordV2): role, flags (1: invited), since, banned
// until, muted until, invited by, then the read cursor and the count and
// seqs of the unread mentions (uvarints). memberRecordV1, written before
// cursors, ends after invited by; it still decodes (no cursor).
const (
	roomRecordV1   = 1
	memberRecordV1 = 1
	memberRecordV2 = 2
	flagDeleted    = 1
	flagPositions  = 2
	flagInvited    = 1
)

var errBadState = fmt.Errorf("%w: a room or member record that does not decode", ErrCorrupt)

func appendRoomRecord(buf []byte, r *RoomRecord) []byte {
	var flags byte
	if r.Deleted {
		flags |= flagDeleted
	}
	if r.ReadPositions {
		flags |= flagPositions
	}
	buf = append(buf, roomRecordV1, r.Kind, flags)
	buf = appendTimeField(buf, r.CreatedAt)
	buf = binary.AppendVarint(buf, int64(r.Members))
	return appendStrings(buf, r.Title, r.Topic, r.CreatedBy, r.Peer)
}

func decodeRoomRecord(v []byte) (RoomRecord, error) {
	d := stateDecoder{v: v, ok: len(v) <= maxRecordBytes}
	var r RoomRecord
	if d.byte() != roomRecordV1 {
		return RoomRecord{}, errBadState
	}
	r.Kind = d.byte()
	flags := d.byte()
	r.Deleted = flags&flagDeleted != 0
	r.ReadPositions = flags&flagPositions != 0
	r.CreatedAt = d.time()
	r.Members = int(d.varint())
	r.Title, r.Topic, r.CreatedBy, r.Peer = d.string(), d.string(), d.string(), d.string()
	if !d.end() || flags&^(flagDeleted|flagPositions) != 0 {
		return RoomRecord{}, errBadState
	}
	return r, nil
}

func appendMemberRecord(buf []byte, m *Member) []byte {
	var flags byte
	if m.Invited {
		flags |= flagInvited
	}
	buf = append(buf, memberRecordV2, m.Role, flags)
	buf = appendTimeField(buf, m.Since)
	buf = appendTimeField(buf, m.BannedUntil)
	buf = appendTimeField(buf, m.MutedUntil)
	buf = appendStrings(buf, m.InvitedBy)
	buf = binary.AppendUvarint(buf, m.ReadSeq)
	buf = binary.AppendUvarint(buf, uint64(len(m.Mentions)))
	for _, s := range m.Mentions {
		buf = binary.AppendUvarint(buf, s)
	}
	return buf
}

func decodeMemberRecord(v []byte) (Member, error) {
	d := stateDecoder{v: v, ok: len(v) <= maxRecordBytes}
	var m Member
	version := d.byte()
	if version != memberRecordV1 && version != memberRecordV2 {
		return Member{}, errBadState
	}
	m.Role = d.byte()
	flags := d.byte()
	m.Invited = flags&flagInvited != 0
	m.Since, m.BannedUntil, m.MutedUntil = d.time(), d.time(), d.time()
	m.InvitedBy = d.string()
	if version == memberRecordV2 {
		m.ReadSeq = d.uvarint()
		n := d.uvarint()
		if n > MaxUnreadMentions {
			return Member{}, errBadState
		}
		for range n {
			m.Mentions = append(m.Mentions, d.uvarint())
		}
	}
	if !d.end() || flags&^flagInvited != 0 {
		return Member{}, errBadState
	}
	return m, nil
}

func appendStrings(buf []byte, ss ...string) []byte {
	for _, s := range ss {
		buf = binary.AppendUvarint(buf, uint64(len(s)))
		buf = append(buf, s...)
	}
	return buf
}

// stateDecoder reads the fields of a room or member record; after the first
// field that does not decode, ok is false and every later field is zero.
type stateDecoder struct {
	v  []byte
	ok bool
}

func (d *stateDecoder) byte() byte {
	if !d.ok || len(d.v) == 0 {
		d.ok = false
		return 0
	}
	b := d.v[0]
	d.v = d.v[1:]
	return b
}

func (d *stateDecoder) varint() int64 {
	if !d.ok {
		return 0
	}
	x, n := binary.Varint(d.v)
	if n <= 0 {
		d.ok = false
		return 0
	}
	d.v = d.v[n:]
	return x
}

func (d *stateDecoder) uvarint() uint64 {
	if !d.ok {
		return 0
	}
	x, n := binary.Uvarint(d.v)
	if n <= 0 {
		d.ok = false
		return 0
	}
	d.v = d.v[n:]
	return x
}

func (d *stateDecoder) time() time.Time {
	if !d.ok {
		return time.Time{}
	}
	t, rest, ok := decodeTimeField(d.v)
	if !ok {
		d.ok = false
		return time.Time{}
	}
	d.v = rest
	return t
}

// string copies: bbolt's memory is only valid during its transaction.
func (d *stateDecoder) string() string {
	if !d.ok {
		return ""
	}
	s, rest, ok := decodeString(d.v)
	if !ok {
		d.ok = false
		return ""
	}
	d.v = rest
	return s
}

// end reports whether every field decoded and nothing is left over.
func (d *stateDecoder) end() bool { return d.ok && len(d.v) == 0 }
