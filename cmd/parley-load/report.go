package main

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"strings"
	"time"
)

// Report is the run's result; its JSON form is the last line on stdout.
type Report struct {
	Tool      string         `json:"tool"`
	Target    string         `json:"target"`
	Scenario  string         `json:"scenario"`
	URL       string         `json:"url"`
	PID       int            `json:"pid,omitempty"`
	Date      string         `json:"date"`
	GoVersion string         `json:"go_version"`
	NumCPU    int            `json:"num_cpu"`
	Params    map[string]any `json:"params"`
	// Args is the command line, so every figure comes with its command.
	Args []string `json:"args"`

	Conns   int     `json:"conns"`
	Connect Latency `json:"connect"`
	Join    Latency `json:"join"`

	Steps []StepResult `json:"steps,omitempty"`
	// MaxOKRate is the highest offered rate of a passing step;
	// MaxOKDeliveriesPerSec the highest deliveries/s of a passing step.
	MaxOKRate             float64 `json:"max_ok_rate"`
	MaxOKDeliveriesPerSec float64 `json:"max_ok_deliveries_per_s"`
	// Totals over every step.
	Lost         uint64 `json:"lost"`
	Dup          uint64 `json:"dup"`
	Disconnected int    `json:"disconnected"`

	Idle  *IdleResult  `json:"idle,omitempty"`
	Churn *ChurnResult `json:"churn,omitempty"`

	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// StepResult is one offered rate held for one duration.
type StepResult struct {
	Rate      float64 `json:"offered_rate"`
	DurationS float64 `json:"duration_s"`

	Offered    uint64            `json:"posts_offered"`
	Sent       uint64            `json:"posts_sent"`
	Acked      uint64            `json:"posts_acked"`
	Skipped    uint64            `json:"posts_skipped"`
	PostErrors map[string]uint64 `json:"post_errors"`
	AckLatency Latency           `json:"ack_latency"`

	Expected         uint64  `json:"deliveries_expected"`
	Delivered        uint64  `json:"deliveries"`
	DeliveriesPerSec float64 `json:"deliveries_per_s"`
	PostsPerSec      float64 `json:"posts_acked_per_s"`
	Latency          Latency `json:"latency"`

	Lost                 uint64         `json:"lost"`
	Dup                  uint64         `json:"dup"`
	Foreign              uint64         `json:"foreign"`
	Disconnected         int            `json:"disconnected"`
	CloseCodes           map[string]int `json:"close_codes"`
	MissedByDisconnected uint64         `json:"missed_by_disconnected"`

	ServerCPUS     float64 `json:"server_cpu_s"`
	ServerCPUPer1M float64 `json:"server_cpu_s_per_1m_deliveries"`
	ServerRSSKB    int64   `json:"server_rss_kb"`
	ClientCPUS     float64 `json:"client_cpu_s"`
	// MachineCPUS is every CPU's busy time during the step (offer and
	// drain, WallS long); OtherCPUS what neither the server nor this tool
	// used of it: other processes competing for the machine.
	MachineCPUS float64 `json:"machine_cpu_s"`
	OtherCPUS   float64 `json:"other_cpu_s"`
	WallS       float64 `json:"wall_s"`
	// Disturbed is set when OtherCPUS passed -max-other-cpu of the
	// machine; such a step is repeated (Attempts counts the runs) and the
	// last run is reported.
	Disturbed bool `json:"disturbed"`
	Attempts  int  `json:"attempts"`

	OK  bool   `json:"ok"`
	Why string `json:"why,omitempty"`
}

// IdleResult is the idle scenario's memory reading.
type IdleResult struct {
	Conns         int            `json:"conns"`
	RoomSize      int            `json:"room_size"`
	HoldS         float64        `json:"hold_s"`
	RSSBeforeKB   int64          `json:"rss_before_kb"`
	RSSAfterKB    int64          `json:"rss_after_kb"`
	PerConnKB     float64        `json:"rss_per_conn_kb"`
	ServerThreads int64          `json:"server_threads"`
	Closed        int            `json:"closed"`
	CloseCodes    map[string]int `json:"close_codes"`
}

// ChurnResult is the churn scenario's connection cycle figures.
type ChurnResult struct {
	Rate       float64           `json:"churn_rate"`
	Started    uint64            `json:"started"`
	Completed  uint64            `json:"completed"`
	Skipped    uint64            `json:"skipped"`
	ErrorCount uint64            `json:"error_count"`
	Errors     map[string]uint64 `json:"errors"`
	Connect    Latency           `json:"connect"`
	Join       Latency           `json:"join"`
}

func joinWhy(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// judge decides whether the step passed: p99 under the bound, every
// acknowledged post delivered once to every member, no error, nothing
// skipped, nobody disconnected.
func (s *StepResult) judge(maxP99 time.Duration) {
	var why []string
	if s.Latency.Count == 0 {
		why = append(why, "nothing delivered")
	}
	if s.Latency.P99 >= ms(maxP99) {
		why = append(why, fmt.Sprintf("p99 %s ≥ %s", fmtMs(s.Latency.P99), fmtMs(ms(maxP99))))
	}
	if s.Lost > 0 {
		why = append(why, fmt.Sprintf("%d lost", s.Lost))
	}
	if s.Dup > 0 {
		why = append(why, fmt.Sprintf("%d duplicated", s.Dup))
	}
	if s.Disconnected > 0 {
		why = append(why, fmt.Sprintf("%d disconnected (codes %v)", s.Disconnected, s.CloseCodes))
	}
	var errs uint64
	for _, n := range s.PostErrors {
		errs += n
	}
	if errs > 0 {
		why = append(why, fmt.Sprintf("%d post errors %v", errs, s.PostErrors))
	}
	if s.Skipped > 0 {
		why = append(why, fmt.Sprintf("%d posts skipped (over -inflight unacknowledged)", s.Skipped))
	}
	s.OK = len(why) == 0
	s.Why = strings.Join(why, "; ")
}

func (s *StepResult) line() string {
	verdict := "ok"
	if !s.OK {
		verdict = "FAIL: " + s.Why
	}
	cpu := ""
	if s.Disturbed {
		verdict += " (DISTURBED by other processes)"
	}
	if s.ServerCPUS > 0 {
		cpu = fmt.Sprintf(", server %.2f CPU-s (%.2f per 1M deliveries), tool %.2f, others %.2f in %.1fs", s.ServerCPUS, s.ServerCPUPer1M, s.ClientCPUS, s.OtherCPUS, s.WallS)
	}
	return fmt.Sprintf("offered %.0f posts/s for %gs: acked %d (%.0f/s), deliveries %d of %d (%.0f/s), latency %s, lost %d, dup %d%s: %s",
		s.Rate, s.DurationS, s.Acked, s.PostsPerSec, s.Delivered, s.Expected, s.DeliveriesPerSec, s.Latency, s.Lost, s.Dup, cpu, verdict)
}

func newReport(cfg config, t Target) *Report {
	p := map[string]any{"codec": cfg.codec, "msg_bytes": cfg.msgBytes, "run_id": cfg.runID}
	switch cfg.scenario {
	case "idle":
		p["conns"], p["room_size"], p["hold_s"] = cfg.conns, cfg.roomSize, cfg.hold.Seconds()
	case "fanout", "rooms", "churn":
		p["rooms"], p["members"], p["rates"], p["duration_s"] = cfg.rooms, cfg.members, cfg.rates, cfg.duration.Seconds()
		p["max_p99_ms"], p["inflight"] = ms(cfg.maxP99), cfg.inflight
		if cfg.scenario == "fanout" {
			p["publishers"] = cfg.publishers
		}
		if cfg.scenario == "churn" {
			p["churn_rate"], p["chat_rate"] = cfg.churnRate, cfg.chatRate
		}
	}
	if cfg.target == "centrifugo" {
		delete(p, "codec")
	}
	return &Report{Tool: "parley-load", Target: t.Name(), Scenario: cfg.scenario, URL: cfg.url, PID: cfg.pid.first(),
		Date: time.Now().UTC().Format(time.RFC3339), GoVersion: runtime.Version(), NumCPU: runtime.NumCPU(), Params: p}
}

// finish computes the totals and the verdict.
func (rep *Report) finish() {
	ok := rep.Error == ""
	for _, s := range rep.Steps {
		rep.Lost += s.Lost
		rep.Dup += s.Dup
		rep.Disconnected += s.Disconnected
		if s.OK {
			rep.MaxOKRate = max(rep.MaxOKRate, s.Rate)
			rep.MaxOKDeliveriesPerSec = max(rep.MaxOKDeliveriesPerSec, s.DeliveriesPerSec)
		}
	}
	switch rep.Scenario {
	case "fanout", "rooms":
		// A sweep passes when its first step did (later steps find the limit).
		ok = ok && len(rep.Steps) > 0 && rep.Steps[0].OK
	case "churn":
		ok = ok && len(rep.Steps) > 0 && rep.Steps[0].OK
	}
	rep.OK = ok
}

func writeReport(w io.Writer, rep *Report) {
	var b strings.Builder
	fmt.Fprintf(&b, "parley-load %s against %s (%s), %s\n", rep.Scenario, rep.Target, rep.URL, rep.Date)
	if rep.Conns > 0 {
		fmt.Fprintf(&b, "  connections: %d; connect %s; join %s\n", rep.Conns, rep.Connect, rep.Join)
	}
	if i := rep.Idle; i != nil && i.RSSAfterKB > 0 {
		fmt.Fprintf(&b, "  server RSS %.1f MiB before, %.1f MiB with %d idle connections: %.1f KiB per connection (%d threads)\n",
			float64(i.RSSBeforeKB)/1024, float64(i.RSSAfterKB)/1024, i.Conns, i.PerConnKB, i.ServerThreads)
	}
	for i, s := range rep.Steps {
		fmt.Fprintf(&b, "  step %d: %s\n", i+1, s.line())
		if len(s.CloseCodes) > 0 {
			fmt.Fprintf(&b, "          close codes of disconnected members: %v (they missed %d deliveries)\n", s.CloseCodes, s.MissedByDisconnected)
		}
	}
	if c := rep.Churn; c != nil {
		fmt.Fprintf(&b, "  churn at %.0f/s: %d started, %d completed, %d skipped, %d errors %v\n", c.Rate, c.Started, c.Completed, c.Skipped, c.ErrorCount, c.Errors)
		fmt.Fprintf(&b, "  churn connect %s\n  churn join    %s\n", c.Connect, c.Join)
	}
	if len(rep.Steps) > 1 {
		fmt.Fprintf(&b, "  highest passing rate: %.0f posts/s (%.0f deliveries/s)\n", rep.MaxOKRate, rep.MaxOKDeliveriesPerSec)
	}
	if rep.Error != "" {
		fmt.Fprintf(&b, "  ERROR: %s\n", rep.Error)
	}
	fmt.Fprintf(&b, "  verdict: %s\n", map[bool]string{true: "ok", false: "FAIL"}[rep.OK])
	io.WriteString(w, b.String())
	line, _ := json.Marshal(rep)
	w.Write(append(line, '\n'))
}
