package actors

import (
	"fmt"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/parleychat/parley/actors/actorpb"
	parleypb "github.com/parleychat/parley/proto"
)

type roomMember struct {
	pid   *actor.PID
	user  string
	codec parleypb.Codec
}

// presenceFlush is a room's note to itself: announce the presence changes
// gathered so far. It queues behind what is already in the mailbox, so
// joins that arrived together are announced together, with no timer.
type presenceFlush struct{}

// join adds a member (or registers a member again): it replays what the
// member asked for, then answers with the room's latest seq and member
// list, and the member is live. A replay that reaches before the window
// runs off the mailbox (room_replay.go) and the join completes when it is
// done. A new member is added, and announced, only once its replay is
// sent; a replay the store cannot serve refuses the join and changes
// nothing.
func (r *room) join(ctx actor.Context, m *actorpb.RoomJoin) {
	if !r.load() {
		errorTo(ctx, m.GetSession(), m.GetRequestId(), r.name, parleypb.ErrorCode_ERROR_CODE_UNAVAILABLE, "history store unavailable; retry later")
		return
	}
	key := pidKey(m.GetSession())
	if _, member := r.members[key]; !member && r.n.cfg.MaxMembers > 0 && len(r.members)+len(r.catching) >= r.n.cfg.MaxMembers {
		errorTo(ctx, m.GetSession(), m.GetRequestId(), r.name, parleypb.ErrorCode_ERROR_CODE_ROOM_FULL,
			fmt.Sprintf("the room is full: %d connections", r.n.cfg.MaxMembers))
		return
	}
	mem := &roomMember{pid: m.GetSession(), user: m.GetUser(), codec: m.GetCodec()}
	since := m.Since
	if since == nil && m.GetLatest() {
		since = &r.committed
	}
	from := r.replayFrom(ctx, mem, since)
	if r.needsStore(from) {
		r.catchUp(ctx, key, m, mem, from)
		return
	}
	r.sendWindow(ctx, mem, from)
	r.admit(ctx, key, m, mem)
}

// admit makes a member live once its replay is sent: it answers the join
// and announces a new user.
func (r *room) admit(ctx actor.Context, key string, m *actorpb.RoomJoin, mem *roomMember) {
	r.linger.Stop()
	newUser := false
	if old, ok := r.members[key]; ok {
		r.codecs[old.codec]--
	} else {
		ctx.Watch(m.GetSession())
		newUser = r.users[m.GetUser()] == 0
		if newUser {
			r.order = append(r.order, m.GetUser())
		}
		r.users[m.GetUser()]++
	}
	r.members[key] = mem
	r.addRemote(key, mem)
	r.codecs[mem.codec]++
	ctx.Send(m.GetSession(), &parleypb.Ack{RequestId: m.GetRequestId(), Room: r.name, Seq: r.committed, Members: r.memberList(), OldestSeq: r.oldestKnown()})
	if newUser {
		ctx.Send(ctx.Parent(), &actorpb.RoomCount{Room: r.name, Members: uint32(len(r.users))})
		if !m.GetRejoin() {
			r.presenceChange(ctx, m.GetUser(), +1)
		}
	}
}

func (r *room) leave(ctx actor.Context, pid *actor.PID, requestID string) {
	key := pidKey(pid)
	mem, ok := r.members[key]
	if ok {
		delete(r.members, key)
		r.dropRemote(key, mem)
		ctx.Unwatch(pid)
		r.codecs[mem.codec]--
		r.users[mem.user]--
		if r.users[mem.user] == 0 {
			delete(r.users, mem.user)
			for i, u := range r.order {
				if u == mem.user {
					r.order = append(r.order[:i], r.order[i+1:]...)
					break
				}
			}
			r.presenceChange(ctx, mem.user, -1)
			ctx.Send(ctx.Parent(), &actorpb.RoomCount{Room: r.name, Members: uint32(len(r.users))})
		}
	}
	if requestID != "" {
		ctx.Send(pid, &parleypb.Ack{RequestId: requestID, Room: r.name})
	}
	r.armLinger(ctx)
}

// presenceChange records that user joined (+1) or left (-1); a change that
// undoes one not yet announced cancels it.
func (r *room) presenceChange(ctx actor.Context, user string, d int8) {
	if r.presenceDelta == nil {
		r.presenceDelta = make(map[string]int8)
	}
	if prev, ok := r.presenceDelta[user]; ok && prev == -d {
		delete(r.presenceDelta, user)
		return
	}
	r.presenceDelta[user] = d
	r.presenceOrder = append(r.presenceOrder, user)
	if !r.presenceQueued {
		r.presenceQueued = true
		ctx.Send(ctx.Self(), presenceFlush{})
	}
}

// presenceStep is one user's announced change: +1 joined, -1 left.
type presenceStep struct {
	user string
	d    int8
}

// flushPresence announces the changes gathered since the last one.
func (r *room) flushPresence(ctx actor.Context) {
	r.presenceQueued = false
	var steps []presenceStep
	for _, u := range r.presenceOrder {
		if d, ok := r.presenceDelta[u]; ok {
			steps = append(steps, presenceStep{u, d})
			delete(r.presenceDelta, u) // a user listed twice is announced once
		}
	}
	r.presenceOrder = r.presenceOrder[:0]
	if len(steps) > 0 {
		r.announce(ctx, steps)
	}
}

// announce tells every member (the subjects included) of presence changes,
// encoded once per codec: native members get one delta for all of them;
// legacy members one frame per change (room_legacy.go).
func (r *room) announce(ctx actor.Context, steps []presenceStep) {
	ev := &parleypb.PresenceEvent{Room: r.name}
	for _, st := range steps {
		if st.d > 0 {
			ev.Joined = append(ev.Joined, st.user)
		} else {
			ev.Left = append(ev.Left, st.user)
		}
	}
	mask := r.codecMask()
	legacy := mask[parleypb.Codec_CODEC_LEGACY]
	mask[parleypb.Codec_CODEC_LEGACY] = false
	d := &actorpb.Deliver{Room: r.name}
	r.encodeInto(d, &parleypb.Envelope{Body: &parleypb.Envelope_Presence{Presence: ev}}, mask)
	if mask[parleypb.Codec_CODEC_UNSPECIFIED] {
		d.Presence = ev
	}
	if !legacy {
		r.fanout(ctx, d, "")
		return
	}
	r.fanout(ctx, r.legacyPresence(d, steps), "")
}

func (r *room) memberList() []*parleypb.Member {
	list := make([]*parleypb.Member, len(r.order))
	for i, u := range r.order {
		list[i] = &parleypb.Member{Name: u, Devices: uint32(r.users[u])}
	}
	return list
}

func (r *room) typing(ctx actor.Context, m *actorpb.RoomTyping) {
	if _, ok := r.members[pidKey(m.GetSession())]; !ok {
		return
	}
	mask := r.codecMask()
	mask[parleypb.Codec_CODEC_LEGACY] = false // the tutorial has no typing
	d := &actorpb.Deliver{Room: r.name}
	r.encodeInto(d, &parleypb.Envelope{Body: &parleypb.Envelope_Typing{Typing: &parleypb.Typing{Room: r.name, User: m.GetUser()}}}, mask)
	r.fanout(ctx, d, m.GetUser())
}
