// Command parley-load drives a running chat server over the network and
// reports what it sustained: idle memory per connection, fan-out in one
// big room, many small rooms, and connection churn. It speaks Parley
// (parley.v1.proto or parley.v1.json, through transport/client) and
// Centrifugo v6 (its JSON client protocol), so bench/compare.sh can measure
// both with the same code on the same machine.
//
// Every scenario is bounded in connections and time and stops by itself.
// A progress line goes to stderr each second; a human summary and then one
// JSON line (for scripts) go to stdout.
//
//	go run ./cmd/parley-load -scenario fanout -members 1000 -rate 500 -pid $(pgrep -n parley)
//	go run ./cmd/parley-load -scenario fanout -rate 200,400,800,1600   # a sweep: stops at the first failing rate
//	go run ./cmd/parley-load -target centrifugo -url ws://127.0.0.1:8000/connection/websocket -scenario rooms
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "parley-load:", err)
		os.Exit(1)
	}
}

// config is the command line.
type config struct {
	target   string
	url      string
	codec    string
	scenario string
	pid      pids
	runID    string

	// idle
	conns    int
	roomSize int
	hold     time.Duration

	// fanout, rooms
	members    int
	rooms      int
	publishers int
	rates      []float64
	duration   time.Duration
	sweepAll   bool

	// churn
	churnRate float64
	chatRate  float64

	msgBytes        int
	inflight        int
	maxP99          time.Duration
	drain           time.Duration
	ackTimeout      time.Duration
	dialTimeout     time.Duration
	dialConcurrency int
	timeout         time.Duration
	cpuProfile      string
	maxOther        float64
	retries         int

	push pushConfig
}

// scenarioDefaults are the sizes from issue 8, per scenario.
var scenarioDefaults = map[string]struct {
	members, rooms, publishers int
	rate                       string
}{
	"idle":   {},
	"fanout": {members: 1000, rooms: 1, publishers: 10, rate: "500"},
	"rooms":  {members: 10, rooms: 1000, rate: "2000"},
	"churn":  {members: 10, rooms: 100, rate: "100"},
	"push":   {members: 1000, rooms: 1, publishers: 1, rate: "1,2,4"},
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	var rates, users, sources, metrics string
	fs := flag.NewFlagSet("parley-load", flag.ContinueOnError)
	c.push.flags(fs, &users, &sources, &metrics)
	fs.SetOutput(stderr)
	fs.StringVar(&c.target, "target", "parley", "server kind: parley or centrifugo")
	fs.StringVar(&c.url, "url", "", "WebSocket URL (default ws://127.0.0.1:8080/ws for parley, ws://127.0.0.1:8000/connection/websocket for centrifugo); parley: comma-separated URLs (a cluster's nodes) get connections in turn")
	fs.StringVar(&c.codec, "codec", "proto", "parley codec: proto (parley.v1.proto) or json (parley.v1.json)")
	fs.StringVar(&c.scenario, "scenario", "fanout", "idle, fanout, rooms, churn or push (one room over a cluster, several processes: see bench/push.sh)")
	fs.Var(&c.pid, "pid", "server process id: its CPU (/proc/PID/stat) and memory (/proc/PID/status) are reported; 0 skips them. Comma-separated ids (a cluster's nodes) are summed")
	fs.StringVar(&c.runID, "run-id", "", "prefix of room and user names (default random), so runs against one server never share rooms")
	fs.IntVar(&c.conns, "conns", 10000, "idle: connections to open")
	fs.IntVar(&c.roomSize, "room-size", 10, "idle: connections per room")
	fs.DurationVar(&c.hold, "hold", 10*time.Second, "idle: how long to hold the connections before reading the server's memory")
	fs.IntVar(&c.members, "members", 0, "fanout, rooms, churn: members per room (defaults: fanout 1000, rooms 10, churn 10)")
	fs.IntVar(&c.rooms, "rooms", 0, "rooms, churn: number of rooms (defaults: rooms 1000, churn 100; fanout is always 1)")
	fs.IntVar(&c.publishers, "publishers", 0, "fanout: members that post (default 10); rooms and churn: one poster per room")
	fs.StringVar(&rates, "rate", "", "offered posts per second over all rooms (defaults: fanout 500, rooms 2000, churn 100); a comma-separated list runs one step per rate and stops at the first that fails (p99 over -max-p99, loss, duplicates, errors or disconnects)")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "how long each rate step (or the churn run) offers load")
	fs.BoolVar(&c.sweepAll, "sweep-all", false, "run every step of a -rate list even after one fails")
	fs.Float64Var(&c.churnRate, "churn-rate", 50, "churn: connections per second that connect, join, post, leave and close")
	fs.IntVar(&c.msgBytes, "msg-bytes", 64, "payload size of each post in bytes")
	fs.IntVar(&c.inflight, "inflight", 512, "most unacknowledged posts per posting connection; past it a post is skipped and counted")
	fs.DurationVar(&c.maxP99, "max-p99", 250*time.Millisecond, "a step fails when its delivery p99 reaches this")
	fs.DurationVar(&c.drain, "drain", 3*time.Second, "after a step, how long to wait without progress for messages still on the way")
	fs.DurationVar(&c.ackTimeout, "ack-timeout", 10*time.Second, "how long a post waits for its acknowledgement")
	fs.DurationVar(&c.dialTimeout, "dial-timeout", 10*time.Second, "bound on opening and logging in one connection")
	fs.IntVar(&c.dialConcurrency, "dial-concurrency", 64, "connections opened at once")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Minute, "bound on the whole run")
	fs.Float64Var(&c.maxOther, "max-other-cpu", 0.1, "a step during which other processes (neither the server of -pid nor this tool) used more than this share of the machine's CPUs is disturbed: it is repeated after the machine quiets down (0: never)")
	fs.IntVar(&c.retries, "retries", 2, "how often a disturbed step is repeated")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write the load tool's own CPU profile to this file (to check the tool is not the bottleneck)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: parley-load [flags]\n\nDrives a Parley (or Centrifugo) server with one scenario and reports what it\nsustained: a progress line each second on stderr, a summary and one JSON line\non stdout.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q; see -h", fs.Args())
	}
	d, ok := scenarioDefaults[c.scenario]
	if !ok {
		return c, fmt.Errorf("-scenario %q: want idle, fanout, rooms, churn or push", c.scenario)
	}
	if c.scenario == "fanout" || c.scenario == "push" {
		c.rooms = 1
	}
	if c.members == 0 {
		c.members = d.members
	}
	if c.rooms == 0 {
		c.rooms = d.rooms
	}
	if c.publishers == 0 {
		c.publishers = d.publishers
	}
	if rates == "" {
		rates = d.rate
	}
	if c.scenario == "churn" {
		c.chatRate, rates = mustRate(rates), ""
	}
	if rates == "none" && c.scenario == "push" {
		rates = "" // single posts only
	}
	for _, f := range strings.Split(rates, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		v, err := strconv.ParseFloat(f, 64)
		if err != nil || v <= 0 {
			return c, fmt.Errorf("-rate %q: want positive numbers separated by commas", rates)
		}
		c.rates = append(c.rates, v)
	}
	switch c.target {
	case "parley":
		if c.url == "" {
			c.url = "ws://127.0.0.1:8080/ws"
		}
	case "centrifugo":
		if c.url == "" {
			c.url = "ws://127.0.0.1:8000/connection/websocket"
		}
	default:
		return c, fmt.Errorf("-target %q: want parley or centrifugo", c.target)
	}
	switch {
	case c.scenario == "idle" && (c.conns < 1 || c.roomSize < 1):
		return c, errors.New("-conns and -room-size must be at least 1")
	case c.scenario != "idle" && (c.members < 1 || c.rooms < 1):
		return c, errors.New("-members and -rooms must be at least 1")
	case c.scenario == "fanout" && (c.publishers < 1 || c.publishers > c.members):
		return c, fmt.Errorf("-publishers %d: want 1 to -members (%d)", c.publishers, c.members)
	case c.scenario == "churn" && (c.churnRate <= 0 || c.chatRate <= 0):
		return c, errors.New("-churn-rate and -rate must be positive")
	case c.duration <= 0 || c.msgBytes < 0 || c.inflight < 1 || c.dialConcurrency < 1:
		return c, errors.New("-duration, -inflight and -dial-concurrency must be positive")
	}
	if c.scenario == "push" {
		if err := c.push.parse(&c, users, sources, metrics); err != nil {
			return c, err
		}
	}
	if c.runID == "" {
		var b [3]byte
		rand.Read(b[:])
		c.runID = hex.EncodeToString(b[:])
	}
	if len(c.runID) > 12 {
		return c, errors.New("-run-id: at most 12 characters (room names are limited to 32)")
	}
	return c, nil
}

func mustRate(s string) float64 {
	v, _ := strconv.ParseFloat(strings.Split(s, ",")[0], 64)
	return v
}

// run is main without the process: the test calls it with its own server.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	need := cfg.conns
	if cfg.scenario != "idle" {
		need = cfg.members * cfg.rooms
	}
	if cfg.scenario == "push" {
		need = cfg.push.usersTo - cfg.push.usersFrom
	}
	raiseFileLimit(need+256, stderr)
	if cfg.scenario == "push" {
		ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
		defer cancel()
		return runPush(ctx, cfg, args, stdout, stderr)
	}

	var target Target
	switch cfg.target {
	case "parley":
		target, err = newParleyTarget(cfg.url, cfg.codec)
		if err != nil {
			return err
		}
	case "centrifugo":
		target = &centrifugoTarget{url: cfg.url}
	}
	if cfg.pid.set() {
		if _, err := cfg.pid.cpu(); err != nil {
			return fmt.Errorf("-pid %s: %w", cfg.pid.String(), err)
		}
	}
	if cfg.cpuProfile != "" {
		f, err := os.Create(cfg.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	r := newLoadRun(cfg, target, stderr)
	rep := r.execute(ctx)
	rep.Args = args
	writeReport(stdout, rep)
	if rep.Error != "" {
		return errors.New(rep.Error)
	}
	return nil
}

// raiseFileLimit lifts the soft RLIMIT_NOFILE to the hard limit, so that
// thousands of connections can be open, and warns when even that is short.
func raiseFileLimit(need int, stderr io.Writer) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			fmt.Fprintf(stderr, "parley-load: could not raise the file limit: %v\n", err)
		}
		syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
	if uint64(need) > lim.Cur {
		fmt.Fprintf(stderr, "parley-load: warning: %d connections need about %d file descriptors but the limit is %d; raise it (ulimit -Hn, /etc/security/limits.conf)\n", need-256, need, lim.Cur)
	}
}
