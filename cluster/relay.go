package cluster

import (
	"github.com/asynkron/protoactor-go/actor"

	"github.com/parleychat/parley/actors/actorpb"
)

// relay receives a room's fan-out for the sessions on this member: the room
// sends one Relay per member, not one message per session, so a delivery to
// n sessions here costs one serialisation and one network write, and the
// copies are made here, in memory.
type relay struct{}

func (relay) Receive(ctx actor.Context) {
	m, ok := ctx.Message().(*actorpb.Relay)
	if !ok {
		return
	}
	var payload any
	switch p := m.GetPayload().(type) {
	case *actorpb.Relay_Deliver:
		payload = p.Deliver
	case *actorpb.Relay_Batch:
		payload = p.Batch
	default:
		return
	}
	addr := ctx.ActorSystem().Address()
	for _, id := range m.GetSessionIds() {
		ctx.Send(actor.NewPID(addr, id), payload)
	}
}
