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

type pendingPost struct {
	ev        *parleypb.RoomEvent // nil for a retry of a post in this batch
	dupOf     uint64
	session   *actor.PID
	requestID string
}

func (r *room) post(ctx actor.Context, m *actorpb.RoomPost) {
	if !r.load() {
		errorTo(ctx, m.GetSession(), m.GetRequestId(), r.name, parleypb.ErrorCode_ERROR_CODE_UNAVAILABLE, "history store unavailable; retry later")
		return
	}
	var k dedupKey
	if m.GetClientMsgId() != "" {
		k = dedupKey{m.GetUser(), m.GetClientMsgId()}
		if seq, ok := r.dedup.lookup(k); ok {
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
		r.dedup.remember(k, ev.Seq)
	}
	r.pending = append(r.pending, pendingPost{ev: ev, session: m.GetSession(), requestID: m.GetRequestId()})
	if !r.flushQueued {
		// The flush goes behind every post already in the mailbox, so they
		// all land in one store transaction.
		r.flushQueued = true
		ctx.Send(ctx.Self(), &actorpb.RoomFlush{})
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
				r.dedup.forget(dedupKey{p.ev.Sender, p.ev.ClientMsgId})
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
	var delivers []*actorpb.Deliver
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

func (r *room) push(e *windowEntry) {
	if len(r.window) >= r.n.cfg.History {
		copy(r.window, r.window[1:])
		r.window[len(r.window)-1] = e
		return
	}
	r.window = append(r.window, e)
}
