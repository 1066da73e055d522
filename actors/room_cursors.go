package actors

import (
	"slices"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/parleychat/parley/actors/actorpb"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/store"
)

// Read cursors (this file): a member's last read seq and the unread posts
// that mention it live in its member record (store.Member), so a user's
// rooms at hello come with them from one read of the store. A cursor is
// not an event of the log: moving it tells the user's own connections,
// and, in a room that shows read positions, the room's connections a
// moment later, with other moves (room_positions.go).

// markRead moves user's read cursor forward (MarkRead). Moves that arrive
// while a commit runs are folded into one record write and one RoomInfo
// per user; each request still gets its own Ack.
func (r *room) markRead(ctx actor.Context, m *actorpb.RoomMarkRead) {
	to, id, user, seq := m.GetSession(), m.GetRequestId(), m.GetUser(), m.GetSeq()
	if !r.load() {
		r.unavailable(ctx, to, id)
		return
	}
	rec := r.roster[user]
	switch {
	case r.info != nil && r.info.Deleted:
		r.answer(ctx, to, id, refuse(parleypb.ErrorCode_ERROR_CODE_NO_SUCH_ROOM, "the room was deleted"))
		return
	case rec.Role < store.RoleMember:
		r.answer(ctx, to, id, refuse(parleypb.ErrorCode_ERROR_CODE_NOT_MEMBER, "only members keep a read cursor here"))
		return
	case seq > r.committed:
		r.answer(ctx, to, id, refuse(parleypb.ErrorCode_ERROR_CODE_NO_SUCH_MESSAGE, "the room's last seq is %d; cannot mark %d read", r.committed, seq))
		return
	case seq <= rec.ReadSeq: // only forward: nothing to write
		ctx.Send(to, &parleypb.Ack{RequestId: id, Room: r.name, Seq: rec.ReadSeq})
		return
	}
	rec.ReadSeq = seq
	rec.Mentions = slices.DeleteFunc(slices.Clone(rec.Mentions), func(s uint64) bool { return s <= seq })
	if len(rec.Mentions) == 0 {
		rec.Mentions = nil
	}
	r.roster[user] = rec
	if p := r.cursors[user]; p != nil {
		p.members[0] = rec // the pending write carries the newest cursor
		r.queue(ctx, &pendingEvent{dupOf: seq, session: to, requestID: id})
		return
	}
	p := &pendingEvent{dupOf: seq, session: to, requestID: id, members: []store.Member{rec},
		after: func(ctx actor.Context) { r.tellUser(ctx, user); r.positionMoved(ctx, user) }}
	if r.cursors == nil {
		r.cursors = make(map[string]*pendingEvent)
	}
	r.cursors[user] = p
	r.queue(ctx, p)
}

// mentioned is the member records a post changes: each member it mentions
// (but its sender) has one more unread mention, unless its cursor is past
// the post already.
func (r *room) mentioned(ev *parleypb.RoomEvent) []store.Member {
	var out []store.Member
	for _, u := range ev.GetMentions() {
		rec := r.roster[u]
		if u == ev.GetSender() || rec.Role < store.RoleMember || rec.ReadSeq >= ev.GetSeq() {
			continue
		}
		rec.Mentions = append(slices.Clone(rec.Mentions), ev.GetSeq())
		if n := len(rec.Mentions); n > store.MaxUnreadMentions {
			rec.Mentions = rec.Mentions[n-store.MaxUnreadMentions:]
		}
		out = append(out, rec)
	}
	return out
}
