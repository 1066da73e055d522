package actors

import (
	"fmt"
	"sort"
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
// shares arrive as PeerPresence and count too, and this node sends its own
// to the other members' presence actors: whole to a member it has not told
// yet, then what changed, at most every presencePublishEvery. Watchers (sessions that asked for it
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
	// pending are the users whose count here changed since the last delta.
	pending map[string]bool
}

// peerShares is what other members said, kept across presence restarts
// (a peer sends only what changed): at most one share per address, the
// latest process's. out is this node's own side: its delta count, kept
// across restarts too, so the peers' view of it stays in sequence.
type peerShares struct {
	shares map[string]*peerState // by member address
	alive  map[string]bool       // member addresses; nil until the first PeerSet
	out    uint64                // this node's last delta's seq
}

// peerState is one member's share as this node knows it.
type peerState struct {
	startedMs int64
	seq       uint64
	users     map[string]int
	asked     time.Time // a resync was asked (a delta went missing) and not answered yet
}

func newPeerShares() *peerShares { return &peerShares{shares: make(map[string]*peerState)} }

// counts reports whether the share of the member at addr counts: the
// member is alive. (A share may come before the membership that makes it
// count.)
func (ps *peerShares) counts(addr string) bool {
	return ps.alive == nil || ps.alive[addr]
}

// addTo adds the connections of every share that counts to totals.
func (ps *peerShares) addTo(totals map[string]int) {
	for addr, st := range ps.shares {
		if !ps.counts(addr) {
			continue
		}
		for u, c := range st.users {
			totals[u] += c
		}
	}
}

// publishTick is presence's own timer message (local only).
type publishTick struct{}

// publishNow asks presence to send this node's whole share to every live
// member (local only): a node that joined a cluster, or whose presence
// restarted (sessions that died meanwhile never said so), tells it at once.
type publishNow struct{}

func newPresence(n *Node, peers *peerShares, reserved map[string]string) *presence {
	return &presence{n: n, peers: peers, local: make(map[string]int), total: make(map[string]int),
		sessions: make(map[string]string), pids: make(map[string]*actor.PID), byUser: make(map[string]map[string]*actor.PID),
		known: make(map[string]map[string]bool), reserved: reserved, vouched: make(map[string]string), pending: make(map[string]bool)}
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
		if p.n.cfg.Cluster != nil && p.peers.alive != nil {
			// Once the live sessions registered again, the peers get the
			// whole share: those that died meanwhile are not in it.
			sys, self := p.n.System, ctx.Self()
			time.AfterFunc(time.Second, func() { sys.Root.Send(self, publishNow{}) })
		}
	case publishNow:
		for addr := range p.peers.alive {
			p.sendWhole(ctx, addr)
		}
	case *actorpb.Online:
		p.online(ctx, m)
	case *actorpb.ReserveName:
		p.reserved[Skeleton(m.GetName())] = m.GetName()
	case *actorpb.Offline:
		p.offline(ctx, m.GetSession())
	case *actor.Terminated:
		p.offline(ctx, m.GetWho())
	case *actorpb.PeerPresence:
		p.peer(ctx, m.GetShare())
	case *actorpb.PresenceResync:
		p.sendWhole(ctx, m.GetAddress())
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
		p.pending[user] = true
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
	p.pending[user] = true
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

// peer takes a share another member sent: a whole one replaces what this
// node knew of that member, a delta applies on top of it when it is the
// next in sequence; a delta that skips one asks the member for its whole
// share instead. A share of a member not (yet) in the topology is kept but
// not counted: it may come before the membership does. Only the latest
// process at an address counts: an earlier one's share (a restarted node's)
// is dropped, and one arriving late is ignored.
func (p *presence) peer(ctx actor.Context, share *actorpb.NodePresence) {
	addr := share.GetAddress()
	if addr == "" || addr == p.origin() {
		return // (this node's own: an earlier process's, say)
	}
	counted := p.peers.counts(addr)
	st := p.peers.shares[addr]
	switch {
	case st != nil && share.GetStartedMs() < st.startedMs:
		return
	case st == nil || share.GetStartedMs() > st.startedMs:
		if st != nil && counted { // the earlier process's users are gone with it
			for u, c := range st.users {
				p.adjust(u, -c)
			}
		}
		if st != nil { // a restarted member knows nothing of this node
			defer p.sendWhole(ctx, addr)
		}
		st = &peerState{startedMs: share.GetStartedMs(), users: make(map[string]int)}
		p.peers.shares[addr] = st
	}
	if !share.GetDelta() {
		next := make(map[string]int, len(share.GetUsers()))
		for _, m := range share.GetUsers() {
			next[m.GetName()] += int(m.GetDevices())
		}
		if counted {
			for u, c := range st.users {
				if next[u] != c {
					p.adjust(u, next[u]-c)
				}
			}
			for u, c := range next {
				if _, ok := st.users[u]; !ok {
					p.adjust(u, c)
				}
			}
		}
		st.users, st.seq, st.asked = next, share.GetSeq(), time.Time{}
		return
	}
	switch {
	case share.GetSeq() <= st.seq:
		return // a whole share sent after it had it already
	case share.GetSeq() > st.seq+1 || !st.asked.IsZero():
		if time.Since(st.asked) > resyncAgain {
			st.asked = time.Now()
			ctx.Send(p.n.peerPresence(addr), &actorpb.PresenceResync{Address: p.origin()})
		}
		return
	}
	for _, m := range share.GetUsers() {
		u, c := m.GetName(), int(m.GetDevices())
		old := st.users[u]
		if c == 0 {
			delete(st.users, u)
		} else {
			st.users[u] = c
		}
		if counted && c != old {
			p.adjust(u, c-old)
		}
	}
	st.seq = share.GetSeq()
}

// resyncAgain is how long a member's whole share is awaited before it is
// asked for again (the request or the answer may be lost with a
// connection).
const resyncAgain = 2 * time.Second

// peerSet records the members alive now; shares of members that left are
// dropped (a killed node's users go offline everywhere once the cluster
// notices; a restarted node is a new member). A member this node had not
// told yet gets its whole share.
func (p *presence) peerSet(ctx actor.Context, addrs []string) {
	before := p.peers.alive
	p.peers.alive = make(map[string]bool, len(addrs))
	for _, a := range addrs {
		p.peers.alive[a] = true
	}
	for addr := range p.peers.shares {
		if !p.peers.alive[addr] {
			delete(p.peers.shares, addr)
		}
	}
	p.recount()
	for _, a := range addrs {
		if !before[a] {
			p.sendWhole(ctx, a)
		}
	}
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

// changed schedules sending what changed to the other members, when in a
// cluster.
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

// origin is this node's address in the cluster ("" before it joined).
func (p *presence) origin() string {
	addr, _ := p.n.cfg.Cluster.PresenceOrigin()
	return addr
}

// publish sends the users whose count here changed since the last time,
// with their counts now, to every other live member: one delta, whatever
// the number of users connected.
func (p *presence) publish(ctx actor.Context) {
	if !p.dirty || p.n.cfg.Cluster == nil {
		return
	}
	addr, started := p.n.cfg.Cluster.PresenceOrigin()
	if addr == "" || p.peers.alive == nil {
		return // not in the cluster yet: joining sends the whole share
	}
	p.dirty = false
	p.peers.out++
	share := &actorpb.NodePresence{Address: addr, StartedMs: started, Seq: p.peers.out, Delta: true,
		Users: make([]*parleypb.Member, 0, len(p.pending))}
	for u := range p.pending {
		share.Users = append(share.Users, &parleypb.Member{Name: u, Devices: uint32(p.local[u])})
	}
	clear(p.pending)
	msg := &actorpb.PeerPresence{Share: share}
	for peer := range p.peers.alive {
		if peer != addr {
			ctx.Send(p.n.peerPresence(peer), msg)
		}
	}
}

// sendWhole sends this node's whole share to the member at peer.
func (p *presence) sendWhole(ctx actor.Context, peer string) {
	addr, started := p.n.cfg.Cluster.PresenceOrigin()
	if addr == "" || peer == addr {
		return
	}
	share := &actorpb.NodePresence{Address: addr, StartedMs: started, Seq: p.peers.out,
		Users: make([]*parleypb.Member, 0, len(p.local))}
	for u, c := range p.local {
		share.Users = append(share.Users, &parleypb.Member{Name: u, Devices: uint32(c)})
	}
	ctx.Send(p.n.peerPresence(peer), &actorpb.PeerPresence{Share: share})
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
