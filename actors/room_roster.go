package actors

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/actors/actorpb"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/store"
)

// A room's durable side (this file): what kind of room it is, who belongs
// to it with which role, who is invited, banned or muted. Every change is
// an event in the room's log (a RoomChange), committed with the records it
// writes (room_commit.go) before anyone is answered or told; the room
// applies it to its own state at once, and a failed commit reloads the
// room from the store.

// Bounds on a room's description.
const (
	MaxTitleRunes = 100
	MaxTopicRunes = 1000
)

// directPrefix starts the names of direct rooms, and only theirs.
const directPrefix = "@"

// DirectRoom is the name of the direct room of two users: the same for
// both, whoever writes first.
func DirectRoom(a, b string) string {
	if b < a {
		a, b = b, a
	}
	sum := sha256.Sum256([]byte(a + "\x00" + b))
	return directPrefix + "dm-" + hex.EncodeToString(sum[:10])
}

// IsDirectRoom reports whether name is in the direct rooms' namespace.
func IsDirectRoom(name string) bool { return strings.HasPrefix(name, directPrefix) }

// kind is the room's kind; a room without a record (one from before rooms
// had records, or not created yet) is public.
func (r *room) kind() uint8 {
	if r.info == nil {
		return store.KindPublic
	}
	return r.info.Kind
}

// role is what user may do in the room: its role there, raised by what its
// token claims; the system may do everything.
func (r *room) role(user string, kind parleypb.SenderKind, claim parleypb.Role) uint8 {
	if kind == parleypb.SenderKind_SENDER_KIND_SYSTEM {
		return store.RoleOwner + 1
	}
	return max(r.roster[user].Role, uint8(claim))
}

func banned(m store.Member, now time.Time) bool { return m.BannedUntil.After(now) }
func muted(m store.Member, now time.Time) bool  { return m.MutedUntil.After(now) }

// refusal is a named error for a request.
type refusal struct {
	code parleypb.ErrorCode
	text string
}

func refuse(code parleypb.ErrorCode, format string, args ...any) *refusal {
	return &refusal{code, fmt.Sprintf(format, args...)}
}

func (r *room) answer(ctx actor.Context, to *actor.PID, requestID string, no *refusal) {
	errorTo(ctx, to, requestID, r.name, no.code, no.text)
}

func until(t time.Time) string {
	if !t.Before(store.Forever) {
		return "for good"
	}
	return "until " + t.UTC().Format(time.RFC3339)
}

// mayJoin says why user may not join, or nil.
func (r *room) mayJoin(m *actorpb.RoomJoin) *refusal {
	if r.info != nil && r.info.Deleted {
		return refuse(parleypb.ErrorCode_ERROR_CODE_NO_SUCH_ROOM, "the room was deleted")
	}
	if r.info == nil && IsDirectRoom(r.name) {
		return refuse(parleypb.ErrorCode_ERROR_CODE_NO_SUCH_ROOM, "no such direct room: send a direct message to start one")
	}
	rec := r.roster[m.GetUser()]
	if banned(rec, time.Now()) && m.GetKind() != parleypb.SenderKind_SENDER_KIND_SYSTEM {
		return refuse(parleypb.ErrorCode_ERROR_CODE_BANNED, "you are banned from this room %s", until(rec.BannedUntil))
	}
	switch r.kind() {
	case store.KindPrivate:
		if rec.Role < store.RoleMember && !rec.Invited && r.role(m.GetUser(), m.GetKind(), m.GetClaimRole()) < store.RoleModerator {
			return refuse(parleypb.ErrorCode_ERROR_CODE_FORBIDDEN, "this room is private: members and invited users only")
		}
	case store.KindDirect:
		if rec.Role < store.RoleMember {
			return refuse(parleypb.ErrorCode_ERROR_CODE_FORBIDDEN, "this is a direct conversation between two other users")
		}
	}
	return nil
}

// joinChange is the events that make a joining user a member, with what
// they write; none when the user is one already (or does not become one: a
// tutorial-protocol client is only connected to lobby). A room without a
// record gets one first: a room that a join creates (and lobby, and a room
// from before records were kept) is public and the system's, with no
// owner; a room someone owns is made with CreateRoom.
func (r *room) joinChange(m *actorpb.RoomJoin) []*pendingEvent {
	user := m.GetUser()
	now := time.Now()
	durable := m.GetCodec() != parleypb.Codec_CODEC_LEGACY
	var out []*pendingEvent
	if r.info == nil {
		p := &pendingEvent{
			ev:   r.changeEvent(SystemName, parleypb.SenderKind_SENDER_KIND_SYSTEM, &parleypb.RoomChange{Kind: parleypb.ChangeKind_CHANGE_KIND_CREATED, RoomKind: parleypb.RoomKind_ROOM_KIND_PUBLIC}),
			info: &store.RoomRecord{Name: r.name, Kind: store.KindPublic, CreatedBy: SystemName, CreatedAt: now},
		}
		r.apply(p)
		out = append(out, p)
	}
	if durable && r.roster[user].Role < store.RoleMember {
		out = append(out, r.becomeMember(m, now))
	}
	return out
}

func (r *room) becomeMember(m *actorpb.RoomJoin, now time.Time) *pendingEvent {
	user := m.GetUser()
	rec := r.roster[user]
	rec.Room, rec.User, rec.Role, rec.Invited, rec.InvitedBy, rec.Since = r.name, user, store.RoleMember, false, "", now
	info := *r.info
	info.Members++
	p := &pendingEvent{
		ev:      r.changeEvent(user, m.GetKind(), &parleypb.RoomChange{Kind: parleypb.ChangeKind_CHANGE_KIND_JOINED, User: user, Role: parleypb.Role_ROLE_MEMBER}),
		members: []store.Member{rec}, info: &info,
		after: func(ctx actor.Context) { r.tellUser(ctx, user) },
	}
	// What came before joining is not unread.
	p.members[0].ReadSeq, p.members[0].Mentions = p.ev.Seq, nil
	r.apply(p)
	return p
}

// changeEvent is a room change as an event, with the next seq.
func (r *room) changeEvent(sender string, kind parleypb.SenderKind, c *parleypb.RoomChange) *parleypb.RoomEvent {
	r.next++
	return &parleypb.RoomEvent{Room: r.name, Seq: r.next, TimeMs: time.Now().UnixMilli(), Sender: sender, SenderKind: kind, Change: c}
}

// apply makes a pending change the room's state at once (a failed commit
// reloads the room from the store).
func (r *room) apply(p *pendingEvent) {
	if p.info != nil {
		info := *p.info
		r.info = &info
	}
	for _, m := range p.members {
		if m.Empty() {
			delete(r.roster, m.User)
		} else {
			r.roster[m.User] = m
		}
	}
}

// mayPost says why user may not post, or nil.
func (r *room) mayPost(m *actorpb.RoomPost) *refusal {
	if r.info == nil && r.committed == 0 { // (a session joins first, which makes the room)
		return refuse(parleypb.ErrorCode_ERROR_CODE_NO_SUCH_ROOM, "no such room")
	}
	if r.info != nil && r.info.Deleted {
		return refuse(parleypb.ErrorCode_ERROR_CODE_NO_SUCH_ROOM, "the room was deleted")
	}
	if m.GetKind() == parleypb.SenderKind_SENDER_KIND_SYSTEM {
		return nil
	}
	rec, now := r.roster[m.GetUser()], time.Now()
	if banned(rec, now) {
		return refuse(parleypb.ErrorCode_ERROR_CODE_BANNED, "you are banned from this room %s", until(rec.BannedUntil))
	}
	if muted(rec, now) {
		return refuse(parleypb.ErrorCode_ERROR_CODE_MUTED, "you are muted in this room %s: you may read, not post", until(rec.MutedUntil))
	}
	if r.kind() != store.KindPublic && rec.Role < store.RoleMember {
		return refuse(parleypb.ErrorCode_ERROR_CODE_FORBIDDEN, "only members post in this room")
	}
	return nil
}

// directChange creates the direct room of a first direct message (or makes
// both users members again), or says why not.
func (r *room) directChange(m *actorpb.RoomPost) ([]*pendingEvent, *refusal) {
	from, to := m.GetUser(), m.GetDirectWith()
	if r.name != DirectRoom(from, to) || from == to {
		return nil, refuse(parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, "not the direct room of %q and %q", from, to)
	}
	if r.info != nil && (r.info.Kind != store.KindDirect || r.info.Deleted) {
		return nil, refuse(parleypb.ErrorCode_ERROR_CODE_NO_SUCH_ROOM, "no such direct room")
	}
	now := time.Now()
	var out []*pendingEvent
	if r.info == nil {
		p := &pendingEvent{
			ev:   r.changeEvent(from, m.GetKind(), &parleypb.RoomChange{Kind: parleypb.ChangeKind_CHANGE_KIND_CREATED, User: to, RoomKind: parleypb.RoomKind_ROOM_KIND_DIRECT}),
			info: &store.RoomRecord{Name: r.name, Kind: store.KindDirect, CreatedBy: from, Peer: to, CreatedAt: now, Members: 2},
			members: []store.Member{
				{Room: r.name, User: from, Role: store.RoleMember, Since: now},
				{Room: r.name, User: to, Role: store.RoleMember, Since: now},
			},
			after: func(ctx actor.Context) { r.tellUser(ctx, from); r.tellUser(ctx, to) },
		}
		r.apply(p)
		return append(out, p), nil
	}
	for _, u := range []string{from, to} {
		if r.roster[u].Role >= store.RoleMember {
			continue
		}
		if banned(r.roster[u], now) {
			return nil, refuse(parleypb.ErrorCode_ERROR_CODE_BANNED, "%s is not in this conversation any more", u)
		}
		out = append(out, r.becomeMember(&actorpb.RoomJoin{User: u, Kind: m.GetKind()}, now))
	}
	return out, nil
}

// create creates a public or private room (CreateRoom).
func (r *room) create(ctx actor.Context, m *actorpb.RoomCreate) {
	to, id := m.GetSession(), m.GetRequestId()
	if !r.load() {
		r.unavailable(ctx, to, id)
		return
	}
	if r.info != nil || r.committed > 0 {
		r.answer(ctx, to, id, refuse(parleypb.ErrorCode_ERROR_CODE_ROOM_EXISTS, "the room %q exists", r.name))
		return
	}
	var kind uint8
	switch m.GetRoomKind() {
	case parleypb.RoomKind_ROOM_KIND_PUBLIC, parleypb.RoomKind_ROOM_KIND_UNSPECIFIED:
		kind = store.KindPublic
	case parleypb.RoomKind_ROOM_KIND_PRIVATE:
		kind = store.KindPrivate
	default:
		r.answer(ctx, to, id, refuse(parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, "a room is public or private; direct rooms come from a direct message"))
		return
	}
	if no := checkDescription(m.GetTitle(), m.GetTopic()); no != nil {
		r.answer(ctx, to, id, no)
		return
	}
	user, now := m.GetUser(), time.Now()
	owner := user
	if m.GetKind() == parleypb.SenderKind_SENDER_KIND_SYSTEM {
		owner = m.GetOwner() // the application names the owner, or none
	}
	for _, u := range m.GetInvite() {
		switch {
		case kind == store.KindPublic:
			r.answer(ctx, to, id, refuse(parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, "a public room needs no invitations"))
			return
		case u == owner:
			r.answer(ctx, to, id, refuse(parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, "you cannot invite yourself"))
			return
		case ValidName(u) != nil:
			r.answer(ctx, to, id, refuse(parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, "cannot invite %q: it is not a user name", u))
			return
		}
	}
	info := &store.RoomRecord{Name: r.name, Kind: kind, Title: m.GetTitle(), Topic: m.GetTopic(), CreatedBy: user, CreatedAt: now}
	change := &parleypb.RoomChange{Kind: parleypb.ChangeKind_CHANGE_KIND_CREATED, RoomKind: parleypb.RoomKind(kind), Title: m.GetTitle(), Topic: m.GetTopic()}
	created := &pendingEvent{info: info}
	if owner != "" {
		if err := ValidName(owner); err != nil {
			r.answer(ctx, to, id, refuse(parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, "owner %v", err))
			return
		}
		info.CreatedBy, info.Members = owner, 1
		change.User, change.Role = owner, parleypb.Role_ROLE_OWNER
		created.members = []store.Member{{Room: r.name, User: owner, Role: store.RoleOwner, Since: now}}
		created.after = func(ctx actor.Context) { r.tellUser(ctx, owner) }
	}
	created.ev = r.changeEvent(user, m.GetKind(), change)
	r.apply(created)
	r.queue(ctx, created)
	for _, u := range m.GetInvite() {
		r.queue(ctx, r.invite(user, m.GetKind(), u, now))
	}
	// The request is answered with the seq of the last of its events.
	r.pending[len(r.pending)-1].session, r.pending[len(r.pending)-1].requestID = to, id
}

func (r *room) invite(by string, kind parleypb.SenderKind, user string, now time.Time) *pendingEvent {
	rec := r.roster[user]
	rec.Room, rec.User, rec.Invited, rec.InvitedBy, rec.Since = r.name, user, true, by, now
	p := &pendingEvent{
		ev:      r.changeEvent(by, kind, &parleypb.RoomChange{Kind: parleypb.ChangeKind_CHANGE_KIND_INVITED, User: user}),
		members: []store.Member{rec},
		after:   func(ctx actor.Context) { r.tellUser(ctx, user) },
	}
	r.apply(p)
	return p
}

func checkDescription(title, topic string) *refusal {
	for _, f := range []struct {
		name, v string
		max     int
	}{{"title", title, MaxTitleRunes}, {"topic", topic, MaxTopicRunes}} {
		if f.v == "" {
			continue
		}
		if err := validText(f.v); err != nil {
			return refuse(parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, "%s %v", f.name, err)
		}
		if n := utf8.RuneCountInString(f.v); n > f.max {
			return refuse(parleypb.ErrorCode_ERROR_CODE_TOO_LONG, "%s has %d characters; at most %d", f.name, n, f.max)
		}
	}
	return nil
}

// moderate acts on a user in the room (Moderate), or says why not.
func (r *room) moderate(ctx actor.Context, m *actorpb.RoomModerate) {
	to, id := m.GetSession(), m.GetRequestId()
	if !r.load() {
		r.unavailable(ctx, to, id)
		return
	}
	p, no := r.moderation(m)
	if no != nil {
		r.answer(ctx, to, id, no)
		return
	}
	p.session, p.requestID = to, id
	r.apply(p)
	r.queue(ctx, p)
}

func (r *room) moderation(m *actorpb.RoomModerate) (*pendingEvent, *refusal) {
	if r.info == nil || r.info.Deleted {
		return nil, refuse(parleypb.ErrorCode_ERROR_CODE_NO_SUCH_ROOM, "no such room")
	}
	if r.info.Kind == store.KindDirect {
		return nil, refuse(parleypb.ErrorCode_ERROR_CODE_FORBIDDEN, "a direct room has exactly its two users: nobody is added to it or removed")
	}
	user, target, action := m.GetUser(), m.GetTarget(), m.GetAction()
	if err := ValidName(target); err != nil {
		return nil, refuse(parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, "user %v", err)
	}
	if target == user {
		return nil, refuse(parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, "you cannot do that to yourself (leave the room to leave it)")
	}
	actorRole := r.role(user, m.GetKind(), m.GetClaimRole())
	rec, now := r.roster[target], time.Now()
	rec.Room, rec.User = r.name, target
	change := &parleypb.RoomChange{User: target, Reason: m.GetReason()}
	p := &pendingEvent{after: func(ctx actor.Context) { r.tellUser(ctx, target) }}
	var expiry time.Time
	if action == parleypb.ModAction_MOD_ACTION_BAN || action == parleypb.ModAction_MOD_ACTION_MUTE {
		expiry = store.Forever
		if ms := m.GetUntilMs(); ms != 0 {
			if expiry = time.UnixMilli(ms); !expiry.After(now) {
				return nil, refuse(parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, "until_ms is in the past")
			}
			change.UntilMs = ms
		}
	}
	needs := func(role uint8) *refusal {
		if actorRole < role {
			what := "a moderator"
			if role == store.RoleOwner {
				what = "the owner"
			}
			return refuse(parleypb.ErrorCode_ERROR_CODE_FORBIDDEN, "only %s may do that here", what)
		}
		return nil
	}
	over := func() *refusal { // acting on someone: only over a lower role
		if rec.Role == store.RoleOwner && actorRole <= store.RoleOwner {
			return refuse(parleypb.ErrorCode_ERROR_CODE_FORBIDDEN, "the owner cannot be %s", pastTense(action))
		}
		if rec.Role >= actorRole {
			return refuse(parleypb.ErrorCode_ERROR_CODE_FORBIDDEN, "%s is a %s too: only the owner may do that", target, roleName(rec.Role))
		}
		return nil
	}
	member := func() *refusal {
		if rec.Role < store.RoleMember {
			return refuse(parleypb.ErrorCode_ERROR_CODE_NOT_MEMBER, "%s is not a member of this room", target)
		}
		return nil
	}
	info := *r.info
	switch action {
	case parleypb.ModAction_MOD_ACTION_INVITE:
		if no := needs(store.RoleModerator); no != nil {
			return nil, no
		}
		switch {
		case info.Kind == store.KindPublic:
			return nil, refuse(parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, "a public room needs no invitations: anyone may join")
		case rec.Role >= store.RoleMember:
			return nil, refuse(parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, "%s is a member already", target)
		case banned(rec, now):
			return nil, refuse(parleypb.ErrorCode_ERROR_CODE_FORBIDDEN, "%s is banned from this room: unban first", target)
		case rec.Invited:
			return nil, refuse(parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, "%s is invited already", target)
		}
		rec.Invited, rec.InvitedBy, rec.Since = true, user, now
		change.Kind = parleypb.ChangeKind_CHANGE_KIND_INVITED
	case parleypb.ModAction_MOD_ACTION_ADD:
		if no := needs(store.RoleModerator); no != nil {
			return nil, no
		}
		switch {
		case rec.Role >= store.RoleMember:
			return nil, refuse(parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, "%s is a member already", target)
		case banned(rec, now):
			return nil, refuse(parleypb.ErrorCode_ERROR_CODE_FORBIDDEN, "%s is banned from this room: unban first", target)
		}
		rec.Role, rec.Invited, rec.InvitedBy, rec.Since = store.RoleMember, false, "", now
		info.Members++
		p.info = &info
		change.Kind, change.Role = parleypb.ChangeKind_CHANGE_KIND_ADDED, parleypb.Role_ROLE_MEMBER
	case parleypb.ModAction_MOD_ACTION_REVOKE:
		if no := needs(store.RoleModerator); no != nil {
			return nil, no
		}
		if !rec.Invited {
			return nil, refuse(parleypb.ErrorCode_ERROR_CODE_NOT_MEMBER, "%s is not invited", target)
		}
		rec.Invited, rec.InvitedBy = false, ""
		change.Kind = parleypb.ChangeKind_CHANGE_KIND_INVITE_REVOKED
	case parleypb.ModAction_MOD_ACTION_KICK:
		if no := firstRefusal(needs(store.RoleModerator), member(), over()); no != nil {
			return nil, no
		}
		rec.Role, rec.MutedUntil = store.RoleNone, time.Time{}
		info.Members--
		p.info, p.evict = &info, target
		change.Kind = parleypb.ChangeKind_CHANGE_KIND_KICKED
	case parleypb.ModAction_MOD_ACTION_BAN:
		if no := firstRefusal(needs(store.RoleModerator), over()); no != nil {
			return nil, no
		}
		if rec.Role >= store.RoleMember {
			info.Members--
			p.info = &info
		}
		rec.Role, rec.Invited, rec.InvitedBy, rec.MutedUntil, rec.BannedUntil, rec.Since = store.RoleNone, false, "", time.Time{}, expiry, now
		p.evict = target
		change.Kind = parleypb.ChangeKind_CHANGE_KIND_BANNED
	case parleypb.ModAction_MOD_ACTION_UNBAN:
		if no := needs(store.RoleModerator); no != nil {
			return nil, no
		}
		if !banned(rec, now) {
			return nil, refuse(parleypb.ErrorCode_ERROR_CODE_NOT_MEMBER, "%s is not banned", target)
		}
		rec.BannedUntil = time.Time{}
		change.Kind = parleypb.ChangeKind_CHANGE_KIND_UNBANNED
	case parleypb.ModAction_MOD_ACTION_MUTE:
		if no := firstRefusal(needs(store.RoleModerator), member(), over()); no != nil {
			return nil, no
		}
		rec.MutedUntil = expiry
		change.Kind = parleypb.ChangeKind_CHANGE_KIND_MUTED
	case parleypb.ModAction_MOD_ACTION_UNMUTE:
		if no := needs(store.RoleModerator); no != nil {
			return nil, no
		}
		if !muted(rec, now) {
			return nil, refuse(parleypb.ErrorCode_ERROR_CODE_NOT_MEMBER, "%s is not muted", target)
		}
		rec.MutedUntil = time.Time{}
		change.Kind = parleypb.ChangeKind_CHANGE_KIND_UNMUTED
	case parleypb.ModAction_MOD_ACTION_SET_ROLE:
		if no := firstRefusal(needs(store.RoleOwner), member(), over()); no != nil {
			return nil, no
		}
		role := uint8(m.GetRole())
		if role != store.RoleMember && role != store.RoleModerator {
			return nil, refuse(parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, "a role is member or moderator (the owner's is given by transfer)")
		}
		rec.Role = role
		change.Kind, change.Role = parleypb.ChangeKind_CHANGE_KIND_ROLE_CHANGED, parleypb.Role(role)
	case parleypb.ModAction_MOD_ACTION_TRANSFER:
		if no := firstRefusal(needs(store.RoleOwner), member()); no != nil {
			return nil, no
		}
		rec.Role = store.RoleOwner
		change.Kind, change.Role = parleypb.ChangeKind_CHANGE_KIND_OWNER_CHANGED, parleypb.Role_ROLE_OWNER
		for u, other := range r.roster { // the owner before becomes a moderator
			if other.Role == store.RoleOwner && u != target {
				other.Role = store.RoleModerator
				p.members = append(p.members, other)
				prev := u
				tell := p.after
				p.after = func(ctx actor.Context) { tell(ctx); r.tellUser(ctx, prev) }
			}
		}
	default:
		return nil, refuse(parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, "unknown moderation action %v", action)
	}
	p.members = append([]store.Member{rec}, p.members...)
	p.ev = r.changeEvent(user, m.GetKind(), change)
	return p, nil
}

func firstRefusal(rs ...*refusal) *refusal {
	for _, r := range rs {
		if r != nil {
			return r
		}
	}
	return nil
}

func roleName(role uint8) string {
	switch role {
	case store.RoleOwner:
		return "owner"
	case store.RoleModerator:
		return "moderator"
	case store.RoleMember:
		return "member"
	}
	return "non-member"
}

func pastTense(a parleypb.ModAction) string {
	switch a {
	case parleypb.ModAction_MOD_ACTION_KICK:
		return "kicked"
	case parleypb.ModAction_MOD_ACTION_BAN:
		return "banned"
	case parleypb.ModAction_MOD_ACTION_MUTE:
		return "muted"
	}
	return "demoted"
}

// leaveMembership ends a user's membership (Leave) and reports whether it
// queued the LEFT event, or says why not.
func (r *room) leaveMembership(ctx actor.Context, m *actorpb.RoomLeave) (bool, *refusal) {
	user := m.GetUser()
	rec := r.roster[user]
	if rec.Role < store.RoleMember || r.info == nil {
		return false, nil // connected, not a member: only the connection goes
	}
	if rec.Role == store.RoleOwner && r.info.Members > 1 && r.info.Kind != store.KindDirect {
		return false, refuse(parleypb.ErrorCode_ERROR_CODE_FORBIDDEN, "you own this room: transfer ownership to another member before you leave")
	}
	info := *r.info
	info.Members--
	rec.Role, rec.MutedUntil = store.RoleNone, time.Time{}
	p := &pendingEvent{
		ev:      r.changeEvent(user, parleypb.SenderKind_SENDER_KIND_USER, &parleypb.RoomChange{Kind: parleypb.ChangeKind_CHANGE_KIND_LEFT, User: user}),
		members: []store.Member{rec}, info: &info, evict: user,
		session: m.GetSession(), requestID: m.GetRequestId(),
		after: func(ctx actor.Context) { r.tellUser(ctx, user) },
	}
	r.apply(p)
	r.queue(ctx, p)
	return true, nil
}

// update changes the room's title, topic or read positions setting
// (UpdateRoom).
func (r *room) update(ctx actor.Context, m *actorpb.RoomUpdate) {
	to, id := m.GetSession(), m.GetRequestId()
	if !r.load() {
		r.unavailable(ctx, to, id)
		return
	}
	if r.info == nil || r.info.Deleted {
		r.answer(ctx, to, id, refuse(parleypb.ErrorCode_ERROR_CODE_NO_SUCH_ROOM, "no such room"))
		return
	}
	if r.info.Kind == store.KindDirect {
		r.answer(ctx, to, id, refuse(parleypb.ErrorCode_ERROR_CODE_FORBIDDEN, "a direct room has no title, topic or settings"))
		return
	}
	if r.role(m.GetUser(), m.GetKind(), m.GetClaimRole()) < store.RoleModerator {
		r.log.Info("room update refused: not a moderator", "user", m.GetUser(), "code", "FORBIDDEN", "read_positions", m.ReadPositions != nil)
		r.answer(ctx, to, id, refuse(parleypb.ErrorCode_ERROR_CODE_FORBIDDEN, "only the owner and moderators may change the title, topic or settings"))
		return
	}
	info := *r.info
	if m.Title != nil {
		info.Title = m.GetTitle()
	}
	if m.Topic != nil {
		info.Topic = m.GetTopic()
	}
	if m.ReadPositions != nil {
		info.ReadPositions = m.GetReadPositions()
	}
	if no := checkDescription(info.Title, info.Topic); no != nil {
		r.answer(ctx, to, id, no)
		return
	}
	p := &pendingEvent{
		ev: r.changeEvent(m.GetUser(), m.GetKind(), &parleypb.RoomChange{Kind: parleypb.ChangeKind_CHANGE_KIND_UPDATED,
			RoomKind: parleypb.RoomKind(info.Kind), Title: info.Title, Topic: info.Topic, ReadPositions: info.ReadPositions}),
		info: &info, session: to, requestID: id,
	}
	if was := r.info.ReadPositions; was != info.ReadPositions {
		p.after = func(ctx actor.Context) { r.positionsChanged(ctx, info.ReadPositions) }
	}
	r.apply(p)
	r.queue(ctx, p)
}

// remove deletes the room (DeleteRoom): its members are told, everyone is
// out, and nobody joins it again.
func (r *room) remove(ctx actor.Context, m *actorpb.RoomDelete) {
	to, id := m.GetSession(), m.GetRequestId()
	if !r.load() {
		r.unavailable(ctx, to, id)
		return
	}
	if r.info == nil || r.info.Deleted {
		r.answer(ctx, to, id, refuse(parleypb.ErrorCode_ERROR_CODE_NO_SUCH_ROOM, "no such room"))
		return
	}
	if r.role(m.GetUser(), m.GetKind(), m.GetClaimRole()) < store.RoleOwner {
		r.answer(ctx, to, id, refuse(parleypb.ErrorCode_ERROR_CODE_FORBIDDEN, "only the owner deletes a room"))
		return
	}
	info := *r.info
	info.Deleted = true
	var users []string
	for u := range r.roster {
		users = append(users, u)
	}
	p := &pendingEvent{
		ev:   r.changeEvent(m.GetUser(), m.GetKind(), &parleypb.RoomChange{Kind: parleypb.ChangeKind_CHANGE_KIND_DELETED, Reason: m.GetReason()}),
		info: &info, session: to, requestID: id, evictAll: "the room was deleted",
		after: func(ctx actor.Context) {
			for _, u := range users {
				r.tellUser(ctx, u)
			}
		},
	}
	r.apply(p)
	r.queue(ctx, p)
}

// infoFor is the room as user sees it (RoomInfo).
func (r *room) infoFor(user string) *parleypb.RoomInfo {
	info := store.RoomRecord{Name: r.name, Kind: r.kind()}
	if r.info != nil {
		info = *r.info
	}
	info.Latest = r.committed
	rec := r.roster[user]
	rec.User = user
	return RoomInfoOf(info, rec)
}

// RoomInfoOf is a room as a user with record m sees it.
func RoomInfoOf(info store.RoomRecord, m store.Member) *parleypb.RoomInfo {
	ri := &parleypb.RoomInfo{Name: info.Name, Kind: parleypb.RoomKind(info.Kind), Members: uint32(max(info.Members, 0)), Title: info.Title, Topic: info.Topic,
		ReadPositions: info.ReadPositions, LastSeq: info.Latest, CreatedBy: info.CreatedBy, Deleted: info.Deleted, Role: parleypb.Role(m.Role), Invited: m.Invited}
	if ri.Kind == parleypb.RoomKind_ROOM_KIND_UNSPECIFIED {
		ri.Kind = parleypb.RoomKind_ROOM_KIND_PUBLIC
	}
	if !info.CreatedAt.IsZero() {
		ri.CreatedMs = info.CreatedAt.UnixMilli()
	}
	if m.Role >= store.RoleMember {
		ri.ReadSeq, ri.UnreadMentions = m.ReadSeq, uint32(len(m.Mentions))
		if info.Latest > m.ReadSeq {
			ri.Unread = info.Latest - m.ReadSeq
		}
	}
	if !m.BannedUntil.IsZero() {
		ri.BannedUntilMs = m.BannedUntil.UnixMilli()
	}
	if !m.MutedUntil.IsZero() {
		ri.MutedUntilMs = m.MutedUntil.UnixMilli()
	}
	if info.Kind == store.KindDirect {
		ri.DirectWith = info.Peer
		if m.User == info.Peer {
			ri.DirectWith = info.CreatedBy
		}
	}
	return ri
}

// tellUser tells every connection of user its standing in the room now
// (through presence, which knows them, on every node).
func (r *room) tellUser(ctx actor.Context, user string) {
	ctx.Send(r.n.presence, &actorpb.TellUser{User: user, Room: r.infoFor(user)})
}

// evict takes user's connections out of the room (RoomClosed: their
// Members forget it, their clients are told why).
func (r *room) evict(ctx actor.Context, user, reason string) {
	for key, mem := range r.members {
		if user == "" || mem.user == user {
			ctx.Send(mem.pid, &actorpb.RoomClosed{Room: r.name, Reason: reason})
			r.leave(ctx, mem.pid, "")
			r.cancelCatchUp(ctx, key)
		}
	}
	for key, c := range r.catching {
		if user == "" || c.mem.user == user {
			r.cancelCatchUp(ctx, key)
			ctx.Send(c.mem.pid, &actorpb.RoomClosed{Room: r.name, Reason: reason})
		}
	}
}

// membersPage answers RoomMembers: a page of the room's records.
func (r *room) membersPage(ctx actor.Context, m *actorpb.RoomMembers) {
	to, id := m.GetSession(), m.GetRequestId()
	if !r.load() {
		r.unavailable(ctx, to, id)
		return
	}
	if r.info == nil || r.info.Deleted {
		r.answer(ctx, to, id, refuse(parleypb.ErrorCode_ERROR_CODE_NO_SUCH_ROOM, "no such room"))
		return
	}
	if rec := r.roster[m.GetUser()]; r.info.Kind != store.KindPublic && rec.Role < store.RoleMember && !rec.Invited && m.GetKind() != parleypb.SenderKind_SENDER_KIND_SYSTEM {
		r.answer(ctx, to, id, refuse(parleypb.ErrorCode_ERROR_CODE_FORBIDDEN, "only the room's members see who they are"))
		return
	}
	limit := pageLimit(m.GetLimit())
	names := make([]string, 0, len(r.roster))
	for u := range r.roster {
		if u > m.GetAfter() {
			names = append(names, u)
		}
	}
	slices.Sort(names)
	list := &parleypb.MemberList{Room: r.name}
	for _, u := range names[:min(limit, len(names))] {
		rec := r.roster[u]
		mi := &parleypb.MemberInfo{User: u, Role: parleypb.Role(rec.Role), Invited: rec.Invited, InvitedBy: rec.InvitedBy}
		if !rec.Since.IsZero() {
			mi.SinceMs = rec.Since.UnixMilli()
		}
		if !rec.BannedUntil.IsZero() {
			mi.BannedUntilMs = rec.BannedUntil.UnixMilli()
		}
		if !rec.MutedUntil.IsZero() {
			mi.MutedUntilMs = rec.MutedUntil.UnixMilli()
		}
		list.Members = append(list.Members, mi)
	}
	if len(names) > limit {
		list.Next = names[limit-1]
	}
	ctx.Send(to, list)
	ctx.Send(to, &parleypb.Ack{RequestId: id, Room: r.name})
}

// pageLimit is a request's page size: 0 means 100, at most 500.
func pageLimit(n uint32) int {
	if n == 0 {
		return 100
	}
	return int(min(n, 500))
}

// encodeChange and decodeChange keep a RoomChange in a stored message's
// Body.
func encodeChange(c *parleypb.RoomChange) []byte {
	if c == nil {
		return nil
	}
	b, err := proto.Marshal(c)
	if err != nil {
		panic(err) // a RoomChange always marshals
	}
	return b
}

func decodeChange(b []byte) *parleypb.RoomChange {
	if len(b) == 0 {
		return nil
	}
	c := new(parleypb.RoomChange)
	if err := proto.Unmarshal(b, c); err != nil {
		return &parleypb.RoomChange{Reason: "(this change could not be read)"}
	}
	return c
}
