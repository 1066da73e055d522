package actors

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/parleychat/parley/actors/actorpb"
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
	byUser   map[string]map[string]*actor.PID // user -> its sessions here
	// known are the users online anywhere, by skeleton (a name and its
	// look-alikes share one): a login whose name looks like a different
	// one of them is refused, when nobody vouches for it.
	known map[string]map[string]bool
	// reserved are names kept for bots and the system, by skeleton
	// (survives restarts: bots reserve once).
	reserved map[string]string
	// vouched are the names a token vouched for since the node started, by
	// skeleton: an anonymous login may not take one (or a look-alike),
	// even while its holder is offline.
	vouched map[string]string

	dirty, tickArmed bool
}

// peerShares is what other members said, kept across presence restarts
// (gossip does not repeat itself): at most one share per address, the
// latest process's.
type peerShares struct {
	shares map[string]*actorpb.NodePresence // by gossip member id
	alive  map[string]bool                  // member addresses; nil until the first PeerSet
}

func newPeerShares() *peerShares { return &peerShares{shares: make(map[string]*actorpb.NodePresence)} }

// counts reports whether a share counts: its member is alive. (A share
// may come before the membership that makes it count.)
func (ps *peerShares) counts(s *actorpb.NodePresence) bool {
	return ps.alive == nil || ps.alive[s.GetAddress()]
}

// addTo adds the connections of every share that counts to totals.
func (ps *peerShares) addTo(totals map[string]int) {
	for _, s := range ps.shares {
		if !ps.counts(s) {
			continue
		}
		for _, m := range s.GetUsers() {
			totals[m.GetName()] += int(m.GetDevices())
		}
	}
}

// publishTick is presence's own timer message (local only).
type publishTick struct{}

// publishNow asks presence to publish this node's share even if nothing
// changed (local only): a node that joined a cluster publishes at once.
type publishNow struct{}

func newPresence(n *Node, peers *peerShares, reserved map[string]string) *presence {
	return &presence{n: n, peers: peers, local: make(map[string]int), total: make(map[string]int),
		sessions: make(map[string]string), pids: make(map[string]*actor.PID), byUser: make(map[string]map[string]*actor.PID),
		known: make(map[string]map[string]bool), reserved: reserved, vouched: make(map[string]string)}
}

func (p *presence) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		// After a restart this instance knows nobody here: start from the
		// peers' shares and ask every live session to register again.
		p.peers.addTo(p.total)
		for u := range p.total {
			p.learn(u, true)
		}
		p.n.eachSession(&actorpb.PresenceRebuild{})
	case publishNow:
		p.changed(ctx)
	case *actorpb.Online:
		p.online(ctx, m)
	case *actorpb.ReserveName:
		p.reserved[Skeleton(m.GetName())] = m.GetName()
	case *actorpb.Offline:
		p.offline(ctx, m.GetSession())
	case *actor.Terminated:
		p.offline(ctx, m.GetWho())
	case *actorpb.PeerPresence:
		p.peer(ctx, m.GetMemberId(), m.GetShare())
	case *actorpb.PeerSet:
		p.peerSet(ctx, m.GetAddresses())
	case publishTick:
		p.tickArmed = false
		p.publish(ctx)
	case *actorpb.Kick:
		n := 0
		for key, user := range p.sessions {
			if user == m.GetUser() {
				ctx.Send(p.pids[key], &actorpb.KickSession{Reason: m.GetReason()})
				n++
			}
		}
		ctx.Send(m.GetReplyTo(), &parleypb.Ack{Seq: uint64(n)})
	case *parleypb.Notice:
		// An operator's notice from another cluster member.
		for _, pid := range p.pids {
			ctx.Send(pid, m)
		}
	case *actorpb.WhoQuery:
		ctx.Send(m.GetSession(), &parleypb.PresenceEvent{Members: p.list(m.GetUsers())})
		ctx.Send(m.GetSession(), &parleypb.Ack{RequestId: m.GetRequestId()})
	case *actorpb.TellUser:
		for _, pid := range p.byUser[m.GetUser()] {
			ctx.Send(pid, m.GetRoom())
		}
		if !m.GetFromPeer() {
			for _, peer := range p.n.peerPresences() {
				ctx.Send(peer, &actorpb.TellUser{User: m.GetUser(), Room: m.GetRoom(), FromPeer: true})
			}
		}
	}
}

func (p *presence) online(ctx actor.Context, m *actorpb.Online) {
	key := pidKey(m.GetSession())
	_, registered := p.sessions[key]
	if !registered && !m.GetRejoin() {
		if why := p.refuse(m.GetUser(), m.GetCheckLookAlikes()); why != "" {
			ctx.Send(m.GetSession(), &parleypb.Error{RequestId: m.GetRequestId(), Code: parleypb.ErrorCode_ERROR_CODE_INVALID_NAME, Text: why})
			return
		}
	}
	if !m.GetRejoin() {
		ctx.Send(m.GetSession(), &actorpb.LoggedIn{RequestId: m.GetRequestId()})
	}
	if !registered {
		ctx.Watch(m.GetSession())
		user := m.GetUser()
		p.sessions[key] = user
		p.pids[key] = m.GetSession()
		if p.byUser[user] == nil {
			p.byUser[user] = make(map[string]*actor.PID)
		}
		p.byUser[user][key] = m.GetSession()
		p.local[user]++
		p.changed(ctx)
		p.adjust(user, 1)
	}
}

// refuse says why a login under name is refused, or "": the name (or a
// look-alike) is reserved, or, when look-alikes are checked, it looks like
// a different user online.
func (p *presence) refuse(name string, lookAlikes bool) string {
	sk := Skeleton(name)
	if r, ok := p.reserved[sk]; ok {
		if r == name {
			return fmt.Sprintf("the name %q is reserved", name)
		}
		return fmt.Sprintf("the name %q looks too much like %q, which is reserved", name, r)
	}
	if !lookAlikes {
		p.vouched[sk] = name // a token holder's
		return ""
	}
	if v, ok := p.vouched[sk]; ok {
		return fmt.Sprintf("the name %q belongs to a user who logs in with a token (%q); log in with yours, or choose another name", name, v)
	}
	for other := range p.known[sk] {
		if other != name {
			return fmt.Sprintf("the name %q looks too much like %q, who is online; choose another", name, other)
		}
	}
	return ""
}

// learn records that user is online (or no longer) under its skeleton.
func (p *presence) learn(user string, online bool) {
	sk := Skeleton(user)
	if online {
		if p.known[sk] == nil {
			p.known[sk] = make(map[string]bool)
		}
		p.known[sk][user] = true
		return
	}
	delete(p.known[sk], user)
	if len(p.known[sk]) == 0 {
		delete(p.known, sk)
	}
}

func (p *presence) offline(ctx actor.Context, pid *actor.PID) {
	key := pidKey(pid)
	user, ok := p.sessions[key]
	if !ok {
		return
	}
	delete(p.sessions, key)
	delete(p.pids, key)
	if delete(p.byUser[user], key); len(p.byUser[user]) == 0 {
		delete(p.byUser, user)
	}
	ctx.Unwatch(pid)
	if p.local[user]--; p.local[user] == 0 {
		delete(p.local, user)
	}
	p.changed(ctx)
	p.adjust(user, -1)
}

// adjust moves a user's connection count across the cluster.
func (p *presence) adjust(user string, delta int) {
	before := p.total[user]
	after := before + delta
	if after <= 0 {
		delete(p.total, user)
	} else {
		p.total[user] = after
	}
	if (before == 0) != (after <= 0) {
		p.learn(user, after > 0)
	}
}

// peer replaces one member's share. A share of a member not (yet) in the
// topology is kept but not counted: gossip may bring it before the
// membership does.
func (p *presence) peer(ctx actor.Context, id string, share *actorpb.NodePresence) {
	// Only the latest process at an address counts: an earlier one's share
	// (a restarted node's, still in the gossip state) is dropped, and one
	// arriving late is ignored.
	var gone []*actorpb.NodePresence
	for other, o := range p.peers.shares {
		if other == id || o.GetAddress() != share.GetAddress() {
			continue
		}
		if o.GetStartedMs() > share.GetStartedMs() {
			return
		}
		gone = append(gone, o)
		delete(p.peers.shares, other)
	}
	old := p.peers.shares[id]
	p.peers.shares[id] = share
	if !p.peers.counts(share) {
		return // nor did old or gone: the same address
	}
	// Shares are sorted by name (publish): the change is a walk over the
	// old and the new one, instead of recounting every user of the cluster
	// on every share that changed — which, while 100,000 users connect to
	// five nodes, took over half of each node's CPU.
	if !sortedShare(old) || !sortedShare(share) {
		p.recount()
		return
	}
	for _, g := range gone {
		if !sortedShare(g) {
			p.recount()
			return
		}
		p.shift(g.GetUsers(), nil)
	}
	p.shift(old.GetUsers(), share.GetUsers())
}

func sortedShare(s *actorpb.NodePresence) bool {
	return slices.IsSortedFunc(s.GetUsers(), func(a, b *parleypb.Member) int { return strings.Compare(a.GetName(), b.GetName()) })
}

// shift applies the change from one share's users to another's (both
// sorted by name) to the totals.
func (p *presence) shift(from, to []*parleypb.Member) {
	i, j := 0, 0
	for i < len(from) || j < len(to) {
		switch {
		case j == len(to) || (i < len(from) && from[i].GetName() < to[j].GetName()):
			p.adjust(from[i].GetName(), -int(from[i].GetDevices()))
			i++
		case i == len(from) || to[j].GetName() < from[i].GetName():
			p.adjust(to[j].GetName(), int(to[j].GetDevices()))
			j++
		default:
			if d := int(to[j].GetDevices()) - int(from[i].GetDevices()); d != 0 {
				p.adjust(to[j].GetName(), d)
			}
			i, j = i+1, j+1
		}
	}
}

// peerSet records the members alive now; shares of members that left are
// dropped (a killed node's users go offline everywhere once the cluster
// notices; a restarted node is a new member).
func (p *presence) peerSet(ctx actor.Context, addrs []string) {
	p.peers.alive = make(map[string]bool, len(addrs))
	for _, a := range addrs {
		p.peers.alive[a] = true
	}
	for id, s := range p.peers.shares {
		if !p.peers.alive[s.GetAddress()] {
			delete(p.peers.shares, id)
		}
	}
	p.recount()
}

// recount computes the totals afresh (this node's connections and the
// counted shares).
func (p *presence) recount() {
	next := make(map[string]int, len(p.total))
	for u, c := range p.local {
		next[u] += c
	}
	p.peers.addTo(next)
	var changed []string
	for u, c := range p.total {
		if next[u] != c {
			changed = append(changed, u)
		}
	}
	for u := range next {
		if _, ok := p.total[u]; !ok {
			changed = append(changed, u)
		}
	}
	for _, u := range changed {
		p.adjust(u, next[u]-p.total[u])
	}
}

// changed schedules publishing this node's share, when a cluster wants it.
func (p *presence) changed(ctx actor.Context) {
	if p.n.cfg.Cluster == nil {
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
	if !p.dirty || p.n.cfg.Cluster == nil {
		return
	}
	p.dirty = false
	share := &actorpb.NodePresence{Users: make([]*parleypb.Member, 0, len(p.local))}
	for u, c := range p.local {
		share.Users = append(share.Users, &parleypb.Member{Name: u, Devices: uint32(c)})
	}
	sort.Slice(share.Users, func(i, j int) bool { return share.Users[i].Name < share.Users[j].Name })
	p.n.cfg.Cluster.PublishPresence(share)
}

// list is who of users is online, with how many connections, sorted by
// name; no users means everyone (an operator's question, never a user's).
func (p *presence) list(users []string) []*parleypb.Member {
	var out []*parleypb.Member
	if len(users) == 0 {
		for u := range p.total {
			users = append(users, u)
		}
	}
	for _, u := range users {
		if n := p.total[u]; n > 0 {
			out = append(out, &parleypb.Member{Name: u, Devices: uint32(n)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
