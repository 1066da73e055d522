package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parleychat/parley/actors"
	"github.com/parleychat/parley/server"
)

// startParley runs an in-memory Parley on 127.0.0.1:0 with limits that
// allow the load, as bench/compare.sh starts the real binary.
func startParley(t *testing.T) *server.Server {
	t.Helper()
	srv, err := server.New(server.Config{
		Addr:   "127.0.0.1:0",
		Actors: actors.Config{Rate: 100000, Burst: 100000, MaxRooms: 100},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return srv
}

// runTool runs the tool and returns its report, decoded twice: as the
// struct and as a plain map (to check the field names scripts rely on).
func runTool(t *testing.T, args ...string) (*Report, map[string]any, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	// No timed verdicts in tests: latency bounds are lifted, and steps are
	// never repeated for other processes on the machine.
	args = append(args, "-max-p99", "1h", "-drain", "5s", "-max-other-cpu", "0")
	err := run(context.Background(), args, &stdout, &stderr)
	out := stdout.String()
	if err != nil {
		t.Fatalf("run %v: %v\nstdout:\n%s\nstderr:\n%s", args, err, out, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	last := lines[len(lines)-1]
	var rep Report
	if err := json.Unmarshal([]byte(last), &rep); err != nil {
		t.Fatalf("last stdout line is not the JSON report: %v\n%s", err, out)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(last), &m); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr.String(), "[") && testing.Verbose() {
		t.Logf("no progress line (the run was shorter than a second)")
	}
	return &rep, m, out
}

func hasKeys(t *testing.T, what string, m map[string]any, keys ...string) {
	t.Helper()
	for _, k := range keys {
		if _, ok := m[k]; !ok {
			t.Errorf("%s: no field %q in %v", what, k, m)
		}
	}
}

// checkSteps asserts that every acknowledged post reached every member
// exactly once.
func checkSteps(t *testing.T, rep *Report, m map[string]any, members uint64) {
	t.Helper()
	if rep.Error != "" || !rep.OK {
		t.Fatalf("run failed: error %q, steps %+v", rep.Error, rep.Steps)
	}
	if len(rep.Steps) == 0 {
		t.Fatal("no steps in the report")
	}
	for i, s := range rep.Steps {
		if s.Lost != 0 || s.Dup != 0 || s.Disconnected != 0 || s.Foreign != 0 {
			t.Errorf("step %d: lost %d, dup %d, disconnected %d, foreign %d", i, s.Lost, s.Dup, s.Disconnected, s.Foreign)
		}
		if s.Acked == 0 || s.Acked != s.Sent || len(s.PostErrors) != 0 || s.Skipped != 0 {
			t.Errorf("step %d: sent %d, acked %d, skipped %d, errors %v", i, s.Sent, s.Acked, s.Skipped, s.PostErrors)
		}
		if members > 0 && s.Expected != s.Acked*members {
			t.Errorf("step %d: expected %d deliveries for %d posts to %d members", i, s.Expected, s.Acked, members)
		}
		if s.Delivered != s.Expected || s.Latency.Count != s.Delivered {
			t.Errorf("step %d: delivered %d of %d (latency samples %d)", i, s.Delivered, s.Expected, s.Latency.Count)
		}
		if s.ServerCPUS < 0 || s.Latency.P99 < s.Latency.P50 || s.Latency.Max < s.Latency.P99 {
			t.Errorf("step %d: implausible figures %+v", i, s)
		}
	}
	if rep.Lost != 0 || rep.Dup != 0 {
		t.Errorf("totals: lost %d, dup %d", rep.Lost, rep.Dup)
	}
	hasKeys(t, "report", m, "tool", "target", "scenario", "url", "date", "params", "conns", "connect", "steps", "max_ok_rate", "max_ok_deliveries_per_s", "lost", "dup", "ok")
	step := m["steps"].([]any)[0].(map[string]any)
	hasKeys(t, "step", step, "offered_rate", "posts_acked", "deliveries", "deliveries_expected", "deliveries_per_s", "latency", "lost", "dup",
		"server_cpu_s", "server_cpu_s_per_1m_deliveries", "client_cpu_s", "ok")
	hasKeys(t, "latency", step["latency"].(map[string]any), "p50_ms", "p90_ms", "p99_ms", "max_ms")
}

func TestScenariosAgainstParley(t *testing.T) {
	srv := startParley(t)
	pid := strconv.Itoa(os.Getpid())
	base := []string{"-target", "parley", "-url", srv.URL(), "-pid", pid, "-dial-concurrency", "8"}

	for _, cd := range []string{"proto", "json"} {
		t.Run("fanout/"+cd, func(t *testing.T) {
			rep, m, _ := runTool(t, append(base, "-codec", cd, "-scenario", "fanout", "-members", "12", "-publishers", "3",
				"-rate", "60,120", "-duration", "300ms")...)
			checkSteps(t, rep, m, 12)
			if len(rep.Steps) != 2 || rep.Target != "parley/"+cd || rep.Conns != 12 {
				t.Errorf("steps %d, target %q, conns %d", len(rep.Steps), rep.Target, rep.Conns)
			}
		})
	}
	t.Run("rooms", func(t *testing.T) {
		rep, m, _ := runTool(t, append(base, "-scenario", "rooms", "-rooms", "5", "-members", "3", "-rate", "100", "-duration", "300ms")...)
		checkSteps(t, rep, m, 3)
		if rep.Conns != 15 {
			t.Errorf("conns %d, want 15", rep.Conns)
		}
	})
	t.Run("churn", func(t *testing.T) {
		rep, m, _ := runTool(t, append(base, "-scenario", "churn", "-rooms", "3", "-members", "3", "-rate", "30",
			"-churn-rate", "20", "-duration", "500ms")...)
		checkSteps(t, rep, m, 0) // churners' posts reach members too: no simple product
		c := rep.Churn
		if c == nil || c.Started == 0 || c.Completed != c.Started || c.ErrorCount != 0 || c.Connect.Count != c.Started {
			t.Errorf("churn: %+v", c)
		}
		hasKeys(t, "churn", m["churn"].(map[string]any), "connect", "join", "errors", "completed")
	})
	t.Run("idle", func(t *testing.T) {
		rep, m, _ := runTool(t, append(base, "-scenario", "idle", "-conns", "13", "-room-size", "5", "-hold", "100ms")...)
		if rep.Error != "" || !rep.OK || rep.Conns != 13 || rep.Idle == nil || rep.Idle.Closed != 0 {
			t.Fatalf("idle: %+v %+v", rep, rep.Idle)
		}
		if rep.Idle.RSSAfterKB <= 0 {
			t.Errorf("no RSS reading: %+v", rep.Idle)
		}
		hasKeys(t, "idle", m["idle"].(map[string]any), "rss_before_kb", "rss_after_kb", "rss_per_conn_kb", "conns")
	})
}

func TestAbsentServer(t *testing.T) {
	var stdout, stderr bytes.Buffer
	// A port nobody listens on: the listener is closed before the dial.
	srv := startParley(t)
	url := srv.URL()
	srv.Shutdown(context.Background())
	err := run(context.Background(), []string{"-url", url, "-scenario", "fanout", "-members", "2", "-publishers", "1", "-duration", "100ms"}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "no server at") {
		t.Fatalf("err = %v, want a sentence about no server", err)
	}
	var rep Report
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if json.Unmarshal([]byte(lines[len(lines)-1]), &rep) != nil || rep.OK || rep.Error == "" {
		t.Errorf("the JSON line should carry the error: %s", stdout.String())
	}
}

func TestRefusedHandshake(t *testing.T) {
	srv := startParley(t)
	// Parley refuses an unknown subprotocol with HTTP 400; dialling /healthz
	// (not a WebSocket endpoint) is refused too. Either way: a sentence.
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"-url", strings.Replace(srv.URL(), "/ws", "/healthz", 1), "-scenario", "idle", "-conns", "1"}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "refused the WebSocket handshake") {
		t.Fatalf("err = %v, want a refused handshake", err)
	}
}

// fakeCentrifugo speaks enough of Centrifugo's JSON client protocol for the
// adapter: connect, subscribe, unsubscribe, publish; a ping ("{}") after
// connect that must be answered; and, like the real server, several
// replies and pushes in one frame separated by newlines.
type fakeCentrifugo struct {
	mu    sync.Mutex
	subs  map[string]map[*fakeConn]bool
	pongs int
}

type fakeConn struct {
	ws *websocket.Conn
	mu sync.Mutex
}

func (f *fakeCentrifugo) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	c := &fakeConn{ws: ws}
	ctx := context.Background()
	defer func() {
		f.mu.Lock()
		for _, s := range f.subs {
			delete(s, c)
		}
		f.mu.Unlock()
		ws.CloseNow()
	}()
	for {
		_, b, err := ws.Read(ctx)
		if err != nil {
			return
		}
		for _, line := range bytes.Split(b, []byte("\n")) {
			var cmd struct {
				ID          uint64          `json:"id"`
				Connect     json.RawMessage `json:"connect"`
				Subscribe   *struct{ Channel string }
				Unsubscribe *struct{ Channel string }
				Publish     *struct {
					Channel string
					Data    json.RawMessage
				}
			}
			if err := json.Unmarshal(line, &cmd); err != nil {
				return
			}
			switch {
			case cmd.ID == 0:
				f.mu.Lock()
				f.pongs++
				f.mu.Unlock()
			case cmd.Connect != nil:
				// The reply and a ping in one frame.
				c.write(ctx, `{"id":`+strconv.FormatUint(cmd.ID, 10)+`,"connect":{"client":"x","ping":25,"pong":true}}`+"\n{}")
			case cmd.Subscribe != nil:
				f.mu.Lock()
				if f.subs[cmd.Subscribe.Channel] == nil {
					f.subs[cmd.Subscribe.Channel] = map[*fakeConn]bool{}
				}
				f.subs[cmd.Subscribe.Channel][c] = true
				f.mu.Unlock()
				c.write(ctx, `{"id":`+strconv.FormatUint(cmd.ID, 10)+`,"subscribe":{}}`)
			case cmd.Unsubscribe != nil:
				f.mu.Lock()
				delete(f.subs[cmd.Unsubscribe.Channel], c)
				f.mu.Unlock()
				c.write(ctx, `{"id":`+strconv.FormatUint(cmd.ID, 10)+`,"unsubscribe":{}}`)
			case cmd.Publish != nil:
				push := `{"push":{"channel":"` + cmd.Publish.Channel + `","pub":{"data":` + string(cmd.Publish.Data) + `,"offset":1}}}`
				reply := `{"id":` + strconv.FormatUint(cmd.ID, 10) + `,"publish":{}}`
				f.mu.Lock()
				var members []*fakeConn
				for m := range f.subs[cmd.Publish.Channel] {
					members = append(members, m)
				}
				f.mu.Unlock()
				for _, m := range members {
					if m == c {
						m.write(ctx, reply+"\n"+push) // reply and push in one frame
					} else {
						m.write(ctx, push)
					}
				}
			}
		}
	}
}

func (c *fakeConn) write(ctx context.Context, s string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ws.Write(ctx, websocket.MessageText, []byte(s))
}

func TestCentrifugoAdapter(t *testing.T) {
	fake := &fakeCentrifugo{subs: map[string]map[*fakeConn]bool{}}
	hs := httptest.NewServer(fake)
	defer hs.Close()
	url := "ws" + strings.TrimPrefix(hs.URL, "http") + "/connection/websocket"
	rep, m, _ := runTool(t, "-target", "centrifugo", "-url", url, "-scenario", "fanout", "-members", "6", "-publishers", "2",
		"-rate", "50", "-duration", "300ms")
	checkSteps(t, rep, m, 6)
	if rep.Target != "centrifugo/json" {
		t.Errorf("target %q", rep.Target)
	}
	fake.mu.Lock()
	defer fake.mu.Unlock()
	if fake.pongs == 0 {
		t.Error("the adapter never answered a ping")
	}
}
