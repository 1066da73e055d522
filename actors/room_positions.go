package actors

import (
	"cmp"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/parleychat/parley/actors/actorpb"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/store"
)

// Read positions (this file): in a room whose record says so
// (store.RoomRecord.ReadPositions, set with UpdateRoom), the room's
// connections see where the members have read to. A cursor move is
// announced once committed, and never on its own: the moves of an
// interval are gathered and told in one ReadPositions frame per
// connection, with each moved member's last cursor only.

// ReadPositionsInterval is how long a room gathers read-cursor moves
// before it tells its connections of them: at most one ReadPositions
// frame per connection per interval.
const ReadPositionsInterval = 500 * time.Millisecond

// maxSnapshotPositions bounds a snapshot's positions (the furthest read
// first): a join's snapshot stays one frame in a room of any size.
const maxSnapshotPositions = 1000

// positionsFlush is the room's note to itself, sent by its timer: tell
// the moves gathered since the last one.
type positionsFlush struct{}

// positions gathers the moves not yet told (user -> the user's cursor);
// timer runs while there are some.
type positions struct {
	moved map[string]uint64
	timer *time.Timer
}

// showsPositions reports whether the room's setting is on.
func (r *room) showsPositions() bool {
	return r.info != nil && r.info.ReadPositions && !r.info.Deleted
}

// positionMoved notes that user's committed cursor moved; the first move
// of an interval starts its timer.
func (r *room) positionMoved(ctx actor.Context, user string) {
	if !r.showsPositions() {
		return
	}
	if r.positions.moved == nil {
		r.positions.moved = make(map[string]uint64)
	}
	r.positions.moved[user] = r.roster[user].ReadSeq
	if r.positions.timer == nil {
		self, root := ctx.Self(), r.n.System.Root
		r.positions.timer = time.AfterFunc(ReadPositionsInterval, func() { root.Send(self, positionsFlush{}) })
	}
}

// flushPositions tells every connection of the room (but the tutorial's)
// the moves of the interval just ended, in one frame.
func (r *room) flushPositions(ctx actor.Context) {
	r.positions.timer = nil
	moved := r.positions.moved
	r.positions.moved = nil
	if len(moved) == 0 || !r.showsPositions() {
		return
	}
	rp := &parleypb.ReadPositions{Room: r.name}
	for u, seq := range moved {
		rp.Positions = append(rp.Positions, &parleypb.ReadPosition{User: u, Seq: seq})
	}
	slices.SortFunc(rp.Positions, func(a, b *parleypb.ReadPosition) int { return cmp.Compare(a.User, b.User) })
	r.fanout(ctx, r.positionsDeliver(rp, r.codecMask()), "")
}

// stopPositions drops the moves not yet told (the room's instance ends,
// or the setting was turned off).
func (r *room) stopPositions() {
	if r.positions.timer != nil {
		r.positions.timer.Stop()
		r.positions.timer = nil
	}
	r.positions.moved = nil
}

// snapshot is the room's read positions as they stand.
func (r *room) snapshot() *parleypb.ReadPositions {
	rp := &parleypb.ReadPositions{Room: r.name, Snapshot: true}
	for u, m := range r.roster {
		if m.Role >= store.RoleMember && m.ReadSeq > 0 {
			rp.Positions = append(rp.Positions, &parleypb.ReadPosition{User: u, Seq: m.ReadSeq})
		}
	}
	slices.SortFunc(rp.Positions, func(a, b *parleypb.ReadPosition) int {
		return cmp.Or(cmp.Compare(b.Seq, a.Seq), cmp.Compare(a.User, b.User))
	})
	if len(rp.Positions) > maxSnapshotPositions {
		rp.Positions = rp.Positions[:maxSnapshotPositions]
	}
	return rp
}

// sendSnapshot gives a connection that joined (or resumed) the room's
// positions, after its Ack.
func (r *room) sendSnapshot(ctx actor.Context, mem *roomMember) {
	if !r.showsPositions() || mem.codec == parleypb.Codec_CODEC_LEGACY || mem.codec == parleypb.Codec_CODEC_UNSPECIFIED {
		return
	}
	var mask [4]bool
	mask[mem.codec] = true
	ctx.Send(mem.pid, r.positionsDeliver(r.snapshot(), mask))
}

// positionsChanged tells every connection the room's positions when the
// setting was turned on; off drops the moves not yet told.
func (r *room) positionsChanged(ctx actor.Context, on bool) {
	if !on {
		r.stopPositions()
		return
	}
	r.fanout(ctx, r.positionsDeliver(r.snapshot(), r.codecMask()), "")
}

// positionsDeliver encodes rp once per native codec in mask; the
// tutorial's protocol and actor members (bots) get nothing.
func (r *room) positionsDeliver(rp *parleypb.ReadPositions, mask [4]bool) *actorpb.Deliver {
	mask[parleypb.Codec_CODEC_LEGACY] = false
	d := &actorpb.Deliver{Room: r.name}
	r.encodeInto(d, &parleypb.Envelope{Body: &parleypb.Envelope_ReadPositions{ReadPositions: rp}}, mask)
	return d
}
