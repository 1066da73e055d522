// Package webhooks tells the application what happened: it delivers the
// entries rooms write to the store's outbox (actors.Webhooks,
// store.Outbox) to one URL, as signed JSON POSTs, at least once and in
// order within each room. An entry leaves the outbox only after the
// application answered it with a 2xx, so a crash or a SIGKILL at any
// point loses nothing; it may send an entry again, with the same
// Parley-Event-Id, which is how the receiver recognises a redelivery.
package webhooks

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parleychat/parley/hooks"
	"github.com/parleychat/parley/store"
)

// Headers of every delivery, besides hooks.SignatureHeader.
const (
	EventIDHeader   = "Parley-Event-Id"
	EventTypeHeader = "Parley-Event-Type"
)

// Config is what an operator sets (-webhook-* flags).
type Config struct {
	// URL receives every event; empty turns webhooks off.
	URL string
	// Secret signs each request (hooks.Sign); at least 32 bytes.
	Secret []byte
	// Events are the event types sent; empty means all of them.
	Events []string
	// Timeout bounds one request; zero means 10s.
	Timeout time.Duration
}

// Enabled reports whether webhooks are on.
func (c Config) Enabled() bool { return c.URL != "" }

// Check validates c against the known event types.
func (c Config) Check(known []string) error {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("webhooks: -webhook-url %q is not an http:// or https:// URL", c.URL)
	}
	if len(c.Secret) < 32 {
		return fmt.Errorf("webhooks: the secret that signs them is %d bytes; at least 32 are needed (-webhook-secret or -webhook-secret-file)", len(c.Secret))
	}
	for _, e := range c.Events {
		if !slices.Contains(known, e) {
			return fmt.Errorf("webhooks: unknown event type %q in -webhook-events; known: %s", e, strings.Join(known, ", "))
		}
	}
	if c.Timeout < 0 {
		return fmt.Errorf("webhooks: negative -webhook-timeout %v", c.Timeout)
	}
	return nil
}

// Want returns the filter of event types c selects.
func (c Config) Want() func(string) bool {
	if len(c.Events) == 0 {
		return func(string) bool { return true }
	}
	set := make(map[string]bool, len(c.Events))
	for _, e := range c.Events {
		set[e] = true
	}
	return func(t string) bool { return set[t] }
}

// Options tune a Deliverer; zero values are production's.
type Options struct {
	// Client sends the requests; nil means a client of its own.
	Client *http.Client
	// MinBackoff and MaxBackoff bound the wait before a room's failed
	// entry is tried again: MinBackoff doubling per failure up to
	// MaxBackoff, with jitter. Zero means 500ms and 1m.
	MinBackoff, MaxBackoff time.Duration
	// Poll is how often the outbox is read when nothing wakes the
	// deliverer (entries another node wrote, a missed wake). Zero: 1s.
	Poll time.Duration
	// Batch is how many entries one read takes; zero means 500.
	Batch int
	// Workers is how many rooms are delivered to at once; zero means 8.
	Workers int
	// LeaseTTL is how long the right to deliver lasts unrenewed (a shared
	// store); zero means 15s, and it is at least two request timeouts.
	LeaseTTL time.Duration
	// Observe, if set, is told of each request: outcome ok (2xx), status
	// (another status), timeout or error (no answer), and how long it took.
	Observe func(outcome string, took time.Duration)
	Logger  *slog.Logger
}

// Deliverer sends the outbox's entries.
type Deliverer struct {
	cfg    Config
	o      Options
	st     store.Outbox
	log    *slog.Logger
	holder string

	wake   chan struct{}
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	start  sync.Once

	ownClient bool // closed with the Deliverer

	// Owned by run.
	failing    map[string]*backoff
	leaseUntil time.Time
	// stopAt is when workers stop sending (Unix ns): one request timeout
	// before the lease may lapse.
	stopAt atomic.Int64
}

// backoff is a failing room's: failures counts the tries of the entry
// at its head, which is what the wait grows with; an entry that fails
// after others went through starts again from MinBackoff.
type backoff struct {
	head     string
	failures int
	until    time.Time
}

// New returns a Deliverer of st's outbox to cfg.URL; Start starts it.
func New(cfg Config, st store.Outbox, o Options) (*Deliverer, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 500 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = time.Minute
	}
	o.MaxBackoff = max(o.MaxBackoff, o.MinBackoff)
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.Batch <= 0 {
		o.Batch = 500
	}
	if o.Workers <= 0 {
		o.Workers = 8
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = 15 * time.Second
	}
	// A round stops sending one timeout before the lease may lapse, and
	// the next renews it once two thirds are left: a lease shorter than
	// two timeouts would leave rounds little or no time to send in.
	o.LeaseTTL = max(o.LeaseTTL, 2*cfg.Timeout)
	own := o.Client == nil
	if own {
		o.Client = &http.Client{Transport: &http.Transport{
			Proxy: http.ProxyFromEnvironment, MaxIdleConnsPerHost: o.Workers, IdleConnTimeout: 90 * time.Second,
			DialContext: (&net.Dialer{Timeout: cfg.Timeout}).DialContext,
		}}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	host, _ := os.Hostname()
	id := make([]byte, 8)
	_, _ = crand.Read(id)
	ctx, cancel := context.WithCancel(context.Background())
	return &Deliverer{
		cfg: cfg, o: o, st: st, log: o.Logger.With("webhook_url", cfg.URL),
		holder: fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(id)),
		wake:   make(chan struct{}, 1), ctx: ctx, cancel: cancel, done: make(chan struct{}),
		failing: make(map[string]*backoff), ownClient: own,
	}, nil
}

// Start delivers in the background until Close.
func (d *Deliverer) Start() {
	d.start.Do(func() { go d.run() })
}

// Wake tells the deliverer that entries were committed. It never blocks.
func (d *Deliverer) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Close stops delivering: requests in flight are abandoned (their entries
// stay in the outbox and are sent again later) and what was delivered is
// deleted from the outbox first. Call it before closing the store.
func (d *Deliverer) Close() {
	d.cancel()
	d.start.Do(func() { close(d.done) }) // never started: nothing to wait for
	<-d.done
	if d.ownClient {
		d.o.Client.CloseIdleConnections()
	}
}

// roomDone is a room worker's report: the entries it delivered, in
// order, and the one that failed, if one did.
type roomDone struct {
	room      string
	delivered []string
	failed    string
}

// run reads the outbox and hands each room's entries to a worker of its
// own (at most Workers at once), which sends them in order and reports.
// Rooms with a worker or in backoff are left out of the reads, so a room's
// entries are never sent twice at once, nor out of order, and a slow or
// failing room holds up nobody else. What a worker delivered is deleted
// before the outbox is read again.
func (d *Deliverer) run() {
	defer close(d.done)
	d.log.Info("webhooks: delivering", "events", eventsOf(d.cfg), "timeout", d.cfg.Timeout)
	busy := make(map[string]bool)
	results := make(chan roomDone, d.o.Workers)
	var workers sync.WaitGroup
	defer func() {
		// Closing: the workers' requests are cancelled; what they had
		// delivered is still deleted.
		workers.Wait()
		close(results)
		var done []roomDone
		for r := range results {
			done = append(done, r)
		}
		d.finish(done)
	}()
	for d.ctx.Err() == nil {
		if !d.lease() {
			d.sleep(d.o.Poll, results, busy)
			continue
		}
		now := time.Now()
		if len(busy) < d.o.Workers {
			skip := make([]string, 0, len(busy)+len(d.failing))
			for room := range busy {
				skip = append(skip, room)
			}
			for room, b := range d.failing {
				if now.Before(b.until) {
					skip = append(skip, room)
				}
			}
			entries, err := d.st.OutboxPending(d.ctx, d.o.Batch, skip)
			if err != nil && d.ctx.Err() == nil {
				d.log.Error("webhooks: cannot read the outbox; will retry", "err", err)
			}
			for _, work := range byRoom(entries) {
				if len(busy) >= d.o.Workers {
					break
				}
				busy[work[0].Room] = true
				workers.Add(1)
				go func() {
					defer workers.Done()
					results <- d.sendRoom(work)
				}()
			}
		}
		d.sleep(d.idleWait(now), results, busy)
	}
}

// byRoom splits entries by room, each room's in their order, rooms in the
// order of their oldest entry.
func byRoom(entries []store.OutboxEntry) [][]store.OutboxEntry {
	var out [][]store.OutboxEntry
	at := make(map[string]int)
	for _, e := range entries {
		i, ok := at[e.Room]
		if !ok {
			i = len(out)
			at[e.Room] = i
			out = append(out, nil)
		}
		out[i] = append(out[i], e)
	}
	return out
}

// sendRoom sends one room's entries in order, stopping at the first that
// fails, or when the lease may have lapsed: another node may then be
// sending the same room.
func (d *Deliverer) sendRoom(work []store.OutboxEntry) roomDone {
	r := roomDone{room: work[0].Room}
	for _, e := range work {
		if d.ctx.Err() != nil || time.Now().UnixNano() > d.stopAt.Load() {
			break
		}
		if !d.send(e) {
			r.failed = e.ID
			break
		}
		r.delivered = append(r.delivered, e.ID)
	}
	return r
}

// finish takes workers' reports: rooms that failed back off, the others
// are well again, and what was delivered is deleted in one call.
func (d *Deliverer) finish(done []roomDone) {
	var delivered []string
	now := time.Now()
	for _, r := range done {
		delivered = append(delivered, r.delivered...)
		if r.failed == "" {
			delete(d.failing, r.room)
			continue
		}
		b := d.failing[r.room]
		if b == nil || b.head != r.failed {
			b = &backoff{head: r.failed}
			d.failing[r.room] = b
		}
		b.failures++
		b.until = now.Add(d.backoff(b.failures))
	}
	if len(delivered) == 0 {
		return
	}
	// Not d.ctx: what was delivered is deleted even when closing, so that
	// a clean restart sends none of it again.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := d.st.OutboxDelete(ctx, delivered); err != nil {
		d.log.Error("webhooks: delivered entries stay in the outbox and will be sent again", "entries", len(delivered), "err", err)
	}
}

func eventsOf(c Config) string {
	if len(c.Events) == 0 {
		return "all"
	}
	return strings.Join(c.Events, ",")
}

// lease takes or renews the right to deliver when a third of it is left.
func (d *Deliverer) lease() bool {
	ttl := d.o.LeaseTTL
	if time.Until(d.leaseUntil) > 2*ttl/3 {
		return true
	}
	start := time.Now()
	ok, err := d.st.OutboxLease(d.ctx, d.holder, ttl)
	switch {
	case err != nil:
		if d.ctx.Err() == nil {
			d.log.Error("webhooks: cannot take the delivery lease; will retry", "err", err)
		}
		ok = false
	case !ok && !d.leaseUntil.IsZero():
		d.log.Warn("webhooks: another node took over delivery")
	case ok && d.leaseUntil.IsZero():
		d.log.Info("webhooks: this node delivers")
	}
	if ok {
		d.leaseUntil = start.Add(ttl)
	} else {
		d.leaseUntil = time.Time{}
	}
	// Workers stop one request timeout before the lease may lapse.
	d.stopAt.Store(d.leaseUntil.Add(-d.cfg.Timeout).UnixNano())
	return ok
}

// idleWait is how long to sleep with nothing to do: until the first
// failing room may be tried again, or the poll interval.
func (d *Deliverer) idleWait(now time.Time) time.Duration {
	wait := d.o.Poll
	for _, b := range d.failing {
		wait = min(wait, max(b.until.Sub(now), time.Millisecond))
	}
	return wait
}

// sleep waits for a wake, a worker's report (taking it and any others
// ready), the end, or wait.
func (d *Deliverer) sleep(wait time.Duration, results chan roomDone, busy map[string]bool) {
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-d.ctx.Done():
	case <-d.wake:
	case <-t.C:
	case r := <-results:
		done := []roomDone{r}
		for more := true; more; {
			select {
			case r := <-results:
				done = append(done, r)
			default:
				more = false
			}
		}
		for _, r := range done {
			delete(busy, r.room)
		}
		d.finish(done)
	}
}

// backoff is the wait after a room's n-th failure in a row: MinBackoff
// doubled n-1 times, capped at MaxBackoff, of which a random half is
// taken off so that rooms failing together do not retry together.
func (d *Deliverer) backoff(n int) time.Duration {
	wait := d.o.MaxBackoff
	if n-1 < 32 {
		wait = min(d.o.MinBackoff<<(n-1), d.o.MaxBackoff)
		if wait <= 0 { // overflowed
			wait = d.o.MaxBackoff
		}
	}
	return wait/2 + rand.N(wait/2+1)
}

// send POSTs one entry and reports whether the application took it (2xx).
func (d *Deliverer) send(e store.OutboxEntry) bool {
	ctx, cancel := context.WithTimeout(d.ctx, d.cfg.Timeout)
	defer cancel()
	start := time.Now()
	outcome, ok, detail := d.post(ctx, e)
	took := time.Since(start)
	if d.o.Observe != nil && d.ctx.Err() == nil {
		d.o.Observe(outcome, took)
	}
	if !ok && d.ctx.Err() == nil {
		d.log.Warn("webhooks: delivery failed; will retry", "event_id", e.ID, "type", e.Type, "outcome", outcome, "detail", detail, "took", took.Round(time.Millisecond))
	}
	return ok
}

func (d *Deliverer) post(ctx context.Context, e store.OutboxEntry) (outcome string, ok bool, detail string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.cfg.URL, strings.NewReader(string(e.Payload)))
	if err != nil {
		return "error", false, err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Parley-Webhooks/1")
	req.Header.Set(EventIDHeader, e.ID)
	req.Header.Set(EventTypeHeader, e.Type)
	req.Header.Set(hooks.SignatureHeader, hooks.Sign(d.cfg.Secret, time.Now(), e.Payload))
	resp, err := d.o.Client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return "timeout", false, fmt.Sprintf("no answer within %v", d.cfg.Timeout)
		}
		return "error", false, err.Error()
	}
	// Drained (a little) so the connection is reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return "status", false, resp.Status
	}
	return "ok", true, ""
}
