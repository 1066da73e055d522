// Package actors owns Parley's actors: one session per connection, one room
// per room name, and presence. They exchange only the protobuf messages of
// package parleypb, so a room can later live on another node.
//
// A Node wires them on one actor system: it implements transport.Handler by
// spawning a session for each socket, routes room messages through a
// Directory, and shuts everything down in order. Actors start no goroutines;
// their state lives in Receive, which runs one message at a time.
//
// Extending Parley with a new actor type (a bot, a moderation filter) means
// writing an actor that talks to rooms through Node.Directory with the same
// messages a session uses; see package bots/dice.
package actors

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/eventstream"
	"google.golang.org/protobuf/proto"

	parleypb "github.com/parleychat/parley/proto"

	"github.com/parleychat/parley/auth"
	"github.com/parleychat/parley/store"
	"github.com/parleychat/parley/supervision"
	"github.com/parleychat/parley/transport"
)

// Config configures a Node. Zero values mean the documented defaults.
type Config struct {
	// Store keeps room history. Nil means a fresh in-memory store.
	Store store.Store
	// History is how many recent messages a room keeps in memory and replays
	// to a client that joins without a resume point. Zero means 100.
	History int
	// MaxReplay is the longest gap replayed to a resuming client; a longer
	// one replays its newest MaxReplay events after a Reset. Zero means 10000.
	MaxReplay int
	// DedupWindow is how many recent client message ids a room remembers to
	// acknowledge retried posts once. Zero means 10000.
	DedupWindow int
	// MaxRooms is how many rooms one session may be in. Zero means 100.
	MaxRooms int
	// MaxMembers caps a room's connections; joins past it get ROOM_FULL.
	// Zero means no cap.
	MaxMembers int
	// MaxTextRunes bounds a post's text. Zero means 4000.
	MaxTextRunes int
	// IdleTimeout closes a session that sent no application frame for this
	// long, with close code 4000. Zero disables it.
	IdleTimeout time.Duration
	// RoomLinger is how long an empty room stays before it passivates. Zero
	// means 30s.
	RoomLinger time.Duration
	// Rate and Burst are the token bucket for client requests per session.
	// Zero means 20 per second with a burst of 40.
	Rate  float64
	Burst int
	// Strikes is how many rate-limited requests a session may make within
	// 10 seconds before it is closed with 1008. Zero means 20.
	Strikes int
	// MaxMessageBytes is told to clients in Welcome.
	MaxMessageBytes int
	// SessionBudget and RoomBudget are the retry budgets (restarts within
	// their Window) of sessions and rooms. Zero values: see supervision.Options.
	SessionBudget, RoomBudget supervision.Options
	// Verifier checks tokens sent in Hello and Refresh. Nil: tokens are
	// refused.
	Verifier *auth.Verifier
	// RequireToken refuses a Hello without a verified token; otherwise a
	// name alone logs in (anonymous).
	RequireToken bool
	// Faults injects failures for tests; nil in production.
	Faults *supervision.Faults
	// Logger receives actor and supervision logs. Nil discards.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Store == nil {
		c.Store = store.NewMemory()
	}
	if c.History <= 0 {
		c.History = 100
	}
	if c.MaxReplay <= 0 {
		c.MaxReplay = 10000
	}
	if c.DedupWindow <= 0 {
		c.DedupWindow = 10000
	}
	if c.MaxRooms <= 0 {
		c.MaxRooms = 100
	}
	if c.MaxTextRunes <= 0 {
		c.MaxTextRunes = 4000
	}
	if c.RoomLinger <= 0 {
		c.RoomLinger = 30 * time.Second
	}
	if c.Rate <= 0 {
		c.Rate = 20
	}
	if c.Burst <= 0 {
		c.Burst = 40
	}
	if c.Strikes <= 0 {
		c.Strikes = 20
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Stats counts what the node's actors did; safe for concurrent reads.
type Stats struct {
	Sessions, Rooms, Presence supervision.Stats
	// DeadLetters counts messages sent to actors that were gone.
	DeadLetters atomic.Int64
	// ActiveRooms is how many room actors are running.
	ActiveRooms atomic.Int64
	// Passivations counts rooms stopped for being empty.
	Passivations atomic.Int64
	// Posts counts acknowledged posts; Deliveries the room events handed to
	// members (one per member per event); RateLimited the requests refused
	// by a session's rate limit; StoreErrors the failed store writes.
	Posts, Deliveries, RateLimited, StoreErrors atomic.Int64
	// Moved counts rooms activated (as cluster grains) on a node that did
	// not own them, which forwarded and stopped.
	Moved atomic.Int64
	// Relays counts fan-outs sent to another cluster member as one Relay
	// for several of its sessions.
	Relays atomic.Int64

	mailboxes sync.Map // room name -> *mailboxDepth
}

// mailboxDepth counts the messages waiting in one room's mailbox.
type mailboxDepth struct{ n atomic.Int64 }

func (d *mailboxDepth) MailboxStarted()     {}
func (d *mailboxDepth) MessagePosted(any)   { d.n.Add(1) }
func (d *mailboxDepth) MessageReceived(any) { d.n.Add(-1) }
func (d *mailboxDepth) MailboxEmpty()       {}

// RoomDepth is one room's mailbox depth.
type RoomDepth struct {
	Room  string
	Depth int64
}

// BusiestRooms returns the k rooms with the most messages waiting.
func (s *Stats) BusiestRooms(k int) []RoomDepth {
	var all []RoomDepth
	s.mailboxes.Range(func(key, v any) bool {
		if d := v.(*mailboxDepth).n.Load(); d > 0 {
			all = append(all, RoomDepth{key.(string), d})
		}
		return true
	})
	sort.Slice(all, func(i, j int) bool { return all[i].Depth > all[j].Depth })
	return all[:min(k, len(all))]
}

// Node is one Parley server's actors.
type Node struct {
	cfg    Config
	log    *slog.Logger
	System *actor.ActorSystem
	// Directory routes messages to rooms by name. A cluster replaces it
	// (before the node serves) with one that finds rooms on any member.
	Directory Directory
	Stats     Stats
	// Clustered is set, before the node serves, when rooms live on a
	// cluster: sessions then keep their unanswered posts so that a room
	// lost with its node does not lose them.
	Clustered bool
	// BeforeStop, when set, runs in Shutdown after the sessions have
	// closed and before the node's own actors stop (a cluster leaves
	// there). It must shut the actor system down.
	BeforeStop func(ctx context.Context) error
	// PublishPresence, when set, receives this node's share of presence
	// (who is connected here) after each change, at most every
	// presencePublishEvery; a cluster gossips it to the other members.
	PublishPresence func(*parleypb.NodePresence)
	// PeerPresences, when set, lists the presence actors of the other
	// cluster members (an operator's kick reaches every member).
	PeerPresences func() []*actor.PID

	presence *actor.PID
	rooms    *actor.PID
	// sessionOpts holds the options every session shares. Its strategy
	// must be one value: Proto.Actor keeps one guardian process per
	// strategy, so a strategy per session would leak one per connection.
	sessionOpts []actor.PropsOption

	nextSession atomic.Uint64
	live        sync.Map // session PID key -> *actor.PID
	liveCount   atomic.Int64
	deadSub     *eventstream.Subscription
}

// NewNode starts an actor system with the rooms directory and presence.
func NewNode(cfg Config) (*Node, error) {
	cfg = cfg.withDefaults()
	n := &Node{cfg: cfg, log: cfg.Logger}
	// Proto.Actor logs through its own slog logger (coloured, at INFO, on
	// stderr by default); route it into ours at WARN and above so it neither
	// floods nor escapes the operator's format.
	libLog := cfg.Logger.With("lib", "protoactor")
	n.System = actor.NewActorSystem(
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return slog.New(minLevel{libLog.Handler(), slog.LevelWarn}) }),
		actor.WithDeadLetterThrottleCount(3),
		actor.WithDeadLetterThrottleInterval(time.Second),
		actor.WithDeadLetterRequestLogging(false),
	)
	n.deadSub = n.System.EventStream.Subscribe(func(evt any) {
		if _, ok := evt.(*actor.DeadLetterEvent); ok {
			n.Stats.DeadLetters.Add(1)
		}
	})

	n.sessionOpts = append([]actor.PropsOption{actor.WithGuardian(n.sessionStrategy())}, middleware(cfg.Faults, "session")...)
	root := n.System.Root
	var err error
	presenceOpts := append([]actor.PropsOption{actor.WithGuardian(supervision.OneForOne(supervision.Options{
		// Presence is one per node and everyone needs it: it is never given
		// up on, only restarted more slowly (backoff up to 1 s).
		Kind: "presence", MaxRestarts: math.MaxInt, Logger: n.log, Stats: &n.Stats.Presence}))},
		middleware(cfg.Faults, "presence")...)
	peers := newPeerShares()
	n.presence, err = root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return newPresence(n, peers) }, presenceOpts...), "presence")
	if err != nil {
		return nil, fmt.Errorf("actors: start presence: %w", err)
	}
	n.rooms, err = root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return newRoomsRouter(n) },
		actor.WithSupervisor(n.roomStrategy())), "rooms")
	if err != nil {
		return nil, fmt.Errorf("actors: start rooms: %w", err)
	}
	n.Directory = localDirectory{rooms: n.rooms}
	return n, nil
}

func middleware(f *supervision.Faults, kind string) []actor.PropsOption {
	if mw := f.Middleware(kind); mw != nil {
		return []actor.PropsOption{actor.WithReceiverMiddleware(mw)}
	}
	return nil
}

func (n *Node) roomStrategy() actor.SupervisorStrategy {
	o := n.cfg.RoomBudget
	o.Kind, o.Logger, o.Stats = "room", n.log, &n.Stats.Rooms
	o.OnFailure = n.failPost
	return supervision.OneForOne(o)
}

func (n *Node) sessionStrategy() actor.SupervisorStrategy {
	o := n.cfg.SessionBudget
	o.Kind, o.Logger, o.Stats = "session", n.log, &n.Stats.Sessions
	return supervision.OneForOne(o)
}

// failPost answers the post a room was handling when it panicked, so the
// client learns at once that it may retry instead of waiting for a timeout.
func (n *Node) failPost(_ *actor.PID, _, message any) {
	if p, ok := message.(*parleypb.RoomPost); ok {
		errorTo(n.System.Root, p.GetSession(), p.GetRequestId(), p.GetRoom(), parleypb.ErrorCode_ERROR_CODE_UNAVAILABLE, "the room failed while handling this post; retry it with the same client_msg_id")
	}
}

// Open implements transport.Handler: it spawns the session actor of a new
// connection. The session is supervised by the sessions strategy; the
// socket lives in its props, so a restart keeps it.
func (n *Node) Open(c *transport.Conn) (transport.Peer, error) {
	return n.attach(c)
}

func (n *Node) attach(c conn) (transport.Peer, error) {
	id := fmt.Sprintf("s%d", n.nextSession.Add(1))
	sh := &sessionShared{id: id, conn: c, codec: c.Codec(), rooms: make(map[string]*joined)}
	if a, ok := c.(interface{ Claims() *auth.Claims }); ok {
		sh.claims = a.Claims() // a token checked at the handshake
	}
	props := actor.PropsFromProducer(func() actor.Actor { return newSession(n, sh) }, n.sessionOpts...)
	pid, err := n.System.Root.SpawnNamed(props, "session-"+id)
	if err != nil {
		return nil, fmt.Errorf("actors: spawn session: %w", err)
	}
	return peer{sys: n.System, pid: pid}, nil
}

// peer forwards what a socket reads to its session actor.
type peer struct {
	sys *actor.ActorSystem
	pid *actor.PID
}

func (p peer) Tell(msg proto.Message) { p.sys.Root.Send(p.pid, msg) }

func (n *Node) register(pid *actor.PID) {
	if _, loaded := n.live.LoadOrStore(pidKey(pid), pid); !loaded {
		n.liveCount.Add(1)
	}
}

func (n *Node) unregister(pid *actor.PID) {
	if _, ok := n.live.LoadAndDelete(pidKey(pid)); ok {
		n.liveCount.Add(-1)
	}
}

// Sessions reports how many session actors are alive.
func (n *Node) Sessions() int { return int(n.liveCount.Load()) }

// eachSession sends msg to every live session.
func (n *Node) eachSession(msg proto.Message) {
	n.live.Range(func(_, v any) bool {
		n.System.Root.Send(v.(*actor.PID), msg)
		return true
	})
}

// InjectFault makes one actor of a kind fail, for tests and staging: a
// random live session ("session"), the named room ("room"), or presence
// ("presence"). drop makes a session abort its socket instead of panicking.
// It does nothing unless Config.Faults enables that kind, and reports
// whether a target was found.
func (n *Node) InjectFault(kind, room string, drop bool) bool {
	if !n.cfg.Faults.Enabled(kind) {
		return false
	}
	msg := &parleypb.InjectFault{Room: room, Drop: drop}
	switch kind {
	case "session":
		if pid := n.randomSession(); pid != nil {
			n.System.Root.Send(pid, msg)
			return true
		}
	case "room":
		n.Directory.Tell(n.System.Root, msg)
		return true
	case "presence":
		n.System.Root.Send(n.presence, msg)
		return true
	}
	return false
}

// randomSession picks a live session uniformly (reservoir sampling over the
// registry, so no list is kept for it).
func (n *Node) randomSession() *actor.PID {
	var pick *actor.PID
	i := 0
	n.live.Range(func(_, v any) bool {
		i++
		if rand.IntN(i) == 0 {
			pick = v.(*actor.PID)
		}
		return true
	})
	return pick
}

// Shutdown asks every session to close with 1001, waits for them to stop,
// then stops the rooms (which write what they hold) and presence. It returns
// how many sessions it asked to close, and ctx.Err() when time ran out.
func (n *Node) Shutdown(ctx context.Context) (int, error) {
	closed := n.Sessions()
	n.eachSession(&parleypb.Shutdown{Reason: "server shutting down"})
	var err error
	for n.Sessions() > 0 && err == nil {
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	if n.BeforeStop != nil {
		if e := n.BeforeStop(ctx); e != nil && err == nil {
			err = e
		}
	}
	for _, pid := range []*actor.PID{n.rooms, n.presence} {
		if e := stopWithin(ctx, n.System, pid); e != nil && err == nil {
			err = e
		}
	}
	n.System.EventStream.Unsubscribe(n.deadSub)
	if !n.System.IsStopped() {
		n.System.Shutdown()
	}
	return closed, err
}

// stopWithin poisons an actor (it handles what is already in its mailbox
// first) and polls until it is gone. Polling the registry avoids a future,
// whose Result/Respond race (protoactor-go #1145) trips -race.
func stopWithin(ctx context.Context, sys *actor.ActorSystem, pid *actor.PID) error {
	sys.Root.Poison(pid)
	for {
		if _, alive := sys.ProcessRegistry.GetLocal(pid.GetId()); !alive {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("actors: %s did not stop in time: %w", pid.GetId(), ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// PublishPresenceNow makes presence publish this node's share, even an
// empty one: a cluster calls it once it has set PublishPresence, so that a
// restarted node's first share (a later start time) outranks what its
// previous process left in the gossip.
func (n *Node) PublishPresenceNow() { n.System.Root.Send(n.presence, publishNow{}) }

// Presence is the node's presence actor (a cluster sends it other
// members' shares).
func (n *Node) Presence() *actor.PID { return n.presence }

// RoomIndex is the node's rooms actor: it routes to local rooms, and lists
// the rooms active on this node (a RoomsQuery).
func (n *Node) RoomIndex() *actor.PID { return n.rooms }

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

// RoomGrainProps are the props of a room hosted as a cluster grain: a
// rooms actor that hosts just that room (as its child, under the room
// strategy, with the same passivation as on a single node) and stops when
// the room passivates.
func (n *Node) RoomGrainProps(h GrainHost) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor {
		r := newRoomsRouter(n)
		r.grain = &h
		return r
	}, actor.WithSupervisor(n.roomStrategy()))
}

// pidKey identifies a PID as a map key (a *PID is not comparable by value).
func pidKey(p *actor.PID) string { return p.GetAddress() + "/" + p.GetId() }

// minLevel drops records below a level; it lets Proto.Actor log through our
// handler without its INFO chatter.
type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(a), h.min}
}
func (h minLevel) WithGroup(g string) slog.Handler { return minLevel{h.Handler.WithGroup(g), h.min} }
