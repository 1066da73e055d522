package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/internal/testenv"
)

// TestPushScenarioSmoke runs bench/push.sh at its smallest (QUICK=1: three
// clustered nodes on PostgreSQL, 300 members in one room over two load
// processes, single posts, two rate steps, and a storm: a node without the
// room is killed with SIGKILL while posts flow), so that the scenario and
// its script do not rot. It checks what must hold whatever the machine's
// speed: every acknowledged post reached every member exactly once, the
// killed node's members all resumed elsewhere, and a post crossed to each
// other node as one relay. No latency is judged (MAX_P99 is an hour).
func TestPushScenarioSmoke(t *testing.T) {
	store := testenv.PostgresSchema(t)
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "../../bench/push.sh")
	// The binaries are built with the race detector, as the tests are: a
	// race in the nodes or the load processes makes one exit 66 and the
	// script fail.
	cmd.Env = append(os.Environ(), "QUICK=1", "OUT="+out, "STORE="+store, "MAX_P99=1h", "GOFLAGS=-race")
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Run(); err != nil {
		for _, f := range []string{"poster.log", "members0.log", "members1.log", "node1.log", "node2.log", "node3.log"} {
			b, _ := os.ReadFile(filepath.Join(out, f))
			t.Logf("--- %s\n%s", f, b)
		}
		t.Fatalf("bench/push.sh: %v\n%s", err, logs.String())
	}
	b, err := os.ReadFile(filepath.Join(out, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rep PushReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("report.json: %v\n%s", err, b)
	}
	const nodes, members = 3, 300
	if rep.Members != members || rep.Procs != 2 || !rep.OK || rep.Lost+rep.Dups+rep.Holes != 0 {
		t.Fatalf("members %d over %d processes, ok %v (%s), lost %d, duplicated %d, holes %d; want %d over 2, ok, nothing lost or duplicated\n%s",
			rep.Members, rep.Procs, rep.OK, rep.Why, rep.Lost, rep.Dups, rep.Holes, members, logs.String())
	}
	conns, rooms := 0, 0
	for _, n := range rep.Nodes {
		conns += n.Conns
		rooms += int(n.Rooms)
	}
	if len(rep.Nodes) != nodes || conns != members || rooms != 1 {
		t.Errorf("%d nodes holding %d connections and %d rooms; want %d, %d and the one room", len(rep.Nodes), conns, rooms, nodes, members)
	}
	if len(rep.Singles) != 2 {
		t.Errorf("%d single posts; want 2", len(rep.Singles))
	}
	for _, s := range append(rep.Singles, rep.Steps...) {
		if s.Acked == 0 || s.Acked != s.Posted || s.Got != s.Expected {
			t.Errorf("%s: acked %d of %d posts, %d of %d deliveries; want every post acknowledged and delivered to every member", s.Name, s.Acked, s.Posted, s.Got, s.Expected)
		}
		// Outside the storm (whose reconnections are announced: 300 users
		// are under -presence-max-users), the only fan-outs are the posts:
		// one relay per post to each node that hosts members and not the room.
		if strings.HasPrefix(s.Name, "rate-") && s.RelaysPerPost != nodes-1 {
			t.Errorf("%s: %.2f relays per post; want %d (one per other node, not one per member)", s.Name, s.RelaysPerPost, nodes-1)
		}
	}
	st := rep.Storm
	if st == nil {
		t.Fatal("no storm in the report")
	}
	if st.Dropped != members/nodes || st.Resumed != st.Dropped || st.NotResumed != 0 || st.CloseCodes["none"] != st.Dropped {
		t.Errorf("storm: %d members dropped (close codes %v), %d resumed, %d not; want the killed node's %d dropped without a close frame, all resumed",
			st.Dropped, st.CloseCodes, st.Resumed, st.NotResumed, members/nodes)
	}
	if len(st.PerNodeEnd) != nodes-1 {
		t.Errorf("at the end members are on %v; want the %d surviving nodes", st.PerNodeEnd, nodes-1)
	}
}

// TestPushPayloadAndHistFiles: a post's step and send time survive the
// payload, and a histogram survives its file: merged from two processes it
// is the histogram of both.
func TestPushPayloadAndHistFiles(t *testing.T) {
	sent := time.Unix(1700000000, 123456789)
	step, ns, ok := parsePushPayload([]byte(makePushPayload(7, sent, 64)))
	if !ok || step != 7 || ns != sent.UnixNano() {
		t.Fatalf("parsed step %d, sent %d, ok %v; want 7, %d", step, ns, ok, sent.UnixNano())
	}
	for _, bad := range []string{"plt 1 2 ", "plp 1 ", "plp x 2 ", "plp 99 2 "} {
		if _, _, ok := parsePushPayload([]byte(bad)); ok {
			t.Errorf("%q parsed as a push payload", bad)
		}
	}
	var a, b, both, merged hist
	for i := 1; i <= 100; i++ {
		d := time.Duration(i) * time.Millisecond
		if i%3 == 0 {
			a.Record(d)
		} else {
			b.Record(d)
		}
		both.Record(d)
	}
	merged.merge(a.export())
	merged.merge(b.export())
	if merged.Summary() != both.Summary() {
		t.Fatalf("merged %v; want %v", merged.Summary(), both.Summary())
	}
}
