package actors

import (
	"context"
	"fmt"
	"slices"

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

// join subscribes a connection (or subscribes it again): it checks the
// room lets the user in, makes the user a member when it is not one (an
// event, committed first), replays what the connection asked for, then
// answers with the room's latest seq and who is connected, and the
// connection is live. A replay that reaches before the window runs off the
// mailbox (room_replay.go) and the join completes when it is done. A new
// connection is added, and announced, only once its replay is sent; a
// replay the store cannot serve refuses the join and changes nothing.
func (r *room) join(ctx actor.Context, m *actorpb.RoomJoin) {
	if m.GetResend() {
		// The session's first join reached this activation, and its answer
		// (or its replay) is on the way.
		key := pidKey(m.GetSession())
		_, member := r.members[key]
		_, catching := r.catching[key]
		if member || catching {
			r.n.Stats.ResendsDropped.Add(1)
			return
		}
	}
	if !r.load() || !r.syncWithStore(ctx, m.Since) {
		r.unavailable(ctx, m.GetSession(), m.GetRequestId())
		return
	}
	if r.n.cfg.Hooks.Join != nil { // the room's own rules first: the application is not asked in vain
		if no := r.mayJoin(m); no != nil {
			r.answer(ctx, m.GetSession(), m.GetRequestId(), no)
			return
		}
		if r.holdJoin(ctx, m) {
			return
		}
	}
	r.joinDecided(ctx, m)
}

// syncWithStore reloads the room from the store when a joining member has
// seen a seq this activation never stored and the store has more than
// this activation: in a cluster another activation stored it (members
// disagreed for a moment, and a member followed the other one). Without it
// the room would take the member for ahead of history and start it over
// (a Reset and a replay from the start), which is right only when the
// store holds no more than the room (a memory store restarted, or a client
// that asks from far ahead): then one cheap read of the store's bounds is
// all it costs. What is queued is committed before the reload, which also
// finds this activation fenced if it is. It reports false if the store
// cannot be read.
func (r *room) syncWithStore(ctx actor.Context, since *uint64) bool {
	if since == nil || *since <= r.committed {
		return true
	}
	sctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	b, err := r.n.cfg.Store.Bounds(sctx, r.name)
	cancel()
	if err != nil {
		r.n.Stats.StoreErrors.Add(1)
		r.log.Error("room could not read its history's bounds", "err", err)
		return false
	}
	if b.Latest <= r.committed {
		return true
	}
	r.log.Info("a member has seen seqs this activation did not store; reloading from the store", "since", *since, "committed", r.committed, "stored", b.Latest)
	r.flush(ctx)
	r.loaded = false
	return r.load()
}

// joinDecided goes on with a join the application's hook (if any) let
// through; the room's own rules are asked again, as things may have
// changed while the hook was asked.
func (r *room) joinDecided(ctx actor.Context, m *actorpb.RoomJoin) {
	if no := r.mayJoin(m); no != nil {
		r.answer(ctx, m.GetSession(), m.GetRequestId(), no)
		return
	}
	key := pidKey(m.GetSession())
	if _, member := r.members[key]; !member && r.n.cfg.MaxMembers > 0 && len(r.members)+len(r.catching) >= r.n.cfg.MaxMembers {
		errorTo(ctx, m.GetSession(), m.GetRequestId(), r.name, parleypb.ErrorCode_ERROR_CODE_ROOM_FULL,
			fmt.Sprintf("the room is full: %d connections", r.n.cfg.MaxMembers))
		return
	}
	changes := r.joinChange(m)
	if len(changes) == 0 {
		r.connect(ctx, key, m)
		return
	}
	// The join goes on once the user is a member in the store; a failed
	// commit answers it UNAVAILABLE.
	last := changes[len(changes)-1]
	last.session, last.requestID = m.GetSession(), m.GetRequestId()
	last.then = func(ctx actor.Context) { r.connect(ctx, key, m) }
	for _, p := range changes {
		r.queue(ctx, p)
	}
}

// connect replays what a joining connection asked for and makes it live.
func (r *room) connect(ctx actor.Context, key string, m *actorpb.RoomJoin) {
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

// leaveRequest takes a connection out of the room; with membership, the
// user leaves the room as a member (a LEFT event; every connection of the
// user goes once it is committed).
func (r *room) leaveRequest(ctx actor.Context, m *actorpb.RoomLeave) {
	r.cancelCatchUp(ctx, pidKey(m.GetSession()))
	if m.GetMembership() && r.load() {
		queued, no := r.leaveMembership(ctx, m)
		if no != nil {
			r.answer(ctx, m.GetSession(), m.GetRequestId(), no)
			return
		}
		if queued {
			return // answered after the commit; the eviction takes the connections
		}
	}
	r.leave(ctx, m.GetSession(), m.GetRequestId())
}

// who answers RoomWho: who is connected, a page by name, or (limit 0, no
// request id: the tutorial's handshake, an operator) everyone, in the
// order they came.
func (r *room) who(ctx actor.Context, m *actorpb.RoomWho) {
	if m.GetLimit() == 0 && m.GetRequestId() == "" {
		ctx.Send(m.GetSession(), &parleypb.PresenceEvent{Room: r.name, Members: r.memberList(-1)})
		return
	}
	limit := pageLimit(m.GetLimit())
	names := make([]string, 0, len(r.users))
	for u := range r.users {
		if u > m.GetAfter() {
			names = append(names, u)
		}
	}
	slices.Sort(names)
	ev := &parleypb.PresenceEvent{Room: r.name, Members: make([]*parleypb.Member, 0, min(limit, len(names)))}
	for _, u := range names[:min(limit, len(names))] {
		ev.Members = append(ev.Members, &parleypb.Member{Name: u, Devices: uint32(r.users[u])})
	}
	if len(names) > limit {
		ev.Next = names[limit-1]
	}
	ctx.Send(m.GetSession(), ev)
	if m.GetRequestId() != "" {
		ctx.Send(m.GetSession(), &parleypb.Ack{RequestId: m.GetRequestId(), Room: r.name})
	}
}

// maxAckMembers bounds the connected users a join's Ack lists; a
// WhoRequest pages through all.
const maxAckMembers = 200

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
			r.order.add(m.GetUser())
		}
		r.users[m.GetUser()]++
	}
	r.members[key] = mem
	r.addRemote(key, mem)
	r.codecs[mem.codec]++
	// The first maxAckMembers only: listing a crowd on every join would
	// make a room's joins quadratic in its size.
	ctx.Send(m.GetSession(), &parleypb.Ack{RequestId: m.GetRequestId(), Room: r.name, Seq: r.committed, Members: r.memberList(maxAckMembers), OldestSeq: r.oldestKnown()})
	r.sendSnapshot(ctx, mem)
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
			r.order.remove(mem.user)
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
// undoes one not yet announced cancels it. A change while the room holds
// a crowd is not announced (Config.PresenceMaxUsers): a join counts the
// room with the user, a leave before the user went.
func (r *room) presenceChange(ctx actor.Context, user string, d int8) {
	if limit := r.n.cfg.PresenceMaxUsers; limit > 0 && len(r.users)+max(0, int(-d)) > limit {
		return
	}
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

// memberList lists the first limit connected users in the order they came
// (limit < 0: all of them).
func (r *room) memberList(limit int) []*parleypb.Member {
	if limit < 0 || limit > len(r.users) {
		limit = len(r.users)
	}
	list := make([]*parleypb.Member, 0, limit)
	for _, u := range r.order.users {
		if len(list) == limit {
			break
		}
		if u != "" {
			list = append(list, &parleypb.Member{Name: u, Devices: uint32(r.users[u])})
		}
	}
	return list
}

// joinOrder keeps the room's users in the order they came. A user who
// leaves leaves a hole, filled when holes are half the list: a crowd that
// goes (a node's 20,000 users when it dies) costs each leave O(1), where
// taking each out of a slice cost the room a pass over every user.
type joinOrder struct {
	users []string
	at    map[string]int // index in users
	holes int
}

func (o *joinOrder) add(u string) {
	if o.at == nil {
		o.at = make(map[string]int)
	}
	o.at[u] = len(o.users)
	o.users = append(o.users, u)
}

func (o *joinOrder) remove(u string) {
	i, ok := o.at[u]
	if !ok {
		return
	}
	delete(o.at, u)
	o.users[i] = ""
	if o.holes++; o.holes > 32 && o.holes > len(o.users)/2 {
		live := o.users[:0]
		for _, v := range o.users {
			if v != "" {
				o.at[v] = len(live)
				live = append(live, v)
			}
		}
		clear(o.users[len(live):])
		o.users, o.holes = live, 0
	}
}

func (o *joinOrder) clear() {
	o.users, o.holes = o.users[:0], 0
	clear(o.at)
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
