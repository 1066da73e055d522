package main_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/proto/codec"
	"github.com/parleychat/parley/server"
	"github.com/parleychat/parley/store"
	"github.com/parleychat/parley/supervision"
)

// chaosSize is the chaos test's size; the soak variant (see README) runs
// the same checks longer and bigger.
type chaosSize struct {
	clients, rooms, faults int
	duration, pace         time.Duration
}

var chaosCI = chaosSize{clients: 200, rooms: 20, faults: 50, duration: 20 * time.Second, pace: 800 * time.Millisecond}

// TestChaos: clients post into rooms while faults are injected at random
// into sessions, rooms and presence. Afterwards every client holds every
// acknowledged message of its rooms exactly once and in order, no
// connection was closed except for a spent retry budget (1011), presence is
// exact, and nothing leaked. It runs alone (not parallel) so the goroutine
// count means something.
func TestChaos(t *testing.T) {
	runChaos(t, chaosCI)
}

func runChaos(t *testing.T, size chaosSize) {
	goroutinesBefore := runtime.NumGoroutine()
	faults := &supervision.Faults{Kinds: []string{"session", "room", "presence"}}
	st := store.NewMemory()
	srv := startServer(t, func(c *server.Config) {
		c.Store = st
		c.Faults = faults
		c.Actors.RoomLinger = 300 * time.Millisecond
		c.Logger = quietLogger(t)
	})
	actorsBefore := countActors(srv)
	rooms := make([]string, size.rooms)
	for i := range rooms {
		rooms[i] = fmt.Sprintf("chaos-%02d", i)
	}
	url := func() string { return srv.URL() }
	clients := make([]*resumingClient, size.clients)
	for i := range clients {
		c := newResumingClient(fmt.Sprintf("c%03d", i), url, rooms[i%size.rooms], rooms[(i+1)%size.rooms])
		c.pace = size.pace
		c.watch = i%50 == 0
		clients[i] = c
	}
	stop := make(chan struct{})
	done := make(chan error, len(clients))
	for _, c := range clients {
		go c.run(stop, done)
	}

	// Inject faults at random, evenly over the run.
	kinds := map[string]int{}
	start := time.Now()
	shots := size.faults + size.faults/5 // a margin: a shot at a session that just left misses
	interval := size.duration / time.Duration(shots)
	for range shots {
		time.Sleep(interval)
		kind := []string{"session", "session", "room", "room", "presence"}[rand.IntN(5)]
		if srv.Node.InjectFault(kind, rooms[rand.IntN(len(rooms))], false) {
			kinds[kind]++
		}
	}
	t.Logf("faults done after %v; letting the clients catch up", time.Since(start).Round(time.Millisecond))
	for _, c := range clients {
		close(c.quiet)
	}
	for _, c := range clients {
		select {
		case <-c.calm:
		case <-time.After(30 * time.Second):
			t.Fatalf("%s still posting 30 s after being told to stop", c.name)
		}
	}

	// Audit each room's log in the store (posts and changes alike).
	ctx := testCtx(t, 60*time.Second)
	stored := map[string][]string{} // room -> cmid by seq-1
	for _, r := range rooms {
		msgs, err := st.After(ctx, r, 0, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range msgs {
			if m.Seq != uint64(i+1) {
				t.Fatalf("%s: stored seq %d where %d was due", r, m.Seq, i+1)
			}
			stored[r] = append(stored[r], m.ClientMsgID)
		}
	}
	// Every client still connected must now catch up with every stored
	// message of its rooms.
	waitFor(t, 20*time.Second, func() error {
		for _, c := range clients {
			c.mu.Lock()
			for _, r := range c.rooms {
				if got, want := c.last[r], uint64(len(stored[r])); got != want {
					c.mu.Unlock()
					return fmt.Errorf("%s has %s up to seq %d of %d", c.name, r, got, want)
				}
			}
			c.mu.Unlock()
		}
		return nil
	})
	t.Logf("clients caught up after %v", time.Since(start).Round(time.Millisecond))
	close(stop)
	for range clients {
		<-done
	}
	acked, delivered, retried := 0, 0, 0
	closes := map[parleypb.CloseCode]int{}
	for _, c := range clients {
		c.mu.Lock()
		for _, e := range c.errs {
			t.Errorf("%s", e)
		}
		for code, n := range c.closes {
			closes[code] += n
			if code != parleypb.CloseCode_CLOSE_CODE_INTERNAL_ERROR {
				t.Errorf("%s was closed %d× with %d; only a spent retry budget (1011) may close a connection", c.name, n, code)
			}
		}
		for id, seq := range c.acked {
			r := ""
			for _, cr := range c.rooms {
				if int(seq) <= len(stored[cr]) && stored[cr][seq-1] == id {
					r = cr
				}
			}
			if r == "" {
				t.Errorf("acknowledged %s (seq %d) is not stored under that seq", id, seq)
			}
		}
		acked += len(c.acked)
		retried += c.retried
		// Every stored message of the client's rooms reached it once, in
		// order (record() checked order and duplicates as they came).
		for _, r := range c.rooms {
			for seq, id := range c.seen[r] {
				if stored[r][seq-1] != id {
					t.Errorf("%s saw %s seq %d as %q, stored as %q", c.name, r, seq, id, stored[r][seq-1])
				}
			}
			delivered += len(c.seen[r])
		}
		c.mu.Unlock()
	}

	// Presence: the clients are gone; only the auditor is online.
	auditor := login(t, ctx, srv, codec.Proto, "auditor")
	waitFor(t, 15*time.Second, func() error {
		if err := auditor.Err(); err != nil {
			t.Fatalf("the auditor's connection ended: %v", err)
		}
		if n := srv.Node.Sessions(); n != 1 {
			return fmt.Errorf("%d sessions alive besides the auditor's", n-1)
		}
		return nil
	})
	online, err := srv.Node.Online(ctx) // the operator's view: everyone online
	if err != nil {
		t.Fatal(err)
	}
	if got := devices(online); len(got) != 1 || got["auditor"] != 1 {
		t.Errorf("online after the run: %v, want only the auditor", got)
	}
	for _, r := range rooms {
		ack, err := auditor.Join(ctx, r, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := devices(ack.GetMembers()); len(got) != 1 || got["auditor"] != 1 {
			t.Errorf("%s members after the run: %v, want only the auditor", r, got)
		}
		if err := auditor.Leave(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	auditor.Close()

	// Leaks: every session and room stops, and goroutines return to the
	// count before the server started (client and server goroutines alike).
	waitFor(t, 15*time.Second, func() error {
		if n := srv.Node.Sessions(); n != 0 {
			return fmt.Errorf("%d sessions alive", n)
		}
		if n := srv.Node.Stats.ActiveRooms.Load(); n != 0 {
			return fmt.Errorf("%d rooms alive", n)
		}
		if n := countActors(srv); n != actorsBefore {
			return fmt.Errorf("%d actors, %d before the run", n, actorsBefore)
		}
		return nil
	})
	restarts := fmt.Sprintf("session %d, room %d, presence %d",
		srv.Node.Stats.Sessions.Restarts.Load(), srv.Node.Stats.Rooms.Restarts.Load(), srv.Node.Stats.Presence.Restarts.Load())
	stops := srv.Node.Stats.Sessions.Stops.Load()
	ctxShut, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctxShut); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, func() error {
		if n := runtime.NumGoroutine(); n > goroutinesBefore+2 {
			return fmt.Errorf("%d goroutines, %d before the run", n, goroutinesBefore)
		}
		return nil
	})

	var codes []string
	for code, n := range closes {
		codes = append(codes, fmt.Sprintf("%d×%d", n, code))
	}
	sort.Strings(codes)
	if int(faults.Injected.Load()) < size.faults {
		t.Errorf("only %d faults injected, want at least %d", faults.Injected.Load(), size.faults)
	}
	t.Logf("chaos summary: %d clients in %d rooms for %v; faults injected %d (asked: %v); restarts: %s; sessions stopped past budget %d; "+
		"posts acked %d (retried after a failure %d), deliveries %d; connections closed by the server: %s; dead letters %d",
		size.clients, size.rooms, size.duration, faults.Injected.Load(), kinds, restarts, stops,
		acked, retried, delivered, strings.Join(append(codes, ""), " "), srv.Node.Stats.DeadLetters.Load())
}

// countActors counts the session and room processes in the node's
// registry (Proto.Actor's own, such as the guardian it creates with the
// first session, are not Parley's to leak).
func countActors(srv *server.Server) int {
	n := 0
	for _, m := range srv.Node.System.ProcessRegistry.LocalPIDs.LocalPIDs {
		for _, id := range m.Keys() {
			if strings.HasPrefix(id, "session-") || strings.HasPrefix(id, "rooms/") {
				n++
			}
		}
	}
	return n
}

// TestChaosSoak is the chaos test, longer and bigger, run by hand:
//
//	PARLEY_SOAK=10m go test -race -run TestChaosSoak -timeout 0 -v .
//
// It scales faults with the duration (one every 400 ms).
func TestChaosSoak(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("PARLEY_SOAK"))
	if err != nil || d <= 0 {
		t.Skip("a soak run is started by hand: PARLEY_SOAK=10m go test -race -run TestChaosSoak -timeout 0 -v .")
	}
	runChaos(t, chaosSize{clients: 400, rooms: 40, faults: int(d / (400 * time.Millisecond)), duration: d, pace: 800 * time.Millisecond})
}
