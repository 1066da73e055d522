package actors

import (
	"context"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/parleychat/parley/actors/actorpb"
	parleypb "github.com/parleychat/parley/proto"
)

// replayPage is how many stored messages a room reads at a time when a
// client resumes from further back than its in-memory window.
const replayPage = 256

// replay sends mem the events after since (or the window when since is
// nil): from the window when it reaches back far enough, else from the store.
// Events go in batches of up to replayPage (DeliverBatch), which the session
// writes as one frame each, so a long replay takes few queue slots. A gap
// that retention deleted, or one longer than MaxReplay, is announced with a
// Reset naming where the replay starts: never skipped silently. An error
// means the store could not be read and nothing was sent.
func (r *room) replay(ctx actor.Context, mem *roomMember, since *uint64) error {
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
	} else if mem.codec == parleypb.Codec_CODEC_LEGACY {
		from = max(from, r.legacyWindowStart())
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
	batch := &actorpb.DeliverBatch{Room: r.name}
	for _, e := range r.window {
		if e.ev.Seq <= from {
			continue
		}
		if e.deliver == nil || !e.deliver.Has(mem.codec) {
			// Encode for this codec too; a new Deliver, since sessions may
			// still be reading the old one.
			all := r.codecMask()
			all[mem.codec] = true
			e.deliver = r.encodeEvent(e.ev, all)
		}
		batch.Items = append(batch.Items, e.deliver)
		if len(batch.Items) == replayPage {
			ctx.Send(mem.pid, batch)
			batch = &actorpb.DeliverBatch{Room: r.name}
		}
	}
	if len(batch.Items) > 0 {
		ctx.Send(mem.pid, batch)
	}
	return nil
}

// replayStored sends mem the stored events after `after` and before
// windowStart, page by page, and returns the last seq it covered.
func (r *room) replayStored(ctx actor.Context, mem *roomMember, after, windowStart uint64) (uint64, error) {
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
		batch := &actorpb.DeliverBatch{Room: r.name, Items: make([]*actorpb.Deliver, len(page))}
		for i, msg := range page {
			batch.Items[i] = r.encodeEvent(eventOf(msg), mask)
		}
		ctx.Send(mem.pid, batch)
		after = page[len(page)-1].Seq
	}
	return after, nil
}

func (r *room) history(ctx actor.Context, m *actorpb.RoomHistory) {
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
