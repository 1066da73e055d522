package actors

import (
	"errors"
	"log/slog"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/actors/actorpb"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/proto/codec"
)

type relayGroup struct {
	members map[string]*roomMember // by session PID key
	ids     []string               // their PID ids; nil when stale
}

// batchOf wraps consecutive deliveries for every member, with their Batch
// frames prebuilt per native codec in mask.
func (r *room) batchOf(ds []*actorpb.Deliver, mask [4]bool) *actorpb.DeliverBatch {
	b := &actorpb.DeliverBatch{Room: r.name, Items: ds}
	frames := make([][]byte, len(ds))
	for _, k := range []parleypb.Codec{parleypb.Codec_CODEC_PROTO, parleypb.Codec_CODEC_JSON} {
		if !mask[k] {
			continue
		}
		for i, d := range ds {
			frames[i] = d.Frame(k)
		}
		f, _ := codec.For(k).AppendBatch(nil, frames)
		b.SetFrame(k, f)
	}
	return b
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
func (r *room) encodeEvent(ev *parleypb.RoomEvent, mask [4]bool) *actorpb.Deliver {
	return encodeEvent(r.name, r.log, ev, mask)
}

func (r *room) encodeInto(d *actorpb.Deliver, env *parleypb.Envelope, mask [4]bool) {
	encodeInto(r.log, d, env, mask)
}

// encodeEvent renders a room event once per codec in mask (and decoded,
// for actor members). Readers call it too: it touches no room state.
func encodeEvent(room string, log *slog.Logger, ev *parleypb.RoomEvent, mask [4]bool) *actorpb.Deliver {
	d := &actorpb.Deliver{Room: room, Seq: ev.Seq}
	encodeInto(log, d, &parleypb.Envelope{Body: &parleypb.Envelope_Event{Event: ev}}, mask)
	if mask[parleypb.Codec_CODEC_UNSPECIFIED] {
		d.Event = ev
	}
	return d
}

func encodeInto(log *slog.Logger, d *actorpb.Deliver, env *parleypb.Envelope, mask [4]bool) {
	for k := parleypb.Codec_CODEC_PROTO; k <= parleypb.Codec_CODEC_LEGACY; k++ {
		if !mask[k] {
			continue
		}
		f, err := codec.For(k).Encode(env)
		if err != nil {
			if !errors.Is(err, codec.ErrNoFrame) {
				log.Error("encode failed", "codec", k.String(), "err", err)
			}
			continue
		}
		d.SetFrame(k, f)
	}
}

// fanout sends d to every member except those of user skip. A room never
// waits for a member: a session that cannot keep up closes itself
// (TRY_AGAIN_LATER).
// In a cluster, members on another node get one Relay per node.
func (r *room) fanout(ctx actor.Context, d proto.Message, skip string) {
	switch d := d.(type) {
	case *actorpb.Deliver:
		if d.GetSeq() != 0 {
			r.n.Stats.Deliveries.Add(int64(len(r.members)))
		}
	case *actorpb.DeliverBatch:
		if d.GetItems()[0].GetSeq() != 0 {
			r.n.Stats.Deliveries.Add(int64(len(r.members)))
		}
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
			rl := &actorpb.Relay{SessionIds: ids}
			switch d := d.(type) {
			case *actorpb.Deliver:
				rl.Payload = &actorpb.Relay_Deliver{Deliver: d}
			case *actorpb.DeliverBatch:
				rl.Payload = &actorpb.Relay_Batch{Batch: d}
			}
			r.n.Stats.Relays.Add(1)
			ctx.Send(actor.NewPID(addr, RelayName), rl)
		}
	}
}

// addRemote files a member on another node under its node (clustered only).
func (r *room) addRemote(key string, m *roomMember) {
	if !r.n.Clustered() || m.pid.GetAddress() == r.n.System.Address() {
		return
	}
	if r.remote == nil {
		r.remote = make(map[string]*relayGroup)
	}
	g := r.remote[m.pid.GetAddress()]
	if g == nil {
		g = &relayGroup{members: make(map[string]*roomMember)}
		r.remote[m.pid.GetAddress()] = g
	}
	g.members[key] = m
	g.ids = nil
}

func (r *room) dropRemote(key string, m *roomMember) {
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
