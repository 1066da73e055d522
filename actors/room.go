package actors

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/parleychat/parley/actors/actorpb"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/store"
	"github.com/parleychat/parley/supervision"
)

// loadPage is how many messages a room reads at a time when it loads.
const loadPage = 512

// storeTimeout bounds one store call made by a room; a room blocked on its
// store blocks only itself.
const storeTimeout = 5 * time.Second

func roomProps(n *Node, name string) *actor.Props {
	depth := &mailboxDepth{}
	n.Stats.mailboxes.Store(name, depth)
	opts := append([]actor.PropsOption{actor.WithMailbox(actor.Unbounded(depth))}, middleware(n.cfg.Faults, "room")...)
	return actor.PropsFromProducer(func() actor.Actor { return newRoom(n, name) }, opts...)
}

// room is one chat room: its members, its sequence numbers, a window of
// recent events, and the fan-out. History lives in the store; the room
// writes each batch of posts there before it acknowledges or delivers them
// (group commit: posts queued in the mailbox while a write runs form the
// next batch).
type room struct {
	n    *Node
	name string
	log  *slog.Logger

	loaded    bool
	loadErr   error  // why the last load failed
	committed uint64 // last seq in the store
	next      uint64 // last seq handed out (committed + len(pending))
	oldest    uint64 // oldest seq the store still has

	window []*windowEntry // recent events, ascending, at most cfg.History
	dedup  *dedupWindow
	// touched are the new versions of messages that pending events
	// rewrite (room_messages.go), by seq, until they are committed.
	touched map[uint64]*postState
	// cursors are the read-cursor moves waiting for the commit, by user:
	// a burst of them is one record and one RoomInfo (room_cursors.go).
	cursors map[string]*pendingEvent
	// positions are the cursor moves other members have not been told of
	// yet, in a room that shows read positions (room_positions.go).
	positions   positions
	pending     []*pendingEvent
	flushQueued bool

	// info is the room's record (nil: none yet) and roster everyone's
	// standing in it (members, invited, banned, muted): room_roster.go.
	info   *store.RoomRecord
	roster map[string]store.Member

	// members are the connections in the room (sessions, bots), by PID
	// key; a user may have several, and a member of the room none.
	members map[string]*roomMember
	// catching are the joins whose stored history a reader is replaying
	// (room_replay.go), by session PID key; readers counts the readers
	// running, readQueue those waiting to.
	catching  map[string]*catchup
	readers   int
	readQueue []queuedRead
	// remote groups, in a cluster, the members on other nodes by node
	// address, for one Relay per node per fan-out.
	remote map[string]*relayGroup
	users  map[string]int // user -> devices in the room
	order  joinOrder      // users in the order they joined
	codecs [4]int         // members per parleypb.Codec
	linger *supervision.IdleTimer

	// Presence changes not yet announced, coalesced: a burst of joins or
	// departures (a room filling up, a node's sessions leaving at once) is
	// one announcement to each member, not one per user.
	presenceDelta  map[string]int8 // user -> +1 joined, -1 left
	presenceOrder  []string        // users in the order they changed
	presenceQueued bool

	// Requests held for the application's hooks (room_hooks.go): posts in
	// the order they came, and how many joins.
	heldPosts []*held
	heldJoins int
}

type windowEntry struct {
	ev      *parleypb.RoomEvent
	deliver *actorpb.Deliver
	post    *actorpb.StoredPost // a post's stored state (reactions' users)
}

func newRoom(n *Node, name string) *room {
	return &room{
		n: n, name: name, log: n.log.With("room", name),
		dedup:    newDedupWindow(n.cfg.DedupWindow, n.cfg.DedupBytes),
		members:  make(map[string]*roomMember),
		catching: make(map[string]*catchup),
		roster:   make(map[string]store.Member),
		users:    make(map[string]int),
	}
}

func (r *room) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		r.n.Stats.ActiveRooms.Add(1)
		r.linger = supervision.NewIdleTimer(r.n.System, ctx.Self(), r.n.cfg.RoomLinger, &actorpb.IdleCheck{})
		r.load()
		r.armLinger(ctx)
	case *actor.Restarting:
		r.linger.Stop()
		r.stopPositions()
		r.n.Stats.ActiveRooms.Add(-1)
		r.abandon(ctx, "the room restarted")
	case *actor.Stopping:
		r.linger.Stop()
		r.n.Stats.ActiveRooms.Add(-1)
		r.flush(ctx)
		r.stopPositions()
		r.abandon(ctx, "the room stopped")
	case *actorpb.RoomPost:
		r.post(ctx, m)
	case *actorpb.RoomFlush:
		r.flushQueued = false
		r.flush(ctx)
	case presenceFlush:
		r.flushPresence(ctx)
	case positionsFlush:
		r.flushPositions(ctx)
	case *actorpb.RoomJoin:
		r.join(ctx, m)
	case *actorpb.RoomLeave:
		r.leaveRequest(ctx, m)
	case *actor.Terminated:
		r.cancelCatchUp(ctx, pidKey(m.GetWho()))
		r.leave(ctx, m.GetWho(), "")
	case *readDone:
		r.readerDone(ctx, m)
	case *actorpb.RoomTyping:
		r.typing(ctx, m)
	case *actorpb.RoomHistory:
		r.history(ctx, m)
	case *actorpb.RoomMarkRead:
		r.markRead(ctx, m)
	case *actorpb.RoomCreate:
		r.create(ctx, m)
	case *actorpb.RoomModerate:
		r.moderate(ctx, m)
	case *actorpb.RoomUpdate:
		r.update(ctx, m)
	case *actorpb.RoomDelete:
		r.remove(ctx, m)
	case *actorpb.RoomMembers:
		r.membersPage(ctx, m)
	case *actorpb.CloseRoom:
		r.close(ctx, m)
	case *actorpb.RoomWho:
		r.who(ctx, m)
	case *hookVerdict:
		r.verdict(ctx, m)
	case *actorpb.IdleCheck:
		if len(r.members) == 0 && len(r.pending) == 0 && len(r.catching) == 0 && r.readers == 0 && len(r.heldPosts) == 0 && r.heldJoins == 0 && r.linger.Expired() {
			r.linger.Stop()
			r.n.Stats.Passivations.Add(1)
			r.log.Debug("room empty; passivating", "linger", r.n.cfg.RoomLinger)
			ctx.Request(ctx.Parent(), &actorpb.RoomPassivate{Room: r.name})
		}
	}
}

// load reads the room's sequence number, window and dedup ids from the store.
// A store that fails leaves the room unloaded: requests get UNAVAILABLE and
// the next one tries again, so the room recovers when the store does.
func (r *room) load() bool {
	if r.loaded {
		return true
	}
	r.loadErr = nil
	fail := func(what string, err error) bool {
		r.loadErr = err
		r.log.Error("room could not load "+what, "err", err)
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	b, err := r.n.cfg.Store.Bounds(ctx, r.name)
	if err != nil {
		return fail("its history", err)
	}
	// The newest DedupWindow messages give the dedup ids (kept without
	// their text), the newest History of them the window; read in pages,
	// so loading a room never holds more than a page of full messages.
	var window []*windowEntry
	var ids []dedupEntry
	before, read := uint64(0), 0
	for read < r.n.cfg.DedupWindow {
		page, err := r.n.cfg.Store.Before(ctx, r.name, before, min(loadPage, r.n.cfg.DedupWindow-read))
		if err != nil {
			return fail("its history", err)
		}
		for i := len(page) - 1; i >= 0; i-- {
			msg := page[i]
			if len(window) < r.n.cfg.History {
				window = append(window, &windowEntry{ev: eventOf(msg), post: postOf(msg)})
			}
			if msg.ClientMsgID != "" {
				ids = append(ids, dedupEntry{dedupKey{msg.Sender, msg.ClientMsgID}, msg.Seq})
			}
		}
		read += len(page)
		if len(page) == 0 || page[0].Seq <= 1 {
			break
		}
		before = page[0].Seq
	}
	info, ok, err := r.n.cfg.Store.Room(ctx, r.name)
	if err != nil {
		return fail("its record", err)
	}
	roster := make(map[string]store.Member)
	for after := ""; ; {
		page, err := r.n.cfg.Store.Members(ctx, r.name, after, loadPage)
		if err != nil {
			return fail("its members", err)
		}
		for _, m := range page {
			roster[m.User] = m
		}
		if len(page) < loadPage {
			break
		}
		after = page[len(page)-1].User
	}
	r.info, r.roster = nil, roster
	if ok {
		r.info = &info
	}
	r.committed, r.next, r.oldest = b.Latest, b.Latest, b.Oldest
	slices.Reverse(window)
	r.window = window
	r.dedup.reset()
	for i := len(ids) - 1; i >= 0; i-- { // oldest first
		r.dedup.remember(ids[i].key, ids[i].seq)
	}
	r.loaded = true
	return true
}

// unavailable answers a request the room cannot take because its store
// could not be read: retry later, or, when what is stored is damaged, say
// so (retrying does not help; the log names the file).
func (r *room) unavailable(ctx actor.SenderContext, to *actor.PID, requestID string) {
	text := "history store unavailable; retry later"
	if errors.Is(r.loadErr, store.ErrCorrupt) {
		text = "this room's stored history is damaged and cannot be read; the server's operator has been told"
	}
	errorTo(ctx, to, requestID, r.name, parleypb.ErrorCode_ERROR_CODE_UNAVAILABLE, text)
}

func eventOf(m store.Message) *parleypb.RoomEvent {
	kind := parleypb.SenderKind(m.SenderKind)
	if kind == parleypb.SenderKind_SENDER_KIND_UNSPECIFIED {
		kind = parleypb.SenderKind_SENDER_KIND_USER // stored before kinds were
	}
	ev := &parleypb.RoomEvent{Room: m.Room, Seq: m.Seq, TimeMs: m.Time.UnixMilli(), Sender: m.Sender, Text: m.Text, ClientMsgId: m.ClientMsgID,
		SenderKind: kind}
	if sp := postOf(m); sp != nil {
		decorate(ev, sp)
	} else {
		ev.Change = decodeChange(m.Body)
	}
	return ev
}

// oldestKnown is the oldest seq the room can still serve, as far as it
// knows without asking the store (retention may have moved it since load).
func (r *room) oldestKnown() uint64 {
	if r.oldest > 0 {
		return r.oldest
	}
	if len(r.window) > 0 {
		return r.window[0].ev.Seq
	}
	return 0
}

// close evicts every member (an operator's decision) and asks to be
// passivated; what was stored stays, and the next join starts the room anew.
func (r *room) close(ctx actor.Context, m *actorpb.CloseRoom) {
	r.flush(ctx)
	why := "the room was closed by an operator: " + m.GetReason()
	r.dropCatchUps(ctx, why)
	n := len(r.members)
	for key, mem := range r.members {
		ctx.Unwatch(mem.pid)
		ctx.Send(mem.pid, &actorpb.RoomClosed{Room: r.name, Reason: why})
		delete(r.members, key)
	}
	clear(r.remote)
	clear(r.users)
	r.order.clear()
	r.codecs = [4]int{}
	ctx.Send(ctx.Parent(), &actorpb.RoomCount{Room: r.name})
	r.log.Warn("room closed by an operator", "reason", m.GetReason(), "evicted", n)
	if m.GetReplyTo() != nil {
		ctx.Send(m.GetReplyTo(), &parleypb.Ack{Room: r.name, Seq: uint64(n)})
	}
	r.linger.Stop()
	ctx.Request(ctx.Parent(), &actorpb.RoomPassivate{Room: r.name})
}

// armLinger starts the passivation timer of an empty room.
func (r *room) armLinger(actor.Context) {
	if len(r.members) == 0 {
		r.linger.Start()
	}
}

// abandon runs when this instance ends (restart or stop): posts not yet
// written fail with a retryable error, and members are told to re-join the
// room's next instance, which reloads from the store.
func (r *room) abandon(ctx actor.Context, why string) {
	for _, p := range r.pending {
		// Joins and moderation wait here too (for their changes to be
		// stored), and have no client_msg_id to retry with.
		retry := "; retry"
		if p.ev.GetChange() == nil || p.ev.GetClientMsgId() != "" { // a post or a change to one, or a retry
			retry = "; retry with the same client_msg_id"
		}
		errorTo(ctx, p.session, p.requestID, r.name, parleypb.ErrorCode_ERROR_CODE_UNAVAILABLE, why+retry)
	}
	r.pending = nil
	r.dropCatchUps(ctx, why+"; join again")
	for _, m := range r.members {
		ctx.Send(m.pid, &actorpb.RoomRestarted{Room: r.name})
	}
	if len(r.members) > 0 {
		r.log.Info("room instance ending; members will re-join", "why", why, "members", len(r.members))
	}
}

// dropCatchUps fails the joins still catching up. A member already in the
// room (re-joining) is not answered here: it hears of the room's end with
// the other members, and its re-join carries the pending request.
func (r *room) dropCatchUps(ctx actor.Context, why string) {
	for key, c := range r.catching {
		delete(r.catching, key)
		if _, member := r.members[key]; !member {
			errorTo(ctx, c.mem.pid, c.join.GetRequestId(), r.name, parleypb.ErrorCode_ERROR_CODE_UNAVAILABLE, why)
		}
	}
}

// errorTo answers a request with an error.
func errorTo(ctx actor.SenderContext, to *actor.PID, requestID, room string, code parleypb.ErrorCode, text string) {
	if to == nil {
		return
	}
	ctx.Send(to, &parleypb.Error{RequestId: requestID, Room: room, Code: code, Text: text})
}
