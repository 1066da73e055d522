package actors

import (
	"slices"

	"github.com/parleychat/parley/actors/actorpb"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/proto/codec"
)

// What a room does differently for members that speak the tutorial's
// protocol (see docs/LEGACY-PROTOCOL.md and session_legacy.go): a shorter
// replay on join, since the tutorial's page reads one event per frame, and
// presence as one login or logout frame per user, each carrying the whole
// online list after that change, as the tutorial's user_list does.

// legacyReplay is how much recent history a tutorial client gets on login.
const legacyReplay = 50

// legacyWindowStart is the seq after which a tutorial client's replay
// starts: its page cannot batch, so one frame per event must fit its
// outbound queue with room to spare.
func (r *room) legacyWindowStart() uint64 {
	if r.committed > legacyReplay {
		return r.committed - legacyReplay
	}
	return 0
}

// legacyPresence adds legacy frames to a presence announcement: one frame
// per change, in order, each with the member list as it stood right after
// that change. native carries the native codecs' frames (one delta for
// all the changes) and becomes the first item; the others carry only a
// legacy frame, which native members have nothing of and skip.
func (r *room) legacyPresence(native *actorpb.Deliver, steps []presenceStep) *actorpb.DeliverBatch {
	// The lists after each step, from the last (the room as it is now)
	// back to the first: undo a join by removing the user, a departure by
	// putting the user back (at the end; the tutorial's list order is
	// login order, which a departed user no longer has).
	lists := make([][]*parleypb.Member, len(steps))
	cur := r.memberList(-1)
	for i := len(steps) - 1; i >= 0; i-- {
		lists[i] = cur
		st := steps[i]
		if st.d > 0 {
			cur = slices.DeleteFunc(slices.Clone(cur), func(m *parleypb.Member) bool { return m.GetName() == st.user })
		} else {
			cur = append(slices.Clone(cur), &parleypb.Member{Name: st.user, Devices: 1})
		}
	}
	b := &actorpb.DeliverBatch{Room: r.name, Items: make([]*actorpb.Deliver, len(steps))}
	for i, st := range steps {
		ev := &parleypb.PresenceEvent{Room: r.name, Members: lists[i]}
		if st.d > 0 {
			ev.Joined = []string{st.user}
		} else {
			ev.Left = []string{st.user}
		}
		d := native
		if i > 0 {
			d = &actorpb.Deliver{Room: r.name}
		}
		f, err := codec.Legacy.Encode(&parleypb.Envelope{Body: &parleypb.Envelope_Presence{Presence: ev}})
		if err != nil {
			r.log.Error("legacy presence frame failed", "err", err)
		}
		d.SetFrame(parleypb.Codec_CODEC_LEGACY, f)
		b.Items[i] = d
	}
	return b
}
