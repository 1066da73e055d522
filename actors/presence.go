package actors

import (
	"sort"

	"github.com/asynkron/protoactor-go/actor"

	parleypb "github.com/parleychat/parley/proto"
)

// presence knows who is online on this node and with how many connections.
// Sessions register when they log in; presence watches them, so a session
// that dies for any reason goes offline. Watchers (sessions that asked for
// it in Hello) get user-level deltas: a user's first connection is one
// "joined", the last one's end is one "left".
type presence struct {
	n        *Node
	users    map[string]int    // user -> connections
	sessions map[string]string // session PID key -> user
	pids     map[string]*actor.PID
	watchers map[string]*actor.PID
}

func newPresence(n *Node) *presence {
	return &presence{n: n, users: make(map[string]int), sessions: make(map[string]string), pids: make(map[string]*actor.PID), watchers: make(map[string]*actor.PID)}
}

func (p *presence) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		// After a restart this instance knows nobody: ask every live session
		// to register again (quietly, so watchers see no false changes).
		p.n.eachSession(&parleypb.PresenceRebuild{})
	case *parleypb.Online:
		p.online(ctx, m)
	case *parleypb.Offline:
		p.offline(ctx, m.GetSession())
	case *actor.Terminated:
		p.offline(ctx, m.GetWho())
	case *parleypb.Kick:
		n := 0
		for key, user := range p.sessions {
			if user == m.GetUser() {
				ctx.Send(p.pids[key], &parleypb.KickSession{Reason: m.GetReason()})
				n++
			}
		}
		ctx.Send(m.GetReplyTo(), &parleypb.Ack{Seq: uint64(n)})
	case *parleypb.WhoQuery:
		ctx.Send(m.GetSession(), &parleypb.PresenceEvent{Members: p.list()})
		ctx.Send(m.GetSession(), &parleypb.Ack{RequestId: m.GetRequestId()})
	}
}

func (p *presence) online(ctx actor.Context, m *parleypb.Online) {
	key := pidKey(m.GetSession())
	if _, ok := p.sessions[key]; !ok {
		ctx.Watch(m.GetSession())
		p.sessions[key] = m.GetUser()
		p.pids[key] = m.GetSession()
		p.users[m.GetUser()]++
		if p.users[m.GetUser()] == 1 && !m.GetRejoin() {
			p.tell(ctx, &parleypb.PresenceEvent{Joined: []string{m.GetUser()}})
		}
	}
	if m.GetWatch() {
		if _, ok := p.watchers[key]; !ok && !m.GetRejoin() {
			// The snapshot (the caller included) answers the Hello, before
			// its ack; deltas follow.
			ctx.Send(m.GetSession(), &parleypb.PresenceEvent{Members: p.list()})
		}
		p.watchers[key] = m.GetSession()
	}
	if m.GetRequestId() != "" {
		ctx.Send(m.GetSession(), &parleypb.Ack{RequestId: m.GetRequestId()})
	}
}

func (p *presence) offline(ctx actor.Context, pid *actor.PID) {
	key := pidKey(pid)
	delete(p.watchers, key)
	user, ok := p.sessions[key]
	if !ok {
		return
	}
	delete(p.sessions, key)
	delete(p.pids, key)
	ctx.Unwatch(pid)
	p.users[user]--
	if p.users[user] == 0 {
		delete(p.users, user)
		p.tell(ctx, &parleypb.PresenceEvent{Left: []string{user}})
	}
}

func (p *presence) tell(ctx actor.Context, e *parleypb.PresenceEvent) {
	for _, w := range p.watchers {
		ctx.Send(w, e)
	}
}

// list is everyone online, sorted by name.
func (p *presence) list() []*parleypb.Member {
	out := make([]*parleypb.Member, 0, len(p.users))
	for u, n := range p.users {
		out = append(out, &parleypb.Member{Name: u, Devices: uint32(n)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
