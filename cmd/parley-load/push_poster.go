package main

// The push scenario's poster (push.go): provisions, posts, measures the
// servers.

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
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
)

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
	c, err := client.Dial(ctx, url, r.cfg.push.codec, &client.Options{OnEvent: func(*parleypb.Envelope) {}, OnRoomEvent: func(client.RawEvent) {}})
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
				if err := addMember(ctx, api, p.room, u); err != nil {
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

// addMember adds user to room, again while the server answers UNAVAILABLE
// (the room was busy past the API's deadline): adding a member is
// idempotent, so a call whose answer was lost is simply made again.
func addMember(ctx context.Context, api apiv1connect.ParleyServiceClient, room, user string) error {
	wait := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		_, err := api.AddMember(ctx, connect.NewRequest(&apiv1.AddMemberRequest{Room: room, User: user}))
		if err == nil || connect.CodeOf(err) != connect.CodeUnavailable || attempt == 6 {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait *= 2
	}
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
