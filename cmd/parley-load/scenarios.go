package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parleychat/parley/client"
)

// loadRun is one run of one scenario.
type loadRun struct {
	cfg    config
	target Target
	stderr io.Writer
	start  time.Time

	// Set by receivers as messages arrive.
	delivered   atomic.Uint64
	lastRecv    atomic.Int64 // tool time (ns) of the latest delivery
	latency     atomic.Pointer[hist]
	intervalMax atomic.Int64 // largest latency since the last progress line

	rooms     []*roomLedger
	receivers []*receiver
	connsMu   sync.Mutex
	conns     []Conn

	connect hist // dial + login
	join    hist

	statusMu sync.Mutex
	status   func() string
}

func newLoadRun(cfg config, t Target, stderr io.Writer) *loadRun {
	r := &loadRun{cfg: cfg, target: t, stderr: &lockedWriter{w: stderr}, start: time.Now()}
	r.latency.Store(new(hist))
	return r
}

// lockedWriter serialises writes: the progress goroutine and the scenario
// both print to stderr, and a caller's writer (a test's buffer) need not
// be safe for concurrent use.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// now is the tool's clock: monotonic nanoseconds since the run started.
func (r *loadRun) now() time.Duration { return time.Since(r.start) }

func (r *loadRun) recordMax(d time.Duration) {
	v := int64(d)
	for {
		m := r.intervalMax.Load()
		if v <= m || r.intervalMax.CompareAndSwap(m, v) {
			return
		}
	}
}

func (r *loadRun) setStatus(f func() string) {
	r.statusMu.Lock()
	r.status = f
	r.statusMu.Unlock()
}

// progress prints the current status line to stderr every second.
func (r *loadRun) progress(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.statusMu.Lock()
			f := r.status
			r.statusMu.Unlock()
			if f != nil {
				fmt.Fprintf(r.stderr, "[%s %5.1fs] %s\n", r.cfg.scenario, r.now().Seconds(), f())
			}
		}
	}
}

func (r *loadRun) track(c Conn) {
	r.connsMu.Lock()
	r.conns = append(r.conns, c)
	r.connsMu.Unlock()
}

// execute runs the scenario and always returns a report; Error is set when
// the run could not be completed.
func (r *loadRun) execute(ctx context.Context) *Report {
	rep := newReport(r.cfg, r.target)
	pctx, cancelProgress := context.WithCancel(ctx)
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		r.progress(pctx)
	}()
	// Nothing prints after execute returns: the caller may read its writer.
	stopProgress := func() {
		cancelProgress()
		<-progressDone
	}
	defer func() {
		r.connsMu.Lock()
		n := len(r.conns) // read here: the progress goroutine calls the status func while closeAll empties r.conns
		r.connsMu.Unlock()
		r.setStatus(func() string { return fmt.Sprintf("closing %d connections", n) })
		r.closeAll()
		stopProgress()
	}()
	var err error
	switch r.cfg.scenario {
	case "idle":
		err = r.idle(ctx, rep)
	case "fanout", "rooms":
		err = r.steps(ctx, rep)
	case "churn":
		err = r.churn(ctx, rep)
	}
	rep.Conns = len(r.receivers)
	rep.Connect = r.connect.Summary()
	rep.Join = r.join.Summary()
	if err != nil {
		if ctx.Err() != nil && !errors.Is(err, ctx.Err()) {
			err = fmt.Errorf("%w (%v)", err, ctx.Err())
		}
		rep.Error = err.Error()
	}
	rep.finish()
	return rep
}

// closeAll closes every connection, a few hundred at a time.
func (r *loadRun) closeAll() {
	r.connsMu.Lock()
	conns := r.conns
	r.conns = nil
	r.connsMu.Unlock()
	closeGently(conns, Conn.Close, Conn.CloseNow)
}

// closeGently closes conns, 256 at a time, each with a close frame unless
// that takes two seconds (then the socket is dropped).
func closeGently[C any](conns []C, closeNormally, closeNow func(C)) {
	sem := make(chan struct{}, 256)
	var wg sync.WaitGroup
	for _, c := range conns {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			done := make(chan struct{})
			go func() { closeNormally(c); close(done) }()
			select {
			case <-done:
			case <-time.After(2 * time.Second):
				closeNow(c)
			}
		})
	}
	wg.Wait()
}

// ---------------------------------------------------------------- setup

func (r *loadRun) roomName(i int) string {
	return fmt.Sprintf("%c-%s-%d", r.cfg.scenario[0], r.cfg.runID, i)
}

// open connects total measured connections, perRoom to a room (the last
// room may be short), each joined to its room, at most -dial-concurrency at
// a time. Any failure ends the run with a sentence that says which
// connection failed and why.
func (r *loadRun) open(ctx context.Context, perRoom, total int) error {
	r.rooms = make([]*roomLedger, (total+perRoom-1)/perRoom)
	for i := range r.rooms {
		r.rooms[i] = &roomLedger{name: r.roomName(i)}
	}
	r.receivers = make([]*receiver, total)
	var opened, failed atomic.Int64
	r.setStatus(func() string {
		return fmt.Sprintf("connecting: %d/%d open, %d failed", opened.Load(), total, failed.Load())
	})
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range min(r.cfg.dialConcurrency, total) {
		wg.Go(func() {
			for i := range jobs {
				if err := r.openOne(ctx, i, perRoom); err != nil {
					failed.Add(1)
					cancel(fmt.Errorf("connection %d of %d: %w", i+1, total, err))
					continue
				}
				opened.Add(1)
			}
		})
	}
	for i := 0; i < total && ctx.Err() == nil; i++ {
		select {
		case jobs <- i:
		case <-ctx.Done():
		}
	}
	close(jobs)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	for _, rc := range r.receivers {
		rc.room.members = append(rc.room.members, rc)
	}
	return nil
}

func (r *loadRun) openOne(ctx context.Context, i, perRoom int) error {
	room := r.rooms[i/perRoom]
	rc := &receiver{room: room, run: r}
	dctx, cancel := context.WithTimeout(ctx, r.cfg.dialTimeout)
	defer cancel()
	t0 := time.Now()
	c, err := r.target.Dial(dctx, fmt.Sprintf("u%s-%d", r.cfg.runID, i), rc.onMsg)
	if err != nil {
		return err
	}
	r.connect.Record(time.Since(t0))
	r.track(c)
	rc.conn = c
	t1 := time.Now()
	if err := c.Join(dctx, room.name); err != nil {
		return fmt.Errorf("join %s: %w", room.name, err)
	}
	r.join.Record(time.Since(t1))
	r.receivers[i] = rc
	return nil
}

// ---------------------------------------------------------------- idle

func (r *loadRun) idle(ctx context.Context, rep *Report) error {
	res := &IdleResult{Conns: r.cfg.conns, RoomSize: r.cfg.roomSize, HoldS: r.cfg.hold.Seconds()}
	rep.Idle = res
	if r.cfg.pid.set() {
		res.RSSBeforeKB, _ = r.cfg.pid.rss()
	}
	if err := r.open(ctx, r.cfg.roomSize, r.cfg.conns); err != nil {
		return err
	}
	t0 := time.Now()
	r.setStatus(func() string {
		rss := ""
		if r.cfg.pid.set() {
			kb, _ := r.cfg.pid.rss()
			rss = fmt.Sprintf(", server RSS %.1f MiB", float64(kb)/1024)
		}
		return fmt.Sprintf("holding %d connections for %v (%v left)%s, %d closed", len(r.receivers), r.cfg.hold,
			(r.cfg.hold - time.Since(t0)).Round(time.Second), rss, r.countDead())
	})
	select {
	case <-time.After(r.cfg.hold):
	case <-ctx.Done():
		return ctx.Err()
	}
	if r.cfg.pid.set() {
		res.RSSAfterKB, _ = r.cfg.pid.rss()
		res.ServerThreads = r.cfg.pid.threads()
		res.PerConnKB = float64(res.RSSAfterKB-res.RSSBeforeKB) / float64(len(r.receivers))
	}
	res.Closed, res.CloseCodes = r.deadCodes()
	if res.Closed > 0 {
		return fmt.Errorf("%d of %d idle connections were closed by the server (codes %v)", res.Closed, len(r.receivers), res.CloseCodes)
	}
	return nil
}

func (r *loadRun) countDead() int {
	n := 0
	for _, rc := range r.receivers {
		if rc != nil && isDone(rc.conn.Done()) {
			n++
		}
	}
	return n
}

func (r *loadRun) deadCodes() (int, map[string]int) {
	codes := map[string]int{}
	n := 0
	for _, rc := range r.receivers {
		if rc != nil && isDone(rc.conn.Done()) {
			n++
			codes[strconv.Itoa(rc.conn.CloseCode())]++
		}
	}
	return n, codes
}

func isDone(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// ---------------------------------------------------------------- posting

// slot is one posting connection and its room.
type slot struct {
	conn     Conn
	room     *roomLedger
	inflight atomic.Int64
}

// poster offers posts at a rate, round-robin over slots, each post on its
// own goroutine (open loop: a slow server does not slow the offer).
type poster struct {
	r     *loadRun
	slots []*slot

	offered, sent, acked, skipped atomic.Uint64
	errMu                         sync.Mutex
	errs                          map[string]uint64
	ack                           hist
	wg                            sync.WaitGroup
}

func newPoster(r *loadRun, slots []*slot) *poster {
	return &poster{r: r, slots: slots, errs: map[string]uint64{}}
}

// offer posts at rate per second for d (or until ctx ends), then waits for
// every post's answer.
func (p *poster) offer(ctx context.Context, rate float64, d time.Duration) {
	interval := time.Duration(float64(time.Second) / rate)
	interval = min(max(interval, time.Millisecond), 50*time.Millisecond)
	t := time.NewTicker(interval)
	defer t.Stop()
	start := time.Now()
	var done uint64
	k := 0
	for ctx.Err() == nil {
		elapsed := time.Since(start)
		if elapsed >= d {
			elapsed = d
		}
		due := uint64(elapsed.Seconds() * rate)
		for ; done < due; done++ {
			s := p.slots[k%len(p.slots)]
			k++
			p.post(ctx, s)
		}
		if elapsed >= d {
			break
		}
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
	p.wg.Wait()
}

func (p *poster) post(ctx context.Context, s *slot) {
	p.offered.Add(1)
	if s.inflight.Load() >= int64(p.r.cfg.inflight) || isDone(s.conn.Done()) {
		p.skipped.Add(1)
		return
	}
	s.inflight.Add(1)
	p.wg.Go(func() {
		defer s.inflight.Add(-1)
		p.publish(ctx, s.conn, s.room)
	})
}

// publish sends one numbered post and marks it acknowledged on success.
func (p *poster) publish(ctx context.Context, c Conn, room *roomLedger) bool {
	n := room.next.Add(1) - 1
	var buf [128]byte
	sent := p.r.now()
	payload := makePayload(buf[:0], n, sent, p.r.cfg.msgBytes)
	actx, cancel := context.WithTimeout(ctx, p.r.cfg.ackTimeout)
	err := c.Publish(actx, room.name, payload)
	cancel()
	p.sent.Add(1)
	if err != nil {
		p.errMu.Lock()
		p.errs[errKind(err)]++
		p.errMu.Unlock()
		return false
	}
	p.ack.Record(p.r.now() - sent)
	room.ack(n)
	p.acked.Add(1)
	return true
}

// errKind names an error for counting: the server's error code, a close
// code, or a timeout.
func errKind(err error) string {
	if code := client.ErrorCode(err); code != 0 {
		return code.String()
	}
	var ce *cfError
	if errors.As(err, &ce) {
		return fmt.Sprintf("centrifugo_%d", ce.Code)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "ack_timeout"
	}
	if code := client.CloseCode(err); code > 0 {
		return fmt.Sprintf("closed_%d", code)
	}
	// The connection went away under the request (the server closed it
	// without a close frame reaching us, or a write failed on a closing
	// socket).
	if errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		strings.Contains(err.Error(), "connection ended") || strings.Contains(err.Error(), "closed") {
		return "conn_lost"
	}
	return "other"
}

// ---------------------------------------------------------------- steps

// steps runs fanout and rooms: connect, then one step per offered rate.
func (r *loadRun) steps(ctx context.Context, rep *Report) error {
	if err := r.open(ctx, r.cfg.members, r.cfg.rooms*r.cfg.members); err != nil {
		return err
	}
	var slots []*slot
	if r.cfg.scenario == "fanout" {
		for _, rc := range r.rooms[0].members[:r.cfg.publishers] {
			slots = append(slots, &slot{conn: rc.conn, room: rc.room})
		}
	} else {
		for _, room := range r.rooms {
			slots = append(slots, &slot{conn: room.members[0].conn, room: room})
		}
	}
	// Let presence announcements of the joins settle before measuring.
	r.settle(ctx)
	for i, rate := range r.cfg.rates {
		var res StepResult
		for attempt := 1; ; attempt++ {
			res = r.step(ctx, fmt.Sprintf("step %d/%d", i+1, len(r.cfg.rates)), rate, slots, nil, nil)
			res.Attempts = attempt
			if !res.Disturbed || attempt > r.cfg.retries || ctx.Err() != nil || res.Disconnected > 0 {
				break
			}
			fmt.Fprintf(r.stderr, "parley-load: step at %.0f posts/s disturbed (other processes used %.2f CPU-s in %.1fs); repeating it once the machine is quiet\n",
				rate, res.OtherCPUS, res.WallS)
			r.waitQuiet(ctx)
		}
		rep.Steps = append(rep.Steps, res)
		fmt.Fprintf(r.stderr, "parley-load: %s\n", res.line())
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !res.OK && (!r.cfg.sweepAll || res.Disconnected > 0) {
			break
		}
	}
	return nil
}

// settle waits until the server's CPU use drops after setup (joins cause
// presence traffic), at most a few seconds.
func (r *loadRun) settle(ctx context.Context) {
	r.setStatus(func() string { return "letting the server settle after setup" })
	if !r.cfg.pid.set() {
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	prev, _ := r.cfg.pid.cpu()
	for time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(200 * time.Millisecond)
		cur, _ := r.cfg.pid.cpu()
		if cur-prev <= 20*time.Millisecond { // under 10% of a core
			return
		}
		prev = cur
	}
}

// step offers rate posts/s for the configured duration, drains, and
// accounts every acknowledged post at every member of its room.
//
// during, if not nil, runs alongside the offered load (churn) and is waited
// for before the drain; extra adds to the progress line.
func (r *loadRun) step(ctx context.Context, name string, rate float64, slots []*slot, during func(), extra func() string) StepResult {
	res := StepResult{Rate: rate, DurationS: r.cfg.duration.Seconds(), PostErrors: map[string]uint64{}, CloseCodes: map[string]int{}}
	from := make([]uint64, len(r.rooms))
	for i, room := range r.rooms {
		from[i] = room.next.Load()
	}
	dupsBefore, foreignBefore := r.dupsForeign()
	h := new(hist)
	r.latency.Store(h)
	deliveredBefore := r.delivered.Load()
	cpu0, _ := r.serverCPU()
	self0, _ := procCPU(os.Getpid())
	all0, _ := machineCPU()
	stepStart := r.now()
	p := newPoster(r, slots)

	var lastDelivered uint64
	r.setStatus(func() string {
		d := r.delivered.Load() - deliveredBefore
		rate := d - lastDelivered
		lastDelivered = d
		line := fmt.Sprintf("%s offered %.0f/s: posts sent %d acked %d skipped %d, deliveries %d (%d/s), max latency %s in the last second, %d closed",
			name, res.Rate, p.sent.Load(), p.acked.Load(), p.skipped.Load(), d, rate,
			fmtMs(ms(time.Duration(r.intervalMax.Swap(0)))), r.countDead())
		if extra != nil {
			line += "; " + extra()
		}
		return line
	})
	var duringDone sync.WaitGroup
	if during != nil {
		duringDone.Go(during)
	}
	p.offer(ctx, rate, r.cfg.duration)
	duringDone.Wait()

	// Drain: wait until every member still connected has every
	// acknowledged post, or no progress for -drain.
	want := r.expected(from)
	progressAt, seen := time.Now(), r.delivered.Load()
	for ctx.Err() == nil {
		got := r.delivered.Load()
		// The counter includes members shed meanwhile; when it says done,
		// check member by member.
		if got-deliveredBefore >= want && r.missingAlive(from) == 0 {
			break
		}
		if got != seen {
			seen, progressAt = got, time.Now()
		} else if time.Since(progressAt) >= r.cfg.drain {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	cpu1, cpuErr := r.serverCPU()
	self1, _ := procCPU(os.Getpid())
	all1, _ := machineCPU()

	res.Offered, res.Sent, res.Acked, res.Skipped = p.offered.Load(), p.sent.Load(), p.acked.Load(), p.skipped.Load()
	res.PostErrors = p.errs
	res.AckLatency = p.ack.Summary()
	res.Delivered = r.delivered.Load() - deliveredBefore
	res.Expected = want
	res.Latency = h.Summary()
	end := time.Duration(r.lastRecv.Load())
	if span := end - stepStart; span > 0 && res.Delivered > 0 {
		res.DeliveriesPerSec = float64(res.Delivered) / span.Seconds()
	}
	res.PostsPerSec = float64(res.Acked) / r.cfg.duration.Seconds()
	for i, room := range r.rooms {
		room.mu.Lock()
		to := room.next.Load()
		for _, rc := range room.members {
			rc.mu.Lock()
			miss := rc.got.missing(room.acked, from[i], to)
			rc.mu.Unlock()
			if isDone(rc.conn.Done()) {
				res.Disconnected++
				res.CloseCodes[strconv.Itoa(rc.conn.CloseCode())]++
				res.MissedByDisconnected += miss
			} else {
				res.Lost += miss
			}
		}
		room.mu.Unlock()
	}
	dupsAfter, foreignAfter := r.dupsForeign()
	res.Dup, res.Foreign = dupsAfter-dupsBefore, foreignAfter-foreignBefore
	if cpuErr == nil && r.cfg.pid.set() {
		res.ServerCPUS = (cpu1 - cpu0).Seconds()
		if res.Delivered > 0 {
			res.ServerCPUPer1M = res.ServerCPUS / float64(res.Delivered) * 1e6
		}
		res.ServerRSSKB, _ = r.cfg.pid.rss()
	}
	res.ClientCPUS = (self1 - self0).Seconds()
	res.MachineCPUS = (all1 - all0).Seconds()
	res.WallS = (r.now() - stepStart).Seconds()
	if r.cfg.pid.set() {
		res.OtherCPUS = max(0, res.MachineCPUS-res.ServerCPUS-res.ClientCPUS)
		res.Disturbed = r.cfg.maxOther > 0 && res.OtherCPUS > r.cfg.maxOther*res.WallS*float64(runtime.NumCPU())
	}
	res.judge(r.cfg.maxP99)
	return res
}

// expected is how many deliveries the posts acknowledged since from owe
// the members still connected.
func (r *loadRun) expected(from []uint64) uint64 {
	var e uint64
	for i, room := range r.rooms {
		room.mu.Lock()
		n := bitset(nil).missing(room.acked, from[i], room.next.Load())
		room.mu.Unlock()
		alive := 0
		for _, rc := range room.members {
			if !isDone(rc.conn.Done()) {
				alive++
			}
		}
		e += n * uint64(alive)
	}
	return e
}

// missingAlive counts acknowledged posts since from that members still
// connected have not received.
func (r *loadRun) missingAlive(from []uint64) uint64 {
	var n uint64
	for i, room := range r.rooms {
		room.mu.Lock()
		to := room.next.Load()
		for _, rc := range room.members {
			if isDone(rc.conn.Done()) {
				continue
			}
			rc.mu.Lock()
			n += rc.got.missing(room.acked, from[i], to)
			rc.mu.Unlock()
		}
		room.mu.Unlock()
	}
	return n
}

// waitQuiet waits (at most a minute) until other processes use less than
// -max-other-cpu of the machine over a second.
func (r *loadRun) waitQuiet(ctx context.Context) {
	r.setStatus(func() string { return "waiting for other processes to quiet down" })
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		all0, _ := machineCPU()
		self0, _ := procCPU(os.Getpid())
		srv0, _ := r.serverCPU()
		time.Sleep(time.Second)
		all1, _ := machineCPU()
		self1, _ := procCPU(os.Getpid())
		srv1, _ := r.serverCPU()
		other := (all1 - all0) - (self1 - self0) - (srv1 - srv0)
		if other.Seconds() < r.cfg.maxOther*float64(runtime.NumCPU()) {
			return
		}
	}
}

func (r *loadRun) serverCPU() (time.Duration, error) { return r.cfg.pid.cpu() } // 0 with no -pid

func (r *loadRun) dupsForeign() (dups, foreign uint64) {
	for _, rc := range r.receivers {
		rc.mu.Lock()
		dups += rc.dups
		foreign += rc.foreign
		rc.mu.Unlock()
	}
	return dups, foreign
}

// ---------------------------------------------------------------- churn

// churn keeps rooms×members connections chatting at -rate while, at
// -churn-rate per second, new connections connect, join a random room,
// post once, leave and close.
func (r *loadRun) churn(ctx context.Context, rep *Report) error {
	if err := r.open(ctx, r.cfg.members, r.cfg.rooms*r.cfg.members); err != nil {
		return err
	}
	slots := make([]*slot, len(r.rooms))
	for i, room := range r.rooms {
		slots[i] = &slot{conn: room.members[0].conn, room: room}
	}
	r.settle(ctx)
	cr := &ChurnResult{Rate: r.cfg.churnRate, Errors: map[string]uint64{}}
	rep.Churn = cr
	var (
		connectH, joinH hist
		started, done   atomic.Uint64
		errMu           sync.Mutex
		wg              sync.WaitGroup
		inflight        atomic.Int64
		skipped         atomic.Uint64
	)
	maxInflight := int64(r.cfg.churnRate*5) + 16
	fail := func(stage string, err error) {
		errMu.Lock()
		cr.Errors[stage+":"+errKind(err)]++
		errMu.Unlock()
	}
	cp := newPoster(r, nil)
	one := func(i int) {
		defer inflight.Add(-1)
		room := r.rooms[rand.IntN(len(r.rooms))]
		dctx, cancel := context.WithTimeout(ctx, r.cfg.dialTimeout)
		defer cancel()
		t0 := time.Now()
		c, err := r.target.Dial(dctx, fmt.Sprintf("c%s-%d", r.cfg.runID, i), func(room, payload []byte) {})
		if err != nil {
			fail("connect", err)
			return
		}
		defer c.CloseNow()
		connectH.Record(time.Since(t0))
		t1 := time.Now()
		if err := c.Join(dctx, room.name); err != nil {
			fail("join", err)
			return
		}
		joinH.Record(time.Since(t1))
		if !cp.publish(ctx, c, room) {
			fail("post", errors.New("post failed"))
			return
		}
		if err := c.Leave(dctx, room.name); err != nil {
			fail("leave", err)
			return
		}
		c.Close()
		done.Add(1)
	}
	pace := func() {
		interval := min(max(time.Duration(float64(time.Second)/r.cfg.churnRate), time.Millisecond), 50*time.Millisecond)
		t := time.NewTicker(interval)
		defer t.Stop()
		start := time.Now()
		n := 0
		for ctx.Err() == nil {
			elapsed := min(time.Since(start), r.cfg.duration)
			for due := int(elapsed.Seconds() * r.cfg.churnRate); n < due; n++ {
				if inflight.Load() >= maxInflight {
					skipped.Add(1)
					continue
				}
				inflight.Add(1)
				started.Add(1)
				i := n
				wg.Go(func() { one(i) })
			}
			if elapsed >= r.cfg.duration {
				break
			}
			select {
			case <-t.C:
			case <-ctx.Done():
			}
		}
		wg.Wait()
	}
	status := func() string {
		return fmt.Sprintf("churn: %d started, %d completed, %d in flight", started.Load(), done.Load(), inflight.Load())
	}
	res := r.step(ctx, "churn", r.cfg.chatRate, slots, pace, status)
	cr.Started, cr.Completed, cr.Skipped = started.Load(), done.Load(), skipped.Load()
	cr.Connect, cr.Join = connectH.Summary(), joinH.Summary()
	for _, n := range cr.Errors {
		cr.ErrorCount += n
	}
	if cr.ErrorCount > 0 || cr.Skipped > 0 {
		res.OK = false
		res.Why = joinWhy(res.Why, fmt.Sprintf("%d churn errors, %d churners skipped", cr.ErrorCount, cr.Skipped))
	}
	rep.Steps = append(rep.Steps, res)
	return nil
}
