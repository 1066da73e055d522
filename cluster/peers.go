package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
)

// peersProvider is -cluster-provider automanaged: a static list of members
// found by polling their health endpoints. It replaces Proto.Actor's own
// automanaged provider, which drops a member on one failed 2 s check; in
// this library version a dropped member is blocked by its id for good, so
// a live member that was starved of CPU for a moment never came back and
// its rooms got a second activation. Here a peer that stops answering is
// only suspect until DownAfter has passed, and only a refused connection
// (its process is gone) drops it at once.
type peersProvider struct {
	cfg     Config
	log     *slog.Logger
	timeout time.Duration
	client  *http.Client

	set     *peerSet
	srv     *http.Server
	node    healthNode // what /_health answers; set before it serves
	leaving atomic.Bool
	cancel  context.CancelFunc
	changed chan struct{}
	wg      sync.WaitGroup
	stop    sync.Once

	// report is this member's view of the membership for /_health (false:
	// it is leaving, answer 503); judge weighs the views the peers
	// reported (removal.go). Both are set by Cluster.Start; nil in tests
	// of the provider alone.
	report func() (view, bool)
	judge  func(map[string]view)
}

var _ pcluster.ClusterProvider = (*peersProvider)(nil)

// healthNode is what /_health answers. The fields and their JSON names are
// those of the library's automanaged NodeModel, so that members running
// either provider can read each other during an upgrade.
type healthNode struct {
	ID          string   `json:"id"`
	Address     string   `json:"address"`
	HealthPort  int      `json:"auto_manage_port"`
	Port        int      `json:"port"`
	Kinds       []string `json:"kinds"`
	ClusterName string   `json:"cluster_name"`
	// View is Parley's addition: who the member sees and whom it blocked,
	// so members can tell that they are split (removal.go).
	View *view `json:"view,omitempty"`
}

// errLeaving is a peer's 503: it began to shut down, and will refuse
// connections a moment later.
var errLeaving = errors.New("shutting down (503)")

func newPeersProvider(cfg Config) *peersProvider {
	// One poll must not outlive the period, or a slow peer's polls pile up;
	// but a check shorter than a second fails a peer that is merely busy.
	// Past DownAfter an answer no longer matters.
	timeout := min(max(cfg.Refresh, time.Second), cfg.DownAfter)
	transport := &http.Transport{
		// Health checks go straight to the peers, never through
		// HTTP_PROXY.
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: timeout}).DialContext,
		MaxIdleConnsPerHost: 1,
		DisableCompression:  true,
	}
	return &peersProvider{
		cfg:     cfg,
		log:     cfg.Logger.With("cluster", cfg.Name),
		timeout: timeout,
		client:  &http.Client{Transport: transport},
		changed: make(chan struct{}, 1),
	}
}

// StartMember serves this member's health endpoint and starts polling the
// others; the member list gets its first topology once every peer was
// polled once (or the poll timeout passed), so a starting member does not
// briefly claim every room for itself.
func (p *peersProvider) StartMember(c *pcluster.Cluster) error {
	host, port, err := c.ActorSystem.GetHostPort()
	if err != nil {
		return err
	}
	self := &pcluster.Member{Id: c.ActorSystem.ID, Host: host, Port: int32(port), Kinds: c.GetClusterKinds()}
	return p.start(self, c.MemberList.UpdateClusterTopology)
}

// StartClient: Parley never runs cluster clients.
func (p *peersProvider) StartClient(*pcluster.Cluster) error {
	return errors.New("-cluster-provider automanaged: cluster clients are not supported")
}

// start is StartMember without a Proto.Actor cluster: publish receives
// every member list (this member's included), every Refresh and at once
// when a peer joins or is dropped.
func (p *peersProvider) start(self *pcluster.Member, publish func(pcluster.Members)) error {
	ln, selfAddr, err := listenHealth(p.cfg.Peers, p.cfg.Health)
	if err != nil {
		return fmt.Errorf("-cluster-health %d: %w", p.cfg.Health, err)
	}
	p.node = healthNode{ID: self.Id, Address: self.Host, HealthPort: p.cfg.Health, Port: int(self.Port),
		Kinds: self.Kinds, ClusterName: p.cfg.Name}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_health", p.health)
	p.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second,
		ErrorLog: slog.NewLogLogger(p.log.Handler(), slog.LevelWarn)}
	var others []string
	for _, a := range p.cfg.Peers {
		if a != selfAddr && !slices.Contains(others, a) {
			others = append(others, a)
		}
	}
	p.set = newPeerSet(p.cfg.Name, self, others, p.cfg.DownAfter, p.log)
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel

	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		if err := p.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			p.log.Error("cluster health endpoint stopped; the other members will drop this one", "address", selfAddr, "error", err)
		}
	}()
	firstRound := make(chan struct{})
	var pending atomic.Int64
	pending.Store(int64(len(others)))
	if len(others) == 0 {
		close(firstRound)
	}
	for _, addr := range others {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.pollLoop(ctx, addr, func() {
				if pending.Add(-1) == 0 {
					close(firstRound)
				}
			})
		}()
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.publishLoop(ctx, firstRound, publish)
	}()
	p.log.Info("cluster health endpoint up", "address", selfAddr, "peers", others,
		"refresh", p.cfg.Refresh, "down_after", p.cfg.DownAfter)
	return nil
}

// listenHealth binds this member's entry of peers: the one with port
// health. Hosts that share a health port (a fixed list of machines) are
// told apart by which address this machine can bind.
func listenHealth(peers []string, health int) (net.Listener, string, error) {
	var errs []error
	for _, a := range peers {
		_, port, err := net.SplitHostPort(a)
		if err != nil || port != strconv.Itoa(health) {
			continue
		}
		ln, err := net.Listen("tcp", a)
		if err == nil {
			return ln, a, nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil, "", fmt.Errorf("no -cluster-peers entry has port %d", health)
	}
	return nil, "", errors.Join(errs...)
}

func (p *peersProvider) health(w http.ResponseWriter, _ *http.Request) {
	n, leaving := p.node, p.leaving.Load()
	if p.report != nil && !leaving {
		v, ok := p.report()
		n.View, leaving = &v, !ok
	}
	if leaving {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(n)
}

// pollLoop polls one peer every Refresh, on its own, so a peer that hangs
// delays no other.
func (p *peersProvider) pollLoop(ctx context.Context, addr string, polled func()) {
	tick := time.NewTicker(p.cfg.Refresh)
	defer tick.Stop()
	first := true
	for {
		n, err := poll(ctx, p.client, addr, p.timeout)
		if ctx.Err() != nil {
			return // shutting down: a cancelled poll says nothing of the peer
		}
		if p.set.observe(addr, n, err, time.Now()) {
			select {
			case p.changed <- struct{}{}:
			default:
			}
		}
		if err == nil && p.judge != nil {
			p.judge(p.set.reports())
		}
		if first {
			first = false
			polled()
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// publishLoop hands the member list to publish every Refresh, which also
// drops the peers silent for DownAfter, and at once after a change.
func (p *peersProvider) publishLoop(ctx context.Context, firstRound <-chan struct{}, publish func(pcluster.Members)) {
	wait := time.NewTimer(p.timeout)
	select {
	case <-ctx.Done():
		wait.Stop()
		return
	case <-firstRound:
	case <-wait.C:
	}
	wait.Stop()
	tick := time.NewTicker(p.cfg.Refresh)
	defer tick.Stop()
	prev := time.Now()
	for {
		now := time.Now()
		if stall := now.Sub(prev); stall > p.stallAfter() {
			p.set.forgive(now, stall)
		}
		prev = now
		publish(p.set.members(now))
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-p.changed:
		}
	}
}

// stallAfter is how late a publish round may come before this member
// counts itself stalled: paused (SIGSTOP, a frozen VM) or starved of CPU.
func (p *peersProvider) stallAfter() time.Duration {
	return max(2*p.cfg.Refresh, time.Second)
}

// Shutdown answers 503 to the polls already on their way, then closes the
// health endpoint, so the peers see a refused connection and drop this
// member at once instead of after DownAfter.
func (p *peersProvider) Shutdown(bool) error {
	p.stop.Do(func() {
		p.leaving.Store(true)
		if p.srv == nil {
			return // never started
		}
		p.cancel()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := p.srv.Shutdown(ctx); err != nil {
			p.srv.Close()
		}
		p.wg.Wait()
		p.client.CloseIdleConnections()
	})
	return nil
}

// poll asks the peer at addr for its /_health answer.
func poll(ctx context.Context, client *http.Client, addr string, timeout time.Duration) (healthNode, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/_health", nil)
	if err != nil {
		return healthNode{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return healthNode{}, err
	}
	defer func() {
		// Read to the end, so the connection is kept for the next poll.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
	}()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusServiceUnavailable:
		return healthNode{}, errLeaving
	default:
		return healthNode{}, fmt.Errorf("health check answered %s", resp.Status)
	}
	var n healthNode
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&n); err != nil {
		return healthNode{}, fmt.Errorf("health check answer: %w", err)
	}
	if n.ID == "" {
		return healthNode{}, errors.New("health check answer without a member id")
	}
	return n, nil
}

// peerSet is the membership as the polls see it, with the clock passed in.
type peerSet struct {
	cluster   string
	self      *pcluster.Member
	downAfter time.Duration
	log       *slog.Logger

	mu    sync.Mutex
	order []string
	peers map[string]*peerState // by health host:port
	// views are the views peers reported in their last answers, by health
	// host:port, kept while they answer: those of peers dropped before too
	// (a member this one dropped may still report, and its report is what
	// tells the two are split).
	views map[string]view
}

type peerState struct {
	member  *pcluster.Member // nil: not a member
	lastOK  time.Time        // of member's last answer
	suspect bool             // checks failed since lastOK (and that was logged)
	// dropped is the id this peer was last dropped with: the library
	// blocks it for good, so its answers no longer make it a member.
	dropped string
	// ignored is why the last answer was ignored, to log each reason once.
	ignored string
}

func newPeerSet(cluster string, self *pcluster.Member, peers []string, downAfter time.Duration, log *slog.Logger) *peerSet {
	s := &peerSet{cluster: cluster, self: self, downAfter: downAfter, log: log, peers: map[string]*peerState{}, views: map[string]view{}}
	for _, a := range peers {
		s.order = append(s.order, a)
		s.peers[a] = &peerState{}
	}
	return s
}

// observe records one poll of the peer at addr (its answer n, or err) made
// at now, and says whether the member list changed.
func (s *peerSet) observe(addr string, n healthNode, err error, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.peers[addr]
	if p == nil {
		return false
	}
	if err != nil {
		delete(s.views, addr) // a view holds only while its peer answers
		if p.member == nil {
			return false // never answered, or already dropped
		}
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			s.drop(addr, p, "its health port refuses connections (its process is gone or left the cluster)", err)
			return true
		case errors.Is(err, errLeaving):
			s.drop(addr, p, "it is shutting down", err)
			return true
		}
		if !p.suspect {
			p.suspect = true
			s.log.Warn("cluster peer suspect: its health check failed; it stays a member unless it fails for down-after",
				"peer", addr, "member", p.member.Id, "error", err, "last_answer", now.Sub(p.lastOK).Round(time.Millisecond), "down_after", s.downAfter)
		}
		return false
	}
	ignore := func(why string) bool {
		if p.ignored != why {
			p.ignored = why
			s.log.Warn("cluster peer not a member: "+why, "peer", addr, "member", n.ID, "cluster_name", n.ClusterName)
		}
		return false
	}
	switch {
	case n.ClusterName != s.cluster:
		if p.member != nil {
			s.drop(addr, p, "it answers for cluster "+strconv.Quote(n.ClusterName), nil)
			p.ignored = "it answers for another cluster"
			return true
		}
		return ignore("it answers for another cluster")
	case n.ID == s.self.Id:
		return ignore("it answers with this member's id (two -cluster-peers entries name this member)")
	}
	if n.View != nil && n.View.ID == n.ID {
		s.views[addr] = *n.View
	}
	switch {
	case n.ID == p.dropped:
		return ignore("it was dropped, and Proto.Actor never lets a dropped member back in; restart it to rejoin")
	}
	p.ignored = ""
	m := &pcluster.Member{Id: n.ID, Host: n.Address, Port: int32(n.Port), Kinds: n.Kinds}
	changed := true
	switch {
	case p.member == nil:
		s.log.Info("cluster peer up", "peer", addr, "member", m.Id, "address", m.Address())
	case p.member.Id != m.Id:
		s.log.Warn("cluster peer restarted: its previous member leaves, the new one joins",
			"peer", addr, "member", m.Id, "previous", p.member.Id, "address", m.Address())
	default:
		changed = p.member.Host != m.Host || p.member.Port != m.Port || !slices.Equal(p.member.Kinds, m.Kinds)
		if p.suspect {
			s.log.Warn("cluster peer answers again", "peer", addr, "member", m.Id, "silent_for", now.Sub(p.lastOK).Round(time.Millisecond))
		}
	}
	p.member, p.lastOK, p.suspect = m, now, false
	return changed
}

// members is the member list at now: this member, and each peer whose last
// answer is at most DownAfter old. A peer older than that is dropped here,
// so a hung poll cannot keep it in.
func (s *peerSet) members(now time.Time) pcluster.Members {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := pcluster.Members{s.self}
	for _, a := range s.order {
		p := s.peers[a]
		if p.member == nil {
			continue
		}
		if now.Sub(p.lastOK) > s.downAfter {
			s.drop(a, p, fmt.Sprintf("its health checks failed for %v (-cluster-down-after)", s.downAfter), nil)
			continue
		}
		out = append(out, p.member)
	}
	return out
}

// forgive gives every member a fresh DownAfter after this member itself
// stalled for stall: its polls did not run, or their answers were not
// read, so the peers' silence says nothing about them. Without it a
// member that wakes from a pause longer than DownAfter drops every peer
// at once, and Proto.Actor never takes a dropped member back.
func (s *peerSet) forgive(now time.Time, stall time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log.Warn("this member stalled (paused or starved of CPU); its peers get a fresh down-after before any is dropped", "stalled_for", stall.Round(time.Millisecond))
	for _, p := range s.peers {
		if p.member != nil {
			p.lastOK = now
		}
	}
}

// reports are the views the peers reported since they were last dropped.
func (s *peerSet) reports() map[string]view {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.views)
}

func (s *peerSet) drop(addr string, p *peerState, why string, err error) {
	// A view from before the drop is stale: the peer that left or died
	// would still be judged by it.
	delete(s.views, addr)
	attrs := []any{"peer", addr, "member", p.member.Id, "address", p.member.Address()}
	if err != nil {
		attrs = append(attrs, "error", err)
	}
	s.log.Error("cluster peer dropped: "+why, attrs...)
	p.dropped, p.member, p.suspect = p.member.Id, nil, false
}
