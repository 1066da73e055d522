// Command summarize reads the reports bench/compare.sh collected (one
// parley-load JSON line per file, named TARGET_SCENARIO_REP.json, with the
// server's command line in TARGET_SCENARIO_REP.server) and prints one
// Markdown table: medians over repetitions, Parley's ratio to the first
// target (Centrifugo), and the commands that produced every figure.
//
//	go run ./bench/summarize DIR
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
)

type latency struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

type step struct {
	Rate             float64           `json:"offered_rate"`
	Acked            uint64            `json:"posts_acked"`
	DeliveriesPerSec float64           `json:"deliveries_per_s"`
	Latency          latency           `json:"latency"`
	Lost             uint64            `json:"lost"`
	Dup              uint64            `json:"dup"`
	Disconnected     int               `json:"disconnected"`
	CloseCodes       map[string]int    `json:"close_codes"`
	PostErrors       map[string]uint64 `json:"post_errors"`
	ServerCPUPer1M   float64           `json:"server_cpu_s_per_1m_deliveries"`
	OtherCPUS        float64           `json:"other_cpu_s"`
	WallS            float64           `json:"wall_s"`
	OK               bool              `json:"ok"`
	Why              string            `json:"why"`
	Disturbed        bool              `json:"disturbed"`
	Attempts         int               `json:"attempts"`
}

type report struct {
	Target                string   `json:"target"`
	Scenario              string   `json:"scenario"`
	Args                  []string `json:"args"`
	Date                  string   `json:"date"`
	Conns                 int      `json:"conns"`
	Connect               latency  `json:"connect"`
	Steps                 []step   `json:"steps"`
	MaxOKRate             float64  `json:"max_ok_rate"`
	MaxOKDeliveriesPerSec float64  `json:"max_ok_deliveries_per_s"`
	Lost                  uint64   `json:"lost"`
	Dup                   uint64   `json:"dup"`
	Idle                  *struct {
		Conns     int     `json:"conns"`
		PerConnKB float64 `json:"rss_per_conn_kb"`
		AfterKB   int64   `json:"rss_after_kb"`
		Closed    int     `json:"closed"`
	} `json:"idle"`
	Churn *struct {
		Rate       float64 `json:"churn_rate"`
		Started    uint64  `json:"started"`
		Completed  uint64  `json:"completed"`
		ErrorCount uint64  `json:"error_count"`
		Connect    latency `json:"connect"`
		Join       latency `json:"join"`
	} `json:"churn"`
	OK    bool   `json:"ok"`
	Error string `json:"error"`

	label, server, file string
	rep                 int
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: summarize DIR")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "summarize:", err)
		os.Exit(1)
	}
}

func run(dir string) error {
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) == 0 {
		return fmt.Errorf("no reports in %s", dir)
	}
	by := map[string]map[string][]*report{} // scenario -> label -> reps
	var labels []string
	for _, f := range files {
		base := strings.TrimSuffix(filepath.Base(f), ".json")
		parts := strings.Split(base, "_")
		if len(parts) != 3 {
			continue
		}
		r, err := load(f)
		if err != nil {
			fmt.Fprintf(os.Stderr, "summarize: %s: %v (left out)\n", f, err)
			continue
		}
		r.label, r.file = parts[0], f
		r.rep, _ = strconv.Atoi(parts[2])
		if b, err := os.ReadFile(strings.TrimSuffix(f, ".json") + ".server"); err == nil {
			r.server = strings.TrimSpace(string(b))
		}
		if by[parts[1]] == nil {
			by[parts[1]] = map[string][]*report{}
		}
		by[parts[1]][r.label] = append(by[parts[1]][r.label], r)
		if !slices.Contains(labels, r.label) {
			labels = append(labels, r.label)
		}
	}
	if order := os.Getenv("TARGETS"); order != "" {
		var ordered []string
		for _, l := range strings.Fields(order) {
			if slices.Contains(labels, l) {
				ordered = append(ordered, l)
			}
		}
		labels = ordered
	} else {
		sort.Strings(labels)
	}
	t := &table{labels: labels}
	var notes []string
	for _, sc := range []string{"idle", "fanout", "rooms", "churn"} {
		runs := by[sc]
		if runs == nil {
			continue
		}
		for _, l := range labels {
			for _, r := range runs[l] {
				if r.Error != "" {
					notes = append(notes, fmt.Sprintf("- %s %s rep %d: ERROR %s", l, sc, r.rep, r.Error))
				}
				for _, s := range r.Steps {
					if s.Disconnected > 0 || len(s.PostErrors) > 0 {
						notes = append(notes, fmt.Sprintf("- %s %s rep %d at %.0f posts/s: %d disconnected %v, post errors %v", l, sc, r.rep, s.Rate, s.Disconnected, s.CloseCodes, s.PostErrors))
					}
					if s.Attempts > 1 || s.Disturbed {
						what := "repeated after other processes disturbed it"
						if s.Disturbed {
							what = "still disturbed by other processes after retries (counted as measured)"
						}
						notes = append(notes, fmt.Sprintf("- %s %s rep %d at %.0f posts/s: %s (%d runs; others used %.2f CPU-s in %.1fs)", l, sc, r.rep, s.Rate, what, s.Attempts, s.OtherCPUS, s.WallS))
					}
				}
			}
		}
		switch sc {
		case "idle":
			n := firstConns(runs)
			t.row(fmt.Sprintf("idle: server RSS per connection at %d connections (KiB)", n), runs, lower, func(r *report) (float64, bool) {
				if r.Idle == nil || r.Idle.PerConnKB <= 0 || r.Error != "" {
					return 0, false
				}
				return r.Idle.PerConnKB, true
			}, "%.1f")
			t.row("idle: connect p99 (ms)", runs, lower, func(r *report) (float64, bool) { return r.Connect.P99, r.Connect.Count > 0 }, "%.1f")
		case "fanout", "rooms":
			name := sc
			if r := anyReport(runs); r != nil {
				name = fmt.Sprintf("%s %d×%d", sc, roomsOf(r), r.Conns/max(1, roomsOf(r)))
			}
			t.row(name+": highest offered posts/s with p99 < 250 ms and no loss", runs, higher, func(r *report) (float64, bool) { return r.MaxOKRate, true }, "%.0f")
			t.row(name+": deliveries/s at that rate", runs, higher, func(r *report) (float64, bool) { return r.MaxOKDeliveriesPerSec, true }, "%.0f")
			t.row(name+": p99 at that rate (ms)", runs, lower, func(r *report) (float64, bool) {
				if s := stepAt(r, r.MaxOKRate); s != nil {
					return s.Latency.P99, true
				}
				return 0, false
			}, "%.1f")
			// CPU per delivery compared at one offered rate every target passed.
			common := math.Inf(1)
			for _, l := range labels {
				common = min(common, median(values(runs[l], func(r *report) (float64, bool) { return r.MaxOKRate, true })))
			}
			if common > 0 && !math.IsInf(common, 1) {
				// The highest rate of the sweep not above common.
				common = floorRate(runs, common)
				t.row(fmt.Sprintf("%s: server CPU-s per 1M deliveries at %.0f posts/s", name, common), runs, lower, func(r *report) (float64, bool) {
					if s := stepAt(r, common); s != nil && s.ServerCPUPer1M > 0 {
						return s.ServerCPUPer1M, true
					}
					return 0, false
				}, "%.2f")
			}
		case "churn":
			churn := func(get func(*report) float64) func(*report) (float64, bool) {
				return func(r *report) (float64, bool) {
					if r.Churn == nil || r.Churn.Connect.Count == 0 {
						return 0, false
					}
					return get(r), true
				}
			}
			t.row("churn: connect p50 (ms)", runs, lower, churn(func(r *report) float64 { return r.Churn.Connect.P50 }), "%.1f")
			t.row("churn: connect p99 (ms)", runs, lower, churn(func(r *report) float64 { return r.Churn.Connect.P99 }), "%.1f")
			t.row("churn: connection cycles with an error", runs, none, churn(func(r *report) float64 { return float64(r.Churn.ErrorCount) }), "%.0f")
			t.row("churn: chat delivery p99 meanwhile (ms)", runs, lower, func(r *report) (float64, bool) {
				if len(r.Steps) == 0 {
					return 0, false
				}
				return r.Steps[0].Latency.P99, true
			}, "%.1f")
		}
		t.row(sc+": messages lost / duplicated (sum over runs)", runs, none, nil, "")
		for i := range t.rows[len(t.rows)-1].cells {
			var lost, dup uint64
			for _, r := range runs[labels[i]] {
				lost += r.Lost
				dup += r.Dup
			}
			t.rows[len(t.rows)-1].cells[i] = fmt.Sprintf("%d / %d", lost, dup)
		}
	}
	t.print()
	if len(notes) > 0 {
		fmt.Println("\nNotes (failures and disconnects seen in the runs; a sweep's last step is expected to fail):")
		for _, n := range notes {
			fmt.Println(n)
		}
	}
	fmt.Println("\nCommands (load tool, then the server it ran against; every repetition used the same ones but its own -run-id):")
	seen := map[string]bool{}
	for _, sc := range []string{"idle", "fanout", "rooms", "churn"} {
		for _, l := range labels {
			for _, r := range by[sc][l] {
				cmd := "parley-load " + strings.Join(stripRunID(r.Args), " ")
				key := sc + l
				if seen[key] {
					continue
				}
				seen[key] = true
				fmt.Printf("- %s %s:\n    %s\n    server: %s\n", l, sc, cmd, r.server)
			}
		}
	}
	return nil
}

func load(f string) (*report, error) {
	fh, err := os.Open(f)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	var last string
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "{") {
			last = sc.Text()
		}
	}
	if last == "" {
		return nil, fmt.Errorf("no JSON line")
	}
	var r report
	return &r, json.Unmarshal([]byte(last), &r)
}

func stripRunID(args []string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "-run-id", "-pid":
			out = append(out, args[i], map[string]string{"-run-id": "R", "-pid": "PID"}[args[i]])
			i++
			continue
		}
		out = append(out, args[i])
	}
	return out
}

func anyReport(runs map[string][]*report) *report {
	for _, rs := range runs {
		if len(rs) > 0 {
			return rs[0]
		}
	}
	return nil
}

func firstConns(runs map[string][]*report) int {
	if r := anyReport(runs); r != nil && r.Idle != nil {
		return r.Idle.Conns
	}
	return 0
}

func roomsOf(r *report) int {
	for i, a := range r.Args {
		if a == "-rooms" && i+1 < len(r.Args) {
			n, _ := strconv.Atoi(r.Args[i+1])
			return n
		}
	}
	if r.Scenario == "fanout" {
		return 1
	}
	return 1000
}

func stepAt(r *report, rate float64) *step {
	for i := range r.Steps {
		if r.Steps[i].Rate == rate {
			return &r.Steps[i]
		}
	}
	return nil
}

// floorRate is the largest step rate not above v in any run.
func floorRate(runs map[string][]*report, v float64) float64 {
	best := 0.0
	for _, rs := range runs {
		for _, r := range rs {
			for _, s := range r.Steps {
				if s.Rate <= v && s.Rate > best {
					best = s.Rate
				}
			}
		}
	}
	return best
}

type better int

const (
	none better = iota
	lower
	higher
)

type row struct {
	name  string
	cells []string
	ratio string
}

type table struct {
	labels []string
	rows   []*row
}

func values(rs []*report, f func(*report) (float64, bool)) []float64 {
	var v []float64
	for _, r := range rs {
		if x, ok := f(r); ok {
			v = append(v, x)
		}
	}
	return v
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func (t *table) row(name string, runs map[string][]*report, b better, f func(*report) (float64, bool), format string) {
	rw := &row{name: name, cells: make([]string, len(t.labels))}
	meds := make([]float64, len(t.labels))
	for i, l := range t.labels {
		meds[i] = math.NaN()
		if f == nil {
			continue
		}
		v := values(runs[l], f)
		if len(v) == 0 {
			rw.cells[i] = "–"
			continue
		}
		meds[i] = median(v)
		parts := make([]string, len(v))
		for k, x := range v {
			parts[k] = fmt.Sprintf(format, x)
		}
		rw.cells[i] = fmt.Sprintf("**"+format+"** (%s)", meds[i], strings.Join(parts, ", "))
	}
	// Ratios: each other target against the first.
	if b != none && len(meds) > 1 && !math.IsNaN(meds[0]) && meds[0] != 0 {
		var rs []string
		for i := 1; i < len(meds); i++ {
			if !math.IsNaN(meds[i]) {
				rs = append(rs, fmt.Sprintf("%.2f×", meds[i]/meds[0]))
			}
		}
		rw.ratio = strings.Join(rs, " / ")
	}
	t.rows = append(t.rows, rw)
}

func (t *table) print() {
	fmt.Printf("| metric (median, then each repetition) | %s | ratio to %s (%s) |\n", strings.Join(t.labels, " | "), t.labels[0], strings.Join(t.labels[1:], " / "))
	fmt.Printf("|---|%s---|\n", strings.Repeat("---|", len(t.labels)))
	for _, r := range t.rows {
		fmt.Printf("| %s | %s | %s |\n", r.name, strings.Join(r.cells, " | "), r.ratio)
	}
}
