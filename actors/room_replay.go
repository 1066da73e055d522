package actors

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/parleychat/parley/actors/actorpb"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/store"
)

// replayPage is how many stored messages a room reads at a time when a
// client resumes from further back than its in-memory window.
const replayPage = 256

// Reads of stored history (a member resuming from before the room's
// window, scrollback past it) run in a reader, a child actor per request,
// never in the room's own Receive: members catching up cost the store and
// the CPU, not the room's mailbox, so live posts keep their pace. A room runs
// at most maxReaders at once and keeps at most maxReadersWaiting more in
// line; past that, and for a member that asks again while its own replay
// runs, the request is refused with RATE_LIMITED.
const (
	maxReaders        = 4
	maxReadersWaiting = 32
)

// catchup is a join waiting for its stored part to be replayed.
type catchup struct {
	join   *actorpb.RoomJoin
	mem    *roomMember
	reader *actor.PID
}

// readDone is a reader's report to its room (local only): a replay read up
// to upto (and found the store's oldest seq), or failed.
type readDone struct {
	key    string // the catching-up member; "" for scrollback
	upto   uint64
	oldest uint64
	err    error
}

// reader runs one read of stored history on its own, then stops.
type reader struct {
	run func(ctx actor.Context) readDone
}

func (rd *reader) Receive(ctx actor.Context) {
	if _, ok := ctx.Message().(*actor.Started); ok {
		done := rd.run(ctx)
		ctx.Send(ctx.Parent(), &done)
		ctx.Stop(ctx.Self())
	}
}

// windowStart is the first seq the room's window holds (committed+1 when
// the window is empty).
func (r *room) windowStart() uint64 {
	if len(r.window) > 0 {
		return r.window[0].ev.Seq
	}
	return r.committed + 1
}

// replayFrom decides where mem's replay starts (it replays every event
// after the seq returned), telling mem with a Reset when it will not get
// everything it asked for: it is ahead of the room (history lost), or the
// gap is longer than MaxReplay. since nil asks for the window.
func (r *room) replayFrom(ctx actor.Context, mem *roomMember, since *uint64) uint64 {
	from := r.windowStart() - 1
	if since != nil && *since > r.committed {
		// The client has seen more than this room ever stored: its history
		// is gone (a memory store restarted). Start it over, visibly.
		ctx.Send(mem.pid, &parleypb.Reset{Room: r.name, Since: *since, OldestSeq: r.windowStart()})
		since = nil
	}
	if since != nil {
		from = *since
	} else if mem.codec == parleypb.Codec_CODEC_LEGACY {
		from = max(from, r.legacyWindowStart())
	}
	if limit := uint64(r.n.cfg.MaxReplay); from < r.committed && r.committed-from > limit {
		ctx.Send(mem.pid, &parleypb.Reset{Room: r.name, Since: from, OldestSeq: r.committed - limit + 1})
		from = r.committed - limit
	}
	return from
}

// needsStore reports whether a replay after from reaches before the window.
func (r *room) needsStore(from uint64) bool {
	return from < r.committed && from+1 < r.windowStart()
}

// sendWindow sends mem the window's events after from, in batches of up to
// replayPage (DeliverBatch), which the session writes as one frame each, so
// a long replay takes few queue slots.
func (r *room) sendWindow(ctx actor.Context, mem *roomMember, from uint64) {
	batch := &actorpb.DeliverBatch{Room: r.name}
	for _, e := range r.window {
		if e.ev.Seq <= from {
			continue
		}
		if own := forReader(e.ev, e.post, mem.user); own != e.ev {
			// The member's own reactions are marked: a frame of its own.
			var one [4]bool
			one[mem.codec] = true
			batch.Items = append(batch.Items, r.encodeEvent(own, one))
		} else {
			if e.deliver == nil || !e.deliver.Has(mem.codec) {
				// Encode for this codec too; a new Deliver, since sessions may
				// still be reading the old one.
				all := r.codecMask()
				all[mem.codec] = true
				e.deliver = r.encodeEvent(e.ev, all)
			}
			batch.Items = append(batch.Items, e.deliver)
		}
		if len(batch.Items) == replayPage {
			ctx.Send(mem.pid, batch)
			batch = &actorpb.DeliverBatch{Room: r.name}
		}
	}
	if len(batch.Items) > 0 {
		ctx.Send(mem.pid, batch)
	}
}

// catchUp replays the stored part of a join (after from, up to the
// window) in a reader; the join completes when the reader is done.
func (r *room) catchUp(ctx actor.Context, key string, m *actorpb.RoomJoin, mem *roomMember, from uint64) {
	if c, ok := r.catching[key]; ok {
		if c.join.GetRequestId() == m.GetRequestId() {
			return // the same join sent again (a member in a cluster): the catch-up answers it
		}
		errorTo(ctx, mem.pid, m.GetRequestId(), r.name, parleypb.ErrorCode_ERROR_CODE_RATE_LIMITED,
			"this connection is already catching up on this room's history; wait for that join's answer")
		return
	}
	c := &catchup{join: m, mem: mem}
	upto := r.windowStart() - 1
	st, name, log, to, user := r.n.cfg.Store, r.name, r.log, mem.pid, mem.user
	var codecs [4]bool
	codecs[mem.codec] = true
	run := func(ctx actor.Context) readDone {
		after, oldest, err := replayStored(ctx, st, name, log, to, user, codecs, from, upto)
		return readDone{key: key, upto: after, oldest: oldest, err: err}
	}
	if !r.startReader(ctx, run, func(pid *actor.PID) { c.reader = pid }) {
		errorTo(ctx, mem.pid, m.GetRequestId(), r.name, parleypb.ErrorCode_ERROR_CODE_RATE_LIMITED,
			fmt.Sprintf("too many members are catching up on this room's history (%d at once); retry in a moment", maxReaders+maxReadersWaiting))
		return
	}
	r.catching[key] = c
}

// caughtUp finishes a join whose stored part was replayed: the window
// follows (or, if the window moved on past what was read meanwhile, one
// more read), then the join's answer, and the member is live.
func (r *room) caughtUp(ctx actor.Context, d *readDone) {
	c := r.catching[d.key]
	if c == nil {
		return // the member left or was evicted meanwhile
	}
	delete(r.catching, d.key)
	if d.oldest > 0 {
		r.oldest = d.oldest
	}
	if d.err != nil {
		r.refuseJoin(ctx, d.key, c.join, d.err)
		return
	}
	if r.needsStore(d.upto) {
		r.catchUp(ctx, d.key, c.join, c.mem, d.upto)
		return
	}
	r.sendWindow(ctx, c.mem, d.upto)
	r.admit(ctx, d.key, c.join, c.mem)
}

// cancelCatchUp forgets the catch-up of a member that left or died.
func (r *room) cancelCatchUp(ctx actor.Context, key string) {
	if c := r.catching[key]; c != nil {
		delete(r.catching, key)
		if c.reader != nil {
			ctx.Stop(c.reader)
		}
	}
}

// startReader runs a reader now, or puts it in line; it reports false when
// the line is full. started learns the reader's PID (nil while waiting).
func (r *room) startReader(ctx actor.Context, run func(actor.Context) readDone, started func(*actor.PID)) bool {
	if r.readers >= maxReaders {
		if len(r.readQueue) >= maxReadersWaiting {
			return false
		}
		r.readQueue = append(r.readQueue, queuedRead{run, started})
		return true
	}
	r.readers++
	started(ctx.Spawn(actor.PropsFromProducer(func() actor.Actor { return &reader{run: run} })))
	return true
}

type queuedRead struct {
	run     func(actor.Context) readDone
	started func(*actor.PID)
}

// readerDone counts a reader finished and starts the next in line.
func (r *room) readerDone(ctx actor.Context, d *readDone) {
	r.readers--
	for len(r.readQueue) > 0 && r.readers < maxReaders {
		q := r.readQueue[0]
		r.readQueue = r.readQueue[1:]
		r.startReader(ctx, q.run, q.started)
	}
	if d.key != "" {
		r.caughtUp(ctx, d)
	}
}

// replayStored sends to the stored events of room after `after` up to
// upto, page by page, announcing with a Reset what retention deleted, and
// returns the last seq it covered and the store's oldest. It runs in a
// reader: it touches nothing of the room's.
func replayStored(ctx actor.Context, st store.Store, room string, log *slog.Logger, to *actor.PID, user string, codecs [4]bool, after, upto uint64) (uint64, uint64, error) {
	sctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	b, err := st.Bounds(sctx, room)
	cancel()
	if err != nil {
		return after, 0, err
	}
	if oldest := max(b.Oldest, 1); after+1 < oldest || (b.Oldest == 0 && after < b.Latest) {
		if b.Oldest == 0 { // everything stored was deleted; the window is all there is
			oldest = upto + 1
		}
		ctx.Send(to, &parleypb.Reset{Room: room, Since: after, OldestSeq: oldest})
		after = oldest - 1
	}
	for after < upto {
		sctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		page, err := st.After(sctx, room, after, min(replayPage, int(upto-after)))
		cancel()
		if err != nil {
			return after, b.Oldest, err
		}
		if len(page) == 0 {
			break // retention caught up with us mid-replay; the window follows
		}
		batch := &actorpb.DeliverBatch{Room: room, Items: make([]*actorpb.Deliver, len(page))}
		for i, msg := range page {
			batch.Items[i] = encodeEvent(room, log, readerEvent(msg, user), codecs)
		}
		ctx.Send(to, batch)
		after = page[len(page)-1].Seq
	}
	return after, b.Oldest, nil
}

// history answers a scrollback request: from the window when it reaches
// back far enough, else from the store, in a reader.
func (r *room) history(ctx actor.Context, m *actorpb.RoomHistory) {
	if !r.load() {
		r.unavailable(ctx, m.GetSession(), m.GetRequestId())
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
	ack := &parleypb.Ack{RequestId: m.GetRequestId(), Room: r.name, Seq: r.committed}
	if len(r.window) > 0 && before-1 >= r.window[0].ev.Seq && int(before-r.window[0].ev.Seq) >= limit {
		var events []*parleypb.RoomEvent
		for _, e := range r.window {
			if e.ev.Seq < before && e.ev.Seq >= before-uint64(limit) {
				events = append(events, forReader(e.ev, e.post, m.GetUser()))
			}
		}
		sendHistory(ctx, r.name, m.GetSession(), events, len(events) > 0 && events[0].Seq > max(r.oldest, 1), ack)
		return
	}
	st, name, to, user := r.n.cfg.Store, r.name, m.GetSession(), m.GetUser()
	run := func(ctx actor.Context) readDone {
		sctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		// One more than the page says whether there is more: the room's
		// idea of its oldest seq lags behind retention, which deletes
		// from the store on its own schedule.
		msgs, err := st.Before(sctx, name, before, limit+1)
		cancel()
		hasMore := len(msgs) > limit
		if hasMore {
			msgs = msgs[1:]
		}
		if err != nil {
			errorTo(ctx, to, ack.GetRequestId(), name, parleypb.ErrorCode_ERROR_CODE_UNAVAILABLE, "history store unavailable; retry later")
			return readDone{err: err}
		}
		events := make([]*parleypb.RoomEvent, len(msgs))
		for i, msg := range msgs {
			events[i] = readerEvent(msg, user)
		}
		sendHistory(ctx, name, to, events, hasMore, ack)
		return readDone{}
	}
	if !r.startReader(ctx, run, func(*actor.PID) {}) {
		errorTo(ctx, to, m.GetRequestId(), r.name, parleypb.ErrorCode_ERROR_CODE_RATE_LIMITED,
			"too many reads of this room's history at once; retry in a moment")
	}
}

// sendHistory answers scrollback: the page, then the ack.
func sendHistory(ctx actor.SenderContext, room string, to *actor.PID, events []*parleypb.RoomEvent, hasMore bool, ack *parleypb.Ack) {
	ctx.Send(to, &parleypb.HistoryPage{Room: room, Events: events, HasMore: hasMore})
	ctx.Send(to, ack)
}

// refuseJoin answers a join whose replay the store could not serve. A
// member that was already in the room (re-joining) is taken out of it: it
// was told nothing since and re-joins; a new one was never added.
func (r *room) refuseJoin(ctx actor.Context, key string, m *actorpb.RoomJoin, err error) {
	r.n.Stats.StoreErrors.Add(1)
	r.log.Error("replay from the store failed; refusing the join", "err", err)
	if _, ok := r.members[key]; ok {
		r.leave(ctx, m.GetSession(), "")
	}
	errorTo(ctx, m.GetSession(), m.GetRequestId(), r.name, parleypb.ErrorCode_ERROR_CODE_UNAVAILABLE, "history store unavailable; join again later")
}
