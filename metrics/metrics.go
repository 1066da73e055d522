// Package metrics exposes a Parley node to Prometheus: it reads the
// counters that transport/ and actors/ keep as plain atomics at scrape time
// (so the hot paths never touch a Prometheus type), and times the history
// store. It owns nothing else.
package metrics

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/parleychat/parley/actors"
	"github.com/parleychat/parley/cluster"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/store"
	"github.com/parleychat/parley/transport"
)

// Registry holds a node's metrics.
type Registry struct {
	reg       *prometheus.Registry
	storeTime *prometheus.HistogramVec
	apiTime   *prometheus.HistogramVec
	hookTime  *prometheus.HistogramVec
	webhook   *prometheus.HistogramVec
}

// New returns a registry with the Go runtime and process collectors.
func New() *Registry {
	r := &Registry{reg: prometheus.NewRegistry()}
	r.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	r.storeTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "parley_store_seconds",
		Help:    "Time taken by history store calls, by operation and outcome (ok, error, or corrupt: damaged history that retrying will not read).",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"op", "outcome"})
	r.apiTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "parley_api_seconds",
		Help:    "Time taken by server API calls, by method and Connect code (ok for none).",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"method", "code"})
	r.hookTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "parley_hook_seconds",
		Help:    "Time taken by calls to the application's hooks, by hook (connect, join, post) and outcome (allow, deny, rewrite, failed_open, failed_closed).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"hook", "outcome"})
	r.webhook = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "parley_webhook_seconds",
		Help:    "Time taken by webhook deliveries, by outcome (ok: a 2xx; status: another status; timeout; error: no answer).",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"outcome"})
	r.reg.MustRegister(r.storeTime, r.apiTime, r.hookTime, r.webhook)
	return r
}

// WebhookCall records one webhook delivery (webhooks.Options.Observe).
func (r *Registry) WebhookCall(outcome string, took time.Duration) {
	r.webhook.WithLabelValues(outcome).Observe(took.Seconds())
}

// WatchOutbox adds the webhook outbox's depth and age, read from the
// store at scrape time.
func (r *Registry) WatchOutbox(o store.Outbox) {
	r.reg.MustRegister(outboxCollector{o})
}

var (
	dOutboxDepth = prometheus.NewDesc("parley_webhook_outbox_depth", "Webhook events waiting in the outbox.", nil, nil)
	dOutboxAge   = prometheus.NewDesc("parley_webhook_outbox_oldest_seconds", "Age of the oldest webhook event waiting in the outbox (0: empty).", nil, nil)
)

type outboxCollector struct{ o store.Outbox }

func (c outboxCollector) Describe(ch chan<- *prometheus.Desc) { ch <- dOutboxDepth; ch <- dOutboxAge }

func (c outboxCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := c.o.OutboxStats(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(dOutboxDepth, err)
		return
	}
	age := 0.0
	if !st.Oldest.IsZero() {
		age = max(time.Since(st.Oldest).Seconds(), 0)
	}
	ch <- prometheus.MustNewConstMetric(dOutboxDepth, prometheus.GaugeValue, float64(st.Depth))
	ch <- prometheus.MustNewConstMetric(dOutboxAge, prometheus.GaugeValue, age)
}

// HookCall records one call to an application's hook (hooks.Options.Observe).
func (r *Registry) HookCall(hook, outcome string, took time.Duration) {
	r.hookTime.WithLabelValues(hook, outcome).Observe(took.Seconds())
}

// APICall records one server API call (api.Options.Observe).
func (r *Registry) APICall(method, code string, took time.Duration) {
	r.apiTime.WithLabelValues(method, code).Observe(took.Seconds())
}

// WatchCluster adds a cluster member's counters.
func (r *Registry) WatchCluster(node *actors.Node, cl *cluster.Cluster) {
	r.reg.MustRegister(&clusterCollector{node: node, cl: cl})
}

var (
	dMembers = prometheus.NewDesc("parley_cluster_members", "Members in this node's view of the cluster.", nil, nil)
	dCluster = prometheus.NewDesc("parley_cluster_events_total",
		"Cluster events: room_lost (a room died with its node; members re-joined), rerouted (a message reached a stopped room and was routed again), lookup_retry, expired (requests failed after waiting for a room), moved (a room activated on a non-owner forwarded and stopped), relay (a fan-out sent to another member as one message for several of its sessions), fenced (a room activation whose batch the store refused, because another activation had stored those seqs, stopped so its members re-join), removed (another member removed this one from its view for good; it shuts down to be restarted), join_resend_dropped (a session's resent join that a room dropped, having its first one: the room is backed up).",
		[]string{"event"}, nil)
)

type clusterCollector struct {
	node *actors.Node
	cl   *cluster.Cluster
}

func (c *clusterCollector) Describe(ch chan<- *prometheus.Desc) { ch <- dMembers; ch <- dCluster }

func (c *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	st := &c.cl.Stats
	ch <- prometheus.MustNewConstMetric(dMembers, prometheus.GaugeValue, float64(st.Members.Load()))
	for _, e := range []struct {
		name string
		n    int64
	}{{"room_lost", st.Lost.Load()}, {"rerouted", st.Rerouted.Load()}, {"lookup_retry", st.Retries.Load()},
		{"expired", st.Expired.Load()}, {"moved", c.node.Stats.Moved.Load()}, {"relay", c.node.Stats.Relays.Load()},
		{"fenced", c.node.Stats.Fenced.Load()}, {"removed", st.Removed.Load()},
		{"join_resend_dropped", c.node.Stats.ResendsDropped.Load()}} {
		ch <- prometheus.MustNewConstMetric(dCluster, prometheus.CounterValue, float64(e.n), e.name)
	}
}

// Watch adds a node's counters.
func (r *Registry) Watch(node *actors.Node, ws *transport.Stats) {
	r.reg.MustRegister(&collector{node: node, ws: ws})
}

// Handler serves the metrics in the Prometheus text format.
func (r *Registry) Handler() http.Handler {
	return promhttp.HandlerFor(r.reg, promhttp.HandlerOpts{Registry: r.reg})
}

// Store wraps s so every call is timed in parley_store_seconds.
func (r *Registry) Store(s store.Store) store.Store { return &timedStore{Store: s, h: r.storeTime} }

type timedStore struct {
	store.Store
	h *prometheus.HistogramVec
}

func (t *timedStore) observe(op string, start time.Time, err error) {
	outcome := "ok"
	switch {
	case errors.Is(err, store.ErrCorrupt):
		outcome = "corrupt"
	case err != nil:
		outcome = "error"
	}
	t.h.WithLabelValues(op, outcome).Observe(time.Since(start).Seconds())
}

func (t *timedStore) Commit(ctx context.Context, b store.Batch) (err error) {
	defer func(start time.Time) { t.observe("commit", start, err) }(time.Now())
	return t.Store.Commit(ctx, b)
}

func (t *timedStore) Room(ctx context.Context, name string) (r store.RoomRecord, ok bool, err error) {
	defer func(start time.Time) { t.observe("room", start, err) }(time.Now())
	return t.Store.Room(ctx, name)
}

func (t *timedStore) Members(ctx context.Context, room, after string, limit int) (m []store.Member, err error) {
	defer func(start time.Time) { t.observe("members", start, err) }(time.Now())
	return t.Store.Members(ctx, room, after, limit)
}

func (t *timedStore) UserRooms(ctx context.Context, user, after string, limit int) (u []store.UserRoom, err error) {
	defer func(start time.Time) { t.observe("user_rooms", start, err) }(time.Now())
	return t.Store.UserRooms(ctx, user, after, limit)
}

func (t *timedStore) PublicRooms(ctx context.Context, after string, limit int) (r []store.RoomRecord, err error) {
	defer func(start time.Time) { t.observe("public_rooms", start, err) }(time.Now())
	return t.Store.PublicRooms(ctx, after, limit)
}

func (t *timedStore) After(ctx context.Context, room string, after uint64, limit int) (m []store.Message, err error) {
	defer func(start time.Time) { t.observe("after", start, err) }(time.Now())
	return t.Store.After(ctx, room, after, limit)
}

func (t *timedStore) Before(ctx context.Context, room string, before uint64, limit int) (m []store.Message, err error) {
	defer func(start time.Time) { t.observe("before", start, err) }(time.Now())
	return t.Store.Before(ctx, room, before, limit)
}

func (t *timedStore) Bounds(ctx context.Context, room string) (b store.Bounds, err error) {
	defer func(start time.Time) { t.observe("bounds", start, err) }(time.Now())
	return t.Store.Bounds(ctx, room)
}

func (t *timedStore) Trim(ctx context.Context, ret store.Retention, now time.Time) (n int, err error) {
	defer func(start time.Time) { t.observe("trim", start, err) }(time.Now())
	return t.Store.Trim(ctx, ret, now)
}

var (
	dConns       = prometheus.NewDesc("parley_connections", "Open WebSocket connections, by codec.", []string{"codec"}, nil)
	dRooms       = prometheus.NewDesc("parley_rooms", "Room actors running.", nil, nil)
	dSessions    = prometheus.NewDesc("parley_sessions", "Session actors running.", nil, nil)
	dFramesIn    = prometheus.NewDesc("parley_frames_in_total", "Frames read from clients.", nil, nil)
	dFramesOut   = prometheus.NewDesc("parley_frames_out_total", "Frames written to clients (a batch counts once).", nil, nil)
	dBatched     = prometheus.NewDesc("parley_frames_batched_total", "Frames that went out inside a batch frame.", nil, nil)
	dPosts       = prometheus.NewDesc("parley_posts_total", "Posts stored and acknowledged.", nil, nil)
	dDeliveries  = prometheus.NewDesc("parley_deliveries_total", "Room events handed to members (one per member per event).", nil, nil)
	dDrops       = prometheus.NewDesc("parley_drops_total", "Work refused or lost, by reason.", []string{"reason"}, nil)
	dCloses      = prometheus.NewDesc("parley_closes_total", "Connections ended, by WebSocket close code.", []string{"code"}, nil)
	dRefusals    = prometheus.NewDesc("parley_handshakes_refused_total", "WebSocket handshakes refused, by reason.", []string{"reason"}, nil)
	dFailures    = prometheus.NewDesc("parley_actor_failures_total", "Actor panics, by kind.", []string{"kind"}, nil)
	dRestarts    = prometheus.NewDesc("parley_actor_restarts_total", "Actor restarts ordered by supervisors, by kind.", []string{"kind"}, nil)
	dStops       = prometheus.NewDesc("parley_actor_stops_total", "Actors stopped after spending their retry budget, by kind.", []string{"kind"}, nil)
	dMailbox     = prometheus.NewDesc("parley_room_mailbox_depth", "Messages waiting in the busiest rooms' mailboxes (top 10).", []string{"room"}, nil)
	dPassivation = prometheus.NewDesc("parley_room_passivations_total", "Rooms stopped for being empty.", nil, nil)
)

// collector reads the atomics at scrape time.
type collector struct {
	node *actors.Node
	ws   *transport.Stats
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dConns, dRooms, dSessions, dFramesIn, dFramesOut, dBatched, dPosts, dDeliveries,
		dDrops, dCloses, dRefusals, dFailures, dRestarts, dStops, dMailbox, dPassivation} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for k := parleypb.Codec_CODEC_PROTO; k <= parleypb.Codec_CODEC_LEGACY; k++ {
		gauge(dConns, float64(c.ws.Open[k].Load()), codecLabel(k))
	}
	st := &c.node.Stats
	gauge(dRooms, float64(st.ActiveRooms.Load()))
	gauge(dSessions, float64(c.node.Sessions()))
	counter(dFramesIn, c.ws.FramesIn.Load())
	counter(dFramesOut, c.ws.FramesOut.Load())
	counter(dBatched, c.ws.BatchedOut.Load())
	counter(dPosts, st.Posts.Load())
	counter(dDeliveries, st.Deliveries.Load())
	counter(dPassivation, st.Passivations.Load())
	counter(dDrops, c.ws.QueueFull.Load(), "slow_client")
	counter(dDrops, c.ws.BadFrames.Load(), "bad_frame")
	counter(dDrops, st.RateLimited.Load(), "rate_limited")
	counter(dDrops, st.DeadLetters.Load(), "dead_letter")
	counter(dDrops, st.StoreErrors.Load(), "store_error")
	for code, n := range c.ws.Closes() {
		counter(dCloses, n, strconv.Itoa(int(code)))
	}
	for why, n := range c.ws.Refusals() {
		counter(dRefusals, n, why)
	}
	for _, k := range []struct {
		kind    string
		f, r, s int64
	}{
		{"session", st.Sessions.Failures.Load(), st.Sessions.Restarts.Load(), st.Sessions.Stops.Load()},
		{"room", st.Rooms.Failures.Load(), st.Rooms.Restarts.Load(), st.Rooms.Stops.Load()},
		{"presence", st.Presence.Failures.Load(), st.Presence.Restarts.Load(), st.Presence.Stops.Load()},
	} {
		counter(dFailures, k.f, k.kind)
		counter(dRestarts, k.r, k.kind)
		counter(dStops, k.s, k.kind)
	}
	for _, r := range st.BusiestRooms(10) {
		gauge(dMailbox, float64(r.Depth), r.Room)
	}
}

func codecLabel(k parleypb.Codec) string {
	switch k {
	case parleypb.Codec_CODEC_PROTO:
		return "proto"
	case parleypb.Codec_CODEC_JSON:
		return "json"
	}
	return "legacy"
}
