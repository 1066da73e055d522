// Package cluster runs a Parley node as a member of a Proto.Actor cluster:
// rooms become virtual actors (grains of kind "room", placed by consistent
// hashing with disthash) reachable from every member under their name, and
// presence is merged from every member's share, which each member's
// presence actor sends the others (package actors). Membership comes from
// one of Proto.Actor's providers (Consul, etcd, Kubernetes) or, for a
// static list of peers (automanaged), from Parley's own, which drops a
// peer that stops answering only after a grace period, since the library
// never lets a dropped member back in, and tells a member split from the
// others to leave (removal.go); nothing here decides where a room lives.
//
// What this package adds is the armour the library lacks in this version
// (see docs/PROTOACTOR.md): lookups run off the actor's thread with a
// per-attempt timeout and retries below an overall deadline, rooms are
// re-resolved when the topology changes or their node's endpoint dies,
// members of a room lost with its node re-join (and re-send unanswered
// posts), messages that reach a room just after it stopped are routed
// again instead of lost, and a room activated on a node that does not own
// it forwards to the owner and stops (single activation). Two activations
// that still overlap cannot both acknowledge a sequence number: the
// PostgreSQL store's (room, seq) key fences them.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/asynkron/protoactor-go/eventstream"
	"github.com/asynkron/protoactor-go/remote"
	"google.golang.org/grpc"

	"github.com/parleychat/parley/actors"
	"github.com/parleychat/parley/actors/actorpb"
)

// Kind is the cluster kind of rooms.
const Kind = "room"

// maxRemoteMessage is the largest batch of messages a member accepts from
// another (see Start).
const maxRemoteMessage = 256 << 20

// Config says how to join a cluster. Zero values mean the defaults below.
type Config struct {
	// Name is the cluster's name; members of different names ignore each
	// other. Default "parley".
	Name string
	// Provider finds the members: "automanaged", "consul", "etcd" or "k8s".
	Provider string
	// Bind is the host:port this member's actors listen on (gRPC) for the
	// other members. Default 127.0.0.1:7070.
	Bind string
	// Advertise is the host:port other members reach Bind at, when it
	// differs (NAT, containers). Default: Bind.
	Advertise string
	// Peers (automanaged) are the health endpoints (host:port) of every
	// member, this one included.
	Peers []string
	// Health (automanaged) is this member's health endpoint port; it must
	// be one of Peers.
	Health int
	// Refresh (automanaged, consul) is how often membership is checked.
	// Default 500ms. It bounds how fast a killed member is noticed.
	Refresh time.Duration
	// DownAfter (automanaged) drops a peer whose health checks have failed
	// this long; one whose port refuses connections (its process is gone)
	// is dropped at once. Default 5s. Proto.Actor never lets a dropped
	// member back in, so a live peer starved of CPU for a moment must not
	// be dropped for it.
	DownAfter time.Duration
	// Endpoints (etcd) are the etcd servers; Consul is the Consul agent's
	// address (empty: CONSUL_HTTP_ADDR or 127.0.0.1:8500). Kubernetes needs
	// nothing: the pod's service account and namespace are used.
	Endpoints []string
	Consul    string
	// HeartbeatTimeout drops a member whose gossip heartbeats stopped this
	// long, even if its provider still lists it (a hung process). Default
	// 5s. Too short for CPU-starved members, it drops live ones, and each
	// drop takes a node's sessions out of every room.
	HeartbeatTimeout time.Duration
	// RequestTimeout bounds one attempt to find a room's owner. Default 1s.
	RequestTimeout time.Duration
	// Deadline is how long messages wait for a room that cannot be found
	// before their senders get UNAVAILABLE. Default 10s.
	Deadline time.Duration
	Logger   *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = "parley"
	}
	if c.Bind == "" {
		c.Bind = "127.0.0.1:7070"
	}
	if c.Refresh <= 0 {
		c.Refresh = 500 * time.Millisecond
	}
	if c.DownAfter <= 0 {
		c.DownAfter = 5 * time.Second
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = time.Second
	}
	if c.HeartbeatTimeout <= 0 {
		c.HeartbeatTimeout = 5 * time.Second
	}
	if c.Deadline <= 0 {
		c.Deadline = 10 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Cluster is this node's membership: it implements actors.Cluster, given
// to the node in its Config (New, then actors.NewNode, which calls Start).
type Cluster struct {
	cfg  Config
	log  *slog.Logger
	host actors.ClusterHost
	c    *pcluster.Cluster
	// started is when Start ran (Unix ms, 0 before): this process's
	// presence shares carry it, so a restarted node's outrank its
	// previous process's.
	started atomic.Int64
	router  atomic.Pointer[actor.PID]
	mu      sync.Mutex                // orders the first topology and the router's start
	latest  *pcluster.ClusterTopology // under mu
	blocked []string                  // under mu: ids topologies dropped, oldest first (removal.go)
	sub     *eventstream.Subscription
	// owners is the latest view of the membership, for "who owns room x".
	owners atomic.Pointer[pcluster.Rendezvous]
	// Stats counts what the armour did.
	Stats Stats
	left  atomic.Bool
	// lookups counts the goroutines finding rooms (the library's lookup
	// blocks); Leave waits for them.
	lookups sync.WaitGroup
	// removed is closed when another member removed this one for good
	// (removal.go); removedBy says who, written before the close.
	removed    chan struct{}
	removeOnce sync.Once
	removedBy  string
	// losingSince is when judge first found this member the loser of a
	// split, zero while it is not (removal.go).
	verdictMu   sync.Mutex
	losingSince time.Time
}

// Stats counts cluster events, for metrics and tests.
type Stats struct {
	// Lost counts rooms found dead with their node; Rerouted messages that
	// reached a stopped room and were routed again; Retries lookups tried
	// again; Expired messages failed after waiting Deadline for their room.
	// (Rooms activated on a member that did not own them are counted in
	// actors.Stats.Moved.)
	Lost, Rerouted, Retries, Expired atomic.Int64
	// Removed is 1 once another member removed this one (removal.go).
	Removed atomic.Int64
	// Members is the current number of members.
	Members atomic.Int64
}

var _ actors.Cluster = (*Cluster)(nil)

// New checks cfg and returns a Cluster to give a node in its
// actors.Config; the node starts it (Start) once its own actors run, and
// leaves it (Leave) when it shuts down.
func New(cfg Config) (*Cluster, error) {
	cfg = cfg.withDefaults()
	host, _, err := splitHostPort(cfg.Bind)
	if err == nil && cfg.Advertise == "" && (host == "0.0.0.0" || host == "::") {
		err = errors.New("a wildcard host cannot be advertised to other members; set -cluster-advertise")
	}
	if err != nil {
		return nil, fmt.Errorf("-cluster-bind %q: %w", cfg.Bind, err)
	}
	switch cfg.Provider {
	case "automanaged", "consul", "etcd", "k8s":
	default:
		return nil, fmt.Errorf("-cluster-provider %q: want automanaged, consul, etcd or k8s", cfg.Provider)
	}
	cl := &Cluster{cfg: cfg, log: cfg.Logger.With("cluster", cfg.Name), removed: make(chan struct{})}
	cl.owners.Store(pcluster.NewRendezvous())
	return cl, nil
}

// Directory finds rooms anywhere in the cluster, through this member's
// router (started by Start, before the node serves).
func (cl *Cluster) Directory() actors.Directory { return directory{cl: cl} }

// Start makes the node a cluster member: it registers the room kind,
// starts remoting and the provider, and the router that finds rooms.
func (cl *Cluster) Start(h actors.ClusterHost) (err error) {
	cfg := cl.cfg
	cl.host = h
	host, port, _ := splitHostPort(cfg.Bind)
	provider, err := newProvider(cfg)
	if err != nil {
		return err
	}
	if p, ok := provider.(*peersProvider); ok {
		// Members tell each other whom they see and blocked, and the
		// loser of a split leaves (removal.go). Only this provider has a
		// channel between members outside Proto.Actor's remoting, which
		// a member that blocked another refuses.
		p.report, p.judge = cl.report, cl.judge
	}
	// A fan-out to a node's share of a big room is one Relay naming every
	// session there (some 490 KB for 19,500), and the endpoint writer sends
	// up to 1,000 queued messages as one gRPC message: gRPC's default 4 MiB
	// limit on what a member receives was reached, and a member that
	// refuses a message loses the connection, and with it every session's
	// watch there. 256 MiB bounds a batch instead of one fan-out's size.
	ropts := []remote.ConfigOption{remote.WithServerOptions(grpc.MaxRecvMsgSize(maxRemoteMessage))}
	if cfg.Advertise != "" {
		ropts = append(ropts, remote.WithAdvertisedHost(cfg.Advertise))
	}
	kind := pcluster.NewKind(Kind, h.RoomGrain(actors.GrainHost{
		Name: func(ctx actor.Context) string { return pcluster.GetClusterIdentity(ctx).Identity },
		Owns: cl.owns,
	}))
	pc := pcluster.Configure(cfg.Name, provider, disthash.New(), remote.Configure(host, port, ropts...),
		pcluster.WithKinds(kind),
		pcluster.WithRequestTimeout(cfg.RequestTimeout),
		pcluster.WithRequestLog(false),
		// A member that stops gossiping (its process hangs) is dropped
		// after this, even if its provider still lists it.
		pcluster.WithHeartbeatExpiration(cfg.HeartbeatTimeout),
	)
	cl.c = pcluster.New(h.System, pc)

	// Subscribe before the member starts, so the first topology is seen.
	es := h.System.EventStream
	cl.sub = es.Subscribe(cl.onEvent)
	defer func() {
		if err != nil {
			es.Unsubscribe(cl.sub)
			cl.sub = nil
		}
	}()
	// StartMember panics on a provider error (and sleeps 1s): turn that
	// into an error naming the flags.
	if err := func() (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("%v", p)
			}
		}()
		cl.c.StartMember()
		return nil
	}(); err != nil {
		return fmt.Errorf("cluster: join as %s with provider %s: %w", cfg.Bind, cfg.Provider, err)
	}
	cl.started.Store(time.Now().UnixMilli())
	// The router is spawned once remoting runs, so its PID carries this
	// member's address (rooms elsewhere send it Terminated notices).
	router, err := h.System.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return newRouter(cl) }), "cluster-rooms")
	if err != nil {
		return fmt.Errorf("cluster: start the rooms router: %w", err)
	}
	if _, err := h.System.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return relay{} }), actors.RelayName); err != nil {
		return fmt.Errorf("cluster: start the relay: %w", err)
	}
	// Topology events before now went nowhere but cl.latest (the member
	// list's own accessors are not safe to call from here).
	cl.mu.Lock()
	cl.router.Store(router)
	if cl.latest != nil {
		h.System.Root.Send(router, cl.latest)
	}
	cl.mu.Unlock()
	cl.log.Info("joined the cluster", "member", cl.c.ActorSystem.ID, "address", cl.c.ActorSystem.Address(), "provider", cfg.Provider)
	return nil
}

// PresenceOrigin is this member's address and when it joined (Unix ms);
// "" before it joined and after it left.
func (cl *Cluster) PresenceOrigin() (string, int64) {
	started := cl.started.Load()
	if started == 0 || cl.left.Load() {
		return "", 0
	}
	return cl.Address(), started
}

// PeerPresences are the presence actors of the other members.
func (cl *Cluster) PeerPresences() []*actor.PID {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	var out []*actor.PID
	if cl.latest != nil {
		for _, m := range cl.latest.Members {
			if m.Address() != cl.Address() {
				out = append(out, actor.NewPID(m.Address(), actors.PresenceName))
			}
		}
	}
	return out
}

// Address is this member's actor address (host:port).
func (cl *Cluster) Address() string { return cl.host.System.Address() }

// Owner is the address of the member that owns room, by this member's view.
func (cl *Cluster) Owner(room string) string {
	return cl.owners.Load().GetByClusterIdentity(pcluster.NewClusterIdentity(room, Kind))
}

func (cl *Cluster) owns(room string) bool {
	owner := cl.Owner(room)
	return owner == "" || owner == cl.Address()
}

// onEvent runs on the publisher's goroutine: it only hands events to
// actors.
func (cl *Cluster) onEvent(evt any) {
	root := cl.host.System.Root
	toRouter := func(msg any) {
		if router := cl.router.Load(); router != nil { // else: not started yet
			root.Send(router, msg)
		}
	}
	switch e := evt.(type) {
	case *pcluster.ClusterTopology:
		rdv := pcluster.NewRendezvous()
		rdv.UpdateMembers(e.Members)
		cl.owners.Store(rdv)
		cl.Stats.Members.Store(int64(len(e.Members)))
		addrs := make([]string, 0, len(e.Members))
		for _, m := range e.Members {
			addrs = append(addrs, m.Address())
		}
		// By address: providers name members their own way (etcd, k8s),
		// gossip by the actor system's id.
		root.Send(cl.host.Presence, &actorpb.PeerSet{Addresses: addrs})
		cl.mu.Lock()
		cl.latest = e
		cl.noteLeft(e.Left)
		toRouter(e)
		cl.mu.Unlock()
		for _, m := range e.Joined {
			cl.log.Info("member joined", "member", m.Id, "address", m.Address())
		}
		for _, m := range e.Left {
			cl.log.Warn("member left", "member", m.Id, "address", m.Address())
		}
	case *remote.EndpointTerminatedEvent, *remote.EndpointConnectedEvent:
		toRouter(e)
	case *actor.DeadLetterEvent:
		// A room message that reached a room just after it stopped (it
		// passivated, moved, or its node died) is routed again: the
		// directory finds the room's current activation.
		if m, ok := e.Message.(actors.RoomMessage); ok && reroutable(m) && !cl.left.Load() {
			toRouter(&reroute{msg: m, dead: e.PID})
		}
	}
}

// reroutable: requests a room must see. Typing notices are not worth it,
// and deliveries go to sessions.
func reroutable(m actors.RoomMessage) bool {
	switch m.(type) {
	case *actorpb.RoomJoin, *actorpb.RoomLeave, *actorpb.RoomPost, *actorpb.RoomHistory,
		*actorpb.RoomWho, *actorpb.CloseRoom, *actorpb.InjectFault:
		return true
	}
	return false
}

// Leave leaves the cluster gracefully (the others drop this member at once
// instead of after a failed poll), which stops the rooms hosted here (they
// write what they hold; their members on other nodes re-join wherever the
// rooms land), and waits for the room lookups still running. The node's
// Shutdown calls it once its sessions have closed.
func (cl *Cluster) Leave(ctx context.Context) error {
	if cl.c == nil || cl.left.Swap(true) {
		return nil // never started, or already left
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		cl.c.Shutdown(true)
		cl.lookups.Wait()
	}()
	if cl.sub != nil {
		cl.host.System.EventStream.Unsubscribe(cl.sub)
	}
	select {
	case <-done:
		cl.log.Info("left the cluster")
		return nil
	case <-ctx.Done():
		return fmt.Errorf("cluster: leaving took too long: %w", ctx.Err())
	}
}

func splitHostPort(hp string) (string, int, error) {
	host, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port <= 0 || port > 65535 || host == "" {
		return "", 0, errors.New("want host:port with a port from 1 to 65535")
	}
	return host, port, nil
}
