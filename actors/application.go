package actors

import (
	"context"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/parleychat/parley/actors/actorpb"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/store"
)

// What an application's backend does through the server API (api/): the
// same requests a session sends its rooms, made as the system or as a user
// or bot the application names, so the rooms apply the same rules and
// every change is the same room event. Reads of what is stored (history,
// records) go to the store, which holds everything a room acknowledged.

// Sender is who acts: a user or a bot by name, or the system.
type Sender struct {
	Name string
	Kind parleypb.SenderKind
}

// System is the server itself, with every right in every room.
var System = Sender{Name: SystemName, Kind: parleypb.SenderKind_SENDER_KIND_SYSTEM}

func badRequest(format string, args ...any) error {
	return &RequestError{Code: parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, Text: fmt.Sprintf(format, args...)}
}

func (s Sender) check() (Sender, error) {
	switch s.Kind {
	case parleypb.SenderKind_SENDER_KIND_SYSTEM:
		if s.Name != "" && s.Name != SystemName {
			return s, badRequest("the system posts as %q, not %q", SystemName, s.Name)
		}
		return System, nil
	case parleypb.SenderKind_SENDER_KIND_UNSPECIFIED:
		s.Kind = parleypb.SenderKind_SENDER_KIND_USER
	case parleypb.SenderKind_SENDER_KIND_USER, parleypb.SenderKind_SENDER_KIND_BOT:
	default:
		return s, badRequest("unknown sender kind %v", s.Kind)
	}
	if err := ValidName(s.Name); err != nil {
		return s, badRequest("sender %v", err)
	}
	if Skeleton(s.Name) == Skeleton(SystemName) {
		return s, &RequestError{Code: parleypb.ErrorCode_ERROR_CODE_FORBIDDEN, Text: fmt.Sprintf("%q is the system's name", s.Name)}
	}
	return s, nil
}

func checkRoom(room string) error {
	if err := ValidRoom(room); err != nil {
		return badRequest("room %v", err)
	}
	return nil
}

// askAck sends m (through the directory, to m's room) with replyTo set by
// setReply, and returns the seq of the Ack that answers it.
func (n *Node) askAck(ctx context.Context, m RoomMessage, setReply func(*actor.PID)) (uint64, error) {
	got, err := n.ask(ctx, func(to *actor.PID) {
		setReply(to)
		n.dir.Tell(n.System.Root, m)
	}, isAck)
	if err != nil {
		return 0, err
	}
	return got[len(got)-1].(*parleypb.Ack).GetSeq(), nil
}

// Publish posts text into room as from, and returns its seq. A post with
// the idempotency key of an earlier one (same sender and room, within the
// room's dedup window) is stored once: the answer names the first one's
// seq. A user or bot must be allowed to post there (not banned or muted,
// a member of a private room).
func (n *Node) Publish(ctx context.Context, room string, from Sender, text, key string) (uint64, error) {
	from, err := from.check()
	if err != nil {
		return 0, err
	}
	if err := checkRoom(room); err != nil {
		return 0, err
	}
	if err := validText(text); err != nil {
		return 0, badRequest("text %v", err)
	}
	if c := utf8.RuneCountInString(text); c > n.cfg.MaxTextRunes {
		return 0, &RequestError{Code: parleypb.ErrorCode_ERROR_CODE_TOO_LONG, Text: fmt.Sprintf("text has %d characters; the limit is %d", c, n.cfg.MaxTextRunes)}
	}
	if len(key) > MaxClientMsgIDBytes {
		return 0, &RequestError{Code: parleypb.ErrorCode_ERROR_CODE_TOO_LONG, Text: fmt.Sprintf("idempotency key has %d bytes; the limit is %d", len(key), MaxClientMsgIDBytes)}
	}
	m := &actorpb.RoomPost{Room: room, User: from.Name, Kind: from.Kind, Text: text, ClientMsgId: key, RequestId: "api"}
	return n.askAck(ctx, m, func(to *actor.PID) { m.Session = to })
}

// DeleteMessage deletes post seq of room as the system (anyone's post),
// erasing its text, and returns the MESSAGE_DELETED event's seq; a call
// with the key of an earlier one is applied once.
func (n *Node) DeleteMessage(ctx context.Context, room string, seq uint64, reason, key string) (uint64, error) {
	if err := checkRoom(room); err != nil {
		return 0, err
	}
	if seq == 0 {
		return 0, badRequest("seq: name the message")
	}
	if len(key) > MaxClientMsgIDBytes {
		return 0, &RequestError{Code: parleypb.ErrorCode_ERROR_CODE_TOO_LONG, Text: fmt.Sprintf("idempotency key has %d bytes; the limit is %d", len(key), MaxClientMsgIDBytes)}
	}
	if len(reason) > MaxReasonBytes {
		return 0, &RequestError{Code: parleypb.ErrorCode_ERROR_CODE_TOO_LONG, Text: fmt.Sprintf("reason has %d bytes; the limit is %d", len(reason), MaxReasonBytes)}
	}
	if err := validText(reason); reason != "" && err != nil {
		return 0, badRequest("reason %v", err)
	}
	m := &actorpb.RoomPost{Room: room, User: SystemName, Kind: parleypb.SenderKind_SENDER_KIND_SYSTEM, Op: actorpb.PostOp_POST_OP_DELETE,
		TargetSeq: seq, Reason: reason, ClientMsgId: key, RequestId: "api"}
	return n.askAck(ctx, m, func(to *actor.PID) { m.Session = to })
}

// CreateRoom creates a public or private room as the system, owned by
// owner (empty: nobody; the system and the application manage it), with
// the users of invite invited, and returns it as the owner sees it.
func (n *Node) CreateRoom(ctx context.Context, c *parleypb.CreateRoom, owner string) (*parleypb.RoomInfo, error) {
	if err := checkRoom(c.GetRoom()); err != nil {
		return nil, err
	}
	if IsDirectRoom(c.GetRoom()) {
		return nil, badRequest("a direct room's name is made from its two users: post a direct message instead")
	}
	if len(c.GetInvite()) > maxInvites {
		return nil, badRequest("at most %d invitations at once", maxInvites)
	}
	m := &actorpb.RoomCreate{Room: c.GetRoom(), User: SystemName, Kind: parleypb.SenderKind_SENDER_KIND_SYSTEM, Owner: owner,
		RoomKind: c.GetKind(), Title: c.GetTitle(), Topic: c.GetTopic(), Invite: c.GetInvite(), RequestId: "api"}
	if _, err := n.askAck(ctx, m, func(to *actor.PID) { m.Session = to }); err != nil {
		return nil, err
	}
	info, err := n.Room(ctx, c.GetRoom())
	if err == nil && owner != "" {
		info.Role = parleypb.Role_ROLE_OWNER
	}
	return info, err
}

// UpdateRoom changes a room's title, topic or read positions setting
// (nil: unchanged) as the system, and returns the seq of the change.
func (n *Node) UpdateRoom(ctx context.Context, room string, title, topic *string, readPositions *bool) (uint64, error) {
	if err := checkRoom(room); err != nil {
		return 0, err
	}
	m := &actorpb.RoomUpdate{Room: room, User: SystemName, Kind: parleypb.SenderKind_SENDER_KIND_SYSTEM, Title: title, Topic: topic,
		ReadPositions: readPositions, RequestId: "api"}
	return n.askAck(ctx, m, func(to *actor.PID) { m.Session = to })
}

// DeleteRoom deletes a room as the system: everyone is out, and the name is
// not used again. It returns the seq of the deletion.
func (n *Node) DeleteRoom(ctx context.Context, room, reason string) (uint64, error) {
	if err := checkRoom(room); err != nil {
		return 0, err
	}
	m := &actorpb.RoomDelete{Room: room, User: SystemName, Kind: parleypb.SenderKind_SENDER_KIND_SYSTEM, Reason: reason, RequestId: "api"}
	return n.askAck(ctx, m, func(to *actor.PID) { m.Session = to })
}

// Members pages through a room's records (members, invitations, bans) by
// user name after after; next is where the next page starts ("" at the
// end).
func (n *Node) Members(ctx context.Context, room, after string, limit uint32) (members []*parleypb.MemberInfo, next string, err error) {
	if err := checkRoom(room); err != nil {
		return nil, "", err
	}
	got, err := n.ask(ctx, func(to *actor.PID) {
		n.dir.Tell(n.System.Root, &actorpb.RoomMembers{Room: room, User: SystemName, Kind: parleypb.SenderKind_SENDER_KIND_SYSTEM,
			After: after, Limit: limit, Session: to, RequestId: "api"})
	}, isAck)
	if err != nil {
		return nil, "", err
	}
	for _, m := range got {
		if l, ok := m.(*parleypb.MemberList); ok {
			return l.GetMembers(), l.GetNext(), nil
		}
	}
	return nil, "", nil
}

// Room describes a room from what is stored. A deleted room is described
// (Deleted), a room that never was is NO_SUCH_ROOM.
func (n *Node) Room(ctx context.Context, room string) (*parleypb.RoomInfo, error) {
	if err := checkRoom(room); err != nil {
		return nil, err
	}
	rec, ok, err := n.cfg.Store.Room(ctx, room)
	if err != nil {
		return nil, n.storeError(room, err)
	}
	b, err := n.cfg.Store.Bounds(ctx, room)
	if err != nil {
		return nil, n.storeError(room, err)
	}
	if !ok {
		if b.Latest == 0 {
			return nil, &RequestError{Code: parleypb.ErrorCode_ERROR_CODE_NO_SUCH_ROOM, Text: fmt.Sprintf("no room %q", room)}
		}
		rec = store.RoomRecord{Name: room, Kind: store.KindPublic} // from before rooms had records
	}
	rec.Latest = b.Latest
	return RoomInfoOf(rec, store.Member{}), nil
}

// storeError is a store failure as a request error: UNAVAILABLE (retry),
// logged with what failed.
func (n *Node) storeError(room string, err error) error {
	n.log.Warn("server API: reading the store failed", "room", room, "err", err)
	text := "the store is unavailable; retry later"
	if errors.Is(err, store.ErrCorrupt) {
		text = "this room's stored history is damaged and cannot be read"
	}
	return &RequestError{Code: parleypb.ErrorCode_ERROR_CODE_UNAVAILABLE, Text: text}
}

// History reads a room's log from the store: up to limit events before
// before (0: the latest), ascending, and whether older ones are left.
func (n *Node) History(ctx context.Context, room string, before uint64, limit int) (events []*parleypb.RoomEvent, more bool, err error) {
	if _, err := n.Room(ctx, room); err != nil {
		return nil, false, err
	}
	msgs, err := n.cfg.Store.Before(ctx, room, before, limit+1)
	if err != nil {
		return nil, false, n.storeError(room, err)
	}
	if len(msgs) > limit {
		msgs, more = msgs[1:], true
	}
	for _, m := range msgs {
		events = append(events, eventOf(m))
	}
	return events, more, nil
}

// Message reads one event of a room's log.
func (n *Node) Message(ctx context.Context, room string, seq uint64) (*parleypb.RoomEvent, error) {
	if _, err := n.Room(ctx, room); err != nil {
		return nil, err
	}
	msgs, err := n.cfg.Store.After(ctx, room, seq-1, 1)
	if err != nil {
		return nil, n.storeError(room, err)
	}
	if seq == 0 || len(msgs) == 0 || msgs[0].Seq != seq {
		return nil, &RequestError{Code: parleypb.ErrorCode_ERROR_CODE_NO_SUCH_MESSAGE, Text: fmt.Sprintf("room %q has no event %d (never, or no longer: retention)", room, seq)}
	}
	return eventOf(msgs[0]), nil
}

// MarkRead moves user's read cursor in room forward to seq, as the
// user's own MarkRead would, and returns the cursor after it.
func (n *Node) MarkRead(ctx context.Context, room, user string, seq uint64) (uint64, error) {
	if err := checkRoom(room); err != nil {
		return 0, err
	}
	if err := ValidName(user); err != nil {
		return 0, badRequest("user %v", err)
	}
	m := &actorpb.RoomMarkRead{Room: room, User: user, Seq: seq, RequestId: "api"}
	return n.askAck(ctx, m, func(to *actor.PID) { m.Session = to })
}

// UserRooms pages through user's rooms (member, invited or banned), each
// as the user sees it, by name after after.
func (n *Node) UserRooms(ctx context.Context, user, after string, limit uint32) (rooms []*parleypb.RoomInfo, next string, err error) {
	if err := ValidName(user); err != nil {
		return nil, "", badRequest("user %v", err)
	}
	l := pageLimit(limit)
	page, err := n.cfg.Store.UserRooms(ctx, user, after, l+1)
	if err != nil {
		return nil, "", n.storeError("", err)
	}
	if len(page) > l {
		page = page[:l]
		next = page[l-1].Room.Name
	}
	for _, ur := range page {
		rooms = append(rooms, RoomInfoOf(ur.Room, ur.Member))
	}
	return rooms, next, nil
}
