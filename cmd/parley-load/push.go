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
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

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
	codec       codec.Codec // -codec
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
	var err error
	if p.codec, err = codecNamed(c.codec); err != nil {
		return err
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
