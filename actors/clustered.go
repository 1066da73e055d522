package actors

import (
	"context"

	"github.com/asynkron/protoactor-go/actor"
)

// Cluster is what a node needs from the cluster it is a member of (package
// cluster implements it over Proto.Actor's cluster). It is given in
// Config, so the node is whole before any of its actors runs.
type Cluster interface {
	// Directory finds a room on any member. NewNode asks for it before it
	// starts anything, and uses it for every room message from then on.
	Directory() Directory
	// Start joins the cluster on the node's actor system, once the node's
	// own actors (presence, the rooms actor) run.
	Start(host ClusterHost) error
	// PresenceOrigin names this member in the presence shares it sends
	// the others: its address ("" before it joined) and when this process
	// joined, so that a restarted node's shares outrank its earlier
	// process's.
	PresenceOrigin() (address string, startedMs int64)
	// PeerPresences lists the presence actors of the other members: an
	// operator's kick or notice reaches every member.
	PeerPresences() []*actor.PID
	// Leave leaves the cluster gracefully. Shutdown calls it once the
	// sessions have closed and before the node's own actors stop.
	Leave(ctx context.Context) error
}

// ClusterHost is what a node offers the cluster it joins.
type ClusterHost struct {
	System *actor.ActorSystem
	// Presence is the node's presence actor: the cluster tells it who is
	// alive (PeerSet); the other members' presence actors send it their
	// shares (PeerPresence) themselves.
	Presence *actor.PID
	// RoomGrain makes the props of a room hosted as a cluster grain.
	RoomGrain func(GrainHost) *actor.Props
}

// GrainHost is how a cluster hosts rooms as virtual actors.
type GrainHost struct {
	// Name is the room's name, from its cluster identity.
	Name func(ctx actor.Context) string
	// Owns reports whether this node should host the room now, by its own
	// view of the membership. A room activated on a node that does not own
	// it (members disagreed for a moment) forwards everything through the
	// directory and stops, so one activation per room serves members.
	Owns func(room string) bool
}

// roomGrainProps are the props of a room hosted as a cluster grain: a
// rooms actor that hosts just that room (as its child, under the room
// strategy, with the same passivation as on a single node) and stops when
// the room passivates.
func (n *Node) roomGrainProps(h GrainHost) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor {
		r := newRoomsRouter(n)
		r.grain = &h
		return r
	}, actor.WithSupervisor(n.roomStrategy()))
}
