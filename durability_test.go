package main_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/parleychat/parley/client"
	"github.com/parleychat/parley/internal/testenv"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/proto/codec"
	"github.com/parleychat/parley/server"
	"github.com/parleychat/parley/store"
)

// builds holds the command built once per test run, with and without -race.
var builds struct {
	sync.Mutex
	path map[bool]string
	err  map[bool]error
}

// parleyBinary builds the real command (with -race) once per test run.
func parleyBinary(t *testing.T) string { return buildParley(t, true) }

func buildParley(t *testing.T, race bool) string {
	t.Helper()
	builds.Lock()
	defer builds.Unlock()
	if builds.path == nil {
		builds.path, builds.err = map[bool]string{}, map[bool]error{}
	}
	if _, done := builds.path[race]; !done {
		builds.path[race], builds.err[race] = build(race)
	}
	if err := builds.err[race]; err != nil {
		t.Fatal(err)
	}
	return builds.path[race]
}

func build(race bool) (string, error) {
	dir, err := os.MkdirTemp("", "parley-bin")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "parley")
	args := []string{"build", "-o", path}
	if race {
		args = append(args, "-race")
	}
	out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return path, nil
}

func freeAddr(t *testing.T) string {
	t.Helper()
	return testenv.FreeAddrs(t, 1)[0]
}

// durableStore is the flags that give a parley process backend's durable
// store ("bolt" or "postgres"), of this test's own: a new -data directory,
// or a new PostgreSQL schema.
func durableStore(t *testing.T, backend string) []string {
	t.Helper()
	if backend == "bolt" {
		return []string{"-store", "bolt", "-data", t.TempDir()}
	}
	return []string{"-store", testenv.PostgresSchema(t)}
}

// proc is a running parley process.
type proc struct {
	cmd  *exec.Cmd
	done chan error
}

func startProc(t *testing.T, addr string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(parleyBinary(t), append([]string{"-addr", addr, "-admin-addr", "", "-log-level", "warn"}, args...)...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() { p.kill() })
	waitFor(t, 20*time.Second, func() error {
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("parley exited at start: %v", err)
		default:
		}
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})
	return p
}

func (p *proc) kill() {
	if p.cmd.ProcessState == nil {
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		p.done <- nil
	}
}

// resumingClient posts into its rooms with client message ids, keeps track of
// what was acknowledged and of every event it saw, and resumes after a
// reconnect exactly as a real client should. The crash and chaos tests
// share it.
type resumingClient struct {
	name  string
	url   func() string
	rooms []string

	mu      sync.Mutex
	last    map[string]uint64          // room -> last seq seen
	acked   map[string]uint64          // cmid -> seq
	pending map[string]string          // cmid -> room, sent but not acked
	errs    []string                   // gaps and duplicates seen
	retried int                        // posts sent again after a reconnect
	closes  map[parleypb.CloseCode]int // close code -> times the server closed us
	pace    time.Duration              // pause between posts (jittered); 0: none
	quiet   chan struct{}              // closed: stop posting, keep reading
	calm    chan struct{}              // closed once no post of ours is in flight after quiet
	calmed  sync.Once
	watch   bool                         // hello with watchOnline
	seen    map[string]map[uint64]string // room -> seq -> cmid
	next    int
	// onAck, when set, is told of every acknowledged post (under mu).
	onAck func(room string, at time.Time)
}

func newResumingClient(name string, url func() string, rooms ...string) *resumingClient {
	c := &resumingClient{name: name, url: url, rooms: rooms, last: map[string]uint64{}, acked: map[string]uint64{},
		pending: map[string]string{}, seen: map[string]map[uint64]string{}, closes: map[parleypb.CloseCode]int{}, quiet: make(chan struct{}), calm: make(chan struct{})}
	for _, r := range rooms {
		c.seen[r] = map[uint64]string{}
		c.last[r] = 0 // the first join replays the room from its start
	}
	return c
}

func (c *resumingClient) record(ev *parleypb.RoomEvent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	room, seq := ev.GetRoom(), ev.GetSeq()
	last := c.last[room]
	switch {
	case seq <= last:
		c.errs = append(c.errs, fmt.Sprintf("%s: duplicate %s seq %d after %d", c.name, room, seq, last))
	case seq != last+1:
		c.errs = append(c.errs, fmt.Sprintf("%s: hole in %s: seq %d after %d", c.name, room, seq, last))
	}
	c.last[room] = seq
	c.seen[room][seq] = ev.GetClientMsgId()
}

// session runs one connection until ctx ends or the connection drops; it
// reports whether it got as far as posting.
func (c *resumingClient) session(ctx context.Context) (posted int, err error) {
	cl, err := client.Dial(ctx, c.url(), codec.Proto, nil)
	if err != nil {
		return 0, err
	}
	defer cl.CloseNow()
	defer func() {
		select {
		case <-cl.Done(): // the server (or the network) ended it
			if ctx.Err() == nil {
				c.mu.Lock()
				c.closes[client.CloseCode(cl.Err())]++
				c.mu.Unlock()
			}
		default:
		}
	}()
	if err := cl.Hello(ctx, c.name, c.watch); err != nil {
		return 0, err
	}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		for {
			env, err := cl.Next(context.Background())
			if err != nil {
				return
			}
			if ev := env.GetEvent(); ev != nil {
				c.record(ev)
			}
		}
	}()
	defer func() { cl.CloseNow(); <-readDone }()
	for _, r := range c.rooms {
		if err := c.join(ctx, cl, r); err != nil {
			return 0, err
		}
	}
	// Retry what was sent but never acknowledged, with the same ids.
	if c.isQuiet() {
		<-ctx.Done()
		return 0, nil
	}
	c.mu.Lock()
	retry := make(map[string]string, len(c.pending))
	for id, r := range c.pending {
		retry[id] = r
	}
	c.mu.Unlock()
	for id, r := range retry {
		c.mu.Lock()
		c.retried++
		c.mu.Unlock()
		if err := c.post(ctx, cl, r, id); err != nil {
			return posted, err
		}
	}
	for ctx.Err() == nil {
		if c.isQuiet() {
			<-ctx.Done() // keep reading until told to go
			return posted, nil
		}
		if c.pace > 0 {
			select {
			case <-ctx.Done():
				return posted, nil
			case <-time.After(c.pace/2 + rand.N(c.pace)):
			}
		}
		c.mu.Lock()
		c.next++
		id := fmt.Sprintf("%s-%d", c.name, c.next)
		r := c.rooms[c.next%len(c.rooms)]
		c.mu.Unlock()
		if err := c.post(ctx, cl, r, id); err != nil {
			return posted, err
		}
		posted++
	}
	return posted, nil
}

// isQuiet reports whether posting must stop, and then marks the client calm:
// it is only called between posts.
func (c *resumingClient) isQuiet() bool {
	select {
	case <-c.quiet:
		c.calmed.Do(func() { close(c.calm) })
		return true
	default:
		return false
	}
}

// join joins room from the last seq seen, again while the server answers
// UNAVAILABLE: a first join waits for the user's JOINED to be stored, and a
// room that restarts meanwhile (a fault) fails it, as it fails posts.
func (c *resumingClient) join(ctx context.Context, cl *client.Client, room string) error {
	for attempt := 0; ; attempt++ {
		c.mu.Lock()
		since := c.last[room]
		c.mu.Unlock()
		_, err := cl.Join(ctx, room, &since)
		if err == nil || client.ErrorCode(err) != parleypb.ErrorCode_ERROR_CODE_UNAVAILABLE || attempt == 20 {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *resumingClient) post(ctx context.Context, cl *client.Client, room, id string) error {
	c.mu.Lock()
	c.pending[id] = room
	c.mu.Unlock()
	var seq uint64
	for attempt := 0; ; attempt++ {
		// A request whose answer was lost (the actor handling it failed) is
		// sent again after a timeout, with the same id, like any real client.
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var err error
		seq, err = cl.Post(pctx, room, "text of "+id, id)
		cancel()
		if err == nil {
			break
		}
		retryable := client.ErrorCode(err) == parleypb.ErrorCode_ERROR_CODE_UNAVAILABLE ||
			(errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil)
		if !retryable || attempt == 20 {
			return err // stays pending: retried on the next session
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.pending, id)
	if prev, ok := c.acked[id]; ok && prev != seq {
		c.errs = append(c.errs, fmt.Sprintf("%s: %s acked as seq %d and %d", c.name, id, prev, seq))
	}
	c.acked[id] = seq
	if c.onAck != nil {
		c.onAck(room, time.Now())
	}
	return nil
}

// run keeps a session going, reconnecting with jittered backoff whenever
// the connection ends, until stop is closed.
func (c *resumingClient) run(stop <-chan struct{}, done chan<- error) {
	for {
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-stop:
			case <-ctx.Done():
			}
			cancel()
		}()
		_, err := c.session(ctx)
		cancel()
		select {
		case <-stop:
			done <- nil
			return
		default:
		}
		if err != nil {
			time.Sleep(time.Duration(20+rand.IntN(50)) * time.Millisecond) // reconnect backoff with jitter
		}
	}
}

// TestCrashRecovery runs the real binary, kills it with SIGKILL while
// clients post, restarts it on the same store, and checks that every
// acknowledged post is stored exactly once in seq order, that every client
// saw gap-free seqs, and that retried posts were not duplicated.
func TestCrashRecovery(t *testing.T) {
	for _, backend := range []string{"bolt", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			addr := freeAddr(t)
			args := []string{"-rate", "100000", "-burst", "100000"}
			args = append(args, durableStore(t, backend)...)
			run := fmt.Sprintf("%x", rand.Uint32()) // rooms unique to this run in a shared database
			rooms := []string{"r1-" + run, "r2-" + run, "r3-" + run}
			url := func() string { return "ws://" + addr + "/ws" }
			var clients []*resumingClient
			for i := 0; i < 6; i++ {
				clients = append(clients, newResumingClient(fmt.Sprint("u", i), url, rooms[i%3], rooms[(i+1)%3]))
			}

			p := startProc(t, addr, args...)
			stop := make(chan struct{})
			done := make(chan error, len(clients))
			for _, c := range clients {
				go c.run(stop, done)
			}
			ackedBy := func() int {
				n := 0
				for _, c := range clients {
					c.mu.Lock()
					n += len(c.acked)
					c.mu.Unlock()
				}
				return n
			}
			waitFor(t, 20*time.Second, func() error {
				if n := ackedBy(); n < 150 {
					return fmt.Errorf("%d posts acked before the crash", n)
				}
				return nil
			})
			p.kill() // SIGKILL mid-stream
			before := ackedBy()
			t.Logf("killed with %d posts acked", before)

			startProc(t, addr, args...)
			waitFor(t, 30*time.Second, func() error {
				if n := ackedBy(); n < before+150 {
					return fmt.Errorf("%d posts acked after the restart (had %d)", n, before)
				}
				for _, c := range clients {
					c.mu.Lock()
					n := len(c.pending)
					c.mu.Unlock()
					if n > 1 { // at most the post in flight
						return fmt.Errorf("%s still has %d unacknowledged posts", c.name, n)
					}
				}
				return nil
			})
			close(stop)
			for range clients {
				<-done
			}

			total, retried := auditRooms(t, url(), rooms, clients)
			t.Logf("%d posts acknowledged, %d retried after the crash; all stored once, in order; no client saw a gap or a duplicate", total, retried)
		})
	}
}

// auditRooms reads every room back from the server at url and checks that
// each post a client saw acknowledged is stored once, in seq order, with the
// seq it was acknowledged with, that the other events are the room's
// creation and each user joining it once, that no client saw a gap or a
// duplicate, and that what clients saw live matches the store. It returns how many posts
// were acknowledged and how many were retried after a reconnect.
func auditRooms(t *testing.T, url string, rooms []string, clients []*resumingClient) (total, retried int) {
	t.Helper()
	ctx := testCtx(t, 30*time.Second)
	reader, err := client.Dial(ctx, url, codec.Proto, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.CloseNow()
	if err := reader.Hello(ctx, "auditor", false); err != nil {
		t.Fatal(err)
	}
	stored := map[string]map[string]uint64{} // room -> cmid -> seq, of posts
	bySeq := map[string]map[uint64]string{}  // room -> seq -> cmid ("" for a change)
	for _, r := range rooms {
		ack, err := reader.Join(ctx, r, u64(0))
		if err != nil {
			t.Fatal(err)
		}
		stored[r], bySeq[r] = map[string]uint64{}, map[uint64]string{}
		joined := map[string]bool{}
		for seq := uint64(1); seq <= ack.GetSeq(); seq++ {
			ev := nextEvent(t, ctx, reader, "an event of "+r, func(e *parleypb.Envelope) bool { return e.GetEvent().GetRoom() == r }).GetEvent()
			if ev.GetSeq() != seq {
				t.Fatalf("%s: stored seq %d where %d was due", r, ev.GetSeq(), seq)
			}
			bySeq[r][seq] = ev.GetClientMsgId()
			if c := ev.GetChange(); c != nil {
				// Besides posts, the log holds the room's creation by the
				// first join and each user becoming a member, once: a
				// client that reconnects (after a crash too) is a member
				// already.
				switch {
				case c.GetKind() == parleypb.ChangeKind_CHANGE_KIND_CREATED && seq == 1 && ev.GetSenderKind() == parleypb.SenderKind_SENDER_KIND_SYSTEM:
				case c.GetKind() == parleypb.ChangeKind_CHANGE_KIND_JOINED && c.GetUser() == ev.GetSender() && !joined[c.GetUser()]:
					joined[c.GetUser()] = true
				default:
					t.Fatalf("%s: unexpected change at seq %d: %v", r, seq, ev)
				}
				continue
			}
			if prev, dup := stored[r][ev.GetClientMsgId()]; dup {
				t.Fatalf("%s: %s stored twice, as %d and %d", r, ev.GetClientMsgId(), prev, seq)
			}
			stored[r][ev.GetClientMsgId()] = seq
		}
	}
	for _, c := range clients {
		c.mu.Lock()
		retried += c.retried
		if len(c.errs) > 0 {
			t.Errorf("%s saw: %v", c.name, c.errs)
		}
		for id, seq := range c.acked {
			found := false
			for _, r := range c.rooms {
				if got, ok := stored[r][id]; ok {
					found = true
					if got != seq {
						t.Errorf("%s acked as %d but stored as %d", id, seq, got)
					}
				}
			}
			if !found {
				t.Errorf("acknowledged %s (seq %d) is not stored", id, seq)
			}
		}
		total += len(c.acked)
		// What a client saw live must match the store, seq for seq.
		for r, seen := range c.seen {
			for seq, id := range seen {
				if bySeq[r][seq] != id {
					t.Errorf("%s saw %s seq %d as %q; stored as %q", c.name, r, seq, id, bySeq[r][seq])
				}
			}
		}
		c.mu.Unlock()
	}
	return total, retried
}

// TestStartupFailuresNameTheFlag: a data directory that cannot be used or a
// PostgreSQL that cannot be reached stops the real binary at start with a
// message naming the flag to change.
func TestStartupFailuresNameTheFlag(t *testing.T) {
	t.Parallel()
	corrupt := t.TempDir()
	if err := os.WriteFile(filepath.Join(corrupt, "history.db"), []byte("this is not a bolt file, not at all; garbage garbage garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	notDir := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notDir, []byte("x"), 0o600)
	// A real history, cut short (bbolt alone: "panic: invalid freelist
	// page" and a stack trace) and with random bytes over its data pages.
	truncated, damaged := historyDir(t), historyDir(t)
	if err := os.Truncate(filepath.Join(truncated, store.BoltFile), fileSize(t, filepath.Join(truncated, store.BoltFile))/2); err != nil {
		t.Fatal(err)
	}
	damagePages(t, filepath.Join(damaged, store.BoltFile))
	for _, tc := range []struct {
		name, want string
		args       []string
	}{
		{"corrupt bolt file", "-data", []string{"-data", corrupt}},
		{"truncated bolt file", "-data", []string{"-data", truncated}},
		{"damaged bolt pages", "-data", []string{"-data", damaged}},
		{"data is a file", "-data", []string{"-data", notDir}},
		{"postgres unreachable", "-store", []string{"-store", "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2"}},
		{"unknown store", "-store", []string{"-store", "mongodb://x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t, 30*time.Second)
			cmd := exec.CommandContext(ctx, parleyBinary(t), append([]string{"-addr", "127.0.0.1:0", "-admin-addr", ""}, tc.args...)...)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("exit: %v, want status 1\n%s", err, out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Fatalf("output does not name %s:\n%s", tc.want, out)
			}
			if strings.Contains(string(out), "panic") || strings.Contains(string(out), "goroutine ") {
				t.Fatalf("a panic or a stack trace instead of a message:\n%s", out)
			}
			if strings.HasPrefix(tc.name, "truncated") || strings.HasPrefix(tc.name, "damaged") {
				if !strings.Contains(string(out), store.BoltFile) || !strings.Contains(string(out), "corrupt") {
					t.Fatalf("output does not name the damaged file:\n%s", out)
				}
			}
			t.Logf("%s", out)
		})
	}
}

// historyDir returns a data directory holding a bolt history of a few
// rooms, big enough to span many pages.
func historyDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	s, err := store.OpenBolt(dir, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for r := range 4 {
		room := fmt.Sprint("room-", r)
		for from := uint64(1); from <= 1000; from += 250 {
			msgs := make([]store.Message, 250)
			for i := range msgs {
				seq := from + uint64(i)
				msgs[i] = store.Message{Room: room, Seq: seq, Time: time.Now(), Sender: "alice",
					Text: fmt.Sprintf("message %d of %s, long enough to fill pages quickly", seq, room), ClientMsgID: fmt.Sprint(seq)}
			}
			if err := s.Commit(context.Background(), store.Batch{Room: room, Messages: msgs}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// damagePages writes random bytes over the data pages in the middle of a
// bolt file (past its two meta pages, before its end, where bbolt keeps
// the latest freelist and roots).
func damagePages(t *testing.T, path string) {
	t.Helper()
	const page = 4096
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	junk := make([]byte, page)
	r := rand.NewChaCha8([32]byte{8})
	for off := int64(4 * page); off < fileSize(t, path)/3; off += page {
		r.Read(junk)
		if _, err := f.WriteAt(junk, off); err != nil {
			t.Fatal(err)
		}
	}
}

// flakyStore is an in-memory store that fails while fail is set.
type flakyStore struct {
	*store.Memory
	fail atomic.Bool
}

var errStoreDown = errors.New("disk on fire")

func (f *flakyStore) Commit(ctx context.Context, b store.Batch) error {
	if f.fail.Load() {
		return errStoreDown
	}
	return f.Memory.Commit(ctx, b)
}

func (f *flakyStore) Bounds(ctx context.Context, room string) (store.Bounds, error) {
	if f.fail.Load() {
		return store.Bounds{}, errStoreDown
	}
	return f.Memory.Bounds(ctx, room)
}

func (f *flakyStore) Before(ctx context.Context, room string, before uint64, limit int) ([]store.Message, error) {
	if f.fail.Load() {
		return nil, errStoreDown
	}
	return f.Memory.Before(ctx, room, before, limit)
}

// TestStoreOutage: while the store fails, posts get UNAVAILABLE error
// frames, never an ack; when it recovers, the same posts (same
// clientMsgId) go through with the next seq and nobody sees a hole.
func TestStoreOutage(t *testing.T) {
	t.Parallel()
	st := &flakyStore{Memory: store.NewMemory()}
	srv := startServer(t, func(c *server.Config) { c.Store = st })
	ctx := testCtx(t, 10*time.Second)
	alice := login(t, ctx, srv, codec.JSON, "alice", "r")
	bob, base := loginAt(t, ctx, srv, codec.Proto, "bob", "r")
	if seq, err := alice.Post(ctx, "r", "one", "1"); err != nil || seq != base+1 {
		t.Fatalf("post: %d %v, want seq %d", seq, err, base+1)
	}
	st.fail.Store(true)
	for i := 0; i < 3; i++ {
		_, err := alice.Post(ctx, "r", "two", "2")
		if client.ErrorCode(err) != parleypb.ErrorCode_ERROR_CODE_UNAVAILABLE {
			t.Fatalf("post during outage: %v, want UNAVAILABLE", err)
		}
	}
	st.fail.Store(false)
	if seq, err := alice.Post(ctx, "r", "two", "2"); err != nil || seq != base+2 {
		t.Fatalf("post after recovery: %d %v, want seq %d", seq, err, base+2)
	}
	for _, want := range []string{"one", "two"} {
		if ev := roomEvent(t, ctx, bob, "r"); ev.GetText() != want {
			t.Fatalf("bob got %v, want %q", ev, want)
		}
	}
	// A room that starts while the store is down answers UNAVAILABLE too,
	// and works once it is back.
	st.fail.Store(true)
	_, err := alice.Join(ctx, "fresh", nil)
	if client.ErrorCode(err) != parleypb.ErrorCode_ERROR_CODE_UNAVAILABLE {
		t.Fatalf("join during outage: %v, want UNAVAILABLE", err)
	}
	_, err = alice.Post(ctx, "fresh", "x", "x")
	if client.ErrorCode(err) != parleypb.ErrorCode_ERROR_CODE_NOT_JOINED {
		t.Fatalf("post to a room whose join failed: %v, want NOT_JOINED", err)
	}
	st.fail.Store(false)
	if _, err := alice.Join(ctx, "fresh", nil); err != nil {
		t.Fatalf("join after recovery: %v", err)
	}
}

// TestRetentionAndResetOnResume: retention trims the store in the
// background; a client resuming from before the oldest kept message is told
// so with a resetEvent naming it, then gets everything from there, in order.
func TestRetentionAndResetOnResume(t *testing.T) {
	t.Parallel()
	st := store.NewMemory()
	srv := startServer(t, func(c *server.Config) {
		c.Store = st
		c.Retention = store.Retention{MaxCount: 5}
		c.RetentionInterval = 20 * time.Millisecond
		c.Actors.History = 3 // the window is shorter than what retention keeps
	})
	ctx := testCtx(t, 10*time.Second)
	w, base := loginAt(t, ctx, srv, codec.JSON, "writer", "kept")
	for i := 1; i <= 20; i++ {
		if _, err := w.Post(ctx, "kept", fmt.Sprint(i), fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	latest := base + 20
	oldest := latest - 4 // retention keeps the newest 5
	waitFor(t, 5*time.Second, func() error {
		b, err := st.Bounds(ctx, "kept")
		if err != nil {
			return err
		}
		if b.Oldest != oldest || b.Latest != latest {
			return fmt.Errorf("store holds %d..%d, want %d..%d", b.Oldest, b.Latest, oldest, latest)
		}
		return nil
	})
	r := login(t, ctx, srv, codec.Proto, "late")
	ack, err := r.Join(ctx, "kept", u64(2))
	if err != nil {
		t.Fatal(err)
	}
	reset := nextEvent(t, ctx, r, "a reset", func(e *parleypb.Envelope) bool { return e.GetResetEvent() != nil }).GetResetEvent()
	// The join is an event too (latest+1): retention, every 20 ms, may
	// trim one more before the replay reads the store.
	from := reset.GetOldestSeq()
	if reset.GetSince() != 2 || (from != oldest && from != oldest+1) {
		t.Fatalf("reset = %v, want since 2, oldest %d (or %d)", reset, oldest, oldest+1)
	}
	for want := from; want <= latest; want++ {
		if ev := roomEvent(t, ctx, r, "kept"); ev.GetSeq() != want {
			t.Fatalf("after the reset got seq %d, want %d", ev.GetSeq(), want)
		}
	}
	if ack.GetSeq() != latest+1 { // its own JOINED
		t.Fatalf("join ack seq %d, want %d", ack.GetSeq(), latest+1)
	}
	// Scrollback stops at what retention kept. The join is an event too,
	// so retention, which runs every 20 ms, moves the oldest up by one:
	// wait for that before asking.
	oldest++
	waitFor(t, 5*time.Second, func() error {
		if b, err := st.Bounds(ctx, "kept"); err != nil || b.Oldest != oldest {
			return fmt.Errorf("store holds %d.., want %d.. (%v)", b.Oldest, oldest, err)
		}
		return nil
	})
	if err := r.History(ctx, "kept", oldest+1, 50); err != nil {
		t.Fatal(err)
	}
	page := nextEvent(t, ctx, r, "a history page", func(e *parleypb.Envelope) bool { return e.GetHistoryPage() != nil }).GetHistoryPage()
	if len(page.GetEvents()) != 1 || page.GetEvents()[0].GetSeq() != oldest || page.GetHasMore() {
		t.Fatalf("history before %d = %v, want just %d and no more", oldest+1, page, oldest)
	}
}
