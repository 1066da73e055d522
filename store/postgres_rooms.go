package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Rooms' state in PostgreSQL: parley_room_records and parley_members
// (migrations/postgres/0002_rooms.sql), written by Commit.

// selectRoom reads a RoomRecord from parley_room_records i, Latest
// included; scanRoom is its counterpart. COLLATE "default": see the
// migration.
const selectRoom = `i.room, i.kind, i.title, i.topic, i.created_by, i.created_at, i.peer, i.deleted, i.members, i.read_positions,
	coalesce((SELECT r.latest FROM parley_rooms r WHERE r.room = i.room COLLATE "default"), 0)`

// roomScan holds the columns of selectRoom for one row.
type roomScan struct {
	r       RoomRecord
	kind    int16
	members int64
	latest  int64
}

func (s *roomScan) dest() []any {
	return []any{&s.r.Name, &s.kind, &s.r.Title, &s.r.Topic, &s.r.CreatedBy, &s.r.CreatedAt, &s.r.Peer, &s.r.Deleted, &s.members, &s.r.ReadPositions, &s.latest}
}

func (s *roomScan) record() RoomRecord {
	r := s.r
	r.Kind, r.Members, r.Latest = uint8(s.kind), int(s.members), uint64(s.latest)
	r.CreatedAt = r.CreatedAt.UTC()
	return r
}

// memberScan holds the columns of selectMember for one row, and the user
// where a query reads it.
type memberScan struct {
	role          int16
	invited       bool
	invitedBy     string
	since         time.Time
	banned, muted *time.Time
	readSeq       int64
	mentions      []byte
	username      string
}

const selectMember = `m.role, m.invited, m.invited_by, m.since, m.banned_until, m.muted_until, m.read_seq, m.mentions`

func (s *memberScan) dest() []any {
	return []any{&s.role, &s.invited, &s.invitedBy, &s.since, &s.banned, &s.muted, &s.readSeq, &s.mentions}
}

func (s *memberScan) member(room, user string) Member {
	m := Member{Room: room, User: user, Role: uint8(s.role), Invited: s.invited, InvitedBy: s.invitedBy, Since: s.since.UTC(),
		ReadSeq: uint64(s.readSeq), Mentions: seqsOfPg(s.mentions)}
	if s.banned != nil {
		m.BannedUntil = s.banned.UTC()
	}
	if s.muted != nil {
		m.MutedUntil = s.muted.UTC()
	}
	return m
}

// Room implements Rooms.
func (p *Postgres) Room(ctx context.Context, name string) (RoomRecord, bool, error) {
	if p.closed.Load() {
		return RoomRecord{}, false, fmt.Errorf("store: room %q: %w", name, ErrClosed)
	}
	var s roomScan
	err := p.pool.QueryRow(ctx, `SELECT `+selectRoom+` FROM parley_room_records i WHERE i.room = $1`, name).Scan(s.dest()...)
	if errors.Is(err, pgx.ErrNoRows) {
		return RoomRecord{}, false, nil
	}
	if err != nil {
		return RoomRecord{}, false, fmt.Errorf("store: room %q: %w", name, p.fail(err))
	}
	return s.record(), true, nil
}

// Members implements Rooms.
func (p *Postgres) Members(ctx context.Context, room, after string, limit int) ([]Member, error) {
	if p.closed.Load() {
		return nil, fmt.Errorf("store: members of %q: %w", room, ErrClosed)
	}
	if limit <= 0 {
		return nil, nil
	}
	rows, _ := p.pool.Query(ctx, `SELECT m.username, `+selectMember+` FROM parley_members m
		WHERE m.room = $1 AND m.username > $2 ORDER BY m.username LIMIT $3`, room, after, int64(limit))
	var out []Member
	var s memberScan
	_, err := pgx.ForEachRow(rows, append([]any{&s.username}, s.dest()...), func() error {
		out = append(out, s.member(room, s.username))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: members of %q: %w", room, p.fail(err))
	}
	return out, nil
}

// UserRooms implements Rooms. Rooms without a record (history from before
// rooms had records) are left out, as deleted ones are.
func (p *Postgres) UserRooms(ctx context.Context, user, after string, limit int) ([]UserRoom, error) {
	if p.closed.Load() {
		return nil, fmt.Errorf("store: rooms of %q: %w", user, ErrClosed)
	}
	if limit <= 0 {
		return nil, nil
	}
	rows, _ := p.pool.Query(ctx, `SELECT `+selectRoom+`, `+selectMember+`
		FROM parley_members m JOIN parley_room_records i ON i.room = m.room
		WHERE m.username = $1 AND m.room > $2 AND NOT i.deleted
		ORDER BY m.room LIMIT $3`, user, after, int64(limit))
	var out []UserRoom
	var rs roomScan
	var ms memberScan
	_, err := pgx.ForEachRow(rows, append(rs.dest(), ms.dest()...), func() error {
		r := rs.record()
		out = append(out, UserRoom{Room: r, Member: ms.member(r.Name, user)})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: rooms of %q: %w", user, p.fail(err))
	}
	return out, nil
}

// PublicRooms implements Rooms. The kind is written out (1 is KindPublic)
// so that the planner matches the partial index parley_room_records_public.
func (p *Postgres) PublicRooms(ctx context.Context, after string, limit int) ([]RoomRecord, error) {
	if p.closed.Load() {
		return nil, fmt.Errorf("store: public rooms: %w", ErrClosed)
	}
	if limit <= 0 {
		return nil, nil
	}
	rows, _ := p.pool.Query(ctx, `SELECT `+selectRoom+` FROM parley_room_records i
		WHERE i.kind = 1 AND NOT i.deleted AND i.room > $1 ORDER BY i.room LIMIT $2`, after, int64(limit))
	var out []RoomRecord
	var s roomScan
	_, err := pgx.ForEachRow(rows, s.dest(), func() error {
		out = append(out, s.record())
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: public rooms: %w", p.fail(err))
	}
	return out, nil
}
