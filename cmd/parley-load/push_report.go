package main

// The push scenario's report: the processes' files merged (push.go).

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

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
