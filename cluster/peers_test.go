package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"

	"github.com/parleychat/parley/internal/testenv"
)

// logRecorder keeps the messages logged at each level.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string // "LEVEL message"
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, rec.Level.String()+" "+rec.Message)
	return nil
}
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *logRecorder) WithGroup(string) slog.Handler      { return r }

// count is how many messages at level start with prefix.
func (r *logRecorder) count(level slog.Level, prefix string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		if strings.HasPrefix(m, level.String()+" "+prefix) {
			n++
		}
	}
	return n
}

var testSelf = &pcluster.Member{Id: "self", Host: "127.0.0.1", Port: 7070, Kinds: []string{Kind}}

// healthServer is a peer's health endpoint answering as member id of
// cluster name; hang makes it answer nothing until the request is given up.
type healthServer struct {
	*httptest.Server
	id, name atomic.Value
	hang     atomic.Bool
}

func newHealthServer(t *testing.T, id, name string) *healthServer {
	h := &healthServer{}
	h.id.Store(id)
	h.name.Store(name)
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.hang.Load() {
			<-r.Context().Done()
			return
		}
		_ = json.NewEncoder(w).Encode(healthNode{ID: h.id.Load().(string), ClusterName: h.name.Load().(string),
			Address: "127.0.0.1", Port: 9000, Kinds: []string{Kind}})
	}))
	t.Cleanup(h.Close)
	return h
}

func testClient(t *testing.T) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func ids(ms pcluster.Members) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Id)
	}
	slices.Sort(out)
	return out
}

func wantIDs(t *testing.T, ms pcluster.Members, want ...string) {
	t.Helper()
	slices.Sort(want)
	if got := ids(ms); !slices.Equal(got, want) {
		t.Fatalf("members %v, want %v", got, want)
	}
}

// observePoll polls addr for real and records the result at now.
func observePoll(t *testing.T, s *peerSet, c *http.Client, addr string, now time.Time) error {
	t.Helper()
	n, err := poll(t.Context(), c, addr, time.Second)
	s.observe(addr, n, err, now)
	return err
}

func TestPeerHealthyIsMember(t *testing.T) {
	peer := newHealthServer(t, "b", "parley")
	addr := peer.Listener.Addr().String()
	s := newPeerSet("parley", testSelf, []string{addr}, 5*time.Second, slog.New(slog.DiscardHandler))
	t0 := time.Now()
	wantIDs(t, s.members(t0), "self") // before its first answer
	if err := observePoll(t, s, testClient(t), addr, t0); err != nil {
		t.Fatal(err)
	}
	ms := s.members(t0)
	wantIDs(t, ms, "self", "b")
	if m := ms[1]; m.Host != "127.0.0.1" || m.Port != 9000 || !slices.Equal(m.Kinds, []string{Kind}) {
		t.Fatalf("member %+v, want 127.0.0.1:9000 with kind %s", m, Kind)
	}
}

// A peer that stops answering (a CPU-starved process) stays a member until
// DownAfter has passed since its last answer; it is logged once as suspect
// and once as dropped, however many polls fail.
func TestPeerHangingDroppedAfterDownAfter(t *testing.T) {
	peer := newHealthServer(t, "b", "parley")
	addr := peer.Listener.Addr().String()
	logs := &logRecorder{}
	const downAfter = 5 * time.Second
	s := newPeerSet("parley", testSelf, []string{addr}, downAfter, slog.New(logs))
	c := testClient(t)
	t0 := time.Now()
	if err := observePoll(t, s, c, addr, t0); err != nil {
		t.Fatal(err)
	}
	peer.hang.Store(true)
	for i := 1; i <= 4; i++ {
		n, err := poll(t.Context(), c, addr, 20*time.Millisecond)
		if err == nil || errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("poll of a hanging peer: %v, want a timeout", err)
		}
		if s.observe(addr, n, err, t0.Add(time.Duration(i)*time.Second)) {
			t.Fatal("a timed-out poll changed the members")
		}
		wantIDs(t, s.members(t0.Add(time.Duration(i)*time.Second)), "self", "b")
	}
	if n := logs.count(slog.LevelWarn, "cluster peer suspect"); n != 1 {
		t.Fatalf("%d suspect warnings for 4 failed polls, want 1: %v", n, logs.msgs)
	}
	wantIDs(t, s.members(t0.Add(downAfter)), "self", "b")
	wantIDs(t, s.members(t0.Add(downAfter+time.Millisecond)), "self")
	wantIDs(t, s.members(t0.Add(downAfter+time.Second)), "self")
	if n := logs.count(slog.LevelError, "cluster peer dropped"); n != 1 {
		t.Fatalf("%d drop errors, want 1: %v", n, logs.msgs)
	}
	// Proto.Actor blocks a dropped member's id: its late answers do not
	// bring it back, but a restarted process (a new id) joins.
	peer.hang.Store(false)
	if err := observePoll(t, s, c, addr, t0.Add(downAfter+2*time.Second)); err != nil {
		t.Fatal(err)
	}
	wantIDs(t, s.members(t0.Add(downAfter+2*time.Second)), "self")
	peer.id.Store("b2")
	observePoll(t, s, c, addr, t0.Add(downAfter+3*time.Second))
	wantIDs(t, s.members(t0.Add(downAfter+3*time.Second)), "self", "b2")
}

// A suspect peer that answers again before DownAfter is a member as before,
// and its next failure is logged again.
func TestPeerSuspectRecovers(t *testing.T) {
	logs := &logRecorder{}
	s := newPeerSet("parley", testSelf, []string{"p:1"}, 5*time.Second, slog.New(logs))
	t0 := time.Now()
	ok := healthNode{ID: "b", ClusterName: "parley", Address: "127.0.0.1", Port: 9000}
	s.observe("p:1", ok, nil, t0)
	s.observe("p:1", healthNode{}, context.DeadlineExceeded, t0.Add(time.Second))
	if s.observe("p:1", ok, nil, t0.Add(4*time.Second)) {
		t.Fatal("a recovered peer changed the members")
	}
	wantIDs(t, s.members(t0.Add(8*time.Second)), "self", "b") // 4 s after its last answer
	s.observe("p:1", healthNode{}, context.DeadlineExceeded, t0.Add(9*time.Second))
	if w, a := logs.count(slog.LevelWarn, "cluster peer suspect"), logs.count(slog.LevelWarn, "cluster peer answers again"); w != 2 || a != 1 {
		t.Fatalf("%d suspect and %d recovery warnings, want 2 and 1: %v", w, a, logs.msgs)
	}
}

// A peer whose port refuses connections is gone: dropped on the first such
// poll, though it answered before and DownAfter is far off.
func TestPeerRefusedDroppedAtOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	s := newPeerSet("parley", testSelf, []string{addr}, time.Hour, slog.New(slog.DiscardHandler))
	t0 := time.Now()
	s.observe(addr, healthNode{ID: "b", ClusterName: "parley", Address: "127.0.0.1", Port: 9000}, nil, t0)
	wantIDs(t, s.members(t0), "self", "b")
	n, err := poll(t.Context(), testClient(t), addr, time.Second)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("poll of a closed port: %v, want connection refused", err)
	}
	if !s.observe(addr, n, err, t0.Add(time.Millisecond)) {
		t.Fatal("a refused poll did not change the members")
	}
	wantIDs(t, s.members(t0.Add(time.Millisecond)), "self")
}

func TestPeerOfAnotherClusterIsNotMember(t *testing.T) {
	peer := newHealthServer(t, "b", "elsewhere")
	addr := peer.Listener.Addr().String()
	logs := &logRecorder{}
	s := newPeerSet("parley", testSelf, []string{addr}, 5*time.Second, slog.New(logs))
	c := testClient(t)
	t0 := time.Now()
	for i := range 3 {
		if err := observePoll(t, s, c, addr, t0.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	wantIDs(t, s.members(t0.Add(2*time.Second)), "self")
	if n := logs.count(slog.LevelWarn, "cluster peer not a member"); n != 1 {
		t.Fatalf("%d warnings for 3 answers of another cluster, want 1: %v", n, logs.msgs)
	}
}

// A peer answering with another id restarted: its previous member leaves
// and the new one joins.
func TestPeerRestartReplacesMember(t *testing.T) {
	peer := newHealthServer(t, "b1", "parley")
	addr := peer.Listener.Addr().String()
	s := newPeerSet("parley", testSelf, []string{addr}, 5*time.Second, slog.New(slog.DiscardHandler))
	c := testClient(t)
	t0 := time.Now()
	observePoll(t, s, c, addr, t0)
	wantIDs(t, s.members(t0), "self", "b1")
	peer.id.Store("b2")
	if err := observePoll(t, s, c, addr, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	wantIDs(t, s.members(t0.Add(time.Second)), "self", "b2")
}

// startPeers starts a provider for this member (health on the first of
// peers) with publish recording the latest member list.
func startPeers(t *testing.T, cfg Config) (*peersProvider, func() []string) {
	t.Helper()
	var mu sync.Mutex
	var latest []string
	p := newPeersProvider(cfg.withDefaults())
	if err := p.start(testSelf, func(ms pcluster.Members) {
		mu.Lock()
		latest = ids(ms)
		mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Shutdown(true) })
	return p, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return latest
	}
}

func waitIDs(t *testing.T, latest func() []string, want ...string) {
	t.Helper()
	slices.Sort(want)
	testenv.WaitFor(t, 20*time.Second, func() error {
		if got := latest(); !slices.Equal(got, want) {
			return fmt.Errorf("members %v, want %v", got, want)
		}
		return nil
	})
}

// The endpoint answers this member's JSON, 503 once Shutdown began, and
// then refuses connections, which makes the peers drop it at once.
func TestHealthEndpoint(t *testing.T) {
	self := testenv.FreeAddrs(t, 1)[0]
	_, port, _ := net.SplitHostPort(self)
	health, _ := strconv.Atoi(port)
	p, _ := startPeers(t, Config{Name: "parley", Peers: []string{self}, Health: health})
	c := testClient(t)
	resp, err := c.Get("http://" + self + "/_health")
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	err = json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET /_health: %d %v %v", resp.StatusCode, resp.Header, err)
	}
	want := map[string]any{"id": "self", "cluster_name": "parley", "address": "127.0.0.1", "port": 7070.0,
		"kinds": []any{Kind}, "auto_manage_port": float64(health)}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("GET /_health = %v, want %v", got, want)
	}
	n, err := poll(t.Context(), c, self, time.Second)
	if err != nil || n.ID != "self" {
		t.Fatalf("poll of this member: %+v, %v", n, err)
	}

	p.Shutdown(true)
	rec := httptest.NewRecorder()
	p.health(rec, httptest.NewRequest("GET", "/_health", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("after Shutdown /_health answers %d, want 503", rec.Code)
	}
	if _, err := poll(t.Context(), c, self, time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("poll after Shutdown: %v, want connection refused", err)
	}
}

// Every listed peer polled for real by its own goroutine: a healthy one
// joins while another hangs, one of another cluster and a closed port stay
// out, and the healthy one is dropped as soon as its port closes, long
// before DownAfter.
func TestPeersPollLoop(t *testing.T) {
	healthy := newHealthServer(t, "b", "parley")
	hung := newHealthServer(t, "c", "parley")
	hung.hang.Store(true)
	other := newHealthServer(t, "d", "elsewhere")
	addrs := testenv.FreeAddrs(t, 2) // this member's health endpoint, and a closed port
	_, port, _ := net.SplitHostPort(addrs[0])
	health, _ := strconv.Atoi(port)
	peers := []string{addrs[0], healthy.Listener.Addr().String(), hung.Listener.Addr().String(),
		other.Listener.Addr().String(), addrs[1]}
	p, latest := startPeers(t, Config{Name: "parley", Peers: peers, Health: health,
		Refresh: 20 * time.Millisecond, DownAfter: time.Hour, Logger: testenv.Logger(t, slog.LevelInfo)})
	waitIDs(t, latest, "self", "b")
	if got := p.set.members(time.Now()); !slices.Equal(ids(got), []string{"b", "self"}) {
		t.Fatalf("peer set %v", ids(got))
	}
	healthy.Close()
	waitIDs(t, latest, "self")
	p.Shutdown(true)
}

func TestListenHealthPicksThisHost(t *testing.T) {
	self := testenv.FreeAddrs(t, 1)[0]
	_, port, _ := net.SplitHostPort(self)
	health, _ := strconv.Atoi(port)
	// 192.0.2.1 (TEST-NET-1) is no address of this machine: another host
	// with the same health port.
	ln, addr, err := listenHealth([]string{"192.0.2.1:" + port, self, "127.0.0.1:1"}, health)
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	if addr != self {
		t.Fatalf("listened on %s, want %s", addr, self)
	}
}

// Two members' providers carry each one's view (whom it sees and blocked)
// to the other's judge, keyed by health address; a member that is leaving
// answers 503 with no view, and the other forgets the view it had.
func TestPeersExchangeViews(t *testing.T) {
	addrs := testenv.FreeAddrs(t, 2)
	type judged struct {
		mu   sync.Mutex
		last map[string]view
	}
	start := func(id string, i int, v view, leaving *atomic.Bool) (*peersProvider, *judged) {
		_, port, _ := net.SplitHostPort(addrs[i])
		health, _ := strconv.Atoi(port)
		p := newPeersProvider(Config{Name: "parley", Peers: addrs, Health: health, Refresh: 20 * time.Millisecond,
			Logger: testenv.Logger(t, slog.LevelInfo)}.withDefaults())
		j := &judged{}
		p.report = func() (view, bool) { return v, !leaving.Load() }
		p.judge = func(m map[string]view) { j.mu.Lock(); j.last = m; j.mu.Unlock() }
		self := &pcluster.Member{Id: id, Host: "127.0.0.1", Port: int32(7070 + i), Kinds: []string{Kind}}
		if err := p.start(self, func(pcluster.Members) {}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { p.Shutdown(true) })
		return p, j
	}
	var aLeaving, bLeaving atomic.Bool
	va := view{ID: "a", Members: []string{"a"}, Blocked: []string{"b"}}
	vb := view{ID: "b", Members: []string{"a", "b"}}
	_, ja := start("a", 0, va, &aLeaving)
	pb, jb := start("b", 1, vb, &bLeaving)
	waitView := func(j *judged, addr string, want view) {
		t.Helper()
		testenv.WaitFor(t, 20*time.Second, func() error {
			j.mu.Lock()
			defer j.mu.Unlock()
			if got := j.last[addr]; fmt.Sprint(got) != fmt.Sprint(want) || len(j.last) != 1 {
				return fmt.Errorf("judged %v, want %s: %v", j.last, addr, want)
			}
			return nil
		})
	}
	waitView(ja, addrs[1], vb)
	waitView(jb, addrs[0], va)

	aLeaving.Store(true)
	testenv.WaitFor(t, 20*time.Second, func() error {
		if r := pb.set.reports(); len(r) != 0 {
			return fmt.Errorf("b still holds the views %v of a member that is leaving", r)
		}
		return nil
	})
}

// A member that was itself stalled past DownAfter (paused, starved) does
// not drop its peers on waking: their silence was its own.
func TestPeerSetForgivesOwnStall(t *testing.T) {
	rec := &logRecorder{}
	h := newHealthServer(t, "b", "parley")
	addr := h.Listener.Addr().String()
	s := newPeerSet("parley", testSelf, []string{addr}, time.Second, slog.New(rec))
	c := testClient(t)
	t0 := time.Now()
	if err := observePoll(t, s, c, addr, t0); err != nil {
		t.Fatal(err)
	}
	woke := t0.Add(10 * time.Second)
	s.forgive(woke, 10*time.Second)
	wantIDs(t, s.members(woke), "self", "b")
	if rec.count(slog.LevelWarn, "this member stalled") != 1 {
		t.Fatalf("the stall was not logged: %v", rec.msgs)
	}
	// A peer that is really silent is dropped a DownAfter later.
	wantIDs(t, s.members(woke.Add(2*time.Second)), "self")
}
