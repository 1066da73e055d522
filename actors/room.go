package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/codec"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/store"
	"github.com/parleychat/parley/supervision"
)

// storeTimeout bounds one store call made by a room; a room blocked on its
// store blocks only itself.
const storeTimeout = 5 * time.Second

// replayPage is how many stored messages a room reads at a time when a
// client resumes from further back than its in-memory window.
const replayPage = 256

// legacyReplay is how much recent history a tutorial client gets on login.
const legacyReplay = 50

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
	committed uint64 // last seq in the store
	next      uint64 // last seq handed out (committed + len(pending))
	oldest    uint64 // oldest seq the store still has

	window      []*windowEntry // recent events, ascending, at most cfg.History
	dedup       map[dedupKey]uint64
	dedupQ      []dedupKey
	pending     []pendingPost
	flushQueued bool

	members map[string]*member // by session PID key
	// remote groups, in a cluster, the members on other nodes by node
	// address, for one Relay per node per fan-out.
	remote map[string]*relayGroup
	users  map[string]int // user -> devices in the room
	order  []string       // users in the order they joined
	codecs [4]int         // members per parleypb.Codec
	linger *supervision.IdleTimer

	// Presence changes not yet announced, coalesced: a burst of joins or
	// departures (a room filling up, a node's sessions leaving at once) is
	// one announcement to each member, not one per user.
	presenceDelta  map[string]int8 // user -> +1 joined, -1 left
	presenceOrder  []string        // users in the order they changed
	presenceQueued bool
}

// presenceFlush is a room's note to itself: announce the presence changes
// gathered so far. It queues behind what is already in the mailbox, so
// joins that arrived together are announced together, with no timer.
type presenceFlush struct{}

type windowEntry struct {
	ev      *parleypb.RoomEvent
	deliver *parleypb.Deliver
}

type dedupKey struct{ user, id string }

type pendingPost struct {
	ev        *parleypb.RoomEvent // nil for a retry of a post in this batch
	dupOf     uint64
	session   *actor.PID
	requestID string
}

type relayGroup struct {
	members map[string]*member // by session PID key
	ids     []string           // their PID ids; nil when stale
}

type member struct {
	pid   *actor.PID
	user  string
	codec parleypb.Codec
}

func newRoom(n *Node, name string) *room {
	return &room{
		n: n, name: name, log: n.log.With("room", name),
		dedup:   make(map[dedupKey]uint64),
		members: make(map[string]*member),
		users:   make(map[string]int),
	}
}

func (r *room) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		r.n.Stats.ActiveRooms.Add(1)
		r.linger = supervision.NewIdleTimer(r.n.System, ctx.Self(), r.n.cfg.RoomLinger, &parleypb.IdleCheck{})
		r.load()
		r.armLinger(ctx)
	case *actor.Restarting:
		r.linger.Stop()
		r.n.Stats.ActiveRooms.Add(-1)
		r.abandon(ctx, "the room restarted")
	case *actor.Stopping:
		r.linger.Stop()
		r.n.Stats.ActiveRooms.Add(-1)
		r.flush(ctx)
		r.abandon(ctx, "the room stopped")
	case *parleypb.RoomPost:
		r.post(ctx, m)
	case *parleypb.RoomFlush:
		r.flushQueued = false
		r.flush(ctx)
	case presenceFlush:
		r.flushPresence(ctx)
	case *parleypb.RoomJoin:
		r.join(ctx, m)
	case *parleypb.RoomLeave:
		r.leave(ctx, m.GetSession(), m.GetRequestId())
	case *actor.Terminated:
		r.leave(ctx, m.GetWho(), "")
	case *parleypb.RoomTyping:
		r.typing(ctx, m)
	case *parleypb.RoomHistory:
		r.history(ctx, m)
	case *parleypb.CloseRoom:
		r.close(ctx, m)
	case *parleypb.RoomWho:
		ctx.Send(m.GetSession(), &parleypb.PresenceEvent{Room: r.name, Members: r.memberList()})
	case *parleypb.IdleCheck:
		if len(r.members) == 0 && len(r.pending) == 0 && r.linger.Expired() {
			r.linger.Stop()
			r.n.Stats.Passivations.Add(1)
			r.log.Debug("room empty; passivating", "linger", r.n.cfg.RoomLinger)
			ctx.Request(ctx.Parent(), &parleypb.RoomPassivate{Room: r.name})
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
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	b, err := r.n.cfg.Store.Bounds(ctx, r.name)
	if err != nil {
		r.log.Error("room could not load its history", "err", err)
		return false
	}
	recent, err := r.n.cfg.Store.Before(ctx, r.name, 0, max(r.n.cfg.History, r.n.cfg.DedupWindow))
	if err != nil {
		r.log.Error("room could not load its history", "err", err)
		return false
	}
	r.committed, r.next, r.oldest = b.Latest, b.Latest, b.Oldest
	r.window = r.window[:0]
	clear(r.dedup)
	r.dedupQ = r.dedupQ[:0]
	start := max(0, len(recent)-r.n.cfg.History)
	for i, msg := range recent {
		if msg.ClientMsgID != "" {
			r.remember(dedupKey{msg.Sender, msg.ClientMsgID}, msg.Seq)
		}
		if i >= start {
			r.window = append(r.window, &windowEntry{ev: eventOf(msg)})
		}
	}
	r.loaded = true
	return true
}

func eventOf(m store.Message) *parleypb.RoomEvent {
	return &parleypb.RoomEvent{Room: m.Room, Seq: m.Seq, TimeMs: m.Time.UnixMilli(), Sender: m.Sender, Text: m.Text, ClientMsgId: m.ClientMsgID}
}

func (r *room) remember(k dedupKey, seq uint64) {
	if _, ok := r.dedup[k]; !ok {
		r.dedupQ = append(r.dedupQ, k)
	}
	r.dedup[k] = seq
	if len(r.dedupQ) > r.n.cfg.DedupWindow {
		delete(r.dedup, r.dedupQ[0])
		r.dedupQ = r.dedupQ[1:]
	}
}

func (r *room) post(ctx actor.Context, m *parleypb.RoomPost) {
	if !r.load() {
		errorTo(ctx, m.GetSession(), m.GetRequestId(), r.name, parleypb.ErrorCode_ERROR_CODE_UNAVAILABLE, "history store unavailable; retry later")
		return
	}
	var k dedupKey
	if m.GetClientMsgId() != "" {
		k = dedupKey{m.GetUser(), m.GetClientMsgId()}
		if seq, ok := r.dedup[k]; ok {
			if seq <= r.committed {
				ctx.Send(m.GetSession(), &parleypb.Ack{RequestId: m.GetRequestId(), Room: r.name, Seq: seq})
			} else { // a retry of a post still in this batch: ack with it
				r.pending = append(r.pending, pendingPost{dupOf: seq, session: m.GetSession(), requestID: m.GetRequestId()})
			}
			return
		}
	}
	r.next++
	ev := &parleypb.RoomEvent{Room: r.name, Seq: r.next, TimeMs: time.Now().UnixMilli(), Sender: m.GetUser(), Text: m.GetText(), ClientMsgId: m.GetClientMsgId()}
	if k.id != "" {
		r.remember(k, ev.Seq)
	}
	r.pending = append(r.pending, pendingPost{ev: ev, session: m.GetSession(), requestID: m.GetRequestId()})
	if !r.flushQueued {
		// The flush goes behind every post already in the mailbox, so they
		// all land in one store transaction.
		r.flushQueued = true
		ctx.Send(ctx.Self(), &parleypb.RoomFlush{})
	}
}

// flush writes the pending batch, then acknowledges and delivers it. On a
// store error nothing is acknowledged: each poster gets UNAVAILABLE and the
// seqs are handed out again.
func (r *room) flush(ctx actor.Context) {
	if len(r.pending) == 0 {
		return
	}
	batch := r.pending
	r.pending = nil
	msgs := make([]store.Message, 0, len(batch))
	for _, p := range batch {
		if p.ev != nil {
			msgs = append(msgs, store.Message{Room: r.name, Seq: p.ev.Seq, Time: time.UnixMilli(p.ev.TimeMs), Sender: p.ev.Sender, Text: p.ev.Text, ClientMsgID: p.ev.ClientMsgId})
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	err := r.n.cfg.Store.Append(sctx, msgs)
	cancel()
	if err != nil {
		r.n.Stats.StoreErrors.Add(1)
		r.log.Error("room could not store a batch; failing its posts", "posts", len(msgs), "err", err)
		for _, p := range batch {
			if p.ev != nil && p.ev.ClientMsgId != "" {
				delete(r.dedup, dedupKey{p.ev.Sender, p.ev.ClientMsgId})
			}
			errorTo(ctx, p.session, p.requestID, r.name, parleypb.ErrorCode_ERROR_CODE_UNAVAILABLE, "history store unavailable; retry with the same client_msg_id")
		}
		r.next = r.committed
		if errors.Is(err, store.ErrConflict) {
			// Another writer took these seqs (a second activation of this
			// room): reload from the store before accepting more.
			r.loaded = false
		}
		return
	}
	r.committed = r.next
	r.n.Stats.Posts.Add(int64(len(msgs)))
	if r.oldest == 0 && len(msgs) > 0 {
		r.oldest = msgs[0].Seq
	}
	for _, p := range batch {
		seq := p.dupOf
		if p.ev != nil {
			seq = p.ev.Seq
		}
		ctx.Send(p.session, &parleypb.Ack{RequestId: p.requestID, Room: r.name, Seq: seq})
	}
	mask := r.codecMask()
	var delivers []*parleypb.Deliver
	for _, p := range batch {
		if p.ev == nil {
			continue
		}
		d := r.encodeEvent(p.ev, mask)
		r.push(&windowEntry{ev: p.ev, deliver: d})
		delivers = append(delivers, d)
	}
	switch len(delivers) {
	case 0:
	case 1:
		r.fanout(ctx, delivers[0], "")
	default:
		// Under load a commit holds many events: one message per member for
		// all of them, and one Batch frame per codec built here, once.
		r.n.Stats.Deliveries.Add(int64(len(r.members) * (len(delivers) - 1)))
		r.fanout(ctx, r.batchOf(delivers, mask), "")
	}
}

// batchOf wraps consecutive deliveries for every member, with their Batch
// frames prebuilt per native codec.
func (r *room) batchOf(ds []*parleypb.Deliver, mask [4]bool) *parleypb.DeliverBatch {
	b := &parleypb.DeliverBatch{Room: r.name, Items: ds}
	frames := make([][]byte, len(ds))
	if mask[parleypb.Codec_CODEC_PROTO] {
		for i, d := range ds {
			frames[i] = d.ProtoFrame
		}
		b.ProtoFrame, _ = codec.Proto.AppendBatch(nil, frames)
	}
	if mask[parleypb.Codec_CODEC_JSON] {
		for i, d := range ds {
			frames[i] = d.JsonFrame
		}
		b.JsonFrame, _ = codec.JSON.AppendBatch(nil, frames)
	}
	return b
}

func (r *room) push(e *windowEntry) {
	if len(r.window) >= r.n.cfg.History {
		copy(r.window, r.window[1:])
		r.window[len(r.window)-1] = e
		return
	}
	r.window = append(r.window, e)
}

// codecMask lists the codecs the current members use.
func (r *room) codecMask() [4]bool {
	var mask [4]bool
	for i, n := range r.codecs {
		mask[i] = n > 0
	}
	return mask
}

// encodeEvent renders an event once per codec in mask.
func (r *room) encodeEvent(ev *parleypb.RoomEvent, mask [4]bool) *parleypb.Deliver {
	d := &parleypb.Deliver{Room: r.name, Seq: ev.Seq}
	r.encodeInto(d, &parleypb.Envelope{Body: &parleypb.Envelope_Event{Event: ev}}, mask)
	if mask[parleypb.Codec_CODEC_UNSPECIFIED] {
		d.Event = ev
	}
	return d
}

func (r *room) encodeInto(d *parleypb.Deliver, env *parleypb.Envelope, mask [4]bool) {
	for k := parleypb.Codec_CODEC_PROTO; k <= parleypb.Codec_CODEC_LEGACY; k++ {
		if !mask[k] {
			continue
		}
		f, err := codec.For(k).Encode(env)
		if err != nil {
			if !errors.Is(err, codec.ErrNoFrame) {
				r.log.Error("encode failed", "codec", k.String(), "err", err)
			}
			continue
		}
		switch k {
		case parleypb.Codec_CODEC_PROTO:
			d.ProtoFrame = f
		case parleypb.Codec_CODEC_JSON:
			d.JsonFrame = f
		case parleypb.Codec_CODEC_LEGACY:
			d.LegacyFrame = f
		}
	}
}

// fanout sends d to every member except those of user skip. A room never
// waits for a session: a session that cannot keep up closes itself (1013).
// In a cluster, members on another node get one Relay per node.
func (r *room) fanout(ctx actor.Context, d proto.Message, skip string) {
	switch d := d.(type) {
	case *parleypb.Deliver:
		if d.GetSeq() != 0 {
			r.n.Stats.Deliveries.Add(int64(len(r.members)))
		}
	case *parleypb.DeliverBatch:
		r.n.Stats.Deliveries.Add(int64(len(r.members)))
	}
	if len(r.remote) == 0 {
		for _, m := range r.members {
			if skip != "" && m.user == skip {
				continue
			}
			ctx.Send(m.pid, d)
		}
		return
	}
	for _, m := range r.members {
		if skip != "" && m.user == skip {
			continue
		}
		if _, far := r.remote[m.pid.GetAddress()]; !far {
			ctx.Send(m.pid, d)
		}
	}
	for addr, g := range r.remote {
		ids := g.idsExcept(skip)
		switch {
		case len(ids) == 0:
		case len(ids) == 1:
			for _, m := range g.members {
				if skip == "" || m.user != skip {
					ctx.Send(m.pid, d)
				}
			}
		default:
			rl := &parleypb.Relay{SessionIds: ids}
			switch d := d.(type) {
			case *parleypb.Deliver:
				rl.Payload = &parleypb.Relay_Deliver{Deliver: d}
			case *parleypb.DeliverBatch:
				rl.Payload = &parleypb.Relay_Batch{Batch: d}
			}
			r.n.Stats.Relays.Add(1)
			ctx.Send(actor.NewPID(addr, RelayName), rl)
		}
	}
}

// RelayName is the name of each cluster member's relay actor.
const RelayName = "relay"

// addRemote files a member on another node under its node (clustered only).
func (r *room) addRemote(key string, m *member) {
	if !r.n.Clustered || m.pid.GetAddress() == r.n.System.Address() {
		return
	}
	if r.remote == nil {
		r.remote = make(map[string]*relayGroup)
	}
	g := r.remote[m.pid.GetAddress()]
	if g == nil {
		g = &relayGroup{members: make(map[string]*member)}
		r.remote[m.pid.GetAddress()] = g
	}
	g.members[key] = m
	g.ids = nil
}

func (r *room) dropRemote(key string, m *member) {
	g := r.remote[m.pid.GetAddress()]
	if g == nil {
		return
	}
	delete(g.members, key)
	g.ids = nil
	if len(g.members) == 0 {
		delete(r.remote, m.pid.GetAddress())
	}
}

// idsExcept lists the group's session ids, without user skip's.
func (g *relayGroup) idsExcept(skip string) []string {
	if skip != "" {
		ids := make([]string, 0, len(g.members))
		for _, m := range g.members {
			if m.user != skip {
				ids = append(ids, m.pid.GetId())
			}
		}
		return ids
	}
	if g.ids == nil {
		g.ids = make([]string, 0, len(g.members))
		for _, m := range g.members {
			g.ids = append(g.ids, m.pid.GetId())
		}
	}
	return g.ids
}

func (r *room) join(ctx actor.Context, m *parleypb.RoomJoin) {
	if !r.load() {
		errorTo(ctx, m.GetSession(), m.GetRequestId(), r.name, parleypb.ErrorCode_ERROR_CODE_UNAVAILABLE, "history store unavailable; retry later")
		return
	}
	key := pidKey(m.GetSession())
	if _, ok := r.members[key]; !ok && r.n.cfg.MaxMembers > 0 && len(r.members) >= r.n.cfg.MaxMembers {
		errorTo(ctx, m.GetSession(), m.GetRequestId(), r.name, parleypb.ErrorCode_ERROR_CODE_ROOM_FULL,
			fmt.Sprintf("the room is full: %d connections", r.n.cfg.MaxMembers))
		return
	}
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
	mem := &member{pid: m.GetSession(), user: m.GetUser(), codec: m.GetCodec()}
	r.members[key] = mem
	r.addRemote(key, mem)
	r.codecs[mem.codec]++

	if err := r.replay(ctx, mem, m.Since); err != nil {
		r.log.Error("replay from the store failed; refusing the join", "err", err)
		r.leave(ctx, mem.pid, "")
		errorTo(ctx, m.GetSession(), m.GetRequestId(), r.name, parleypb.ErrorCode_ERROR_CODE_UNAVAILABLE, "history store unavailable; join again later")
		return
	}
	ctx.Send(m.GetSession(), &parleypb.Ack{RequestId: m.GetRequestId(), Room: r.name, Seq: r.committed, Members: r.memberList(), OldestSeq: r.oldestKnown()})
	if newUser {
		ctx.Send(ctx.Parent(), &parleypb.RoomCount{Room: r.name, Members: uint32(len(r.users))})
		if !m.GetRejoin() {
			r.presenceChange(ctx, m.GetUser(), +1)
		}
	}
}

// replay sends mem the events after since (or the window when since is
// nil): from the window when it reaches back far enough, else from the store.
// Events go in batches of up to replayPage (DeliverBatch), which the session
// writes as one frame each, so a long replay takes few queue slots. A gap
// that retention deleted, or one longer than MaxReplay, is announced with a
// Reset naming where the replay starts: never skipped silently. An error
// means the store could not be read and nothing was sent.
func (r *room) replay(ctx actor.Context, mem *member, since *uint64) error {
	from := uint64(0)
	if len(r.window) > 0 {
		from = r.window[0].ev.Seq - 1
	}
	if since != nil && *since > r.committed {
		// The client has seen more than this room ever stored: its history
		// is gone (a memory store restarted). Start it over, visibly.
		start := r.committed + 1
		if len(r.window) > 0 {
			start = r.window[0].ev.Seq
		}
		ctx.Send(mem.pid, &parleypb.Reset{Room: r.name, Since: *since, OldestSeq: start})
		since = nil
	}
	if since != nil {
		from = *since
	} else if mem.codec == parleypb.Codec_CODEC_LEGACY && r.committed > legacyReplay {
		// The tutorial's page cannot batch: one frame per event must fit
		// its outbound queue with room to spare.
		from = max(from, r.committed-legacyReplay)
	}
	if from >= r.committed {
		return nil
	}
	if limit := uint64(r.n.cfg.MaxReplay); r.committed-from > limit {
		ctx.Send(mem.pid, &parleypb.Reset{Room: r.name, Since: from, OldestSeq: r.committed - limit + 1})
		from = r.committed - limit
	}
	windowStart := r.committed + 1
	if len(r.window) > 0 {
		windowStart = r.window[0].ev.Seq
	}
	if from+1 < windowStart {
		var err error
		if from, err = r.replayStored(ctx, mem, from, windowStart); err != nil {
			return err
		}
	}
	batch := &parleypb.DeliverBatch{Room: r.name}
	for _, e := range r.window {
		if e.ev.Seq <= from {
			continue
		}
		if e.deliver == nil || !hasFrame(e.deliver, mem.codec) {
			// Encode for this codec too; a new Deliver, since sessions may
			// still be reading the old one.
			all := r.codecMask()
			all[mem.codec] = true
			e.deliver = r.encodeEvent(e.ev, all)
		}
		batch.Items = append(batch.Items, e.deliver)
		if len(batch.Items) == replayPage {
			ctx.Send(mem.pid, batch)
			batch = &parleypb.DeliverBatch{Room: r.name}
		}
	}
	if len(batch.Items) > 0 {
		ctx.Send(mem.pid, batch)
	}
	return nil
}

// replayStored sends mem the stored events after `after` and before
// windowStart, page by page, and returns the last seq it covered.
func (r *room) replayStored(ctx actor.Context, mem *member, after, windowStart uint64) (uint64, error) {
	sctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	b, err := r.n.cfg.Store.Bounds(sctx, r.name)
	cancel()
	if err != nil {
		return after, err
	}
	r.oldest = b.Oldest
	if oldest := max(b.Oldest, 1); after+1 < oldest || (b.Oldest == 0 && after < b.Latest) {
		if b.Oldest == 0 { // everything stored was deleted; the window is all there is
			oldest = windowStart
		}
		ctx.Send(mem.pid, &parleypb.Reset{Room: r.name, Since: after, OldestSeq: oldest})
		after = oldest - 1
	}
	var mask [4]bool
	mask[mem.codec] = true
	for after+1 < windowStart {
		sctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		page, err := r.n.cfg.Store.After(sctx, r.name, after, min(replayPage, int(windowStart-after-1)))
		cancel()
		if err != nil {
			return after, err
		}
		if len(page) == 0 {
			break // retention caught up with us mid-replay; the window follows
		}
		batch := &parleypb.DeliverBatch{Room: r.name, Items: make([]*parleypb.Deliver, len(page))}
		for i, msg := range page {
			batch.Items[i] = r.encodeEvent(eventOf(msg), mask)
		}
		ctx.Send(mem.pid, batch)
		after = page[len(page)-1].Seq
	}
	return after, nil
}

func hasFrame(d *parleypb.Deliver, k parleypb.Codec) bool {
	switch k {
	case parleypb.Codec_CODEC_PROTO:
		return d.ProtoFrame != nil
	case parleypb.Codec_CODEC_JSON:
		return d.JsonFrame != nil
	case parleypb.Codec_CODEC_LEGACY:
		return d.LegacyFrame != nil
	}
	return d.Event != nil
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

// flushPresence announces the changes gathered since the last one.
func (r *room) flushPresence(ctx actor.Context) {
	r.presenceQueued = false
	ev := &parleypb.PresenceEvent{Room: r.name}
	for _, u := range r.presenceOrder {
		switch r.presenceDelta[u] {
		case +1:
			ev.Joined = append(ev.Joined, u)
		case -1:
			ev.Left = append(ev.Left, u)
		}
		delete(r.presenceDelta, u) // a user listed twice is announced once
	}
	r.presenceOrder = r.presenceOrder[:0]
	if len(ev.Joined)+len(ev.Left) > 0 {
		r.announce(ctx, ev)
	}
}

// announce tells every member (the subject included) of a presence change,
// encoded once per codec. The legacy frame carries the full list after the
// change, as the tutorial's user_list does; native frames carry the delta.
func (r *room) announce(ctx actor.Context, p *parleypb.PresenceEvent) {
	mask := r.codecMask()
	d := &parleypb.Deliver{Room: r.name}
	legacy := mask[parleypb.Codec_CODEC_LEGACY]
	mask[parleypb.Codec_CODEC_LEGACY] = false
	r.encodeInto(d, &parleypb.Envelope{Body: &parleypb.Envelope_Presence{Presence: p}}, mask)
	if legacy {
		full := &parleypb.PresenceEvent{Room: p.Room, Joined: p.Joined, Left: p.Left, Members: r.memberList()}
		var only [4]bool
		only[parleypb.Codec_CODEC_LEGACY] = true
		r.encodeInto(d, &parleypb.Envelope{Body: &parleypb.Envelope_Presence{Presence: full}}, only)
	}
	r.fanout(ctx, d, "")
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
			ctx.Send(ctx.Parent(), &parleypb.RoomCount{Room: r.name, Members: uint32(len(r.users))})
		}
	}
	if requestID != "" {
		ctx.Send(pid, &parleypb.Ack{RequestId: requestID, Room: r.name})
	}
	r.armLinger(ctx)
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
func (r *room) close(ctx actor.Context, m *parleypb.CloseRoom) {
	r.flush(ctx)
	n := len(r.members)
	for key, mem := range r.members {
		ctx.Unwatch(mem.pid)
		ctx.Send(mem.pid, &parleypb.RoomClosed{Room: r.name, Reason: m.GetReason()})
		delete(r.members, key)
	}
	clear(r.remote)
	clear(r.users)
	r.order = r.order[:0]
	r.codecs = [4]int{}
	ctx.Send(ctx.Parent(), &parleypb.RoomCount{Room: r.name})
	r.log.Warn("room closed by an operator", "reason", m.GetReason(), "evicted", n)
	if m.GetReplyTo() != nil {
		ctx.Send(m.GetReplyTo(), &parleypb.Ack{Room: r.name, Seq: uint64(n)})
	}
	r.linger.Stop()
	ctx.Request(ctx.Parent(), &parleypb.RoomPassivate{Room: r.name})
}

// armLinger starts the passivation timer of an empty room.
func (r *room) armLinger(actor.Context) {
	if len(r.members) == 0 {
		r.linger.Start()
	}
}

func (r *room) memberList() []*parleypb.Member {
	list := make([]*parleypb.Member, len(r.order))
	for i, u := range r.order {
		list[i] = &parleypb.Member{Name: u, Devices: uint32(r.users[u])}
	}
	return list
}

func (r *room) typing(ctx actor.Context, m *parleypb.RoomTyping) {
	if _, ok := r.members[pidKey(m.GetSession())]; !ok {
		return
	}
	mask := r.codecMask()
	mask[parleypb.Codec_CODEC_LEGACY] = false // the tutorial has no typing
	d := &parleypb.Deliver{Room: r.name}
	r.encodeInto(d, &parleypb.Envelope{Body: &parleypb.Envelope_Typing{Typing: &parleypb.Typing{Room: r.name, User: m.GetUser()}}}, mask)
	r.fanout(ctx, d, m.GetUser())
}

func (r *room) history(ctx actor.Context, m *parleypb.RoomHistory) {
	if !r.load() {
		errorTo(ctx, m.GetSession(), m.GetRequestId(), r.name, parleypb.ErrorCode_ERROR_CODE_UNAVAILABLE, "history store unavailable; retry later")
		return
	}
	limit := int(m.GetLimit())
	if limit <= 0 || limit > replayPage {
		limit = min(max(limit, 50), replayPage)
	}
	before := m.GetBeforeSeq()
	if before == 0 || before > r.committed+1 {
		before = r.committed + 1
	}
	var events []*parleypb.RoomEvent
	if len(r.window) > 0 && before-1 >= r.window[0].ev.Seq && int(before-r.window[0].ev.Seq) >= limit {
		for _, e := range r.window {
			if e.ev.Seq < before && e.ev.Seq >= before-uint64(limit) {
				events = append(events, e.ev)
			}
		}
	} else {
		sctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		msgs, err := r.n.cfg.Store.Before(sctx, r.name, before, limit)
		cancel()
		if err != nil {
			errorTo(ctx, m.GetSession(), m.GetRequestId(), r.name, parleypb.ErrorCode_ERROR_CODE_UNAVAILABLE, "history store unavailable; retry later")
			return
		}
		for _, msg := range msgs {
			events = append(events, eventOf(msg))
		}
	}
	hasMore := len(events) > 0 && events[0].Seq > max(r.oldest, 1)
	ctx.Send(m.GetSession(), &parleypb.HistoryPage{Room: r.name, Events: events, HasMore: hasMore})
	ctx.Send(m.GetSession(), &parleypb.Ack{RequestId: m.GetRequestId(), Room: r.name, Seq: r.committed})
}

// abandon runs when this instance ends (restart or stop): posts not yet
// written fail with a retryable error, and members are told to re-join the
// room's next instance, which reloads from the store.
func (r *room) abandon(ctx actor.Context, why string) {
	for _, p := range r.pending {
		errorTo(ctx, p.session, p.requestID, r.name, parleypb.ErrorCode_ERROR_CODE_UNAVAILABLE, why+"; retry with the same client_msg_id")
	}
	r.pending = nil
	for _, m := range r.members {
		ctx.Send(m.pid, &parleypb.RoomRestarted{Room: r.name})
	}
	if len(r.members) > 0 {
		r.log.Info("room instance ending; members will re-join", "why", why, "members", len(r.members))
	}
}

// errorTo answers a request with an error.
func errorTo(ctx actor.SenderContext, to *actor.PID, requestID, room string, code parleypb.ErrorCode, text string) {
	if to == nil {
		return
	}
	ctx.Send(to, &parleypb.Error{RequestId: requestID, Room: room, Code: code, Text: text})
}
