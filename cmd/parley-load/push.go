package main

// The push scenario: one room spanning a cluster, with more members than
// one process can hold sockets for (the hard limit on open files is per
// process), so several load-tool processes share the work through a
// directory (-dir):
//
//   - one poster (-role poster) provisions the room's members through the
//     server API (so their joins are not membership events, each of which
//     would go to every member), joins, writes the room's seq to seq, then
//     waits for every members process's ready.<proc> file; it posts single
//     messages, then steady rates, then (with -storm-duration) posts through
//     a reconnect storm: it writes storm, and whoever runs the scenario
//     kills a node. At the end it writes poster.json and done.
//   - members processes (-role members -users FROM-TO) connect their users
//     to the cluster's nodes in turn, from the -source-addrs in turn, join
//     with the poster's seq, and record for every post its latency (send
//     time in the post, wall clock: every process is on one machine), and
//     every event's seq: one that repeats is a duplicate, one that skips is
//     a hole. A connection that ends reconnects with full-jitter backoff to
//     another node and resumes from its last seq. After done they drain,
//     read poster.json for what was acknowledged, and write members.<proc>.json.
//   - -role report merges it all into one report (stdout: a summary, then
//     one JSON line).

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"

	"github.com/parleychat/parley/client"
	parleypb "github.com/parleychat/parley/proto"
	apiv1 "github.com/parleychat/parley/proto/api"
	"github.com/parleychat/parley/proto/api/apiv1connect"
	"github.com/parleychat/parley/proto/codec"
)

// pushConfig is the push scenario's part of the command line.
type pushConfig struct {
	role        string
	dir         string
	usersFrom   int
	usersTo     int // exclusive
	sources     []string
	room        string
	procs       int
	singles     int
	singleGap   time.Duration
	stepGap     time.Duration
	apiURL      string
	apiKey      string
	metricsURLs []string
	stormRate   float64
	stormFor    time.Duration
	backoffBase time.Duration
	backoffCap  time.Duration
}

// maxPushSteps bounds singles + rates + the storm: a member counts what it
// got per step in a fixed array.
const maxPushSteps = 48

func (p *pushConfig) flags(fs interface {
	StringVar(*string, string, string, string)
	IntVar(*int, string, int, string)
	DurationVar(*time.Duration, string, time.Duration, string)
	Float64Var(*float64, string, float64, string)
}, users, sources, metrics *string) {
	fs.StringVar(&p.role, "role", "", "push: poster, members or report")
	fs.StringVar(&p.dir, "dir", "", "push: the directory the processes of one run share")
	fs.StringVar(users, "users", "", "push members: the users this process connects, FROM-TO (TO excluded), numbered over the whole run")
	fs.StringVar(sources, "source-addrs", "", "push members: comma-separated local addresses to dial from, in turn (127.0.0.x: each has about 28,000 ephemeral ports)")
	fs.StringVar(&p.room, "room", "push", "push: the room")
	fs.IntVar(&p.procs, "procs", 1, "push poster: members processes to wait for")
	fs.IntVar(&p.singles, "singles", 5, "push poster: single posts, each timed alone, before the rate steps")
	fs.DurationVar(&p.singleGap, "single-gap", 3*time.Second, "push poster: time between single posts")
	fs.DurationVar(&p.stepGap, "step-gap", 5*time.Second, "push poster: quiet time after each rate step, for deliveries on the way")
	fs.StringVar(&p.apiURL, "api-url", "", "push poster: the server API's base URL (http://host:port); it creates the room and adds every user as a member first")
	fs.StringVar(&p.apiKey, "api-key", "", "push poster: server API key (or PARLEY_API_KEY)")
	fs.StringVar(metrics, "metrics", "", "push poster: comma-separated /metrics URLs of the nodes, in -pid order: relays and deliveries per step")
	fs.Float64Var(&p.stormRate, "storm-rate", 2, "push poster: posts/s during the storm")
	fs.DurationVar(&p.stormFor, "storm-duration", 0, "push poster: how long to post through a reconnect storm (0: no storm)")
	fs.DurationVar(&p.backoffBase, "backoff-base", 500*time.Millisecond, "push members: first reconnect delay bound (full jitter, doubling; the TypeScript SDK's default)")
	fs.DurationVar(&p.backoffCap, "backoff-cap", 10*time.Second, "push members: largest reconnect delay bound (the TypeScript SDK's default)")
}

func (p *pushConfig) parse(c *config, users, sources, metrics string) error {
	switch p.role {
	case "poster", "members", "report":
	default:
		return fmt.Errorf("-role %q: the push scenario wants poster, members or report", p.role)
	}
	if p.dir == "" {
		return errors.New("-dir is required for the push scenario")
	}
	if p.role == "members" {
		from, to, ok := strings.Cut(users, "-")
		a, err1 := strconv.Atoi(from)
		b, err2 := strconv.Atoi(to)
		if !ok || err1 != nil || err2 != nil || a < 0 || b <= a {
			return fmt.Errorf("-users %q: want FROM-TO with FROM < TO", users)
		}
		p.usersFrom, p.usersTo = a, b
	}
	for _, s := range strings.Split(sources, ",") {
		if s = strings.TrimSpace(s); s != "" {
			p.sources = append(p.sources, s)
		}
	}
	for _, s := range strings.Split(metrics, ",") {
		if s = strings.TrimSpace(s); s != "" {
			p.metricsURLs = append(p.metricsURLs, s)
		}
	}
	if p.apiKey == "" {
		p.apiKey = os.Getenv("PARLEY_API_KEY")
	}
	if p.singles+len(c.rates)+1 > maxPushSteps {
		return fmt.Errorf("-singles plus the -rate steps: at most %d", maxPushSteps-1)
	}
	if c.target != "parley" {
		return errors.New("the push scenario drives Parley only (it resumes by seq)")
	}
	return nil
}

func (p *pushConfig) user(i int) string { return fmt.Sprintf("m%d", i) }

const pushPosterUser = "pusher"

// ---------------------------------------------------------------- payload

// A push payload is "plp <step> <sent unix ns> " padded to the size: wall
// clock, since the sender and the receivers are different processes.
const pushMagic = "plp "

func makePushPayload(step int, sent time.Time, size int) string {
	b := make([]byte, 0, max(size, 48))
	b = append(b, pushMagic...)
	b = strconv.AppendInt(b, int64(step), 10)
	b = append(b, ' ')
	b = strconv.AppendInt(b, sent.UnixNano(), 10)
	b = append(b, ' ')
	for len(b) < size {
		b = append(b, 'x')
	}
	return string(b)
}

func parsePushPayload(b []byte) (step int, sent int64, ok bool) {
	rest, found := strings.CutPrefix(string(b), pushMagic) // (no copy: the compiler sees through it)
	if !found {
		return 0, 0, false
	}
	f := strings.SplitN(rest, " ", 3)
	if len(f) < 3 {
		return 0, 0, false
	}
	s, err1 := strconv.Atoi(f[0])
	t, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil || s < 0 || s >= maxPushSteps {
		return 0, 0, false
	}
	return s, t, true
}

// ---------------------------------------------------------------- files

// writeJSON writes v to dir/name atomically (a reader never sees half).
func writeJSON(dir, name string, v any) error {
	b, err := json.MarshalIndent(v, "", " ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, name))
}

func readJSON(dir, name string, v any) error {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// waitFile polls for dir/name until ctx ends.
func waitFile(ctx context.Context, dir, name string) error {
	for {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", name, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// ---------------------------------------------------------------- histograms across processes

// histJSON is a hist as a file holds it: the non-empty buckets.
type histJSON struct {
	N       uint64            `json:"n"`
	MaxNs   int64             `json:"max_ns"`
	Buckets map[string]uint64 `json:"buckets,omitempty"`
}

func (h *hist) export() histJSON {
	out := histJSON{N: h.n.Load(), MaxNs: h.max.Load(), Buckets: map[string]uint64{}}
	for i := range h.counts {
		if c := h.counts[i].Load(); c > 0 {
			out.Buckets[strconv.Itoa(i)] = c
		}
	}
	return out
}

func (h *hist) merge(in histJSON) {
	for k, c := range in.Buckets {
		if i, err := strconv.Atoi(k); err == nil && i >= 0 && i < histBuckets {
			h.counts[i].Add(c)
		}
	}
	h.n.Add(in.N)
	if in.MaxNs > h.max.Load() {
		h.max.Store(in.MaxNs)
	}
}

// ---------------------------------------------------------------- the poster

// pushStep is one phase of the poster's plan as poster.json records it.
type pushStep struct {
	ID     int     `json:"id"`
	Name   string  `json:"name"` // single-N, rate-R or storm
	Rate   float64 `json:"rate,omitempty"`
	Posted uint64  `json:"posted"`
	Acked  uint64  `json:"acked"`
	// Errors by kind (an acknowledgement that timed out, a refusal).
	Errors    map[string]uint64 `json:"errors,omitempty"`
	StartNs   int64             `json:"start_unix_ns"`
	EndNs     int64             `json:"end_unix_ns"` // the end of the quiet time after it
	ServerCPU float64           `json:"server_cpu_s"`
	// ToolCPU is the load processes' (poster and members), MachineCPU
	// every CPU's busy time, over the same window.
	ToolCPU    float64 `json:"tool_cpu_s"`
	MachineCPU float64 `json:"machine_cpu_s"`
	// Summed over the nodes' /metrics, from the step's start to its end.
	Relays     float64 `json:"relays"`
	Deliveries float64 `json:"server_deliveries"`
	FramesOut  float64 `json:"frames_out"`
}

type pushPosterFile struct {
	Room        string           `json:"room"`
	StartSeq    uint64           `json:"start_seq"`
	PIDs        []int            `json:"pids"`
	RSSBeforeKB []int64          `json:"rss_before_kb"`
	RSSAfterKB  []int64          `json:"rss_after_kb"`
	NodeConns   []map[string]int `json:"node_connections"` // parley_connections by codec, per node
	NodeRooms   []float64        `json:"node_rooms"`
	Provisioned int              `json:"provisioned"`
	ProvisionS  float64          `json:"provision_s"`
	ConnectS    float64          `json:"connect_s"` // from the poster's ready to every members process's
	Steps       []pushStep       `json:"steps"`
	Args        []string         `json:"args"`
}

func (r *loadRun) pushPoster(ctx context.Context, args []string) error {
	p := &r.cfg.push
	out := &pushPosterFile{Room: p.room, PIDs: r.cfg.pid, Args: args}
	if p.apiURL != "" {
		t0 := time.Now()
		n, err := r.provision(ctx)
		if err != nil {
			return fmt.Errorf("provisioning %s through %s: %w", p.room, p.apiURL, err)
		}
		out.Provisioned, out.ProvisionS = n, time.Since(t0).Seconds()
	}
	url := strings.Split(r.cfg.url, ",")[0]
	c, err := client.Dial(ctx, url, r.pushCodec(), &client.Options{OnEvent: func(*parleypb.Envelope) {}, OnRoomEvent: func(client.RawEvent) {}})
	if err != nil {
		return explainDial(url, err)
	}
	defer c.Close()
	if err := c.Hello(ctx, pushPosterUser, false); err != nil {
		return fmt.Errorf("poster hello: %w", err)
	}
	ack, err := c.Join(ctx, p.room, nil)
	if err != nil {
		return fmt.Errorf("poster join %s: %w", p.room, err)
	}
	out.StartSeq = ack.GetSeq()
	for _, pid := range r.cfg.pid {
		kb, _ := procRSS(pid)
		out.RSSBeforeKB = append(out.RSSBeforeKB, kb)
	}
	if err := writeJSON(p.dir, "seq", out.StartSeq); err != nil {
		return err
	}
	t0 := time.Now()
	r.setStatus(func() string { return fmt.Sprintf("waiting for %d members processes", p.procs) })
	for {
		m, _ := filepath.Glob(filepath.Join(p.dir, "ready.*"))
		if len(m) >= p.procs {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for members processes: %d of %d ready: %w", len(m), p.procs, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	out.ConnectS = time.Since(t0).Seconds()
	var tools pids
	ready, _ := filepath.Glob(filepath.Join(p.dir, "ready.*"))
	for _, f := range ready {
		var rd pushReady
		if readJSON(p.dir, filepath.Base(f), &rd) == nil && rd.PID > 0 {
			tools = append(tools, rd.PID)
		}
	}
	tools = append(tools, os.Getpid())
	r.settle(ctx)
	for i, pid := range r.cfg.pid {
		kb, _ := procRSS(pid)
		out.RSSAfterKB = append(out.RSSAfterKB, kb)
		if i < len(p.metricsURLs) {
			m := scrape(ctx, p.metricsURLs[i])
			conns := map[string]int{}
			for k, v := range m {
				if codecName, ok := strings.CutPrefix(k, `parley_connections{codec="`); ok {
					conns[strings.TrimSuffix(codecName, `"}`)] = int(v)
				}
			}
			out.NodeConns = append(out.NodeConns, conns)
			out.NodeRooms = append(out.NodeRooms, m["parley_rooms"])
		}
	}

	cpu, toolCPU := newCPUSampler(ctx, r.cfg.pid), newCPUSampler(ctx, tools)
	post := func(ctx context.Context, st *pushStep, errs *sync.Map) {
		text := makePushPayload(st.ID, time.Now(), r.cfg.msgBytes)
		actx, cancel := context.WithTimeout(ctx, r.cfg.ackTimeout)
		defer cancel()
		atomic.AddUint64(&st.Posted, 1)
		if _, err := c.Post(actx, p.room, text, ""); err != nil {
			v, _ := errs.LoadOrStore(errKind(err), new(atomic.Uint64))
			v.(*atomic.Uint64).Add(1)
			return
		}
		atomic.AddUint64(&st.Acked, 1)
	}
	run := func(st pushStep, d time.Duration, rate float64, quiet time.Duration, before func()) pushStep {
		r.setStatus(func() string {
			return fmt.Sprintf("%s: posted %d, acked %d", st.Name, atomic.LoadUint64(&st.Posted), atomic.LoadUint64(&st.Acked))
		})
		cpu0, tool0 := cpu.read(), toolCPU.read()
		machine0, _ := machineCPU()
		m0 := scrapeAll(ctx, p.metricsURLs)
		st.StartNs = time.Now().UnixNano()
		if before != nil {
			before()
		}
		var errs sync.Map
		var wg sync.WaitGroup
		if rate == 0 { // one post
			post(ctx, &st, &errs)
		} else {
			start := time.Now()
			var done uint64
			for ctx.Err() == nil {
				el := min(time.Since(start), d)
				for due := uint64(el.Seconds() * rate); done < due; done++ {
					wg.Go(func() { post(ctx, &st, &errs) })
				}
				if el >= d {
					break
				}
				time.Sleep(min(time.Duration(float64(time.Second)/rate), 20*time.Millisecond))
			}
		}
		wg.Wait()
		select {
		case <-ctx.Done():
		case <-time.After(quiet):
		}
		st.EndNs = time.Now().UnixNano()
		st.ServerCPU = (cpu.read() - cpu0).Seconds()
		st.ToolCPU = (toolCPU.read() - tool0).Seconds()
		machine1, _ := machineCPU()
		st.MachineCPU = (machine1 - machine0).Seconds()
		m1 := scrapeAll(ctx, p.metricsURLs)
		st.Relays = m1[`parley_cluster_events_total{event="relay"}`] - m0[`parley_cluster_events_total{event="relay"}`]
		st.Deliveries = m1["parley_deliveries_total"] - m0["parley_deliveries_total"]
		st.FramesOut = m1["parley_frames_out_total"] - m0["parley_frames_out_total"]
		errs.Range(func(k, v any) bool {
			if st.Errors == nil {
				st.Errors = map[string]uint64{}
			}
			st.Errors[k.(string)] = v.(*atomic.Uint64).Load()
			return true
		})
		fmt.Fprintf(r.stderr, "parley-load: %s: acked %d of %d, server %.2f CPU-s, %.0f relays, %.0f server deliveries\n",
			st.Name, st.Acked, st.Posted, st.ServerCPU, st.Relays, st.Deliveries)
		return st
	}
	id := 0
	for i := range p.singles {
		out.Steps = append(out.Steps, run(pushStep{ID: id, Name: fmt.Sprintf("single-%d", i+1)}, 0, 0, p.singleGap, nil))
		id++
	}
	for _, rate := range r.cfg.rates {
		out.Steps = append(out.Steps, run(pushStep{ID: id, Name: fmt.Sprintf("rate-%g", rate), Rate: rate}, r.cfg.duration, rate, p.stepGap, nil))
		id++
	}
	if p.stormFor > 0 {
		out.Steps = append(out.Steps, run(pushStep{ID: id, Name: "storm", Rate: p.stormRate}, p.stormFor, p.stormRate, p.stepGap,
			func() { writeJSON(p.dir, "storm", time.Now().UnixNano()) }))
	}
	if err := writeJSON(p.dir, "poster.json", out); err != nil {
		return err
	}
	if err := writeJSON(p.dir, "done", time.Now().UnixNano()); err != nil {
		return err
	}
	return ctx.Err()
}

// cpuSampler sums the CPU time of the server's processes, reading each a
// few times a second so that a node killed in the storm counts with what it
// used until it died.
type cpuSampler struct {
	pids pids
	mu   sync.Mutex
	last []time.Duration
}

func newCPUSampler(ctx context.Context, ps pids) *cpuSampler {
	s := &cpuSampler{pids: ps, last: make([]time.Duration, len(ps))}
	s.read()
	go func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.read()
			}
		}
	}()
	return s
}

func (s *cpuSampler) read() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	var sum time.Duration
	for i, pid := range s.pids {
		if d, err := procCPU(pid); err == nil {
			s.last[i] = d
		}
		sum += s.last[i]
	}
	return sum
}

func (r *loadRun) pushCodec() codec.Codec {
	if r.cfg.codec == "json" {
		return codec.JSON
	}
	return codec.Proto
}

// provision creates the room (public, the system's) and adds the poster
// and every user of the run as a member, 32 calls at a time.
func (r *loadRun) provision(ctx context.Context) (int, error) {
	p := &r.cfg.push
	api := apiv1connect.NewParleyServiceClient(http.DefaultClient, p.apiURL, connect.WithInterceptors(bearer(p.apiKey)))
	_, err := api.CreateRoom(ctx, connect.NewRequest(&apiv1.CreateRoomRequest{Room: p.room, Kind: parleypb.RoomKind_ROOM_KIND_PUBLIC, Title: "push"}))
	if err != nil && connect.CodeOf(err) != connect.CodeAlreadyExists {
		return 0, fmt.Errorf("create room: %w", err)
	}
	var added atomic.Int64
	r.setStatus(func() string {
		return fmt.Sprintf("provisioning: %d of %d members added", added.Load(), r.cfg.members+1)
	})
	users := make(chan string)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for range 32 {
		wg.Go(func() {
			for u := range users {
				if _, err := api.AddMember(ctx, connect.NewRequest(&apiv1.AddMemberRequest{Room: p.room, User: u})); err != nil {
					cancel(fmt.Errorf("add %s: %w", u, err))
					continue
				}
				added.Add(1)
			}
		})
	}
	for i := -1; i < r.cfg.members && ctx.Err() == nil; i++ {
		u := pushPosterUser
		if i >= 0 {
			u = p.user(i)
		}
		select {
		case users <- u:
		case <-ctx.Done():
		}
	}
	close(users)
	wg.Wait()
	return int(added.Load()), context.Cause(ctx)
}

func bearer(key string) connect.UnaryInterceptorFunc {
	return func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			req.Header().Set("Authorization", "Bearer "+key)
			return next(ctx, req)
		}
	}
}

// scrape reads a Prometheus text page into name{labels} → value; nil when
// it cannot.
func scrape(ctx context.Context, url string) map[string]float64 {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// scrapeAll sums the nodes' metrics.
func scrapeAll(ctx context.Context, urls []string) map[string]float64 {
	sum := map[string]float64{}
	for _, u := range urls {
		for k, v := range scrape(ctx, u) {
			sum[k] += v
		}
	}
	return sum
}

// ---------------------------------------------------------------- members

// pushMember is one measured connection, across its reconnections.
type pushMember struct {
	user string
	node int // index into the URLs of the connection now
	src  string

	mu       sync.Mutex
	c        *client.Client
	last     uint64 // the last seq received
	got      [maxPushSteps]uint32
	dups     uint64
	holes    uint64
	drops    int   // connections lost
	downNs   int64 // when the last one was lost (unix ns)
	resumes  int
	everDown bool
}

// pushReady is what a members process says once all its members joined.
type pushReady struct {
	Conns   int            `json:"conns"`
	PerNode map[string]int `json:"per_node"`
	PID     int            `json:"pid"`
}

// pushMembersFile is what a members process reports.
type pushMembersFile struct {
	Proc    string         `json:"proc"`
	Conns   int            `json:"conns"`
	PerNode map[string]int `json:"per_node"` // at the start, by URL
	Connect histJSON       `json:"connect"`  // dial + hello
	Join    histJSON       `json:"join"`
	// ConnectRetries counts initial connections tried again after failing.
	ConnectRetries uint64 `json:"connect_retries"`
	// Per step id: latency over every member, over the members never
	// disconnected (survivors), and how many posts members got.
	Latency   []histJSON `json:"latency"`
	Survivors []histJSON `json:"survivors"`
	Got       []uint64   `json:"got"`
	Lost      uint64     `json:"lost"` // acknowledged posts a member never got
	Dups      uint64     `json:"dups"`
	Holes     uint64     `json:"holes"` // seqs skipped over (lost, unless they were not posts)
	Foreign   uint64     `json:"foreign"`
	// The reconnect storm.
	Dropped      int               `json:"dropped"`       // members whose connection was lost
	Resumed      int               `json:"resumed"`       // of them, back in the room
	NotResumed   int               `json:"not_resumed"`   // still out at the end
	FirstDownNs  int64             `json:"first_down_ns"` // unix ns
	LastResumeNs int64             `json:"last_resume_ns"`
	Resume       histJSON          `json:"resume"`    // from losing the connection to joined again
	Handshake    histJSON          `json:"handshake"` // dial + hello of reconnections that succeeded
	Attempts     uint64            `json:"attempts"`
	Refusals     map[string]uint64 `json:"refusals"` // failed attempts, by reason
	CloseCodes   map[string]int    `json:"close_codes"`
	PerNodeEnd   map[string]int    `json:"per_node_end"`
}

type pushMembers struct {
	r      *loadRun
	p      *pushConfig
	urls   []string
	since  uint64
	ms     []*pushMember
	closed atomic.Bool // the run is over: connections that end now are not lost

	lastRecv              atomic.Int64
	received              atomic.Uint64
	foreign               atomic.Uint64
	latency, survivors    [maxPushSteps]hist
	dialed, join, resume  hist
	handshake             hist
	attempts              atomic.Uint64
	retries               atomic.Uint64 // initial connections tried again
	mu                    sync.Mutex
	refusals              map[string]uint64
	closeCodes            map[string]int
	firstDown, lastResume atomic.Int64
	down                  atomic.Int64 // members out of the room now
}

func (r *loadRun) pushMembers(ctx context.Context) error {
	p := &r.cfg.push
	pm := &pushMembers{r: r, p: p, urls: strings.Split(r.cfg.url, ","), refusals: map[string]uint64{}, closeCodes: map[string]int{}}
	r.setStatus(func() string { return "waiting for the poster's seq" })
	if err := waitFile(ctx, p.dir, "seq"); err != nil {
		return err
	}
	if err := readJSON(p.dir, "seq", &pm.since); err != nil {
		return err
	}
	proc := fmt.Sprintf("%d-%d", p.usersFrom, p.usersTo)
	n := p.usersTo - p.usersFrom
	pm.ms = make([]*pushMember, n)
	for i := range pm.ms {
		g := p.usersFrom + i
		m := &pushMember{user: p.user(g), node: g % len(pm.urls), last: pm.since}
		if len(p.sources) > 0 {
			m.src = p.sources[i%len(p.sources)]
		}
		pm.ms[i] = m
	}
	var opened, failed atomic.Int64
	r.setStatus(func() string {
		return fmt.Sprintf("connecting: %d/%d joined, %d failed", opened.Load(), n, failed.Load())
	})
	cctx, cancel := context.WithCancelCause(ctx)
	jobs := make(chan *pushMember)
	var wg sync.WaitGroup
	for range min(r.cfg.dialConcurrency, n) {
		wg.Go(func() {
			for m := range jobs {
				// A client retries a connection that failed, as the SDKs
				// do: a node's admission control (HTTP 503 or 429, with
				// Retry-After) as long as the run lasts, anything else
				// (a handshake that timed out on a busy node) five times.
				var err error
				for attempt, failures := 0, 0; failures < 5; attempt++ {
					if attempt > 0 {
						pm.retries.Add(1)
						wait := time.Duration(rand.Int64N(int64(pm.p.backoffBase) << min(attempt, 5)))
						var de *client.DialError
						if errors.As(err, &de) {
							wait += de.RetryAfter
						}
						select {
						case <-cctx.Done():
						case <-time.After(wait):
						}
					}
					if err = pm.connect(cctx, m, true); err == nil || cctx.Err() != nil {
						break
					}
					var de *client.DialError
					if !errors.As(err, &de) || (de.StatusCode != http.StatusServiceUnavailable && de.StatusCode != http.StatusTooManyRequests) {
						failures++
					}
				}
				if err != nil {
					failed.Add(1)
					cancel(fmt.Errorf("%s to %s: %w", m.user, pm.urls[m.node], err))
					continue
				}
				opened.Add(1)
			}
		})
	}
	for _, m := range pm.ms {
		select {
		case jobs <- m:
		case <-cctx.Done():
		}
	}
	close(jobs)
	wg.Wait()
	if err := context.Cause(cctx); err != nil {
		cancel(nil)
		pm.closeAll()
		return err
	}
	cancel(nil)
	perNode := map[string]int{}
	for _, m := range pm.ms {
		perNode[pm.urls[m.node]]++
	}
	if err := writeJSON(p.dir, "ready."+proc, pushReady{Conns: n, PerNode: perNode, PID: os.Getpid()}); err != nil {
		return err
	}
	// Keep every member connected until the run ends.
	kctx, stopKeeping := context.WithCancel(ctx)
	var keepers sync.WaitGroup
	for _, m := range pm.ms {
		keepers.Go(func() { pm.keep(kctx, m) })
	}
	r.setStatus(func() string {
		return fmt.Sprintf("%d members: %d posts received, %d out of the room", n, pm.received.Load(), pm.down.Load())
	})
	err := waitFile(ctx, p.dir, "done")
	// Drain: until nothing arrived for -drain and nobody is still
	// reconnecting (or the run's timeout).
	for err == nil && ctx.Err() == nil {
		quiet := time.Since(time.Unix(0, pm.lastRecv.Load())) >= r.cfg.drain
		if quiet && pm.down.Load() == 0 {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	pm.closed.Store(true)
	stopKeeping()
	keepers.Wait()
	var poster pushPosterFile
	if err == nil {
		err = readJSON(p.dir, "poster.json", &poster)
	}
	res := pm.result(proc, perNode, poster.Steps)
	pm.closeAll()
	if werr := writeJSON(p.dir, "members."+proc+".json", res); err == nil {
		err = werr
	}
	return err
}

// connect dials m's node, says hello and joins (again) from m's last seq.
func (pm *pushMembers) connect(ctx context.Context, m *pushMember, first bool) error {
	dctx, cancel := context.WithTimeout(ctx, pm.r.cfg.dialTimeout)
	defer cancel()
	t0 := time.Now()
	url := pm.urls[m.node]
	c, err := client.Dial(dctx, url, pm.r.pushCodec(), &client.Options{
		LocalAddr:   m.src,
		OnRoomEvent: func(ev client.RawEvent) { pm.onEvent(m, ev) },
		OnEvent:     func(*parleypb.Envelope) {},
	})
	if err != nil {
		var de *client.DialError
		if errors.As(err, &de) { // (its status and Retry-After decide the retry)
			return err
		}
		return explainDial(url, err)
	}
	if err := c.Hello(dctx, m.user, false); err != nil {
		c.CloseNow()
		return fmt.Errorf("hello: %w", err)
	}
	hs := time.Since(t0)
	m.mu.Lock()
	since := m.last
	m.c = c
	m.mu.Unlock()
	t1 := time.Now()
	if _, err := c.Join(dctx, pm.p.room, &since); err != nil {
		c.CloseNow()
		return fmt.Errorf("join %s: %w", pm.p.room, err)
	}
	if first {
		pm.dialed.Record(hs)
		pm.join.Record(time.Since(t1))
	} else {
		pm.handshake.Record(hs)
	}
	return nil
}

func (pm *pushMembers) onEvent(m *pushMember, ev client.RawEvent) {
	now := time.Now().UnixNano()
	m.mu.Lock()
	if ev.Seq <= m.last {
		m.dups++
		m.mu.Unlock()
		return
	}
	if ev.Seq > m.last+1 {
		m.holes += ev.Seq - m.last - 1
	}
	m.last = ev.Seq
	step, sent, ok := parsePushPayload(ev.Text)
	if ok {
		m.got[step]++
	}
	survivor := !m.everDown
	m.mu.Unlock()
	if !ok {
		pm.foreign.Add(1)
		return
	}
	pm.received.Add(1)
	pm.lastRecv.Store(now)
	d := time.Duration(now - sent)
	pm.latency[step].Record(d)
	if survivor {
		pm.survivors[step].Record(d)
	}
}

// keep waits for m's connection to end and, unless the run is over,
// reconnects it: full-jitter backoff, each attempt on another node, except
// that a node that refused with a Retry-After is tried again after it.
func (pm *pushMembers) keep(ctx context.Context, m *pushMember) {
	for {
		m.mu.Lock()
		c := m.c
		m.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-c.Done():
		}
		if pm.closed.Load() || ctx.Err() != nil {
			return
		}
		downAt := time.Now()
		pm.down.Add(1)
		pm.firstDown.CompareAndSwap(0, downAt.UnixNano())
		pm.mu.Lock()
		code := "none" // no close frame: the node died
		if cc := client.CloseCode(c.Err()); cc > 0 {
			code = strconv.Itoa(int(cc))
		}
		pm.closeCodes[code]++
		pm.mu.Unlock()
		m.mu.Lock()
		m.drops++
		m.everDown = true
		m.downNs = downAt.UnixNano()
		m.mu.Unlock()
		bound := pm.p.backoffBase
		rotate := true // a node that said when to come back is tried again then
		for attempt := 0; ; attempt++ {
			wait := time.Duration(rand.Int64N(int64(bound) + 1))
			if attempt > 0 {
				bound = min(2*bound, pm.p.backoffCap)
			}
			select {
			case <-ctx.Done():
				pm.down.Add(-1)
				return
			case <-time.After(wait):
			}
			if rotate && len(pm.urls) > 1 { // another node, at random: the crowd of a dead node spreads over the others
				m.node = (m.node + 1 + rand.IntN(len(pm.urls)-1)) % len(pm.urls)
			}
			pm.attempts.Add(1)
			err := pm.connect(ctx, m, false)
			if err == nil {
				break
			}
			reason, retry := errKind(err), time.Duration(0)
			var de *client.DialError
			rotate = true
			if errors.As(err, &de) {
				reason = fmt.Sprintf("http_%d", de.StatusCode)
				retry = de.RetryAfter
				rotate = retry == 0
			} else if strings.Contains(err.Error(), "no server at") {
				reason = "refused"
			}
			pm.mu.Lock()
			pm.refusals[reason]++
			pm.mu.Unlock()
			if retry > 0 {
				select {
				case <-ctx.Done():
					pm.down.Add(-1)
					return
				case <-time.After(retry):
				}
			}
		}
		now := time.Now()
		pm.resume.Record(now.Sub(downAt))
		for {
			l := pm.lastResume.Load()
			if now.UnixNano() <= l || pm.lastResume.CompareAndSwap(l, now.UnixNano()) {
				break
			}
		}
		m.mu.Lock()
		m.resumes++
		m.mu.Unlock()
		pm.down.Add(-1)
	}
}

func (pm *pushMembers) closeAll() {
	var conns []*client.Client
	for _, m := range pm.ms {
		m.mu.Lock()
		if m.c != nil {
			conns = append(conns, m.c)
		}
		m.mu.Unlock()
	}
	closeGently(conns, func(c *client.Client) { c.Close() }, (*client.Client).CloseNow)
}

func (pm *pushMembers) result(proc string, perNode map[string]int, steps []pushStep) *pushMembersFile {
	res := &pushMembersFile{Proc: proc, Conns: len(pm.ms), PerNode: perNode, Connect: pm.dialed.export(), Join: pm.join.export(), ConnectRetries: pm.retries.Load(),
		Foreign: pm.foreign.Load(), FirstDownNs: pm.firstDown.Load(), LastResumeNs: pm.lastResume.Load(),
		Resume: pm.resume.export(), Handshake: pm.handshake.export(), Attempts: pm.attempts.Load(),
		PerNodeEnd: map[string]int{}}
	pm.mu.Lock()
	res.Refusals, res.CloseCodes = pm.refusals, pm.closeCodes
	pm.mu.Unlock()
	nSteps := 0
	for _, st := range steps {
		nSteps = max(nSteps, st.ID+1)
	}
	res.Got = make([]uint64, nSteps)
	for i := range nSteps {
		res.Latency = append(res.Latency, pm.latency[i].export())
		res.Survivors = append(res.Survivors, pm.survivors[i].export())
	}
	for _, m := range pm.ms {
		m.mu.Lock()
		res.Dups += m.dups
		res.Holes += m.holes
		if m.drops > 0 {
			res.Dropped++
			if m.resumes >= m.drops {
				res.Resumed++
			}
		}
		for _, st := range steps {
			got := uint64(m.got[st.ID])
			res.Got[st.ID] += got
			if got < st.Acked {
				res.Lost += st.Acked - got
			}
		}
		res.PerNodeEnd[pm.urls[m.node]]++
		m.mu.Unlock()
	}
	res.NotResumed = res.Dropped - res.Resumed
	return res
}

// ---------------------------------------------------------------- report

// PushReport is the merged result of one push run.
type PushReport struct {
	Tool       string  `json:"tool"`
	Scenario   string  `json:"scenario"`
	Date       string  `json:"date"`
	Codec      string  `json:"codec"`
	Room       string  `json:"room"`
	Members    int     `json:"members"`
	Procs      int     `json:"procs"`
	ProvisionS float64 `json:"provision_s"`
	ConnectS   float64 `json:"connect_s"`
	Connect    Latency `json:"connect"`
	Join       Latency `json:"join"`
	// ConnectRetries counts initial connections tried again.
	ConnectRetries uint64 `json:"connect_retries"`

	Nodes []PushNode `json:"nodes"`
	// SingleP50/P99/Max: medians over the single posts of each post's
	// latency quantiles over the members.
	Singles   []PushStepResult `json:"singles"`
	SingleP50 float64          `json:"single_p50_ms"`
	SingleP99 float64          `json:"single_p99_ms"`
	SingleMax float64          `json:"single_max_ms"`
	Steps     []PushStepResult `json:"steps"`
	// MaxOKRate is the highest rate step with p99 under -max-p99, nothing
	// lost or duplicated, no post error.
	MaxOKRate float64          `json:"max_ok_rate"`
	Storm     *PushStormResult `json:"storm,omitempty"`

	Lost  uint64 `json:"lost"`
	Dups  uint64 `json:"dups"`
	Holes uint64 `json:"holes"`
	OK    bool   `json:"ok"`
	Why   string `json:"why,omitempty"`
	// The poster's command line (the members' differ only in -users and
	// -source-addrs).
	Args []string `json:"args"`
}

// PushNode is one server process.
type PushNode struct {
	PID         int            `json:"pid"`
	URL         string         `json:"url,omitempty"`
	Conns       int            `json:"conns"` // the load tool's, at the start
	ServerConns map[string]int `json:"server_connections,omitempty"`
	Rooms       float64        `json:"rooms"`
	RSSBeforeKB int64          `json:"rss_before_kb"`
	RSSAfterKB  int64          `json:"rss_after_kb"`
	KBPerConn   float64        `json:"kb_per_conn"` // (after − before) / conns
}

// PushStepResult is one step, merged over the members processes.
type PushStepResult struct {
	Name           string            `json:"name"`
	Rate           float64           `json:"rate,omitempty"`
	Acked          uint64            `json:"acked"`
	Posted         uint64            `json:"posted"`
	Errors         map[string]uint64 `json:"errors,omitempty"`
	Expected       uint64            `json:"deliveries_expected"`
	Got            uint64            `json:"deliveries"`
	Latency        Latency           `json:"latency"`
	Survivors      Latency           `json:"survivors_latency"`
	ServerCPU      float64           `json:"server_cpu_s"`
	CPUPer1M       float64           `json:"server_cpu_s_per_1m_deliveries"`
	ToolCPU        float64           `json:"tool_cpu_s"`
	MachineCPU     float64           `json:"machine_cpu_s"`
	Relays         float64           `json:"relays"`
	RelaysPerPost  float64           `json:"relays_per_post"`
	ServerDeliver  float64           `json:"server_deliveries"`
	FramesOut      float64           `json:"frames_out"`
	WallS          float64           `json:"wall_s"`
	DeliveriesPerS float64           `json:"deliveries_per_s"`
	OK             bool              `json:"ok"`
	Why            string            `json:"why,omitempty"`
}

// PushStormResult is the reconnect storm.
type PushStormResult struct {
	KilledNs    int64             `json:"killed_unix_ns"`
	Dropped     int               `json:"dropped"`
	Resumed     int               `json:"resumed"`
	NotResumed  int               `json:"not_resumed"`
	AllResumedS float64           `json:"all_resumed_s"` // from the kill to the last member's join
	Resume      Latency           `json:"resume"`        // per member, from losing its connection
	Handshake   Latency           `json:"handshake"`
	Attempts    uint64            `json:"attempts"`
	Refusals    map[string]uint64 `json:"refusals"`
	CloseCodes  map[string]int    `json:"close_codes"`
	PerNodeEnd  map[string]int    `json:"per_node_end"`
}

func (r *loadRun) pushReport(stdout io.Writer) (*PushReport, error) {
	p := &r.cfg.push
	var poster pushPosterFile
	if err := readJSON(p.dir, "poster.json", &poster); err != nil {
		return nil, err
	}
	files, _ := filepath.Glob(filepath.Join(p.dir, "members.*.json"))
	ready, _ := filepath.Glob(filepath.Join(p.dir, "ready.*"))
	rep := &PushReport{Tool: "parley-load", Scenario: "push", Date: time.Now().UTC().Format(time.RFC3339), Codec: r.cfg.codec,
		Room: poster.Room, Procs: len(files), ProvisionS: poster.ProvisionS, ConnectS: poster.ConnectS, Args: poster.Args}
	var why []string
	if len(files) != len(ready) {
		why = append(why, fmt.Sprintf("%d members processes were ready but %d reported", len(ready), len(files)))
	}
	nSteps := len(poster.Steps)
	lat, surv := make([]hist, nSteps), make([]hist, nSteps)
	got := make([]uint64, nSteps)
	var connect, join, resume, handshake hist
	perNode := map[string]int{}
	storm := &PushStormResult{Refusals: map[string]uint64{}, CloseCodes: map[string]int{}, PerNodeEnd: map[string]int{}}
	var firstDown, lastResume int64
	for _, f := range files {
		var m pushMembersFile
		if err := readJSON(p.dir, filepath.Base(f), &m); err != nil {
			return nil, err
		}
		rep.Members += m.Conns
		rep.ConnectRetries += m.ConnectRetries
		connect.merge(m.Connect)
		join.merge(m.Join)
		resume.merge(m.Resume)
		handshake.merge(m.Handshake)
		for i := range min(nSteps, len(m.Latency)) {
			lat[i].merge(m.Latency[i])
			surv[i].merge(m.Survivors[i])
			got[i] += m.Got[i]
		}
		rep.Lost += m.Lost
		rep.Dups += m.Dups
		rep.Holes += m.Holes
		for k, v := range m.PerNode {
			perNode[k] += v
		}
		storm.Dropped += m.Dropped
		storm.Resumed += m.Resumed
		storm.NotResumed += m.NotResumed
		storm.Attempts += m.Attempts
		for k, v := range m.Refusals {
			storm.Refusals[k] += v
		}
		for k, v := range m.CloseCodes {
			storm.CloseCodes[k] += v
		}
		for k, v := range m.PerNodeEnd {
			storm.PerNodeEnd[k] += v
		}
		if m.FirstDownNs > 0 && (firstDown == 0 || m.FirstDownNs < firstDown) {
			firstDown = m.FirstDownNs
		}
		lastResume = max(lastResume, m.LastResumeNs)
	}
	rep.Connect, rep.Join = connect.Summary(), join.Summary()
	urls := strings.Split(r.cfg.url, ",")
	for i, pid := range poster.PIDs {
		n := PushNode{PID: pid}
		if i < len(urls) {
			n.URL = urls[i]
			n.Conns = perNode[urls[i]]
		}
		if i < len(poster.RSSBeforeKB) && i < len(poster.RSSAfterKB) {
			n.RSSBeforeKB, n.RSSAfterKB = poster.RSSBeforeKB[i], poster.RSSAfterKB[i]
			if n.Conns > 0 {
				n.KBPerConn = float64(n.RSSAfterKB-n.RSSBeforeKB) / float64(n.Conns)
			}
		}
		if i < len(poster.NodeConns) {
			n.ServerConns, n.Rooms = poster.NodeConns[i], poster.NodeRooms[i]
		}
		rep.Nodes = append(rep.Nodes, n)
	}
	var p50s, p99s, maxs []float64
	for i, st := range poster.Steps {
		s := PushStepResult{Name: st.Name, Rate: st.Rate, Acked: st.Acked, Posted: st.Posted, Errors: st.Errors,
			Expected: st.Acked * uint64(rep.Members), Got: got[i], Latency: lat[i].Summary(), Survivors: surv[i].Summary(),
			ServerCPU: st.ServerCPU, ToolCPU: st.ToolCPU, MachineCPU: st.MachineCPU, Relays: st.Relays, ServerDeliver: st.Deliveries, FramesOut: st.FramesOut,
			WallS: float64(st.EndNs-st.StartNs) / 1e9}
		if s.Got > 0 {
			s.CPUPer1M = s.ServerCPU / float64(s.Got) * 1e6
		}
		if st.Acked > 0 {
			s.RelaysPerPost = s.Relays / float64(st.Acked)
		}
		if st.Rate > 0 {
			s.DeliveriesPerS = float64(s.Got) / (float64(st.Acked) / st.Rate)
		}
		var sw []string
		if s.Got < s.Expected {
			sw = append(sw, fmt.Sprintf("%d deliveries missing", s.Expected-s.Got))
		}
		if len(st.Errors) > 0 || st.Acked < st.Posted {
			sw = append(sw, fmt.Sprintf("%d of %d posts not acknowledged %v", st.Posted-st.Acked, st.Posted, st.Errors))
		}
		if s.Latency.P99 >= ms(r.cfg.maxP99) {
			sw = append(sw, fmt.Sprintf("p99 %s ≥ %s", fmtMs(s.Latency.P99), fmtMs(ms(r.cfg.maxP99))))
		}
		s.OK, s.Why = len(sw) == 0, strings.Join(sw, "; ")
		switch {
		case strings.HasPrefix(st.Name, "single-"):
			rep.Singles = append(rep.Singles, s)
			p50s, p99s, maxs = append(p50s, s.Latency.P50), append(p99s, s.Latency.P99), append(maxs, s.Latency.Max)
		case st.Name == "storm":
			storm.Handshake, storm.Resume = handshake.Summary(), resume.Summary()
			var killed int64
			if readJSON(p.dir, "killed", &killed) == nil && killed > 0 {
				storm.KilledNs = killed
				if lastResume > killed {
					storm.AllResumedS = float64(lastResume-killed) / 1e9
				}
			} else if firstDown > 0 && lastResume > firstDown {
				storm.AllResumedS = float64(lastResume-firstDown) / 1e9
			}
			rep.Storm = storm
			rep.Steps = append(rep.Steps, s)
		default:
			rep.Steps = append(rep.Steps, s)
			if s.OK {
				rep.MaxOKRate = max(rep.MaxOKRate, s.Rate)
			}
		}
	}
	rep.SingleP50, rep.SingleP99, rep.SingleMax = median(p50s), median(p99s), median(maxs)
	if rep.Lost > 0 || rep.Dups > 0 {
		why = append(why, fmt.Sprintf("%d lost, %d duplicated", rep.Lost, rep.Dups))
	}
	if rep.Storm != nil && rep.Storm.NotResumed > 0 {
		why = append(why, fmt.Sprintf("%d members never resumed", rep.Storm.NotResumed))
	}
	rep.OK, rep.Why = len(why) == 0, strings.Join(why, "; ")
	writePushReport(stdout, rep)
	return rep, nil
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	v = slices.Clone(v)
	sort.Float64s(v)
	return v[(len(v)-1)/2]
}

func writePushReport(w io.Writer, rep *PushReport) {
	var b strings.Builder
	fmt.Fprintf(&b, "parley-load push: room %s, %d members over %d processes, codec %s, %s\n", rep.Room, rep.Members, rep.Procs, rep.Codec, rep.Date)
	fmt.Fprintf(&b, "  provisioned in %.1fs; all connected and joined %.1fs after the poster (%d connections tried again); connect %s; join %s\n", rep.ProvisionS, rep.ConnectS, rep.ConnectRetries, rep.Connect, rep.Join)
	for _, n := range rep.Nodes {
		fmt.Fprintf(&b, "  node pid %d %s: %d connections, rooms %.0f, RSS %.1f → %.1f MiB, %.1f KiB per connection\n",
			n.PID, n.URL, n.Conns, n.Rooms, float64(n.RSSBeforeKB)/1024, float64(n.RSSAfterKB)/1024, n.KBPerConn)
	}
	for _, s := range rep.Singles {
		fmt.Fprintf(&b, "  %s: every member has it: %s; %d/%d deliveries; %.0f relays; CPU-s server %.2f, load tool %.2f, machine %.2f in %.1fs\n",
			s.Name, s.Latency, s.Got, s.Expected, s.Relays, s.ServerCPU, s.ToolCPU, s.MachineCPU, s.WallS)
	}
	if len(rep.Singles) > 0 {
		fmt.Fprintf(&b, "  single post, medians over %d posts: p50 %s, p99 %s, max %s\n", len(rep.Singles), fmtMs(rep.SingleP50), fmtMs(rep.SingleP99), fmtMs(rep.SingleMax))
	}
	for _, s := range rep.Steps {
		v := "ok"
		if !s.OK {
			v = "FAIL: " + s.Why
		}
		fmt.Fprintf(&b, "  %s: acked %d/%d, deliveries %d/%d (%.0f/s), latency %s, survivors %s, server %.2f CPU-s (%.2f per 1M), load tool %.2f, machine %.2f in %.1fs, %.2f relays per post: %s\n",
			s.Name, s.Acked, s.Posted, s.Got, s.Expected, s.DeliveriesPerS, s.Latency, s.Survivors, s.ServerCPU, s.CPUPer1M, s.ToolCPU, s.MachineCPU, s.WallS, s.RelaysPerPost, v)
	}
	if st := rep.Storm; st != nil {
		fmt.Fprintf(&b, "  storm: %d members lost their connection, %d resumed (%d not), all within %.1fs of the kill; per member %s\n",
			st.Dropped, st.Resumed, st.NotResumed, st.AllResumedS, st.Resume)
		fmt.Fprintf(&b, "         handshakes %s; %d attempts, refused %v; close codes %v; connections by node at the end %v\n",
			st.Handshake, st.Attempts, st.Refusals, st.CloseCodes, st.PerNodeEnd)
	}
	fmt.Fprintf(&b, "  highest steady rate with p99 under the bound and nothing lost: %.0f posts/s\n", rep.MaxOKRate)
	fmt.Fprintf(&b, "  lost %d, duplicated %d, holes %d; verdict: %s %s\n", rep.Lost, rep.Dups, rep.Holes, map[bool]string{true: "ok", false: "FAIL"}[rep.OK], rep.Why)
	io.WriteString(w, b.String())
	line, _ := json.Marshal(rep)
	w.Write(append(line, '\n'))
}

// runPush runs one process of the push scenario.
func runPush(ctx context.Context, cfg config, args []string, stdout, stderr io.Writer) error {
	r := newLoadRun(cfg, nil, stderr)
	if cfg.push.role == "report" {
		rep, err := r.pushReport(stdout)
		if err != nil {
			return err
		}
		if !rep.OK {
			return errors.New(rep.Why)
		}
		return nil
	}
	pctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); r.progress(pctx) }()
	defer func() { stop(); <-done }()
	if cfg.push.role == "poster" {
		return r.pushPoster(ctx, args)
	}
	return r.pushMembers(ctx)
}
