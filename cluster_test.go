package main_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"

	"github.com/parleychat/parley/client"
	"github.com/parleychat/parley/internal/testenv"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/proto/codec"
)

// The cluster tests run three real parley processes on 127.0.0.1, members
// of one Proto.Actor cluster (automanaged provider, PostgreSQL history).
// Separate processes, because the library cannot run several members in
// one process under -race (docs/PROTOACTOR.md).

// clusterBinary is the command built without -race: the cluster code of
// Proto.Actor (this version) has data races of its own (#1131 disthash
// topology vs lookup, #1145 futures) that a -race build reports and exits
// on. Parley's own cluster code runs under -race in cluster/cluster_test.go
// (a one-member cluster in process).
func clusterBinary(t *testing.T) string { return buildParley(t, false) }

// member is one node of a test cluster.
type member struct {
	t             *testing.T
	i             int
	http, bind    string
	admin         string
	health        int
	args          []string
	log           *os.File
	mu            sync.Mutex
	p             *proc
	up            atomic.Bool
	stderrPrinted bool
}

type testCluster struct {
	t       *testing.T
	members []*member
}

func portOf(t *testing.T, addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// automanaged is the provider flags of the automanaged provider: every
// member's health endpoint in the list.
func automanaged(m *member, all []*member) []string {
	var peers []string
	for _, o := range all {
		peers = append(peers, fmt.Sprintf("127.0.0.1:%d", o.health))
	}
	return []string{"-cluster-provider", "automanaged", "-cluster-peers", strings.Join(peers, ","),
		"-cluster-health", strconv.Itoa(m.health), "-cluster-refresh", "300ms"}
}

// startCluster starts n members that find each other with the provider
// flags that provider gives each.
func startCluster(t *testing.T, n int, provider func(m *member, all []*member) []string) *testCluster {
	t.Helper()
	return startMembers(t, n, provider, true)
}

// startClusterInTurn starts the members one after another, each once the
// one before serves. The etcd provider of this Proto.Actor version lists
// the members, then starts watching: a member that registers in between is
// never seen (docs/PROTOACTOR.md), so members started at the same moment
// can disagree for good.
func startClusterInTurn(t *testing.T, n int, provider func(m *member, all []*member) []string) *testCluster {
	t.Helper()
	return startMembers(t, n, provider, false)
}

func startMembers(t *testing.T, n int, provider func(m *member, all []*member) []string, together bool) *testCluster {
	t.Helper()
	c := &testCluster{t: t}
	addrs := testenv.FreeAddrs(t, 4*n)
	for i := 0; i < n; i++ {
		a := addrs[4*i:]
		m := &member{t: t, i: i, http: a[0], admin: a[1], bind: a[2], health: portOf(t, a[3])}
		c.members = append(c.members, m)
	}
	pg := testenv.PostgresSchema(t) // the members share one schema; the next test gets a new one
	for _, m := range c.members {
		m.args = append([]string{"-addr", m.http, "-admin-addr", m.admin, "-log-level", "info",
			"-store", pg, "-rate", "100000", "-burst", "100000", "-cluster-bind", m.bind,
			"-max-handshake-rate", "0", "-max-conns-per-ip", "0", "-cluster-request-timeout", "500ms", "-shutdown-timeout", "15s"},
			provider(m, c.members)...)
		f, err := os.Create(filepath.Join(clusterLogDir(t), fmt.Sprintf("node%d.log", m.i)))
		if err != nil {
			t.Fatal(err)
		}
		m.log = f
	}
	// Members start together: each one's start waits for the others'
	// health endpoints only as long as its first poll.
	var wg sync.WaitGroup
	for _, m := range c.members {
		if !together {
			m.start()
			continue
		}
		wg.Add(1)
		go func() { defer wg.Done(); m.start() }()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, m := range c.members {
			m.stop(syscall.SIGKILL)
			if t.Failed() {
				m.printLog()
			}
		}
	})
	c.waitMembers()
	return c
}

func (m *member) start() {
	cmd := exec.Command(clusterBinary(m.t), m.args...)
	cmd.Stdout, cmd.Stderr = m.log, m.log
	if err := cmd.Start(); err != nil {
		m.t.Error(err)
		return
	}
	p := &proc{cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	m.mu.Lock()
	m.p = p
	m.mu.Unlock()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-p.done:
			p.done <- err
			m.t.Errorf("node %d exited at start: %v", m.i, err)
			return
		default:
		}
		if ready(m.http) {
			m.up.Store(true)
			return
		}
		if time.Now().After(deadline) {
			m.t.Errorf("node %d not ready after 30s", m.i)
			return
		}
		time.Sleep(50 * time.Millisecond) // polling the process's readiness
	}
}

func ready(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	fmt.Fprintf(c, "GET /readyz HTTP/1.0\r\nHost: x\r\n\r\n")
	buf := make([]byte, 16)
	n, _ := c.Read(buf)
	return bytes.HasPrefix(buf[:n], []byte("HTTP/1.0 200")) || bytes.HasPrefix(buf[:n], []byte("HTTP/1.1 200"))
}

// stop signals the process and waits for it; it returns its exit error.
func (m *member) stop(sig syscall.Signal) error {
	m.up.Store(false)
	m.mu.Lock()
	p := m.p
	m.mu.Unlock()
	if p == nil || p.cmd.ProcessState != nil {
		return nil
	}
	p.cmd.Process.Signal(sig)
	select {
	case err := <-p.done:
		p.done <- err
		return err
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		return fmt.Errorf("node %d did not stop within 30s of %v", m.i, sig)
	}
}

func (m *member) printLog() {
	if m.stderrPrinted {
		return
	}
	m.stderrPrinted = true
	b, _ := os.ReadFile(m.log.Name())
	if len(b) > 8000 {
		b = b[len(b)-8000:]
	}
	m.t.Logf("node %d log (tail):\n%s", m.i, b)
}

func (m *member) url() string { return "ws://" + m.http + "/ws" }

// waitMembers waits until every live node answers joins in rooms
// owned by each member.
func (c *testCluster) waitMembers() {
	c.t.Helper()
	if c.t.Failed() {
		c.t.FailNow()
	}
	// Every member must see all the live ones: one that misses another
	// hosts that one's rooms too, a second activation of each.
	live := len(c.live())
	for _, m := range c.live() {
		waitFor(c.t, 20*time.Second, func() error {
			if n := clusterMembers(c.t, m); n != live {
				return fmt.Errorf("node %d sees %d members of %d", m.i, n, live)
			}
			return nil
		})
	}
	rooms := c.roomsOwned(c.live(), 1, fmt.Sprintf("probe-%x", rand.Uint32()))
	for _, m := range c.members {
		if !m.up.Load() {
			continue
		}
		waitFor(c.t, 20*time.Second, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			cl, err := client.Dial(ctx, m.url(), codec.Proto, nil)
			if err != nil {
				return err
			}
			defer cl.CloseNow()
			if err := cl.Hello(ctx, "probe", false); err != nil {
				return err
			}
			for _, r := range rooms {
				if _, err := cl.Join(ctx, r, nil); err != nil {
					return fmt.Errorf("node %d: join %s: %w", m.i, r, err)
				}
			}
			return nil
		})
	}
}

func (c *testCluster) live() []*member {
	var out []*member
	for _, m := range c.members {
		if m.up.Load() {
			out = append(out, m)
		}
	}
	return out
}

// owner computes, as the cluster does (rendezvous hashing over the
// members' actor addresses), which member hosts a room.
func (c *testCluster) owner(among []*member, room string) *member {
	rdv := pcluster.NewRendezvous()
	var ms pcluster.Members
	for _, m := range among {
		port := portOf(c.t, m.bind)
		ms = append(ms, &pcluster.Member{Host: "127.0.0.1", Port: int32(port), Id: m.bind, Kinds: []string{"room"}})
	}
	rdv.UpdateMembers(ms)
	addr := rdv.GetByClusterIdentity(pcluster.NewClusterIdentity(room, "room"))
	for _, m := range among {
		if m.bind == addr {
			return m
		}
	}
	c.t.Fatalf("no owner for %s among %d members (got %q)", room, len(among), addr)
	return nil
}

// roomsOwned names k rooms owned by each of among.
func (c *testCluster) roomsOwned(among []*member, k int, prefix string) []string {
	per := map[*member][]string{}
	var out []string
	for i := 0; len(out) < k*len(among); i++ {
		r := fmt.Sprintf("%s-%d", prefix, i)
		o := c.owner(among, r)
		if len(per[o]) < k {
			per[o] = append(per[o], r)
			out = append(out, r)
		}
	}
	return out
}

// observer connects to a node as "observer", whom the presence checks
// leave out.
func observer(ctx context.Context, url string) (*client.Client, error) {
	cl, err := client.Dial(ctx, url, codec.Proto, nil)
	if err != nil {
		return nil, err
	}
	if err := cl.Hello(ctx, "observer", false); err != nil {
		cl.CloseNow()
		return nil, err
	}
	return cl, nil
}

func withoutObserver(members []*parleypb.Member) map[string]uint32 {
	got := map[string]uint32{}
	for _, m := range members {
		if m.GetName() != "observer" {
			got[m.GetName()] = m.GetDevices()
		}
	}
	return got
}

// connected asks a node who is connected to any of rooms: a user's
// question (who without a room) covers the rooms the user joined, so the
// observer joins them all first. Only the names are returned: a user in
// several of the rooms is counted once per room (the per-room check counts
// connections).
func connected(ctx context.Context, url string, rooms []string) (map[string]bool, error) {
	cl, err := observer(ctx, url)
	if err != nil {
		return nil, err
	}
	defer cl.CloseNow()
	for _, r := range rooms {
		if _, err := cl.Join(ctx, r, u64(1<<62)); err != nil { // far ahead: no replay wanted
			return nil, err
		}
	}
	if err := cl.Who(ctx); err != nil {
		return nil, err
	}
	for {
		env, err := cl.Next(ctx)
		if err != nil {
			return nil, err
		}
		// Never empty: the observer is connected to the rooms too.
		if p := env.GetPresence(); p != nil && p.GetRoom() == "" && p.GetMembers() != nil {
			names := map[string]bool{}
			for name := range withoutObserver(p.GetMembers()) {
				names[name] = true
			}
			return names, nil
		}
	}
}

// roomMembers joins a room as the observer and returns its members.
func roomMembers(ctx context.Context, url, room string) (map[string]uint32, error) {
	cl, err := observer(ctx, url)
	if err != nil {
		return nil, err
	}
	defer cl.CloseNow()
	ack, err := cl.Join(ctx, room, u64(1<<62)) // far ahead: no replay wanted
	if err != nil {
		return nil, err
	}
	return withoutObserver(ack.GetMembers()), nil
}

func sameCounts(want, got map[string]uint32) error {
	if len(want) == len(got) {
		ok := true
		for k, v := range want {
			if got[k] != v {
				ok = false
			}
		}
		if ok {
			return nil
		}
	}
	keys := func(m map[string]uint32) []string {
		var out []string
		for k, v := range m {
			out = append(out, fmt.Sprintf("%s:%d", k, v))
		}
		sort.Strings(out)
		return out
	}
	return fmt.Errorf("want %v, got %v", keys(want), keys(got))
}

// chatLoad is the clients of a cluster test: each is homed on a node and
// moves to another live node when its own is down.
type chatLoad struct {
	c       *testCluster
	rooms   []string
	clients []*resumingClient
	stop    chan struct{}
	done    chan error

	mu       sync.Mutex
	firstAck map[string]time.Time // room -> first ack after mark
	mark     time.Time
}

func startChat(c *testCluster, rooms []string, n int) *chatLoad {
	l := &chatLoad{c: c, rooms: rooms, stop: make(chan struct{}), done: make(chan error, n), firstAck: map[string]time.Time{}}
	for i := 0; i < n; i++ {
		home := c.members[i%len(c.members)]
		url := func() string {
			if home.up.Load() {
				return home.url()
			}
			live := c.live()
			if len(live) == 0 {
				return home.url()
			}
			return live[rand.IntN(len(live))].url()
		}
		cl := newResumingClient(fmt.Sprintf("u%d", i), url, rooms[i%len(rooms)], rooms[(i+1)%len(rooms)])
		cl.pace = 20 * time.Millisecond
		cl.watch = i%4 == 0
		cl.onAck = func(room string, at time.Time) {
			l.mu.Lock()
			defer l.mu.Unlock()
			if !l.mark.IsZero() && at.After(l.mark) {
				if _, ok := l.firstAck[room]; !ok {
					l.firstAck[room] = at
				}
			}
		}
		l.clients = append(l.clients, cl)
	}
	for _, cl := range l.clients {
		go cl.run(l.stop, l.done)
	}
	return l
}

func (l *chatLoad) acked() int {
	n := 0
	for _, c := range l.clients {
		c.mu.Lock()
		n += len(c.acked)
		c.mu.Unlock()
	}
	return n
}

// markNow starts timing the first acknowledged post of each room.
func (l *chatLoad) markNow() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.mark = time.Now()
	l.firstAck = map[string]time.Time{}
	return l.mark
}

// progress waits until n more posts are acknowledged, every room has had
// one since the mark, and no client has more than its post in flight.
func (l *chatLoad) progress(t *testing.T, n int, within time.Duration) {
	t.Helper()
	from := l.acked()
	waitFor(t, within, func() error {
		if got := l.acked(); got < from+n {
			return fmt.Errorf("%d posts acked of %d wanted", got-from, n)
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, r := range l.rooms {
			if _, ok := l.firstAck[r]; !ok && !l.mark.IsZero() {
				return fmt.Errorf("room %s has no acknowledged post since the mark", r)
			}
		}
		return nil
	})
}

func (l *chatLoad) finish(t *testing.T) {
	t.Helper()
	close(l.stop)
	for range l.clients {
		<-l.done
	}
}

// expectPresence checks, on every live node, who is connected to the
// rooms (every client) and who is in each room (every client of the room,
// one connection each).
func (l *chatLoad) expectPresence(t *testing.T) {
	t.Helper()
	all := map[string]bool{}
	inRoom := map[string]map[string]uint32{}
	for _, c := range l.clients {
		all[c.name] = true
		for _, r := range c.rooms {
			if inRoom[r] == nil {
				inRoom[r] = map[string]uint32{}
			}
			inRoom[r][c.name] = 1
		}
	}
	for _, m := range l.c.live() {
		waitFor(t, 15*time.Second, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			got, err := connected(ctx, m.url(), l.rooms)
			if err != nil {
				return err
			}
			if !maps.Equal(all, got) {
				return fmt.Errorf("connected to the rooms, seen from node %d: want %v, got %v", m.i, slices.Sorted(maps.Keys(all)), slices.Sorted(maps.Keys(got)))
			}
			for _, r := range l.rooms {
				got, err := roomMembers(ctx, m.url(), r)
				if err != nil {
					return err
				}
				if err := sameCounts(inRoom[r], got); err != nil {
					return fmt.Errorf("members of %s seen from node %d: %w", r, m.i, err)
				}
			}
			return nil
		})
	}
}

// TestClusterFailover kills one of three nodes with SIGKILL while clients
// spread over all three chat in rooms homed on every node. The dead node's
// rooms re-activate on survivors (PostgreSQL continues their seqs), its
// clients reconnect elsewhere and resume; nothing acknowledged is lost or
// duplicated, and presence is exact again everywhere.
func TestClusterFailover(t *testing.T) {
	c := startCluster(t, 3, automanaged)
	rooms := c.roomsOwned(c.members, 2, fmt.Sprintf("fo-%x", rand.Uint32()))
	victim := c.members[0]
	var affected []string
	for _, r := range rooms {
		if c.owner(c.members, r) == victim {
			affected = append(affected, r)
		}
	}
	l := startChat(c, rooms, 12)
	l.markNow()
	l.progress(t, 300, 30*time.Second)
	l.expectPresence(t)

	kill := l.markNow()
	victim.stop(syscall.SIGKILL) // its exit error is the kill's
	l.progress(t, 300, 40*time.Second)
	l.mu.Lock()
	var worst time.Duration
	for _, r := range rooms {
		d := l.firstAck[r].Sub(kill)
		tag := ""
		if c.owner(c.members, r) == victim {
			tag = " (homed on the killed node)"
			worst = max(worst, d)
		}
		t.Logf("kill → first acknowledged post in %s%s: %v", r, tag, d.Round(time.Millisecond))
	}
	l.mu.Unlock()
	t.Logf("failover: %v from SIGKILL to the first acknowledged post in every room the dead node hosted (%d rooms)", worst.Round(time.Millisecond), len(affected))

	l.expectPresence(t)
	// The operator's view is the cluster's: rooms listed from one node
	// include those hosted by the other, and a kick sent to one node
	// closes the user's connection on another (4002).
	b, cnode := c.live()[0], c.live()[1]
	ctx := testCtx(t, 20*time.Second)
	resp, err := http.Get("http://" + b.admin + "/rooms")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, r := range rooms {
		if !strings.Contains(string(body), r) {
			t.Errorf("GET /rooms on node %d lacks %s (hosted on node %d): %s", b.i, r, c.owner(c.live(), r).i, body)
		}
	}
	victimClient, err := client.Dial(ctx, cnode.url(), codec.Proto, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer victimClient.CloseNow()
	if err := victimClient.Hello(ctx, "mallory", false); err != nil {
		t.Fatal(err)
	}
	if _, err := victimClient.Join(ctx, rooms[0], nil); err != nil {
		t.Fatal(err)
	}
	relays := 0
	for _, m := range c.live() {
		resp, err := http.Get("http://" + m.admin + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(body), "\n") {
			if v, ok := strings.CutPrefix(line, `parley_cluster_events_total{event="relay"} `); ok {
				n, _ := strconv.Atoi(v)
				relays += n
			}
		}
	}
	if relays == 0 {
		t.Error("no fan-out went to another member as one Relay: the relay path is untested")
	}
	t.Logf("%d fan-outs relayed to another member as one message", relays)
	resp, err = http.Post("http://"+b.admin+"/notice", "application/json", strings.NewReader(`{"text":"maintenance at noon"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	nextEvent(t, ctx, victimClient, "the notice sent to another node", func(e *parleypb.Envelope) bool {
		return e.GetNotice().GetText() == "maintenance at noon"
	})
	req, _ := http.NewRequest("POST", "http://"+b.admin+"/kick", strings.NewReader(`{"user":"mallory","reason":"spam"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"connections_closed":1`) {
		t.Fatalf("kick on node %d of a user on node %d: %d %s", b.i, cnode.i, resp.StatusCode, body)
	}
	if code, reason := closeCode(t, ctx, victimClient); code != parleypb.CloseCode_CLOSE_CODE_KICKED || !strings.Contains(reason, "spam") {
		t.Fatalf("kicked across nodes: %d %q, want 4002", code, reason)
	}
	l.finish(t)
	total, retried := auditRooms(t, c.live()[0].url(), rooms, l.clients)
	t.Logf("%d posts acknowledged, %d re-sent by clients after reconnecting; every one stored once, in order; no client saw a gap or a duplicate", total, retried)

}

// TestClusterRollingRestart restarts each of three nodes in turn (SIGTERM,
// drain, start again) while clients chat; nothing acknowledged is lost.
func TestClusterRollingRestart(t *testing.T) {
	c := startCluster(t, 3, automanaged)
	rooms := c.roomsOwned(c.members, 2, fmt.Sprintf("rr-%x", rand.Uint32()))
	l := startChat(c, rooms, 9)
	l.markNow()
	l.progress(t, 200, 30*time.Second)
	for _, m := range c.members {
		start := time.Now()
		if err := m.stop(syscall.SIGTERM); err != nil {
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 0 {
				t.Fatalf("node %d did not drain cleanly: %v", m.i, err)
			}
		}
		drained := time.Since(start)
		m.start()
		if t.Failed() {
			t.FailNow()
		}
		t.Logf("node %d restarted (drain %v, back after %v)", m.i, drained.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
		l.markNow()
		l.progress(t, 100, 40*time.Second)
	}
	l.expectPresence(t)
	l.finish(t)
	total, retried := auditRooms(t, c.members[0].url(), rooms, l.clients)
	t.Logf("%d posts acknowledged across 3 restarts, %d re-sent after reconnecting; every one stored once, in order", total, retried)
}

// clusterLogDir keeps the nodes' logs: under PARLEY_CLUSTER_LOGS when set
// (to read them after the run), else in the test's temporary directory.
func clusterLogDir(t *testing.T) string {
	if d := os.Getenv("PARLEY_CLUSTER_LOGS"); d != "" {
		d = filepath.Join(d, t.Name())
		os.MkdirAll(d, 0o755)
		return d
	}
	return t.TempDir()
}

// TestClusterEtcdProvider: the same cluster found through etcd (Debian's
// etcd-server, started here on a free port): two members chat across
// nodes; one is killed, and its rooms come back on the other once its lease
// expires.
func TestClusterEtcdProvider(t *testing.T) {
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Fatal("etcd is missing: the etcd provider test runs Debian's etcd-server; run ./test.sh, which installs it (apt-get install -y etcd-server)")
	}
	a := testenv.FreeAddrs(t, 2)
	client, peer := a[0], a[1]
	etcd := exec.Command(bin, "--data-dir", t.TempDir(), "--name", "parley-test",
		"--listen-client-urls", "http://"+client, "--advertise-client-urls", "http://"+client,
		"--listen-peer-urls", "http://"+peer, "--initial-advertise-peer-urls", "http://"+peer,
		"--initial-cluster", "parley-test=http://"+peer, "--log-level", "error")
	etcd.Stdout, etcd.Stderr = os.Stderr, os.Stderr
	if err := etcd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { etcd.Process.Kill(); etcd.Wait() })
	waitFor(t, 20*time.Second, func() error {
		resp, err := http.Get("http://" + client + "/health")
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), `"health":"true"`) {
			return fmt.Errorf("etcd not healthy yet: %s", body)
		}
		return nil
	})

	c := startClusterInTurn(t, 2, func(*member, []*member) []string {
		return []string{"-cluster-provider", "etcd", "-cluster-etcd", client}
	})
	rooms := c.roomsOwned(c.members, 2, fmt.Sprintf("etcd-%x", rand.Uint32()))
	l := startChat(c, rooms, 6)
	l.markNow()
	l.progress(t, 150, 30*time.Second)
	l.expectPresence(t)

	kill := l.markNow()
	c.members[0].stop(syscall.SIGKILL)
	l.progress(t, 150, 40*time.Second)
	var worst time.Duration
	l.mu.Lock()
	for _, r := range rooms {
		worst = max(worst, l.firstAck[r].Sub(kill))
	}
	l.mu.Unlock()
	t.Logf("etcd provider: %v from SIGKILL to the first acknowledged post in every room (the dead member's lease, 3 s in the library, decides it)", worst.Round(time.Millisecond))
	l.expectPresence(t)
	l.finish(t)
	total, _ := auditRooms(t, c.live()[0].url(), rooms, l.clients)
	t.Logf("%d posts acknowledged; every one stored once, in order", total)
}
