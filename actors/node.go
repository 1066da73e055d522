// Package actors owns Parley's actors: a session per connection, a room per
// room name, presence per node, and every actor type that joins rooms (the
// bots). They exchange only protobuf messages (package actorpb, and the wire
// protocol's own), so a room can live on another node.
//
// A Node runs them on one actor system. It knows nothing of sockets: package
// server hands it each connection as a Socket (Attach) and passes what the
// socket reads to the returned Inbox. Rooms are reached by name through a
// Directory, one node's or, when Config.Cluster is set, the cluster's: the
// node gets every collaborator in its Config, before any actor starts, and
// nothing rewires it afterwards. Actors start no goroutines; their state
// lives in Receive, which runs one message at a time.
//
// Any actor that joins rooms uses the member contract, Member (member.go):
// it joins, unpacks deliveries into the events not seen yet, in order, and
// resumes after a room restarts. The session uses it; bots/dice and
// bots/greeter are worked examples of new actor types, and
// docs/ARCHITECTURE.md walks through the package.
package actors

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/eventstream"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/actors/actorpb"
	"github.com/parleychat/parley/auth"
	"github.com/parleychat/parley/internal/logs"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/store"
	"github.com/parleychat/parley/supervision"
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
	// acknowledge retried posts once, and DedupBytes how much memory they
	// may take (the oldest are forgotten first). Zero means 10000 and 2 MiB.
	DedupWindow int
	DedupBytes  int
	// MaxRooms is how many rooms one session may be in. Zero means 100.
	MaxRooms int
	// MaxMembers caps a room's connections; joins past it get ROOM_FULL.
	// Zero means no cap.
	MaxMembers int
	// PresenceMaxUsers is the most connected users a room announces joins
	// and leaves to: past it, a delta would go to every member each time
	// anyone comes or goes (quadratic in the room's size), so a crowd's
	// members page through who is there instead (WhoRequest), as large
	// rooms do in other chat systems. Zero means no limit.
	PresenceMaxUsers int

	// peerPID, when set (tests), names another member's presence actor.
	peerPID func(addr string) *actor.PID
	// MaxTextRunes bounds a post's text. Zero means 4000.
	MaxTextRunes int
	// IdleTimeout closes a session that sent no application frame for this
	// long, with CLOSE_CODE_IDLE_TIMEOUT. Zero disables it.
	IdleTimeout time.Duration
	// RoomLinger is how long an empty room stays before it passivates. Zero
	// means 30s.
	RoomLinger time.Duration
	// Rate and Burst are the token bucket for client requests per session.
	// Zero means 20 per second with a burst of 40.
	Rate  float64
	Burst int
	// Strikes is how many rate-limited requests a session may make within
	// 10 seconds before it is closed with CLOSE_CODE_POLICY_VIOLATION. Zero
	// means 20.
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
	// Cluster, when set, makes the node a cluster member: NewNode starts it
	// once the node's own actors run, and rooms are then found anywhere in
	// the cluster through its Directory. Nil: a single node.
	Cluster Cluster
	// Hooks ask the application before a user joins or posts (zero: no
	// hooks).
	Hooks Hooks
	// Webhooks selects the events rooms write to the store's outbox for the
	// application (zero: none; room_webhooks.go).
	Webhooks Webhooks
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
	if c.DedupBytes <= 0 {
		c.DedupBytes = 2 << 20
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

// Node is one Parley server's actors.
type Node struct {
	cfg    Config
	log    *slog.Logger
	noisy  *slog.Logger // log, throttled: for lines a client can repeat at will
	System *actor.ActorSystem
	Stats  Stats

	dir      Directory // set before any actor starts, never changed
	presence *actor.PID
	rooms    *actor.PID
	// sessionOpts holds the options every session shares. Its strategy
	// must be one value: Proto.Actor keeps one guardian process per
	// strategy, so a strategy per session would leak one per connection.
	sessionOpts []actor.PropsOption

	// instance makes session ids unique across processes and nodes: a
	// random prefix per node, then a counter.
	instance    string
	nextSession atomic.Uint64
	live        sync.Map // session PID key -> *actor.PID
	liveCount   atomic.Int64
	deadSub     *eventstream.Subscription
}

// NewNode starts an actor system with the rooms directory and presence,
// and joins the cluster when Config.Cluster is set.
func NewNode(cfg Config) (*Node, error) {
	cfg = cfg.withDefaults()
	n := &Node{cfg: cfg, log: cfg.Logger, noisy: slog.New(logs.Throttle(cfg.Logger.Handler(), logThrottle, logBurst)),
		instance: strings.ToLower(rand.Text()[:8])}
	// Proto.Actor logs through its own slog logger (coloured, at INFO, on
	// stderr by default); route it into ours at WARN and above so it neither
	// floods nor escapes the operator's format.
	// A dead cluster peer is reported on every poll, twice a second:
	// repeated lines are throttled to a few per interval and a count.
	lib := slog.New(logs.Throttle(logs.MinLevel(cfg.Logger.With("lib", "protoactor").Handler(), slog.LevelWarn), logThrottle, logBurst))
	n.System = actor.NewActorSystem(
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return lib }),
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
	// Names no user may take (bots add theirs): kept across presence's
	// restarts, like the peers' shares.
	reserved := map[string]string{Skeleton(SystemName): SystemName}
	n.presence, err = root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return newPresence(n, peers, reserved) }, presenceOpts...), PresenceName)
	if err != nil {
		return nil, fmt.Errorf("actors: start presence: %w", err)
	}
	n.rooms, err = root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return newRoomsRouter(n) },
		actor.WithSupervisor(n.roomStrategy())), RoomsName)
	if err != nil {
		return nil, fmt.Errorf("actors: start rooms: %w", err)
	}
	n.dir = localDirectory{rooms: n.rooms}
	if cfg.Cluster != nil {
		n.dir = cfg.Cluster.Directory()
		if err := cfg.Cluster.Start(ClusterHost{System: n.System, Presence: n.presence, RoomGrain: n.roomGrainProps}); err != nil {
			n.Shutdown(context.Background())
			return nil, err
		}
		// A restarted node's first share (a later start time) outranks
		// what its previous process left in the gossip: publish at once,
		// even empty.
		root.Send(n.presence, publishNow{})
	}
	return n, nil
}

// Names of the node's well-known actors, the same on every member of a
// cluster (other members address them by name).
const (
	PresenceName = "presence"
	RoomsName    = "rooms"
	RelayName    = "relay"
)

// SystemName is the sender of what the server itself says; no user may
// take it, or a name that looks like it.
const SystemName = "system"

// Directory routes messages to rooms by name, on this node or anywhere in
// its cluster.
func (n *Node) Directory() Directory { return n.dir }

// Clustered reports whether rooms may live on other nodes.
func (n *Node) Clustered() bool { return n.cfg.Cluster != nil }

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
	if p, ok := message.(*actorpb.RoomPost); ok {
		errorTo(n.System.Root, p.GetSession(), p.GetRequestId(), p.GetRoom(), parleypb.ErrorCode_ERROR_CODE_UNAVAILABLE, "the room failed while handling this post; retry it with the same client_msg_id")
	}
}

// Attach spawns the session actor of a new connection and returns the
// Inbox that the connection's reader hands what it reads. The session is
// supervised by the sessions strategy; the socket lives in its props, so a
// restart keeps it.
func (n *Node) Attach(sock Socket) (*Inbox, error) {
	id := fmt.Sprintf("s%s-%d", n.instance, n.nextSession.Add(1))
	sh := &sessionShared{id: id, sock: sock, codec: sock.Codec(), claims: sock.Claims()}
	props := actor.PropsFromProducer(func() actor.Actor { return newSession(n, sh) }, n.sessionOpts...)
	pid, err := n.System.Root.SpawnNamed(props, "session-"+id)
	if err != nil {
		return nil, fmt.Errorf("actors: spawn session: %w", err)
	}
	return &Inbox{sys: n.System, pid: pid}, nil
}

// Inbox passes what a connection reads to its session actor. Its methods
// never block.
type Inbox struct {
	sys *actor.ActorSystem
	pid *actor.PID
}

// Frame hands the session a decoded client frame.
func (in *Inbox) Frame(env *parleypb.Envelope) { in.sys.Root.Send(in.pid, env) }

// BadFrame tells the session a frame did not decode.
func (in *Inbox) BadFrame(reason string) {
	in.sys.Root.Send(in.pid, &actorpb.BadFrame{Reason: reason})
}

// Closed tells the session its connection is gone; it stops.
func (in *Inbox) Closed(how *parleypb.CloseError) {
	in.sys.Root.Send(in.pid, &actorpb.ConnClosed{Code: int32(how.Code), Reason: how.Reason})
}

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
	msg := &actorpb.InjectFault{Room: room, Drop: drop}
	switch kind {
	case "session":
		if pid := n.randomSession(); pid != nil {
			n.System.Root.Send(pid, msg)
			return true
		}
	case "room":
		n.dir.Tell(n.System.Root, msg)
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
		if mrand.IntN(i) == 0 {
			pick = v.(*actor.PID)
		}
		return true
	})
	return pick
}

// Shutdown asks every session to close with GOING_AWAY, waits for them to
// stop, leaves the cluster (if any), then stops the rooms (which write what
// they hold) and presence. It returns how many sessions it asked to close,
// and ctx.Err() when time ran out.
func (n *Node) Shutdown(ctx context.Context) (int, error) {
	closed := n.Sessions()
	n.eachSession(&actorpb.Shutdown{Reason: "server shutting down"})
	var err error
	for n.Sessions() > 0 && err == nil {
		select {
		case <-ctx.Done():
			err = ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	if n.cfg.Cluster != nil {
		if e := n.cfg.Cluster.Leave(ctx); e != nil && err == nil {
			err = e
		}
	}
	for _, pid := range []*actor.PID{n.rooms, n.presence} {
		if pid == nil {
			continue
		}
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

// Lines that a client or a failing peer can repeat without end are written
// at most logBurst times per logThrottle, with a count of those dropped.
const (
	logThrottle = 10 * time.Second
	logBurst    = 5
)

// pidKey identifies a PID as a map key (a *PID is not comparable by value).
func pidKey(p *actor.PID) string { return p.GetAddress() + "/" + p.GetId() }
