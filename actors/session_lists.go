package actors

import (
	"context"
	"slices"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/parleychat/parley/actors/actorpb"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/store"
)

// Listings a session answers: who is connected (per room, never the whole
// server), which rooms there are (the public ones and the user's own), and
// the user's rooms at login. Each is bounded and paged.

// maxWelcomeRooms bounds the rooms a Welcome lists; RoomsRequest pages
// through the rest.
const maxWelcomeRooms = 500

// userRooms reads the user's rooms from the store for the Welcome. The read
// blocks this session only (bounded by storeTimeout); a store that fails
// leaves the list out, and the client can ask again with RoomsRequest.
func (s *session) userRooms() ([]*parleypb.RoomInfo, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	list, err := s.n.cfg.Store.UserRooms(ctx, s.sh.user, "", maxWelcomeRooms+1)
	if err != nil {
		s.log.Error("could not read the user's rooms for the welcome", "err", err)
		return nil, false
	}
	out := make([]*parleypb.RoomInfo, 0, min(len(list), maxWelcomeRooms))
	for _, ur := range list[:min(len(list), maxWelcomeRooms)] {
		out = append(out, RoomInfoOf(ur.Room, ur.Member))
	}
	return out, len(list) > maxWelcomeRooms
}

// rooms answers RoomsRequest from the store: the public rooms and the
// user's own (private and direct rooms show to their members only), by
// name, a page at a time.
func (s *session) rooms(id string, q *parleypb.RoomsRequest) {
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	limit := pageLimit(q.GetLimit())
	mine, err := s.n.cfg.Store.UserRooms(ctx, s.sh.user, q.GetAfter(), limit+1)
	if err != nil {
		s.log.Error("could not list rooms", "err", err)
		s.fail(id, "", parleypb.ErrorCode_ERROR_CODE_UNAVAILABLE, "the store could not be read; retry later")
		return
	}
	byName := make(map[string]*parleypb.RoomInfo, len(mine))
	for _, ur := range mine {
		byName[ur.Room.Name] = RoomInfoOf(ur.Room, ur.Member)
	}
	if !q.GetMine() {
		public, err := s.n.cfg.Store.PublicRooms(ctx, q.GetAfter(), limit+1)
		if err != nil {
			s.log.Error("could not list rooms", "err", err)
			s.fail(id, "", parleypb.ErrorCode_ERROR_CODE_UNAVAILABLE, "the store could not be read; retry later")
			return
		}
		for _, r := range public {
			if s.sh.claims != nil && !s.sh.claims.MayJoin(r.Name) {
				continue // the token keeps the user out: not listed either
			}
			if _, ok := byName[r.Name]; !ok {
				byName[r.Name] = RoomInfoOf(r, store.Member{User: s.sh.user})
			}
		}
	}
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	slices.Sort(names)
	list := &parleypb.RoomList{}
	for _, n := range names[:min(limit, len(names))] {
		list.Rooms = append(list.Rooms, byName[n])
	}
	if len(names) > limit {
		list.Next = names[limit-1]
	}
	s.send(&parleypb.Envelope{Body: &parleypb.Envelope_RoomList{RoomList: list}})
	s.ackNow(id, "")
}

// who answers WhoRequest: who is connected to one of the connection's
// rooms, or to any of them, a page at a time.
func (s *session) who(ctx actor.Context, id string, w *parleypb.WhoRequest) {
	if room := w.GetRoom(); room != "" {
		if !s.sh.member.In(room) {
			s.fail(id, room, parleypb.ErrorCode_ERROR_CODE_NOT_JOINED, "join the room to see who is in it")
			return
		}
		s.n.dir.Tell(ctx, &actorpb.RoomWho{Room: room, Session: ctx.Self(), After: w.GetAfter(), Limit: uint32(pageLimit(w.GetLimit())), RequestId: id})
		return
	}
	rooms := s.sh.member.Rooms()
	limit := pageLimit(w.GetLimit())
	self, dir := ctx.Self(), s.n.dir
	ctx.Spawn(actor.PropsFromProducer(func() actor.Actor {
		return &whoGather{to: self, id: id, rooms: rooms, after: w.GetAfter(), limit: limit, dir: dir, presence: s.n.presence}
	}))
}

// whoGather asks each of a connection's rooms for its first page after a
// name, merges the answers (the first limit names of all of them are among
// them), asks presence how many connections each of that page's users has
// (a room knows only its own: a user in two of the rooms would count
// twice), and answers the WhoRequest; a room that does not answer within
// a second is left out.
type whoGather struct {
	to        *actor.PID
	id, after string
	rooms     []string
	limit     int
	dir       Directory
	presence  *actor.PID
	pending   int
	devices   map[string]uint32
	timer     *time.Timer
	page      []string // asked of presence; nil while the rooms answer
	next      string
	done      bool
}

type whoTimeout struct{}

func (g *whoGather) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		g.devices = make(map[string]uint32)
		g.pending = len(g.rooms)
		if g.pending == 0 {
			g.answer(ctx)
			return
		}
		for _, room := range g.rooms {
			g.dir.Tell(ctx, &actorpb.RoomWho{Room: room, Session: ctx.Self(), After: g.after, Limit: uint32(g.limit), RequestId: "who"})
		}
		self, root := ctx.Self(), ctx.ActorSystem().Root
		g.timer = time.AfterFunc(time.Second, func() { root.Send(self, whoTimeout{}) })
	case *parleypb.PresenceEvent:
		if g.page != nil { // presence's answer: the page, with exact counts
			g.reply(ctx, m.GetMembers())
			return
		}
		for _, mem := range m.GetMembers() {
			g.devices[mem.GetName()] = max(g.devices[mem.GetName()], mem.GetDevices())
		}
	case *parleypb.Ack, *parleypb.Error:
		if g.page != nil {
			g.reply(ctx, nil) // (presence's answer came before its Ack: done)
			return
		}
		if g.pending--; g.pending == 0 {
			g.answer(ctx)
		}
	case whoTimeout:
		if g.page != nil {
			g.reply(ctx, nil)
			return
		}
		g.answer(ctx)
	case *actor.Stopping:
		if g.timer != nil {
			g.timer.Stop()
		}
	}
}

// answer takes the first limit names the rooms gave and asks presence for
// their connections.
func (g *whoGather) answer(ctx actor.Context) {
	if g.page != nil || g.done {
		return
	}
	names := make([]string, 0, len(g.devices))
	for n := range g.devices {
		names = append(names, n)
	}
	slices.Sort(names)
	g.page = names[:min(g.limit, len(names))]
	if len(names) > g.limit {
		g.next = names[g.limit-1]
	}
	if len(g.page) == 0 {
		g.reply(ctx, nil)
		return
	}
	if g.timer != nil {
		g.timer.Stop()
	}
	self, root := ctx.Self(), ctx.ActorSystem().Root
	g.timer = time.AfterFunc(time.Second, func() { root.Send(self, whoTimeout{}) })
	ctx.Send(g.presence, &actorpb.WhoQuery{Session: ctx.Self(), Users: g.page})
}

// reply answers the WhoRequest with presence's counts for the page.
func (g *whoGather) reply(ctx actor.Context, online []*parleypb.Member) {
	if g.done {
		return
	}
	g.done = true
	devices := make(map[string]uint32, len(online))
	for _, m := range online {
		devices[m.GetName()] = m.GetDevices()
	}
	ev := &parleypb.PresenceEvent{Members: make([]*parleypb.Member, 0, len(g.page)), Next: g.next}
	for _, n := range g.page {
		d, ok := devices[n]
		if !ok { // presence does not know bots: their rooms' count (the largest)
			d = g.devices[n]
		}
		ev.Members = append(ev.Members, &parleypb.Member{Name: n, Devices: d})
	}
	ctx.Send(g.to, ev)
	ctx.Send(g.to, &parleypb.Ack{RequestId: g.id})
	ctx.Stop(ctx.Self())
}
