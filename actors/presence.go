package actors

import (
	"sort"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	parleypb "github.com/parleychat/parley/proto"
)

// presencePublishEvery bounds how often a node publishes its share of
// presence to the cluster: a burst of logins is one update.
const presencePublishEvery = 50 * time.Millisecond

// presence knows who is online and with how many connections. Sessions of
// this node register when they log in; presence watches them, so a session
// that dies for any reason goes offline. In a cluster, the other members'
// shares arrive as PeerPresence (from gossip) and count too, and this node's
// share is published after each change. Watchers (sessions that asked for it
// in Hello) get user-level deltas of the whole: a user's first connection
// anywhere is one "joined", the last one's end one "left".
type presence struct {
	n        *Node
	peers    *peerShares
	local    map[string]int    // user -> connections on this node
	total    map[string]int    // user -> connections on every live member
	sessions map[string]string // session PID key -> user
	pids     map[string]*actor.PID
	watchers map[string]*actor.PID

	dirty, tickArmed bool
}

// peerShares is what other members said, kept across presence restarts
// (gossip does not repeat itself).
type peerShares struct {
	shares map[string]map[string]int // member id -> user -> connections
	alive  map[string]bool           // nil until the first PeerSet
}

func newPeerShares() *peerShares { return &peerShares{shares: make(map[string]map[string]int)} }

// counts reports whether a member's share is in the totals.
func (ps *peerShares) counts(id string) bool { return ps.alive == nil || ps.alive[id] }

// publishTick is presence's own timer message (local only).
type publishTick struct{}

func newPresence(n *Node, peers *peerShares) *presence {
	return &presence{n: n, peers: peers, local: make(map[string]int), total: make(map[string]int),
		sessions: make(map[string]string), pids: make(map[string]*actor.PID), watchers: make(map[string]*actor.PID)}
}

func (p *presence) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		// After a restart this instance knows nobody here: start from the
		// peers' shares and ask every live session to register again
		// (quietly, so watchers see no false changes).
		for id, share := range p.peers.shares {
			if p.peers.counts(id) {
				for u, c := range share {
					p.total[u] += c
				}
			}
		}
		p.n.eachSession(&parleypb.PresenceRebuild{})
	case *parleypb.Online:
		p.online(ctx, m)
	case *parleypb.Offline:
		p.offline(ctx, m.GetSession())
	case *actor.Terminated:
		p.offline(ctx, m.GetWho())
	case *parleypb.PeerPresence:
		p.peer(ctx, m.GetMemberId(), m.GetShare())
	case *parleypb.PeerSet:
		p.peerSet(ctx, m.GetMemberIds())
	case publishTick:
		p.tickArmed = false
		p.publish(ctx)
	case *parleypb.Kick:
		n := 0
		for key, user := range p.sessions {
			if user == m.GetUser() {
				ctx.Send(p.pids[key], &parleypb.KickSession{Reason: m.GetReason()})
				n++
			}
		}
		ctx.Send(m.GetReplyTo(), &parleypb.Ack{Seq: uint64(n)})
	case *parleypb.Notice:
		// An operator's notice from another cluster member.
		for _, pid := range p.pids {
			ctx.Send(pid, m)
		}
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
		p.local[m.GetUser()]++
		p.changed(ctx)
		p.adjust(ctx, m.GetUser(), 1, m.GetRejoin())
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
	if p.local[user]--; p.local[user] == 0 {
		delete(p.local, user)
	}
	p.changed(ctx)
	p.adjust(ctx, user, -1, false)
}

// adjust moves a user's connection count across the cluster and tells
// watchers when the user appears or disappears (unless quiet).
func (p *presence) adjust(ctx actor.Context, user string, delta int, quiet bool) {
	before := p.total[user]
	after := before + delta
	if after <= 0 {
		delete(p.total, user)
	} else {
		p.total[user] = after
	}
	switch {
	case quiet:
	case before == 0 && after > 0:
		p.tell(ctx, &parleypb.PresenceEvent{Joined: []string{user}})
	case before > 0 && after <= 0:
		p.tell(ctx, &parleypb.PresenceEvent{Left: []string{user}})
	}
}

// peer replaces one member's share. A share of a member not (yet) in the
// topology is kept but not counted: gossip may bring it before the
// membership does.
func (p *presence) peer(ctx actor.Context, id string, share *parleypb.NodePresence) {
	next := make(map[string]int, len(share.GetUsers()))
	for _, u := range share.GetUsers() {
		next[u.GetName()] = int(u.GetDevices())
	}
	prev := p.peers.shares[id]
	p.peers.shares[id] = next
	if p.peers.counts(id) {
		p.apply(ctx, prev, next)
	}
}

// peerSet counts the shares of the members alive now and drops those of
// members that left (a killed node's users go offline everywhere once the
// cluster notices; a restarted node is a new member).
func (p *presence) peerSet(ctx actor.Context, ids []string) {
	was := p.peers.alive
	p.peers.alive = make(map[string]bool, len(ids))
	for _, id := range ids {
		p.peers.alive[id] = true
	}
	for id, share := range p.peers.shares {
		before := was == nil || was[id]
		now := p.peers.alive[id]
		switch {
		case before && !now:
			p.apply(ctx, share, nil)
			if was != nil {
				delete(p.peers.shares, id)
			}
		case !before && now:
			p.apply(ctx, nil, share)
		}
	}
}

// apply moves the totals from one share of a member to the next.
func (p *presence) apply(ctx actor.Context, prev, next map[string]int) {
	for u, c := range prev {
		if d := next[u] - c; d != 0 {
			p.adjust(ctx, u, d, false)
		}
	}
	for u, c := range next {
		if _, ok := prev[u]; !ok {
			p.adjust(ctx, u, c, false)
		}
	}
}

// changed schedules publishing this node's share, when a cluster wants it.
func (p *presence) changed(ctx actor.Context) {
	if p.n.PublishPresence == nil {
		return
	}
	p.dirty = true
	if !p.tickArmed {
		p.tickArmed = true
		sys, self := p.n.System, ctx.Self()
		time.AfterFunc(presencePublishEvery, func() { sys.Root.Send(self, publishTick{}) })
	}
}

func (p *presence) publish(actor.Context) {
	if !p.dirty || p.n.PublishPresence == nil {
		return
	}
	p.dirty = false
	share := &parleypb.NodePresence{Users: make([]*parleypb.Member, 0, len(p.local))}
	for u, c := range p.local {
		share.Users = append(share.Users, &parleypb.Member{Name: u, Devices: uint32(c)})
	}
	sort.Slice(share.Users, func(i, j int) bool { return share.Users[i].Name < share.Users[j].Name })
	p.n.PublishPresence(share)
}

func (p *presence) tell(ctx actor.Context, e *parleypb.PresenceEvent) {
	for _, w := range p.watchers {
		ctx.Send(w, e)
	}
}

// list is everyone online, sorted by name.
func (p *presence) list() []*parleypb.Member {
	out := make([]*parleypb.Member, 0, len(p.total))
	for u, n := range p.total {
		out = append(out, &parleypb.Member{Name: u, Devices: uint32(n)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
