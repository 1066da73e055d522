package actors

import (
	"sort"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

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
	ListRooms(ctx actor.SenderContext, q *parleypb.RoomsQuery)
}

// localDirectory is the one-node directory: every room is a child of the
// rooms actor, which routes by name.
type localDirectory struct{ rooms *actor.PID }

func (d localDirectory) Tell(ctx actor.SenderContext, msg RoomMessage) { ctx.Send(d.rooms, msg) }

func (d localDirectory) ListRooms(ctx actor.SenderContext, q *parleypb.RoomsQuery) {
	ctx.Send(d.rooms, q)
}

// roomsRouter is the parent of every room on this node: it spawns rooms on
// demand, forwards messages to them by name, supervises them (the room
// strategy), and passivates them. While a room is stopping, messages for it
// wait here and go to its successor, so nothing is forwarded to a room that
// is about to vanish.
type roomsRouter struct {
	n     *Node
	rooms map[string]*roomEntry
	byPID map[string]string
}

type roomEntry struct {
	pid      *actor.PID
	stopping bool
	waiting  []RoomMessage
	members  uint32
}

// maxListed bounds a RoomList.
const maxListed = 200

func newRoomsRouter(n *Node) *roomsRouter {
	return &roomsRouter{n: n, rooms: make(map[string]*roomEntry), byPID: make(map[string]string)}
}

func (r *roomsRouter) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *parleypb.RoomPassivate:
		e := r.rooms[m.GetRoom()]
		if e != nil && !e.stopping && e.pid.Equal(ctx.Sender()) {
			e.stopping = true
			// Poison, not Stop: what is already in the room's mailbox is
			// handled first, and members that joined meanwhile are told to
			// re-join when it stops.
			ctx.Poison(e.pid)
		}
	case *parleypb.RoomCount:
		if e := r.rooms[m.GetRoom()]; e != nil {
			e.members = m.GetMembers()
		}
	case *parleypb.RoomsQuery:
		list := make([]*parleypb.RoomInfo, 0, len(r.rooms))
		for name, e := range r.rooms {
			if e.members > 0 {
				list = append(list, &parleypb.RoomInfo{Name: name, Members: e.members})
			}
		}
		sort.Slice(list, func(i, j int) bool {
			if list[i].Members != list[j].Members {
				return list[i].Members > list[j].Members
			}
			return list[i].Name < list[j].Name
		})
		if len(list) > maxListed {
			list = list[:maxListed]
		}
		ctx.Send(m.GetSession(), &parleypb.RoomList{Rooms: list})
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
