package store

import (
	"context"
	"time"
)

// What a room is and who belongs to it: durable state derived from the
// room's log, written in the same transaction as the events that change it
// (Commit), and read back when a room activates, when a user logs in (its
// rooms), and for listings.

// Room kinds, as stored (the wire protocol's RoomKind values).
const (
	KindPublic  uint8 = 1 // anyone allowed may join; listed
	KindPrivate uint8 = 2 // members only; listed to members
	KindDirect  uint8 = 3 // exactly two users; listed to them
)

// Roles, as stored (the wire protocol's Role values). RoleNone is a record
// of someone who is not a member: invited, or banned.
const (
	RoleNone      uint8 = 0
	RoleMember    uint8 = 1
	RoleModerator uint8 = 2
	RoleOwner     uint8 = 3
)

// Forever is the expiry of a ban or mute that does not expire.
var Forever = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

// RoomRecord is a room's durable description.
type RoomRecord struct {
	Name      string
	Kind      uint8
	Title     string
	Topic     string
	CreatedBy string
	CreatedAt time.Time
	// Peer is, for a direct room, the user CreatedBy wrote to.
	Peer    string
	Deleted bool
	// ReadPositions is the room setting that shows members each other's
	// read cursors (off by default).
	ReadPositions bool
	// Members is how many members (RoleMember and up) the room has; the
	// room keeps it current in every Commit that changes it.
	Members int
	// Latest is the room's latest seq; filled by reads, ignored by Commit.
	Latest uint64
}

// Member is one user's standing in one room. A record with RoleNone, not
// invited and not banned is no record: Commit deletes it.
type Member struct {
	Room, User string
	Role       uint8
	Invited    bool      // may join a private room (RoleNone until they do)
	InvitedBy  string    // who invited them, when Invited
	Since      time.Time // when the role (or invitation, or ban) was given
	// BannedUntil and MutedUntil are zero when not banned (muted), Forever
	// when without expiry. A ban removes membership (RoleNone).
	BannedUntil time.Time
	MutedUntil  time.Time
	// ReadSeq is the member's read cursor: the last seq it has read (it
	// only moves forward). Mentions are the seqs of the posts after it
	// that mention the member, ascending, at most MaxUnreadMentions.
	ReadSeq  uint64
	Mentions []uint64
}

// MaxUnreadMentions bounds Member.Mentions: past it, the oldest go (a
// count of "100 or more" is as useful as the exact one).
const MaxUnreadMentions = 100

// Empty reports whether m says nothing and is deleted by Commit.
func (m Member) Empty() bool {
	return m.Role == RoleNone && !m.Invited && m.BannedUntil.IsZero() && m.MutedUntil.IsZero()
}

// UserRoom is one of a user's rooms: the room, and the user's standing in it.
type UserRoom struct {
	Room   RoomRecord
	Member Member
}

// Batch is what a room commits at once, atomically and durably: the events
// it appends to its log (consecutive seqs after the room's Latest; none is
// fine), and the state they change.
type Batch struct {
	Room     string
	Messages []Message
	// Info, when set, replaces the room's record.
	Info *RoomRecord
	// Members replace these users' records in the room (an Empty one
	// deletes the record).
	Members []Member
	// Rewrites replace stored messages of the room, by seq, after
	// Messages are appended (so a batch may rewrite one of its own): a
	// post's new version when it is edited or reacted to, and, when it is
	// deleted, its text and its edits' texts overwritten. This is how a
	// message's text leaves the store: no backend keeps the old version
	// where a reader (or the file) could find it. A seq that is not stored
	// (retention deleted it) is skipped.
	Rewrites []Message
	// Outbox are webhooks telling of these events (outbox.go), stored with
	// them or not at all. A batch may hold only these.
	Outbox []OutboxEntry
}

// Rooms is the durable state of rooms, beside their history.
type Rooms interface {
	// Room returns a room's record; ok is false for a room never described
	// (a room that only has history, from before rooms had records).
	Room(ctx context.Context, name string) (r RoomRecord, ok bool, err error)
	// Members lists a room's records (members, invitations, bans) by user
	// name, up to limit of them after the name after ("" for the first).
	Members(ctx context.Context, room, after string, limit int) ([]Member, error)
	// UserRooms lists the rooms where user has a record (member, invited,
	// banned), with their records (Latest filled), by room name, up to
	// limit after the name after. Deleted rooms are left out.
	UserRooms(ctx context.Context, user, after string, limit int) ([]UserRoom, error)
	// PublicRooms lists the public rooms that are not deleted (Latest
	// filled), by name, up to limit after the name after.
	PublicRooms(ctx context.Context, after string, limit int) ([]RoomRecord, error)
}
