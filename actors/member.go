package actors

import (
	"math/rand/v2"
	"slices"
	"sort"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/parleychat/parley/actors/actorpb"
	parleypb "github.com/parleychat/parley/proto"
)

// Member is the member contract: the one way an actor (a session, a bot,
// any new actor type) belongs to rooms. It joins and leaves through the
// node's Directory, unpacks Deliver and DeliverBatch into the events the
// actor has not had yet, in order, remembers the last sequence number of
// each room, and re-joins from there whenever a room restarts, passivates
// or is lost with its node, so the actor sees every event once, with no
// hole and no duplicate. In a cluster it also keeps the posts a room has
// not answered yet, and sends them again (or fails them) if the room dies
// with its node.
//
// An actor keeps its Member across its own restarts (captured by its
// producer, not built in Started; see bots/dice), calls Rejoin when it
// restarts, Join and Leave (or Disconnect) as it likes, Post to post,
// DisconnectAll when it stops, and passes every message it receives to
// Receive first:
//
//	func (b *bot) Receive(ctx actor.Context) {
//		if d, done := b.member.Receive(ctx); done {
//			for _, item := range d.Items { ... item.GetEvent() ... }
//			return
//		}
//		switch m := ctx.Message().(type) { ... }
//	}
//
// Only the owning actor's Receive may call its methods.
type Member struct {
	n     *Node
	opts  MemberOptions
	rooms map[string]*membership
	// inflight holds, in a cluster, the posts sent to a room and not yet
	// answered, by room and request id.
	inflight map[string]map[string]inflightPost
	posted   uint64
}

// MemberOptions says who a member is.
type MemberOptions struct {
	// User is the name the member joins and posts as.
	User string
	// Codec is what the member reads: a socket's codec (deliveries then
	// carry frames in it), or CODEC_UNSPECIFIED for an actor that reads
	// events decoded (Deliver.Event).
	Codec parleypb.Codec
	// Bot reserves User for this actor: no user may log in under it, or
	// under a name that looks like it.
	Bot bool
}

// NewMember returns a member of no room yet.
func NewMember(n *Node, o MemberOptions) *Member {
	if o.Bot {
		n.System.Root.Send(n.presence, &actorpb.ReserveName{Name: o.User})
	}
	return &Member{n: n, opts: o, rooms: make(map[string]*membership)}
}

// JoinOptions says where a join starts, and names the request.
type JoinOptions struct {
	// Since resumes after this sequence number: every later event is
	// delivered (or a Reset says where delivery starts, when retention
	// deleted part of the gap). Nil: the room's recent window.
	Since *uint64
	// Latest skips history: only events after the join are delivered
	// (a bot's first join). Since wins over it.
	Latest bool
	// RequestID names the actor's own request: the room's Ack or Error
	// carries it. Empty: the join is answered with an empty request id.
	RequestID string
	// ClaimRole is the role the actor's token gives it in the room.
	ClaimRole parleypb.Role
}

// Delivery is what Receive hands on: the events of one room the member has
// not had yet, in order (presence and typing, which have no sequence
// number, included).
type Delivery struct {
	Room  string
	Items []*actorpb.Deliver
	// Batch is set when Items are all of the room's DeliverBatch, whose
	// prebuilt Batch frames (DeliverBatch.Frame) may then be sent as they
	// are.
	Batch *actorpb.DeliverBatch
}

// membership is where a member is in one room. last is the last seq
// delivered, where a re-join resumes. based is false only for a join
// without a resume point until its first event or answer: then any seq
// starts it. synced is false from a (re-)join until its answer: events may
// come from the replay and from before it, so a seq past last+1 is dropped
// (the pending replay brings it in order). Once synced, a seq past last+1
// means a delivery was lost (a room instance ended mid-batch): the member
// re-joins from last and the replay fills the hole.
type membership struct {
	last          uint64
	based, synced bool
	// opts are the member's own join's options; a re-join before the room
	// gave anything (not based) repeats them.
	opts JoinOptions
	// joinID is the request id the pending join waits an answer to;
	// answered is the last one answered, so a second answer to it (a join
	// sent again in a cluster) is not handed on twice.
	joinID, answered string
	// attempt numbers the joins sent, so a check finds whether the one it
	// was set for is still unanswered.
	attempt uint64
	rejoin  bool
	// resends counts the resends of the pending join (joinCheck), for the
	// backoff; a new join starts again from none.
	resends int
	// before is where the member stood in the room when it joined it
	// again (from another point): a refusal of that join leaves it there,
	// since the room still has it.
	before *membership
}

type inflightPost struct {
	post  *actorpb.RoomPost
	order uint64 // sent again in the order they were first sent
}

// The member's notes to its own actor (local only).
type (
	// joinCheck: is the join sent as attempt still unanswered?
	joinCheck struct {
		room    string
		attempt uint64
	}
	// rejoinLater: a re-join the room refused (its store was down) is due
	// again.
	rejoinLater struct{ room string }
)

// joinRetryAfter is how long a member in a cluster waits for a join's
// answer before sending it again: a join can vanish with a room that was
// stopping on a member that was leaving. After joinSteadyResends resends
// of the same join each waits twice as long, up to joinRetryMax: a room
// that is merely slow (a reconnect storm's joins queued in its mailbox)
// must not get a resend from every waiting member every two seconds for
// minutes, which slowed it further until nothing came through (a storm of
// 15,000 on 2026-12-01). The first few stay at two seconds, because a
// rolling restart can make a join vanish twice in a row. The room drops a
// resend from a session it already has (RoomJoin.resend), so a resend to
// a slow room costs it little.
const (
	joinRetryAfter    = 2 * time.Second
	joinSteadyResends = 4
	joinRetryMax      = 16 * time.Second
)

// rejoinDelay spaces the retries of a re-join a room could not take (its
// store was down).
const rejoinDelay = 500 * time.Millisecond

// User is the member's name.
func (m *Member) User() string { return m.opts.User }

// In reports whether the member is in room (or joining it).
func (m *Member) In(room string) bool { _, ok := m.rooms[room]; return ok }

// Joining reports whether a join of room was sent and not answered yet:
// another join would race with it (the session refuses one).
func (m *Member) Joining(room string) bool {
	j, ok := m.rooms[room]
	return ok && !j.synced
}

// Rooms lists the rooms the member is in (or joining), by name.
func (m *Member) Rooms() []string {
	out := make([]string, 0, len(m.rooms))
	for r := range m.rooms {
		out = append(out, r)
	}
	slices.Sort(out)
	return out
}

// Len is how many rooms the member is in (or joining).
func (m *Member) Len() int { return len(m.rooms) }

// Join joins a room, or joins it again from another point.
func (m *Member) Join(ctx actor.Context, room string, o JoinOptions) {
	j, ok := m.rooms[room]
	if !ok {
		j = &membership{}
		m.rooms[room] = j
	} else if j.synced {
		prev := *j
		j.before = &prev
	}
	j.opts = o
	j.last, j.based = 0, o.Since != nil
	if o.Since != nil {
		j.last = *o.Since
	}
	j.synced, j.joinID, j.rejoin = false, o.RequestID, false
	m.sendJoin(ctx, room, j, false)
}

// rejoinRoom registers with a room's new instance (or again, after the
// actor restarted), resuming after the last event delivered. A join the
// actor asked for and that is still unanswered keeps its request id, so
// its answer still comes.
func (m *Member) rejoinRoom(ctx actor.Context, room string, j *membership) {
	j.synced, j.rejoin = false, true
	m.sendJoin(ctx, room, j, false)
}

// joinResendAfter is the wait for an answer after the given number of
// resends: joinRetryAfter for the first joinSteadyResends, then doubling
// up to joinRetryMax, with up to a quarter more at random so that a
// crowd's resends spread out.
func joinResendAfter(resends int) time.Duration {
	d := joinRetryAfter
	if n := resends - joinSteadyResends + 1; n > 0 {
		d = min(joinRetryAfter<<min(n, 4), joinRetryMax)
	}
	return d + rand.N(d/4)
}

// Rejoin re-joins every room, as an actor does after it restarted.
func (m *Member) Rejoin(ctx actor.Context) {
	for room, j := range m.rooms {
		m.rejoinRoom(ctx, room, j)
	}
}

func (m *Member) sendJoin(ctx actor.Context, room string, j *membership, resend bool) {
	join := &actorpb.RoomJoin{Room: room, User: m.opts.User, Session: ctx.Self(), Codec: m.opts.Codec,
		RequestId: j.joinID, Rejoin: j.rejoin, Kind: m.kind(), ClaimRole: j.opts.ClaimRole, Resend: resend}
	if j.based {
		last := j.last
		join.Since = &last
	} else {
		join.Since, join.Latest = j.opts.Since, j.opts.Latest
	}
	j.attempt++
	if resend {
		j.resends++
	} else {
		j.resends = 0
	}
	if m.n.Clustered() {
		sys, self, check := m.n.System, ctx.Self(), joinCheck{room: room, attempt: j.attempt}
		time.AfterFunc(joinResendAfter(j.resends), func() { sys.Root.Send(self, check) })
	}
	m.n.dir.Tell(ctx, join)
}

// Leave leaves a room as a member (the user's membership ends, on every
// connection); the room answers requestID (if not empty).
func (m *Member) Leave(ctx actor.Context, room, requestID string) {
	m.leave(ctx, room, requestID, true)
}

// Disconnect takes the actor out of a room; the user stays a member.
func (m *Member) Disconnect(ctx actor.Context, room, requestID string) {
	m.leave(ctx, room, requestID, false)
}

func (m *Member) leave(ctx actor.Context, room, requestID string, membership bool) {
	delete(m.rooms, room)
	delete(m.inflight, room)
	m.n.dir.Tell(ctx, &actorpb.RoomLeave{Room: room, Session: ctx.Self(), RequestId: requestID, Membership: membership, User: m.opts.User})
}

// DisconnectAll takes the actor out of every room, as an actor does when
// it stops for good.
func (m *Member) DisconnectAll(ctx actor.Context) {
	for room := range m.rooms {
		m.Disconnect(ctx, room, "")
	}
}

func (m *Member) kind() parleypb.SenderKind {
	if m.opts.Bot {
		return parleypb.SenderKind_SENDER_KIND_BOT
	}
	return parleypb.SenderKind_SENDER_KIND_USER
}

// Post sends a post to its room (p.Session must be the actor itself). In
// a cluster the post is kept until the room answers it, so that it is not
// lost if the room dies with its node.
func (m *Member) Post(ctx actor.Context, p *actorpb.RoomPost) {
	if p.Kind == parleypb.SenderKind_SENDER_KIND_UNSPECIFIED {
		p.Kind = m.kind()
	}
	if m.n.Clustered() && p.GetRequestId() != "" {
		if m.inflight == nil {
			m.inflight = make(map[string]map[string]inflightPost)
		}
		if m.inflight[p.GetRoom()] == nil {
			m.inflight[p.GetRoom()] = make(map[string]inflightPost)
		}
		m.posted++
		m.inflight[p.GetRoom()][p.GetRequestId()] = inflightPost{p, m.posted}
	}
	m.n.dir.Tell(ctx, p)
}

// Receive applies the message ctx holds to the member's rooms. done reports
// that the message was the contract's own and needs nothing more from the
// actor; d then holds the events to hand on, if any (a Deliver or
// DeliverBatch). Acks, Errors and Resets update the rooms' state and come
// back not done, so the actor handles them too (a session tells its
// client); a duplicate answer is done. RoomClosed for a room the member is
// in comes back not done (it is no longer in it).
func (m *Member) Receive(ctx actor.Context) (d Delivery, done bool) {
	switch msg := ctx.Message().(type) {
	case *actorpb.Deliver:
		d.Room = msg.GetRoom()
		if m.accept(ctx, msg) {
			d.Items = []*actorpb.Deliver{msg}
		}
		return d, true
	case *actorpb.DeliverBatch:
		return m.acceptBatch(ctx, msg), true
	case *actorpb.RoomRestarted:
		if j, ok := m.rooms[msg.GetRoom()]; ok {
			m.rejoinRoom(ctx, msg.GetRoom(), j)
		}
		if msg.GetLost() {
			m.resend(ctx, msg.GetRoom())
		}
		return d, true
	case joinCheck:
		if j, ok := m.rooms[msg.room]; ok && !j.synced && j.attempt == msg.attempt {
			m.n.log.Info("join unanswered; sending it again", "room", msg.room, "user", m.opts.User, "resend", j.resends+1)
			m.sendJoin(ctx, msg.room, j, true)
		}
		return d, true
	case rejoinLater:
		if j, ok := m.rooms[msg.room]; ok && !j.synced {
			m.rejoinRoom(ctx, msg.room, j)
		}
		return d, true
	case *parleypb.Ack:
		m.answered(msg.GetRoom(), msg.GetRequestId())
		return d, m.joinAnswered(ctx, msg)
	case *parleypb.Error:
		m.answered(msg.GetRoom(), msg.GetRequestId())
		m.refused(ctx, msg)
		return d, false
	case *parleypb.Reset:
		if j, ok := m.rooms[msg.GetRoom()]; ok && msg.GetOldestSeq() > 0 {
			// Replay resumes at OldestSeq: after a gap the server no longer
			// has, or, when the member was ahead of the server (history
			// lost), from the server's own start.
			j.last, j.based = msg.GetOldestSeq()-1, true
		}
		return d, false
	case *actorpb.RoomClosed:
		if _, ok := m.rooms[msg.GetRoom()]; !ok {
			return d, true
		}
		delete(m.rooms, msg.GetRoom())
		delete(m.inflight, msg.GetRoom())
		return d, false
	}
	return d, false
}

// accept applies one delivery to the room's resume point and reports
// whether it is new to the member.
func (m *Member) accept(ctx actor.Context, d *actorpb.Deliver) bool {
	j, ok := m.rooms[d.GetRoom()]
	if !ok {
		return false // left the room; a late delivery
	}
	seq := d.GetSeq()
	switch {
	case seq == 0: // presence, typing: not in the log
		return true
	case !j.based || seq == j.last+1:
		j.last, j.based = seq, true
		return true
	case seq <= j.last:
		return false // already delivered (a replay overlapping what the member has)
	case j.synced:
		m.n.log.Info("gap in room events; resuming from the last one delivered", "room", d.GetRoom(), "user", m.opts.User, "last", j.last, "got", seq)
		m.rejoinRoom(ctx, d.GetRoom(), j)
	}
	return false // past a hole that the pending join's replay fills
}

// acceptBatch keeps the items of a batch that are new to the member.
func (m *Member) acceptBatch(ctx actor.Context, b *actorpb.DeliverBatch) Delivery {
	d := Delivery{Room: b.GetRoom()}
	for _, item := range b.GetItems() {
		if m.accept(ctx, item) {
			d.Items = append(d.Items, item)
		}
	}
	if len(d.Items) == len(b.GetItems()) && len(d.Items) > 0 {
		d.Batch = b
	}
	return d
}

// joinAnswered applies a join's Ack and reports whether it is a duplicate
// answer, to drop. The ack says the room replayed everything up to its
// seq; a member that holds less lost part of the replay on the way (it
// came while another join was being answered) and re-joins for it.
func (m *Member) joinAnswered(ctx actor.Context, a *parleypb.Ack) (duplicate bool) {
	j, ok := m.rooms[a.GetRoom()]
	if !ok || a.GetMembers() == nil { // not a join's ack
		return false
	}
	if a.GetRequestId() != j.joinID {
		// Not the answer the pending join waits for: a second answer to
		// an answered join (sent again), or an earlier join's.
		return a.GetRequestId() != "" && a.GetRequestId() == j.answered
	}
	hole := j.based && j.last < a.GetSeq()
	if !j.based {
		j.last, j.based = a.GetSeq(), true // nothing was replayed: it starts here
	}
	j.synced, j.answered, j.joinID, j.before = true, j.joinID, "", nil
	if hole {
		m.n.log.Info("join answered past the events delivered; resuming from the last one", "room", a.GetRoom(), "user", m.opts.User, "last", j.last, "answered", a.GetSeq())
		m.rejoinRoom(ctx, a.GetRoom(), j)
	}
	return false
}

// refused handles a room refusing a join. A join with a request id is
// forgotten (the actor gets the error, names it, and may retry); one
// without (a re-join, a bot's join) that failed for a passing reason (the
// room's store was down) is retried after a pause, since the actor counts
// on being in the room. Any other refusal forgets the room.
func (m *Member) refused(ctx actor.Context, e *parleypb.Error) {
	j, ok := m.rooms[e.GetRoom()]
	if !ok || j.synced || e.GetRequestId() != j.joinID {
		return
	}
	if j.before != nil && !j.rejoin {
		// A join again of a room the member is in: it stays where it was.
		prev := *j.before
		prev.before, prev.answered = nil, j.joinID
		m.rooms[e.GetRoom()] = &prev
		return
	}
	if j.joinID != "" || e.GetCode() != parleypb.ErrorCode_ERROR_CODE_UNAVAILABLE {
		delete(m.rooms, e.GetRoom())
		delete(m.inflight, e.GetRoom())
		return
	}
	sys, self, later := m.n.System, ctx.Self(), rejoinLater{room: e.GetRoom()}
	time.AfterFunc(rejoinDelay, func() { sys.Root.Send(self, later) })
}

// answered forgets an in-flight post once its room answered it.
func (m *Member) answered(room, requestID string) {
	if posts := m.inflight[room]; posts != nil {
		delete(posts, requestID)
		if len(posts) == 0 {
			delete(m.inflight, room)
		}
	}
}

// resend handles the posts a lost room never answered. One with a
// client_msg_id goes again, to the room's next activation, whose dedup
// window (loaded from the store) acknowledges it once whether or not the
// dead node stored it. One without cannot be retried safely: the actor gets
// an UNAVAILABLE Error for it, as if the room had answered so.
func (m *Member) resend(ctx actor.Context, room string) {
	posts := m.inflight[room]
	if len(posts) == 0 {
		return
	}
	ids := make([]string, 0, len(posts))
	for id := range posts {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return posts[ids[i]].order < posts[ids[j]].order })
	for _, id := range ids {
		p := posts[id].post
		if p.GetClientMsgId() != "" {
			m.n.dir.Tell(ctx, p)
			continue
		}
		delete(posts, id)
		ctx.Send(ctx.Self(), &parleypb.Error{RequestId: id, Room: room, Code: parleypb.ErrorCode_ERROR_CODE_UNAVAILABLE,
			Text: "the room's node failed before answering; this post may or may not have been stored (send posts with a client_msg_id to have them retried safely)"})
	}
	m.n.log.Info("room lost with its node; unanswered posts handled", "room", room, "user", m.opts.User, "posts", len(ids))
}
