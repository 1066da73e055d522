package actors

import (
	"context"
	"errors"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/parleychat/parley/actors/actorpb"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/store"
)

// pendingEvent is an event waiting for the group commit: a post, or a
// change to the room with the records it writes. Everything pending goes
// to the store in one Commit (flush), and only then is anyone answered or
// told.
type pendingEvent struct {
	ev        *parleypb.RoomEvent // nil for a retry of a post in this batch
	dupOf     uint64
	session   *actor.PID // answered with an Ack naming requestID and the seq
	requestID string
	// info and members are what the event writes besides itself; the room
	// applied them to its state when it queued the event.
	info    *store.RoomRecord
	members []store.Member
	// post is what a post keeps beside its text (its reply, mentions);
	// rewrites are the messages an edit, delete or reaction changes.
	post     *actorpb.StoredPost
	rewrites []*postState
	// then runs after the commit instead of the Ack (a join goes on with
	// its replay); after runs once the event was delivered (telling users
	// of their new standing).
	then, after func(ctx actor.Context)
	// evict takes a user's connections out of the room once the event
	// was delivered (they were kicked, banned, or left); evictAll everyone's,
	// with that reason (the room was deleted).
	evict, evictAll string
}

// post takes a post (or a direct message, which may create its room),
// unless the room refuses it; a user's post goes to the application's
// post hook first (room_hooks.go).
func (r *room) post(ctx actor.Context, m *actorpb.RoomPost) {
	if !r.load() {
		r.unavailable(ctx, m.GetSession(), m.GetRequestId())
		return
	}
	if r.retried(ctx, m) || r.holdPost(ctx, m) {
		return
	}
	r.postDecided(ctx, m, m.GetText())
}

// retried answers a retry of a post the room took already with that
// post's seq, and reports whether m was one.
func (r *room) retried(ctx actor.Context, m *actorpb.RoomPost) bool {
	if m.GetClientMsgId() == "" {
		return false
	}
	seq, ok := r.dedup.lookup(dedupKey{m.GetUser(), m.GetClientMsgId()})
	if !ok {
		return false
	}
	if seq <= r.committed {
		ctx.Send(m.GetSession(), &parleypb.Ack{RequestId: m.GetRequestId(), Room: r.name, Seq: seq})
	} else { // a retry of a post still in this batch: ack with it
		r.queue(ctx, &pendingEvent{dupOf: seq, session: m.GetSession(), requestID: m.GetRequestId()})
	}
	return true
}

// postDecided takes a post the application's hook (if any) let through,
// with text as the hook left it, unless the room refuses it.
func (r *room) postDecided(ctx actor.Context, m *actorpb.RoomPost, text string) {
	if r.retried(ctx, m) {
		return
	}
	if m.GetOp() != actorpb.PostOp_POST_OP_POST {
		r.alter(ctx, m, text)
		return
	}
	var k dedupKey
	if m.GetClientMsgId() != "" {
		k = dedupKey{m.GetUser(), m.GetClientMsgId()}
	}
	if m.GetDirectWith() != "" {
		created, no := r.directChange(m)
		if no != nil {
			r.answer(ctx, m.GetSession(), m.GetRequestId(), no)
			return
		}
		for _, p := range created {
			r.queue(ctx, p)
		}
	}
	if no := r.mayPost(m); no != nil {
		r.answer(ctx, m.GetSession(), m.GetRequestId(), no)
		return
	}
	sp, no, err := r.postExtras(m)
	if err != nil {
		r.n.Stats.StoreErrors.Add(1)
		r.log.Error("could not read the message a post replies to", "seq", m.GetReplyTo(), "err", err)
		errorTo(ctx, m.GetSession(), m.GetRequestId(), r.name, parleypb.ErrorCode_ERROR_CODE_UNAVAILABLE, "history store unavailable; retry with the same client_msg_id")
		return
	}
	if no != nil {
		r.log.Debug("refused a post's reply or mentions", "user", m.GetUser(), "code", no.code.String())
		r.answer(ctx, m.GetSession(), m.GetRequestId(), no)
		return
	}
	kind := m.GetKind()
	if kind == parleypb.SenderKind_SENDER_KIND_UNSPECIFIED {
		kind = parleypb.SenderKind_SENDER_KIND_USER
	}
	r.next++
	ev := &parleypb.RoomEvent{Room: r.name, Seq: r.next, TimeMs: time.Now().UnixMilli(), Sender: m.GetUser(), SenderKind: kind, Text: text, ClientMsgId: m.GetClientMsgId(),
		ReplyTo: sp.GetReplyTo(), Mentions: sp.GetMentions()}
	if k.id != "" {
		r.dedup.remember(k, ev.Seq)
	}
	p := &pendingEvent{ev: ev, post: sp, session: m.GetSession(), requestID: m.GetRequestId(), members: r.mentioned(ev)}
	r.apply(p)
	r.queue(ctx, p)
}

// queue adds an event to the next group commit. The flush goes behind
// every message already in the mailbox, so all that arrived meanwhile
// lands in one store transaction.
func (r *room) queue(ctx actor.Context, p *pendingEvent) {
	r.pending = append(r.pending, p)
	if !r.flushQueued {
		r.flushQueued = true
		ctx.Send(ctx.Self(), &actorpb.RoomFlush{})
	}
}

// flush commits the pending batch, then acknowledges and delivers it. On a
// store error nothing is acknowledged: each requester gets UNAVAILABLE, the
// seqs are handed out again, and the room reloads its state (changes were
// applied when queued) from the store before the next request.
func (r *room) flush(ctx actor.Context) {
	if len(r.pending) == 0 {
		return
	}
	batch := r.pending
	r.pending = nil
	b := store.Batch{Room: r.name, Messages: make([]store.Message, 0, len(batch))}
	posts := 0
	clear(r.cursors)
	for _, p := range batch {
		if p.info != nil {
			b.Info = p.info
		}
		b.Members = append(b.Members, p.members...)
		if p.ev == nil {
			continue
		}
		b.Messages = append(b.Messages, messageOf(p.ev, p.post))
		for _, w := range p.rewrites {
			b.Rewrites = append(b.Rewrites, messageOf(w.ev, w.post))
		}
		if p.ev.Change == nil {
			posts++
		}
	}
	b.Outbox = r.outbox(batch)
	sctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	err := r.n.cfg.Store.Commit(sctx, b)
	cancel()
	clear(r.touched)
	if err != nil {
		r.n.Stats.StoreErrors.Add(1)
		r.log.Error("room could not store a batch; failing its requests", "events", len(b.Messages), "err", err)
		for _, p := range batch {
			if p.ev != nil && p.ev.ClientMsgId != "" {
				r.dedup.forget(dedupKey{p.ev.Sender, p.ev.ClientMsgId})
			}
			errorTo(ctx, p.session, p.requestID, r.name, parleypb.ErrorCode_ERROR_CODE_UNAVAILABLE, "history store unavailable; retry (posts with the same client_msg_id)")
		}
		r.next = r.committed
		if errors.Is(err, store.ErrConflict) {
			r.fenced(ctx, b)
			return
		}
		if len(b.Members) > 0 || b.Info != nil || len(b.Rewrites) > 0 {
			// The state changed here and not in the store: reload before
			// accepting more.
			r.loaded = false
		}
		return
	}
	r.committed = r.next
	r.n.Stats.Posts.Add(int64(posts))
	if len(b.Outbox) > 0 && r.n.cfg.Webhooks.Committed != nil {
		r.n.cfg.Webhooks.Committed()
	}
	if r.oldest == 0 && len(b.Messages) > 0 {
		r.oldest = b.Messages[0].Seq
	}
	mask := r.codecMask()
	var delivers []*actorpb.Deliver
	for _, p := range batch {
		if p.ev == nil {
			continue
		}
		d := r.encodeEvent(p.ev, mask)
		r.push(&windowEntry{ev: p.ev, deliver: d, post: p.post})
		delivers = append(delivers, d)
	}
	for _, p := range batch {
		for _, w := range p.rewrites {
			r.rewriteWindow(w)
		}
	}
	for _, p := range batch {
		if p.then != nil {
			continue
		}
		seq := p.dupOf
		if p.ev != nil {
			seq = p.ev.Seq
		}
		if p.session != nil {
			ctx.Send(p.session, &parleypb.Ack{RequestId: p.requestID, Room: r.name, Seq: seq})
		}
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
	for _, p := range batch {
		if p.then != nil {
			p.then(ctx)
		}
		if p.evict != "" {
			r.evict(ctx, p.evict, evictReason(p.ev))
		}
		if p.evictAll != "" {
			r.evict(ctx, "", p.evictAll)
		}
		if p.after != nil {
			p.after(ctx)
		}
	}
}

// fenced ends this activation after the store refused its batch because
// another writer took those seqs: a second activation of the room, on a
// node whose view of the cluster differs from the one that activated this
// one. This activation's members have missed what the other stored and
// would go on missing it (they see no hole until this activation commits
// again), so it goes: its members are told to re-join (abandon, on
// Stopping), and their re-joins replay what they missed from the store to
// wherever the directory finds the room now. It asks its parent to stop
// it, as a room that passivates does: what is already in its mailbox is
// handled first (after a reload from the store, so at the right seqs), and
// what comes meanwhile waits for the next activation instead of reaching a
// stopped one.
func (r *room) fenced(ctx actor.Context, b store.Batch) {
	r.n.Stats.Fenced.Add(1)
	first := uint64(0)
	if len(b.Messages) > 0 {
		first = b.Messages[0].Seq
	}
	r.log.Warn("another activation of this room stored these sequence numbers first; stopping this one so that its members re-join the room where it runs now",
		"seq", first, "members", len(r.members))
	r.loaded = false
	ctx.Request(ctx.Parent(), &actorpb.RoomPassivate{Room: r.name})
}

// evictReason tells an evicted member why, from the change that evicted it.
func evictReason(ev *parleypb.RoomEvent) string {
	c := ev.GetChange()
	why := "you left the room"
	switch c.GetKind() {
	case parleypb.ChangeKind_CHANGE_KIND_KICKED:
		why = "you were kicked by " + ev.GetSender()
	case parleypb.ChangeKind_CHANGE_KIND_BANNED:
		why = "you were banned by " + ev.GetSender()
	}
	if c.GetReason() != "" {
		why += ": " + c.GetReason()
	}
	return why
}

// messageOf is an event as the store keeps it.
func messageOf(ev *parleypb.RoomEvent, sp *actorpb.StoredPost) store.Message {
	body := encodeChange(ev.Change)
	if ev.Change == nil {
		body = encodePost(sp)
	}
	return store.Message{Room: ev.Room, Seq: ev.Seq, Time: time.UnixMilli(ev.TimeMs), Sender: ev.Sender, Text: ev.Text,
		ClientMsgID: ev.ClientMsgId, SenderKind: uint8(ev.SenderKind), Body: body}
}

func (r *room) push(e *windowEntry) {
	if len(r.window) >= r.n.cfg.History {
		copy(r.window, r.window[1:])
		r.window[len(r.window)-1] = e
		return
	}
	r.window = append(r.window, e)
}
