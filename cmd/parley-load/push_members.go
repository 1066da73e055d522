package main

// The push scenario's members processes (push.go).

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parleychat/parley/client"
	parleypb "github.com/parleychat/parley/proto"
)

// pushMember is one measured connection, across its reconnections.
type pushMember struct {
	user string
	node int // index into the URLs of the connection now
	src  string

	mu      sync.Mutex
	c       *client.Client
	last    uint64 // the last seq received
	got     [maxPushSteps]uint32
	dups    uint64
	holes   uint64
	drops   int // connections lost
	resumes int
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
	c, err := client.Dial(dctx, url, pm.r.cfg.push.codec, &client.Options{
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
	survivor := m.drops == 0
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
