package cluster

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/remote"

	"github.com/parleychat/parley/actors"
	"github.com/parleychat/parley/actors/actorpb"
	parleypb "github.com/parleychat/parley/proto"
)

// directory is the clustered actors.Directory: every room message goes
// through this node's router, which finds the room's activation anywhere
// in the cluster. Before the router runs (a moment inside Start, while no
// session exists yet) a request is answered UNAVAILABLE.
type directory struct{ cl *Cluster }

func (d directory) Tell(ctx actor.SenderContext, msg actors.RoomMessage) {
	if r := d.cl.router.Load(); r != nil {
		ctx.Send(r, msg)
		return
	}
	fail(ctx, msg, "the cluster is starting; retry")
}

func (d directory) ListRooms(ctx actor.SenderContext, q *actorpb.RoomsQuery) {
	if r := d.cl.router.Load(); r != nil {
		ctx.Send(r, q)
		return
	}
	ctx.Send(q.GetSession(), &parleypb.Error{RequestId: q.GetRequestId(), Code: parleypb.ErrorCode_ERROR_CODE_UNAVAILABLE, Text: "the cluster is starting; retry"})
}

// deadOwnerWait is how long lookups wait for the topology to drop a member
// whose endpoint died before they try it anyway (it may have been a
// passing network fault).
const deadOwnerWait = 3 * time.Second

// maxWaiting bounds the messages that wait for one room to be found.
const maxWaiting = 10000

// router caches where each room lives. Lookups (which block: the library
// asks the owner's placement actor, and waits a hard-coded 5 s when that
// owner is dead) run on their own goroutines with a per-attempt timeout;
// messages for a room being looked up wait here, in order.
type router struct {
	cl      *Cluster
	rooms   map[string]*entry
	byPID   map[string]string // room PID key -> room
	members []*pcluster.Member
	// dead holds addresses whose endpoint terminated and PIDs that
	// dead-lettered, until the topology moves on; a lookup is not tried
	// against a dead owner, and a dead PID is never cached again.
	deadAddrs map[string]time.Time
	deadPIDs  map[string]time.Time
}

type entry struct {
	pid       *actor.PID
	resolving bool
	gen       int // the current lookup; older answers are ignored
	tries     int
	since     time.Time // when the current lookup began
	waiting   []actors.RoomMessage
	locals    map[string]*actor.PID // sessions of this node in the room
}

// Local messages of the router.
type (
	resolved struct {
		room string
		gen  int
		pid  *actor.PID
	}
	retry struct {
		room string
		gen  int
	}
	reroute struct {
		msg  actors.RoomMessage
		dead *actor.PID
	}
)

func newRouter(cl *Cluster) *router {
	return &router{cl: cl, rooms: make(map[string]*entry), byPID: make(map[string]string),
		deadAddrs: make(map[string]time.Time), deadPIDs: make(map[string]time.Time)}
}

func (r *router) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actorpb.RoomsQuery:
		r.listRooms(ctx, m)
	case actors.RoomMessage:
		r.route(ctx, m)
	case *reroute:
		r.cl.Stats.Rerouted.Add(1)
		r.deadPIDs[pidKey(m.dead)] = time.Now()
		if len(r.deadPIDs) > maxDeadPIDs {
			r.pruneDead()
		}
		if e := r.rooms[m.msg.GetRoom()]; e != nil && e.pid != nil && e.pid.Equal(m.dead) {
			r.forget(ctx, m.msg.GetRoom(), e)
			if m.dead.GetAddress() != ctx.ActorSystem().Address() {
				// Dead-lettered here, for a room elsewhere: its node is
				// unreachable, and the room with it. (A remote room that
				// merely stopped dead-letters on its own node, and has told
				// its members.)
				r.lost(ctx, m.msg.GetRoom(), e)
			}
		}
		r.route(ctx, m.msg)
	case *resolved:
		r.resolved(ctx, m)
	case *retry:
		if e := r.rooms[m.room]; e != nil && e.resolving && e.gen == m.gen {
			r.lookup(ctx, m.room, e)
		}
	case *actor.Terminated:
		room, ok := r.byPID[pidKey(m.GetWho())]
		if !ok {
			return
		}
		e := r.rooms[room]
		r.forget(ctx, room, e)
		if m.GetWhy() == actor.TerminatedReason_AddressTerminated {
			r.lost(ctx, room, e)
		}
		// Otherwise the room stopped by itself (passivated, moved, its node
		// left gracefully) and told its members.
	case *remote.EndpointTerminatedEvent:
		r.deadAddrs[m.Address] = time.Now()
		r.addressLost(ctx, m.Address)
	case *remote.EndpointConnectedEvent:
		delete(r.deadAddrs, m.Address)
	case *pcluster.ClusterTopology:
		r.topology(ctx, m)
	}
}

func (r *router) route(ctx actor.Context, m actors.RoomMessage) {
	name := m.GetRoom()
	e := r.rooms[name]
	if e == nil {
		e = &entry{}
		r.rooms[name] = e
	}
	switch m := m.(type) {
	case *actorpb.RoomJoin:
		if s := m.GetSession(); s != nil && s.GetAddress() == ctx.ActorSystem().Address() {
			if e.locals == nil {
				e.locals = make(map[string]*actor.PID)
			}
			e.locals[pidKey(s)] = s
		}
	case *actorpb.RoomLeave:
		delete(e.locals, pidKey(m.GetSession()))
	}
	if e.pid != nil {
		ctx.Send(e.pid, m)
		return
	}
	if len(e.waiting) >= maxWaiting {
		fail(ctx, m, "too many requests wait for this room; retry later")
		return
	}
	e.waiting = append(e.waiting, m)
	if !e.resolving {
		e.resolving, e.tries, e.since = true, 0, time.Now()
		r.lookup(ctx, name, e)
	}
}

// gc drops an entry nobody here needs: no cached room, no local member.
func (r *router) gc(name string, e *entry) {
	if e.pid == nil && !e.resolving && len(e.waiting) == 0 && len(e.locals) == 0 {
		delete(r.rooms, name)
	}
}

// lookup starts one attempt to find the room's activation. It is not tried
// while the owner, by the current topology, is a member whose endpoint
// died: that lookup would block 5 s. The next topology (which drops the
// member) or a timer tries again.
func (r *router) lookup(ctx actor.Context, name string, e *entry) {
	e.gen++
	gen := e.gen
	if time.Since(e.since) > r.cl.cfg.Deadline {
		r.expire(ctx, name, e)
		return
	}
	owner := r.cl.Owner(name)
	if died, ok := r.deadAddrs[owner]; owner == "" || (ok && time.Since(died) < deadOwnerWait) {
		r.later(ctx, name, gen, 100*time.Millisecond)
		return
	}
	if e.tries > 0 {
		r.cl.Stats.Retries.Add(1)
	}
	e.tries++
	self, root, c := ctx.Self(), ctx.ActorSystem().Root, r.cl.c
	// The attempt ends at the first of its answer and its timeout (an
	// answer without a PID); whichever comes second has an old gen.
	time.AfterFunc(r.cl.cfg.RequestTimeout, func() { root.Send(self, &resolved{room: name, gen: gen}) })
	r.cl.lookups.Add(1)
	go func() {
		defer r.cl.lookups.Done()
		root.Send(self, &resolved{room: name, gen: gen, pid: c.Get(name, Kind)})
	}()
}

// later retries a lookup after a pause that grows with the attempts.
func (r *router) later(ctx actor.Context, name string, gen int, d time.Duration) {
	self, root := ctx.Self(), ctx.ActorSystem().Root
	time.AfterFunc(d, func() { root.Send(self, &retry{room: name, gen: gen}) })
}

func (r *router) resolved(ctx actor.Context, m *resolved) {
	e := r.rooms[m.room]
	if e == nil || !e.resolving || e.gen != m.gen {
		return
	}
	if m.pid == nil || r.isDead(m.pid) {
		e.gen++ // the attempt is over: its late answer is ignored
		backoff := min(time.Duration(e.tries)*50*time.Millisecond, 500*time.Millisecond)
		r.later(ctx, m.room, e.gen, backoff)
		return
	}
	e.pid, e.resolving = m.pid, false
	r.byPID[pidKey(m.pid)] = m.room
	ctx.Watch(m.pid)
	waiting := e.waiting
	e.waiting = nil
	for _, w := range waiting {
		ctx.Send(e.pid, w)
	}
}

func (r *router) isDead(pid *actor.PID) bool {
	if _, ok := r.deadAddrs[pid.GetAddress()]; ok {
		return true
	}
	at, ok := r.deadPIDs[pidKey(pid)]
	return ok && time.Since(at) < time.Minute
}

// forget drops the cached activation of a room.
func (r *router) forget(ctx actor.Context, name string, e *entry) {
	if e.pid == nil {
		return
	}
	ctx.Unwatch(e.pid)
	delete(r.byPID, pidKey(e.pid))
	e.pid = nil
	r.gc(name, e)
}

// lost tells this node's members of a room that died with its node to
// re-join (the next activation reloads from the store) and to re-send what
// it never answered.
func (r *router) lost(ctx actor.Context, name string, e *entry) {
	r.cl.Stats.Lost.Add(1)
	for _, s := range e.locals {
		ctx.Send(s, &actorpb.RoomRestarted{Room: name, Lost: true})
	}
	if len(e.locals) > 0 {
		r.cl.log.Warn("room lost with its node; members re-join", "room", name, "members_here", len(e.locals))
	}
}

// addressLost handles every room cached at a dead address (the watch
// notice usually comes too; whichever is first does the work).
func (r *router) addressLost(ctx actor.Context, addr string) {
	for name, e := range r.rooms {
		if e.pid != nil && e.pid.GetAddress() == addr {
			r.forget(ctx, name, e)
			r.lost(ctx, name, e)
		}
	}
}

// topology re-resolves what depends on membership: rooms on members that
// left are lost; lookups waiting for a dead owner go again now.
func (r *router) topology(ctx actor.Context, t *pcluster.ClusterTopology) {
	r.members = t.Members
	for _, m := range t.Left {
		r.addressLost(ctx, m.Address())
	}
	alive := make(map[string]bool, len(t.Members))
	for _, m := range t.Members {
		alive[m.Address()] = true
	}
	for addr := range r.deadAddrs {
		if !alive[addr] {
			// Gone from the topology: owners are computed without it now.
			delete(r.deadAddrs, addr)
		}
	}
	r.pruneDead()
	for name, e := range r.rooms {
		if e.resolving {
			r.lookup(ctx, name, e)
		}
	}
}

// maxDeadPIDs bounds the dead PIDs remembered between topology changes.
const maxDeadPIDs = 10000

// pruneDead forgets dead PIDs older than a minute (activation ids are never
// reused, so a minute covers every message still on its way to one).
func (r *router) pruneDead() {
	for k, at := range r.deadPIDs {
		if time.Since(at) > time.Minute {
			delete(r.deadPIDs, k)
		}
	}
}

// expire fails what waited too long for a room that could not be found.
func (r *router) expire(ctx actor.Context, name string, e *entry) {
	r.cl.Stats.Expired.Add(int64(len(e.waiting)))
	r.cl.log.Error("no member could host the room in time; failing its requests", "room", name, "waited", time.Since(e.since).Round(time.Millisecond), "requests", len(e.waiting))
	for _, w := range e.waiting {
		fail(ctx, w, "the room cannot be reached right now (the cluster is changing); retry")
	}
	e.waiting, e.resolving = nil, false
	r.gc(name, e)
}

// request is a room message a session waits an answer to (a join, post,
// history or leave request).
type request interface {
	GetSession() *actor.PID
	GetRequestId() string
}

// fail answers a waiting request with UNAVAILABLE, which clients retry.
func fail(ctx actor.SenderContext, m actors.RoomMessage, text string) {
	if r, ok := m.(request); ok && r.GetSession() != nil {
		ctx.Send(r.GetSession(), &parleypb.Error{RequestId: r.GetRequestId(), Room: m.GetRoom(), Code: parleypb.ErrorCode_ERROR_CODE_UNAVAILABLE, Text: text})
	}
}

// listRooms asks every member's rooms actor for what it hosts, and merges
// the answers (a member that does not answer within a second is left out).
func (r *router) listRooms(ctx actor.Context, q *actorpb.RoomsQuery) {
	var addrs []string
	for _, m := range r.members {
		addrs = append(addrs, m.Address())
	}
	if len(addrs) == 0 {
		addrs = []string{ctx.Self().GetAddress()}
	}
	ctx.Spawn(actor.PropsFromProducer(func() actor.Actor { return &gather{q: q, addrs: addrs} }))
}

// gather is one cluster-wide room listing.
type gather struct {
	q       *actorpb.RoomsQuery
	addrs   []string
	pending int
	rooms   map[string]uint32
	timer   *time.Timer
	done    bool
}

type gatherTimeout struct{}

func (g *gather) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		g.rooms = make(map[string]uint32)
		g.pending = len(g.addrs)
		for _, a := range g.addrs {
			ctx.Send(actor.NewPID(a, actors.RoomsName), &actorpb.RoomsQuery{Session: ctx.Self()})
		}
		self, root := ctx.Self(), ctx.ActorSystem().Root
		g.timer = time.AfterFunc(time.Second, func() { root.Send(self, gatherTimeout{}) })
	case *parleypb.RoomList:
		for _, ri := range m.GetRooms() {
			g.rooms[ri.GetName()] = max(g.rooms[ri.GetName()], ri.GetMembers())
		}
		if g.pending--; g.pending == 0 {
			g.answer(ctx)
		}
	case gatherTimeout:
		g.answer(ctx)
	case *actor.Stopping:
		g.timer.Stop()
	}
}

func (g *gather) answer(ctx actor.Context) {
	if g.done {
		return
	}
	g.done = true
	list := make([]*parleypb.RoomInfo, 0, len(g.rooms))
	for name, n := range g.rooms {
		list = append(list, &parleypb.RoomInfo{Name: name, Members: n})
	}
	ctx.Send(g.q.GetSession(), &parleypb.RoomList{Rooms: actors.TopRooms(list)})
	ctx.Send(g.q.GetSession(), &parleypb.Ack{RequestId: g.q.GetRequestId()})
	ctx.Stop(ctx.Self())
}

func pidKey(p *actor.PID) string { return p.GetAddress() + "/" + p.GetId() }
