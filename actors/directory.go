package actors

import (
	"sort"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/actors/actorpb"
	parleypb "github.com/parleychat/parley/proto"
)

// RoomMessage is any message addressed to a room by name.
type RoomMessage interface {
	proto.Message
	GetRoom() string
}

// Directory routes messages to rooms by name, activating a room on its first
// message. Senders name themselves inside the message (its session field),
// never by a PID kept from earlier: a room may restart, passivate or, in a
// cluster, move, and the directory always finds the current one.
type Directory interface {
	Tell(ctx actor.SenderContext, msg RoomMessage)
	// ListRooms asks for the active rooms; the answer (a RoomList, then an
	// Ack) goes to q.Session.
	ListRooms(ctx actor.SenderContext, q *actorpb.RoomsQuery)
}

// localDirectory is the one-node directory: every room is a child of the
// rooms actor, which routes by name.
type localDirectory struct{ rooms *actor.PID }

func (d localDirectory) Tell(ctx actor.SenderContext, msg RoomMessage) { ctx.Send(d.rooms, msg) }

func (d localDirectory) ListRooms(ctx actor.SenderContext, q *actorpb.RoomsQuery) {
	ctx.Send(d.rooms, q)
}

// roomsRouter is the parent of every room on this node: it spawns rooms on
// demand, forwards messages to them by name, supervises them (the room
// strategy), and passivates them. While a room is stopping, messages for it
// wait here and go to its successor, so nothing is forwarded to a room that
// is about to vanish.
//
// In a cluster each room is a grain, and the grain is a roomsRouter too,
// hosting only that room: it stops when its room passivates, and reports
// member counts to the node's rooms actor, which lists what runs here.
type roomsRouter struct {
	n     *Node
	rooms map[string]*roomEntry
	byPID map[string]string
	// hosted counts the users of grains on this node (the node's rooms
	// actor, in a cluster).
	hosted map[string]uint32

	grain *GrainHost // set for a grain
	name  string     // the grain's room
	moved bool       // this node does not own the grain's room
}

type roomEntry struct {
	pid      *actor.PID
	stopping bool
	waiting  []RoomMessage
	members  uint32
}

// maxListed bounds a RoomList.
const maxListed = 200

// TopRooms orders a room list as clients get it (most members first, then
// by name) and keeps the first maxListed.
func TopRooms(list []*parleypb.RoomInfo) []*parleypb.RoomInfo {
	sort.Slice(list, func(i, j int) bool {
		if list[i].Members != list[j].Members {
			return list[i].Members > list[j].Members
		}
		return list[i].Name < list[j].Name
	})
	return list[:min(len(list), maxListed)]
}

func newRoomsRouter(n *Node) *roomsRouter {
	return &roomsRouter{n: n, rooms: make(map[string]*roomEntry), byPID: make(map[string]string), hosted: make(map[string]uint32)}
}

func (r *roomsRouter) Receive(ctx actor.Context) {
	if r.grain != nil && r.grainReceive(ctx) {
		return
	}
	switch m := ctx.Message().(type) {
	case *actorpb.RoomPassivate:
		e := r.rooms[m.GetRoom()]
		if e != nil && !e.stopping && e.pid.Equal(ctx.Sender()) {
			e.stopping = true
			// Poison, not Stop: what is already in the room's mailbox is
			// handled first, and members that joined meanwhile are told to
			// re-join when it stops.
			ctx.Poison(e.pid)
		}
	case *actorpb.RoomCount:
		if e := r.rooms[m.GetRoom()]; e != nil {
			e.members = m.GetMembers()
		} else if m.GetMembers() > 0 {
			r.hosted[m.GetRoom()] = m.GetMembers()
		} else {
			delete(r.hosted, m.GetRoom())
		}
	case *actorpb.RoomsQuery:
		list := make([]*parleypb.RoomInfo, 0, len(r.rooms)+len(r.hosted))
		for name, e := range r.rooms {
			if e.members > 0 {
				list = append(list, &parleypb.RoomInfo{Name: name, Members: e.members})
			}
		}
		for name, members := range r.hosted {
			list = append(list, &parleypb.RoomInfo{Name: name, Members: members})
		}
		ctx.Send(m.GetSession(), &parleypb.RoomList{Rooms: TopRooms(list)})
		ctx.Send(m.GetSession(), &parleypb.Ack{RequestId: m.GetRequestId()})
	case *actor.Terminated:
		name, ok := r.byPID[pidKey(m.GetWho())]
		if !ok {
			return
		}
		delete(r.byPID, pidKey(m.GetWho()))
		e := r.rooms[name]
		delete(r.rooms, name)
		r.n.Stats.mailboxes.Delete(name)
		for _, w := range e.waiting {
			r.route(ctx, w)
		}
	case RoomMessage:
		r.route(ctx, m)
	}
}

func (r *roomsRouter) route(ctx actor.Context, m RoomMessage) {
	name := m.GetRoom()
	e := r.rooms[name]
	if e == nil {
		pid := ctx.SpawnPrefix(roomProps(r.n, name), "room-")
		e = &roomEntry{pid: pid}
		r.rooms[name] = e
		r.byPID[pidKey(pid)] = name
	}
	if e.stopping {
		e.waiting = append(e.waiting, m)
		return
	}
	ctx.Send(e.pid, m)
}

// grainReceive handles what is particular to a grain, and reports whether
// the message is dealt with.
func (r *roomsRouter) grainReceive(ctx actor.Context) bool {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		r.name = r.grain.Name(ctx)
		if !r.grain.Owns(r.name) {
			// Activated by a member whose view of the membership is behind
			// ours: we would be a second activation. Pass on what comes and
			// go; the directory finds the owner.
			r.moved = true
			r.n.Stats.Moved.Add(1)
			r.n.log.Info("room activated on a node that does not own it; forwarding to its owner", "room", r.name)
			ctx.Poison(ctx.Self())
		}
		return true
	case *actor.Stopping:
		if !r.moved { // moved to another member, or this node leaves
			ctx.Send(r.n.rooms, &actorpb.RoomCount{Room: r.name})
		}
		return true
	case *actorpb.RoomCount:
		ctx.Send(r.n.rooms, m)
		return true
	case *actor.Terminated:
		e := r.rooms[r.name]
		if e == nil || !e.pid.Equal(m.GetWho()) {
			return true
		}
		if len(e.waiting) == 0 {
			// The room passivated and nothing waits for it: the grain goes
			// too, and the next message activates both again.
			delete(r.rooms, r.name)
			r.n.Stats.mailboxes.Delete(r.name)
			ctx.Send(r.n.rooms, &actorpb.RoomCount{Room: r.name})
			ctx.Stop(ctx.Self())
			return true
		}
		return false // the roomsRouter starts its successor for the waiting
	case RoomMessage:
		if r.moved {
			r.n.dir.Tell(ctx, m)
			return true
		}
		if m.GetRoom() != r.name {
			r.n.log.Error("grain got a message for another room; dropped", "grain", r.name, "room", m.GetRoom())
			return true
		}
	}
	return false
}
