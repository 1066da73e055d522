package main_test

// End-to-end tests of the I/O hardening: limits behind a proxy, idle HTTP
// connections, the admin listener against cross-site requests, damaged
// history files, and the admin API's answer for an unknown room.

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/parleychat/parley/client"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/proto/codec"
	"github.com/parleychat/parley/server"
	"github.com/parleychat/parley/store"
)

// adminGet fetches path from the admin listener and returns the status and
// body.
func adminGet(t *testing.T, srv *server.Server, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + srv.AdminAddr() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestDamagedRoomAnswersUnavailable: the pages of one room's history are
// damaged under a running server (the bolt file is memory-mapped, so the
// damage shows at once). Every join of that room is answered with
// UNAVAILABLE naming the history store (bbolt panicked on the page: the
// room panicked five times while loading, was stopped, and the join got no
// answer at all); the failure is counted as a corrupt store read, no room
// panics, and the other rooms are served as before.
func TestDamagedRoomAnswersUnavailable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, store.BoltFile)
	st, err := store.OpenBolt(dir, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, room := range []string{"damaged", "healthy"} {
		msgs := make([]store.Message, 400)
		for i := range msgs {
			msgs[i] = store.Message{Room: room, Seq: uint64(i + 1), Time: time.Now(), Sender: "old",
				Text: fmt.Sprintf("message %d, long enough that the room spans several pages", i+1)}
		}
		if err := st.Commit(context.Background(), store.Batch{Room: room, Messages: msgs}); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()
	// Where the damaged room's pages start: its bucket's root page.
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var root int64
	db.View(func(tx *bolt.Tx) error {
		root = int64(tx.Bucket([]byte("rooms")).Bucket([]byte("damaged")).RootPage())
		return nil
	})
	pageSize := int64(db.Info().PageSize)
	db.Close()
	if root == 0 {
		t.Fatal("the damaged room's history is inline; write more")
	}

	st, err = store.OpenBolt(dir, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, func(c *server.Config) { c.Store = st; c.AdminAddr = "127.0.0.1:0" })
	junk := make([]byte, pageSize)
	rand.NewChaCha8([32]byte{3}).Read(junk)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteAt(junk, root*pageSize)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}

	ctx := testCtx(t, 20*time.Second)
	alice := login(t, ctx, srv, codec.JSON, "alice")
	for i := 0; i < 3; i++ {
		_, err := alice.Join(ctx, "damaged", nil)
		if client.ErrorCode(err) != parleypb.ErrorCode_ERROR_CODE_UNAVAILABLE || !strings.Contains(err.Error(), "damaged") {
			t.Fatalf("join %d of the damaged room: %v, want UNAVAILABLE saying the history is damaged", i+1, err)
		}
	}
	// The healthy room's history is replayed up to its last message; its
	// first joins add their changes (its record, bob and alice joining)
	// after it.
	bob, bobSeq := loginAt(t, ctx, srv, codec.Proto, "bob", "healthy")
	for {
		ev := roomEvent(t, ctx, bob, "healthy")
		if ev.GetText() != fmt.Sprintf("message %d, long enough that the room spans several pages", ev.GetSeq()) {
			t.Fatalf("bob's replay of the healthy room: %v", ev)
		}
		if ev.GetSeq() == 400 {
			break
		}
	}
	ack, err := alice.Join(ctx, "healthy", nil)
	if err != nil || ack.GetSeq() != bobSeq+1 || ack.GetOldestSeq() != 1 {
		t.Fatalf("join of another room: %v %v, want seq %d (her JOINED after bob's %d), oldest 1", ack, err, bobSeq+1, bobSeq)
	}
	seq, err := alice.Post(ctx, "healthy", "still here", "h-1")
	if err != nil || seq != ack.GetSeq()+1 {
		t.Fatalf("post to another room: %d %v, want seq %d", seq, err, ack.GetSeq()+1)
	}
	for {
		if ev := roomEvent(t, ctx, bob, "healthy"); ev.GetSeq() == seq {
			break
		}
	}
	if n := srv.Node.Stats.Rooms.Failures.Load(); n != 0 {
		t.Errorf("%d room panics; a damaged history must be an error, not a panic", n)
	}
	_, body := adminGet(t, srv, "/metrics")
	if !strings.Contains(body, `parley_store_seconds_count{op="bounds",outcome="corrupt"}`) {
		t.Errorf("/metrics does not count the corrupt reads:\n%s", grepLines(body, "parley_store_seconds_count"))
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// adminCall sends one request to the admin listener with the given headers
// ("Host" sets the Host header) and returns the status and body.
func adminCall(t *testing.T, srv *server.Server, method, path, body string, header map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+srv.AdminAddr()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAdminRefusesCrossSite: the admin listener as it starts by default
// (loopback, no token) refuses what a web page can send it: a text/plain
// POST (a "simple" cross-site request; it used to broadcast the notice) is
// 415, a request with another site's Origin or Sec-Fetch-Site is 403, and a
// Host that is not the listener's own (DNS rebinding; it used to list the
// rooms) is 403. curl-like requests, /metrics and pprof still work, and a
// token makes any Host acceptable.
func TestAdminRefusesCrossSite(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *server.Config) { c.AdminAddr = "127.0.0.1:0" })
	ctx := testCtx(t, 10*time.Second)
	alice := login(t, ctx, srv, codec.JSON, "alice", "ops")
	_, port, _ := strings.Cut(srv.AdminAddr(), ":")
	json := map[string]string{"Content-Type": "application/json"}
	with := func(h map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range h {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	for _, tc := range []struct {
		name               string
		method, path, body string
		header             map[string]string
		want               int
	}{
		{"text/plain notice", "POST", "/notice", `{"text":"pwned"}`, map[string]string{"Content-Type": "text/plain"}, http.StatusUnsupportedMediaType},
		{"form notice", "POST", "/notice", `{"text":"pwned"}`, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, http.StatusUnsupportedMediaType},
		{"no content type", "POST", "/notice", `{"text":"pwned"}`, nil, http.StatusUnsupportedMediaType},
		{"text/plain kick", "POST", "/kick", `{"user":"alice"}`, map[string]string{"Content-Type": "text/plain"}, http.StatusUnsupportedMediaType},
		{"text/plain close", "POST", "/rooms/ops/close", `{}`, map[string]string{"Content-Type": "text/plain"}, http.StatusUnsupportedMediaType},
		{"cross-site origin", "POST", "/notice", `{"text":"pwned"}`, with(json, "Origin", "http://evil.example"), http.StatusForbidden},
		{"cross-site text/plain with origin", "POST", "/notice", `{"text":"pwned"}`, map[string]string{"Content-Type": "text/plain", "Origin": "http://evil.example"}, http.StatusForbidden},
		{"null origin", "POST", "/kick", `{"user":"alice"}`, with(json, "Origin", "null"), http.StatusForbidden},
		{"sec-fetch-site cross-site", "GET", "/rooms", "", map[string]string{"Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"sec-fetch-site same-site", "GET", "/metrics", "", map[string]string{"Sec-Fetch-Site": "same-site"}, http.StatusForbidden},
		{"rebinding host", "GET", "/rooms", "", map[string]string{"Host": "rebind.evil.example:" + port}, http.StatusForbidden},
		{"rebinding host, metrics", "GET", "/metrics", "", map[string]string{"Host": "rebind.evil.example:" + port}, http.StatusForbidden},
		{"rebinding host, pprof", "GET", "/debug/pprof/", "", map[string]string{"Host": "rebind.evil.example"}, http.StatusForbidden},

		{"curl rooms", "GET", "/rooms", "", nil, http.StatusOK},
		{"localhost", "GET", "/rooms/ops", "", map[string]string{"Host": "localhost:" + port}, http.StatusOK},
		{"ipv6 loopback", "GET", "/rooms", "", map[string]string{"Host": "[::1]:" + port}, http.StatusOK},
		{"prometheus", "GET", "/metrics", "", map[string]string{"Host": "127.0.0.1:" + port}, http.StatusOK},
		{"typed URL in a browser", "GET", "/debug/pprof/", "", map[string]string{"Sec-Fetch-Site": "none"}, http.StatusOK},
		{"same-origin page", "GET", "/debug/pprof/", "", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "http://" + srv.AdminAddr()}, http.StatusOK},
		{"json with charset", "POST", "/rooms/ops/close", `{"reason":"test"}`, map[string]string{"Content-Type": "application/json; charset=utf-8"}, http.StatusOK},
	} {
		code, body := adminCall(t, srv, tc.method, tc.path, tc.body, tc.header)
		if code != tc.want {
			t.Errorf("%s: %s %s: %d %s, want %d", tc.name, tc.method, tc.path, code, body, tc.want)
		}
		if code >= 400 && !strings.HasPrefix(body, `{"error":`) {
			t.Errorf("%s: error body %q is not JSON", tc.name, body)
		}
	}
	// None of the refused actions reached anyone: the one notice alice
	// gets is the one sent properly.
	if code, body := adminCall(t, srv, "POST", "/notice", `{"text":"the real one"}`, json); code != http.StatusOK {
		t.Fatalf("notice: %d %s", code, body)
	}
	n := nextEvent(t, ctx, alice, "a notice", func(e *parleypb.Envelope) bool { return e.GetNotice() != nil && e.GetNotice().GetRoom() == "" })
	if n.GetNotice().GetText() != "the real one" {
		t.Fatalf("alice got the notice %q first, want only the one sent with JSON from curl", n.GetNotice().GetText())
	}

	tokened := startServer(t, func(c *server.Config) { c.AdminAddr, c.AdminToken = "127.0.0.1:0", "admin-secret" })
	bearer := map[string]string{"Authorization": "Bearer admin-secret", "Host": "parley-admin.internal:9090"}
	if code, body := adminCall(t, tokened, "GET", "/rooms", "", bearer); code != http.StatusOK {
		t.Fatalf("with the token, any Host: %d %s", code, body)
	}
	if code, body := adminCall(t, tokened, "GET", "/rooms", "", with(bearer, "Origin", "http://evil.example")); code != http.StatusForbidden {
		t.Fatalf("with the token and a foreign Origin: %d %s, want 403", code, body)
	}
	if code, body := adminCall(t, tokened, "POST", "/notice", `{"text":"x"}`, with(bearer, "Content-Type", "text/plain")); code != http.StatusUnsupportedMediaType {
		t.Fatalf("with the token, text/plain: %d %s, want 415", code, body)
	}
}

// TestAdminUnknownRoomIs404: GET /rooms/{room} for a room that is neither
// active nor has history is 404 with a JSON error (it was 200 with no
// members), and asking does not start the room. A room with history that
// is not running is 200 with no members, also without starting it.
func TestAdminUnknownRoomIs404(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *server.Config) {
		c.AdminAddr = "127.0.0.1:0"
		c.Actors.RoomLinger = 10 * time.Millisecond
	})
	ctx := testCtx(t, 10*time.Second)
	code, body := adminGet(t, srv, "/rooms/nonexistent")
	if code != http.StatusNotFound || !strings.HasPrefix(body, `{"error":`) || !strings.Contains(body, "nonexistent") {
		t.Fatalf("GET /rooms/nonexistent: %d %s, want 404 with a JSON error naming the room", code, body)
	}
	if n := srv.Node.Stats.ActiveRooms.Load(); n != 0 {
		t.Fatalf("%d rooms running after asking about one that does not exist", n)
	}

	alice := login(t, ctx, srv, codec.JSON, "alice", "kept")
	if code, body := adminGet(t, srv, "/rooms/kept"); code != http.StatusOK || !strings.Contains(body, `"alice"`) {
		t.Fatalf("GET /rooms/kept with alice in it: %d %s", code, body)
	}
	if _, err := alice.Post(ctx, "kept", "hello", "k-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Request(ctx, &parleypb.Envelope{Body: &parleypb.Envelope_Leave{Leave: &parleypb.Leave{Room: "kept"}}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() error {
		if n := srv.Node.Stats.ActiveRooms.Load(); n != 0 {
			return fmt.Errorf("%d rooms still running", n)
		}
		return nil
	})
	if code, body := adminGet(t, srv, "/rooms/kept"); code != http.StatusOK || !strings.Contains(body, `"members":[]`) {
		t.Fatalf("GET /rooms/kept, passivated with history: %d %s, want 200 with no members", code, body)
	}
	if n := srv.Node.Stats.ActiveRooms.Load(); n != 0 {
		t.Fatalf("asking about a passivated room started it (%d rooms running)", n)
	}
}

// rawHTTP opens a TCP connection to addr from the local address from.
func rawHTTP(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// get sends one keep-alive GET on c and returns the response (body read).
func get(t *testing.T, c net.Conn, br *bufio.Reader, path string) (*http.Response, string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: parley.test\r\n\r\n", path); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// waitClosed waits up to d for the server to close c.
func waitClosed(t *testing.T, c net.Conn, br *bufio.Reader, d time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("connection %s not closed by the server within %v: %v", c.LocalAddr(), d, err)
	}
}

// TestIdleHTTPConnectionsClosedAndCounted: keep-alive HTTP connections
// that sent one request and went quiet count against -max-conns-per-ip and
// -max-conns while open (a WebSocket from the same address is refused with
// 429, from another with 503; an HTTP request past the limit gets 429 and
// its connection is closed), and the server closes them after the idle
// timeout, after which the address may connect again. Before, they were
// never closed and never counted.
func TestIdleHTTPConnectionsClosedAndCounted(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *server.Config) {
		c.Transport.MaxConnsPerIP = 3
		c.Transport.MaxConns = 6
		// Long enough that the first address's connections are still
		// open when the node's limit is checked, on a loaded machine too
		// (at 500 ms they were once closed by then, and the dial got in).
		c.HTTPIdleTimeout = 4 * time.Second
		c.HTTPReadTimeout = 2 * time.Second
	})
	ctx := testCtx(t, 30*time.Second)
	type idle struct {
		c  net.Conn
		br *bufio.Reader
	}
	var conns []idle
	open := func(from string) idle {
		c := rawHTTP(t, from, srv.Addr())
		br := bufio.NewReader(c)
		if resp, body := get(t, c, br, "/healthz"); resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /healthz from %s: %d %s", from, resp.StatusCode, body)
		}
		return idle{c, br}
	}
	for range 3 {
		conns = append(conns, open("127.0.0.2"))
	}
	_, err := dialFrom(ctx, srv, "127.0.0.2")
	wantRefusal(t, err, http.StatusTooManyRequests, "-max-conns-per-ip")

	over := rawHTTP(t, "127.0.0.2", srv.Addr())
	overBr := bufio.NewReader(over)
	if resp, body := get(t, over, overBr, "/healthz"); resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(body, "-max-conns-per-ip") {
		t.Fatalf("a fourth HTTP connection from one address: %d %s, want 429 naming -max-conns-per-ip", resp.StatusCode, body)
	}
	waitClosed(t, over, overBr, 5*time.Second) // refused: answered once, then closed

	for range 3 {
		conns = append(conns, open("127.0.0.3"))
	}
	_, err = dialFrom(ctx, srv, "127.0.0.4")
	wantRefusal(t, err, http.StatusServiceUnavailable, "-max-conns")

	for _, c := range conns {
		waitClosed(t, c.c, c.br, 10*time.Second)
	}
	waitFor(t, 10*time.Second, func() error {
		c, err := dialFrom(ctx, srv, "127.0.0.2")
		if err == nil {
			c.CloseNow()
		}
		return err
	})
	// A connection that never sends a request is closed too.
	silent := rawHTTP(t, "127.0.0.5", srv.Addr())
	waitClosed(t, silent, bufio.NewReader(silent), 10*time.Second)
}

// TestWebSocketOutlivesHTTPTimeouts: the HTTP read and idle timeouts end
// HTTP connections, never a WebSocket that outlives them many times over.
func TestWebSocketOutlivesHTTPTimeouts(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *server.Config) {
		c.HTTPIdleTimeout = 100 * time.Millisecond
		c.HTTPReadTimeout = 200 * time.Millisecond
	})
	ctx := testCtx(t, 20*time.Second)
	alice := login(t, ctx, srv, codec.JSON, "alice", "r")
	legacy := dialLegacy(t, ctx, srv)
	if _, err := legacy.Read(ctx); err != nil { // its handshake frame
		t.Fatal(err)
	}
	for until := time.Now().Add(2 * time.Second); time.Now().Before(until); {
		if err := alice.Ping(ctx); err != nil {
			t.Fatalf("a WebSocket ended by an HTTP timeout: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // pacing the pings, not a wait for a result
	}
	if err := legacy.WriteJSON(ctx, map[string]string{"type": "login", "content": "ann"}); err != nil {
		t.Fatalf("a legacy WebSocket ended by an HTTP timeout: %v", err)
	}
	if f := readLegacy(t, ctx, legacy); f.Type != "login" {
		t.Fatalf("legacy login answered with %+v", f)
	}
	if _, err := alice.Post(ctx, "r", "still here", "1"); err != nil {
		t.Fatal(err)
	}
}

// syncBuffer collects a process's output.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startLogged runs the real binary with args only (its defaults otherwise)
// at info level, keeps its output, and waits until it is ready.
func startLogged(t *testing.T, addr string, args ...string) *syncBuffer {
	t.Helper()
	out := &syncBuffer{}
	cmd := exec.Command(buildParley(t, false), append([]string{"-addr", addr, "-admin-addr", "", "-store", "memory"}, args...)...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("parley's output:\n%s", out)
		}
	})
	waitFor(t, 30*time.Second, func() error {
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("parley exited at start: %v\n%s", err, out)
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
	return out
}

// dialProxied dials the way a reverse proxy on 127.0.0.1 does: from that
// address, with forwarded set as X-Forwarded-For unless it is empty.
func dialProxied(ctx context.Context, url, forwarded string) (*client.Client, error) {
	h := http.Header{}
	if forwarded != "" {
		h.Set("X-Forwarded-For", forwarded)
	}
	return client.Dial(ctx, url, codec.JSON, &client.Options{LocalAddr: "127.0.0.1", Header: h})
}

// dialAll opens n connections, 16 at a time, with dial(i), and returns
// them; any refusal fails the test.
func dialAll(t *testing.T, n int, dial func(i int) (*client.Client, error)) []*client.Client {
	t.Helper()
	out := make([]*client.Client, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := dial(i)
			if err != nil {
				errs <- fmt.Errorf("connection %d: %w", i, err)
				return
			}
			out[i] = c
		}()
	}
	wg.Wait()
	close(errs)
	refused := 0
	var first error
	for err := range errs {
		refused++
		first = cmp.Or(first, err)
	}
	for _, c := range out {
		if c != nil {
			t.Cleanup(func() { c.CloseNow() })
		}
	}
	if refused > 0 {
		t.Fatalf("%d of %d connections refused; the first: %v", refused, n, first)
	}
	return out
}

// TestDefaultLimitsBehindProxy runs the real binary with its defaults
// behind a simulated reverse proxy on 127.0.0.1 (README's nginx example):
// 200 users, each named by X-Forwarded-For, all get in, and so do 200
// through a proxy that names no one (before, the defaults refused 162 of
// 200: every user counted as 127.0.0.1). Per-address limits still hold for
// each user behind the proxy: one address's 101st connection is refused
// with 429 naming -max-conns-per-ip. The start-up log says in one line
// which limits apply to which addresses.
func TestDefaultLimitsBehindProxy(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	out := startLogged(t, addr)
	url := "ws://" + addr + "/ws"
	ctx := testCtx(t, 60*time.Second)

	var line string
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.Contains(l, "limits:") {
			line = l
		}
	}
	for _, want := range []string{"per client address 100 connections and 20 WebSocket handshakes/s", "X-Forwarded-For", "127.0.0.0/8", "::1/128", "per node 100000 connections"} {
		if !strings.Contains(line, want) {
			t.Errorf("the start-up limits line %q lacks %q", line, want)
		}
	}

	users := dialAll(t, 200, func(i int) (*client.Client, error) {
		return dialProxied(ctx, url, fmt.Sprintf("198.51.100.%d", i+1))
	})
	dialAll(t, 200, func(int) (*client.Client, error) { return dialProxied(ctx, url, "") })
	if err := users[199].Hello(ctx, "user199", false); err != nil {
		t.Fatal(err)
	}

	// One address behind the proxy: 100 connections (paced by the
	// handshake rate, 20/s with a burst of 40), then 429.
	for n := 0; n < 100; {
		c, err := dialProxied(ctx, url, "203.0.113.7")
		var de *client.DialError
		switch {
		case err == nil:
			t.Cleanup(func() { c.CloseNow() })
			n++
		case errors.As(err, &de) && de.StatusCode == http.StatusTooManyRequests && strings.Contains(de.Body, "-max-handshake-rate"):
			time.Sleep(20 * time.Millisecond) // back off as a client would; retried until ctx ends
		default:
			t.Fatalf("connection %d from 203.0.113.7: %v", n+1, err)
		}
	}
	waitFor(t, 10*time.Second, func() error {
		_, err := dialProxied(ctx, url, "203.0.113.7")
		var de *client.DialError
		if errors.As(err, &de) && de.StatusCode == http.StatusTooManyRequests && strings.Contains(de.Body, "-max-conns-per-ip") && strings.Contains(de.Body, "203.0.113.7") {
			return nil
		}
		return fmt.Errorf("101st connection from one address behind the proxy: %v, want 429 naming -max-conns-per-ip", err)
	})
}

// TestSpoofedClientAddressIgnored: the client-address header is believed
// only from a trusted proxy. A client that is not one and writes its own
// X-Forwarded-For is limited by its peer address: its second handshake
// within the rate is 429 naming -max-handshake-rate and its address (before,
// each made-up address had a rate of its own), and its third connection is
// 429 naming -max-conns-per-ip. Behind a trusted proxy that appends to the
// header, the address the client wrote in front is ignored and the one the
// proxy added is limited.
func TestSpoofedClientAddressIgnored(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t, 20*time.Second)
	trustLocal := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	dialAs := func(srv *server.Server, from, forwarded string) error {
		c, err := client.Dial(ctx, srv.URL(), codec.JSON, &client.Options{LocalAddr: from, Header: http.Header{"X-Forwarded-For": {forwarded}}})
		if err == nil {
			t.Cleanup(func() { c.CloseNow() })
		}
		return err
	}
	wantNamed := func(err error, status int, flag, addr string) {
		t.Helper()
		wantRefusal(t, err, status, flag)
		if !strings.Contains(err.Error(), addr) {
			t.Fatalf("refusal %v does not name %s", err, addr)
		}
	}

	rated := startServer(t, func(c *server.Config) {
		c.Transport.HandshakesPerSecond = 0.1 // a burst of one
		c.Transport.ClientIPHeader, c.Transport.TrustedProxies = "X-Forwarded-For", trustLocal
	})
	if err := dialAs(rated, "127.0.0.2", "192.0.2.1"); err != nil {
		t.Fatal(err)
	}
	wantNamed(dialAs(rated, "127.0.0.2", "192.0.2.2"), http.StatusTooManyRequests, "-max-handshake-rate", "127.0.0.2")
	for i := range 5 { // the trusted proxy: one address, and one rate, per user
		if err := dialAs(rated, "127.0.0.1", fmt.Sprintf("192.0.2.%d", i+1)); err != nil {
			t.Fatalf("user %d behind the trusted proxy: %v", i+1, err)
		}
	}

	capped := startServer(t, func(c *server.Config) {
		c.Transport.MaxConnsPerIP = 2
		c.Transport.ClientIPHeader, c.Transport.TrustedProxies = "X-Forwarded-For", trustLocal
	})
	for i := range 2 {
		if err := dialAs(capped, "127.0.0.2", fmt.Sprintf("192.0.2.%d", i+1)); err != nil {
			t.Fatal(err)
		}
	}
	wantNamed(dialAs(capped, "127.0.0.2", "192.0.2.99"), http.StatusTooManyRequests, "-max-conns-per-ip", "127.0.0.2")
	for i := range 2 { // a client varying what it writes before the proxy's part
		if err := dialAs(capped, "127.0.0.1", fmt.Sprintf("10.9.9.%d, 203.0.113.9", i+1)); err != nil {
			t.Fatal(err)
		}
	}
	wantNamed(dialAs(capped, "127.0.0.1", "10.9.9.77, 203.0.113.9"), http.StatusTooManyRequests, "-max-conns-per-ip", "203.0.113.9")
}

// TestNodeHandshakeRate: -max-node-handshake-rate spreads a reconnect
// storm: past the node's rate, a handshake from any address gets HTTP 503
// naming the flag, with Retry-After (the client's DialError.RetryAfter), and
// the connections already open are untouched.
func TestNodeHandshakeRate(t *testing.T) {
	t.Parallel()
	ctx := testCtx(t, 20*time.Second)
	srv := startServer(t, func(c *server.Config) {
		c.Transport.NodeHandshakesPerSecond = 0.1 // a burst of one
		c.Transport.HandshakesPerSecond, c.Transport.MaxConnsPerIP = 0, 0
	})
	first, err := client.Dial(ctx, srv.URL(), codec.JSON, &client.Options{LocalAddr: "127.0.0.2"})
	if err != nil {
		t.Fatal(err)
	}
	defer first.CloseNow()
	_, err = client.Dial(ctx, srv.URL(), codec.JSON, &client.Options{LocalAddr: "127.0.0.3"})
	wantRefusal(t, err, http.StatusServiceUnavailable, "-max-node-handshake-rate")
	var de *client.DialError
	if errors.As(err, &de); de.RetryAfter <= 0 {
		t.Errorf("refusal %v has no Retry-After", err)
	}
	if err := first.Hello(ctx, "ann", false); err != nil {
		t.Fatalf("the connection open before the storm: %v", err)
	}
}
