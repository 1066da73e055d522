package main_test

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestClusterPausedMemberRestarts pauses one of three members (SIGSTOP, as a
// starved or frozen process would be) until the other two drop it, while
// clients chat in rooms homed on every member, then lets it run again. In
// this Proto.Actor version a dropped member is refused for good under its
// id, so the woken member is split from the others: left running it would
// keep a second activation of its rooms for the clients still connected to
// it, which would never see the others' posts. It must find that it lost
// (removal.go), drain (its clients reconnect elsewhere and resume) and exit
// with status 75 for its supervisor to restart it; restarted, it rejoins.
// Every client then sees every stored event of its rooms, and nothing
// acknowledged is lost or duplicated.
func TestClusterPausedMemberRestarts(t *testing.T) {
	c := startCluster(t, 3, func(m *member, all []*member) []string {
		return append(automanaged(m, all), "-cluster-down-after", "1500ms")
	})
	rooms := c.roomsOwned(c.members, 2, fmt.Sprintf("pause-%x", rand.Uint32()))
	victim := c.members[2]
	others := c.members[:2]
	l := startChat(c, rooms, 9)
	l.markNow()
	l.progress(t, 150, 30*time.Second)

	victim.up.Store(false) // clients that reconnect go elsewhere
	victim.signal(syscall.SIGSTOP)
	paused := time.Now()
	for _, m := range others {
		waitFor(t, 30*time.Second, func() error {
			if n := clusterMembers(t, m); n != 2 {
				return fmt.Errorf("node %d sees %d members, want 2 (the paused one dropped)", m.i, n)
			}
			return nil
		})
	}
	t.Logf("the other members dropped the paused one after %v", time.Since(paused).Round(time.Millisecond))
	l.markNow()
	l.progress(t, 100, 40*time.Second) // its rooms live on the others now

	victim.signal(syscall.SIGCONT)
	woke := time.Now()
	code, ok := victim.exitCode(60 * time.Second)
	if !ok {
		t.Fatal("the woken member, split from the cluster, did not exit within 60s")
	}
	if code != 75 {
		t.Fatalf("the woken member exited with status %d, want 75 (removed from the cluster; restart it)", code)
	}
	t.Logf("the woken member drained and exited 75 after %v", time.Since(woke).Round(time.Millisecond))
	if b, _ := os.ReadFile(victim.log.Name()); !strings.Contains(string(b), "split from another") {
		t.Errorf("the woken member's log does not say why it left")
	}
	for _, m := range others {
		if n := clusterMembers(t, m); n != 2 {
			t.Errorf("node %d sees %d members after the woken one left, want 2", m.i, n)
		}
	}

	l.markNow()
	l.progress(t, 150, 40*time.Second)
	l.expectPresence(t)
	// Its supervisor restarts it: under a new id, every member takes it.
	victim.start()
	if t.Failed() {
		t.FailNow()
	}
	c.waitMembers()
	l.markNow()
	l.progress(t, 150, 40*time.Second)
	l.expectPresence(t)
	// Every client must have seen each room to its end: a client left on a
	// second activation would miss the others' posts without seeing a hole.
	for _, cl := range l.clients {
		close(cl.quiet)
	}
	for _, cl := range l.clients {
		<-cl.calm
	}
	heads := roomHeads(t, c.live()[0].url(), rooms)
	waitFor(t, 30*time.Second, func() error {
		for _, cl := range l.clients {
			cl.mu.Lock()
			for _, r := range cl.rooms {
				if last := cl.last[r]; last != heads[r] {
					cl.mu.Unlock()
					return fmt.Errorf("%s has %s up to seq %d of %d", cl.name, r, last, heads[r])
				}
			}
			cl.mu.Unlock()
		}
		return nil
	})
	l.finish(t)
	total, retried := auditRooms(t, c.live()[0].url(), rooms, l.clients)
	t.Logf("%d posts acknowledged, %d re-sent after reconnecting; every one stored once, in order, and seen by every member of its room", total, retried)
}

// signal sends sig to the member's process.
func (m *member) signal(sig syscall.Signal) {
	m.mu.Lock()
	p := m.p
	m.mu.Unlock()
	if err := p.cmd.Process.Signal(sig); err != nil {
		m.t.Fatalf("node %d: %v: %v", m.i, sig, err)
	}
}

// exitCode waits for the member's process to exit by itself.
func (m *member) exitCode(within time.Duration) (int, bool) {
	m.mu.Lock()
	p := m.p
	m.mu.Unlock()
	select {
	case err := <-p.done:
		p.done <- err
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), true
		}
		if err != nil {
			m.t.Fatalf("node %d: %v", m.i, err)
		}
		return 0, true
	case <-time.After(within):
		return 0, false
	}
}

// clusterMembers is parley_cluster_members on a member's metrics.
func clusterMembers(t *testing.T, m *member) int {
	t.Helper()
	resp, err := http.Get("http://" + m.admin + "/metrics")
	if err != nil {
		return -1
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, "parley_cluster_members "); ok {
			n, _ := strconv.ParseFloat(v, 64)
			return int(n)
		}
	}
	return -1
}

// roomHeads is each room's last stored seq, from a join's acknowledgement.
func roomHeads(t *testing.T, url string, rooms []string) map[string]uint64 {
	t.Helper()
	ctx := testCtx(t, 20*time.Second)
	reader, err := observer(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.CloseNow()
	heads := map[string]uint64{}
	for _, r := range rooms {
		ack, err := reader.Join(ctx, r, nil)
		if err != nil {
			t.Fatal(err)
		}
		heads[r] = ack.GetSeq()
	}
	return heads
}
