package main_test

// End-to-end tests of the I/O hardening: limits behind a proxy, idle HTTP
// connections, the admin listener against cross-site requests, damaged
// history files, and the admin API's answer for an unknown room.

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
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
		if err := st.Append(context.Background(), msgs); err != nil {
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
		if client.ErrorCode(err) != parleypb.ErrorCode_ERROR_CODE_UNAVAILABLE || !strings.Contains(err.Error(), "history store") {
			t.Fatalf("join %d of the damaged room: %v, want UNAVAILABLE naming the history store", i+1, err)
		}
	}
	bob := login(t, ctx, srv, codec.Proto, "bob", "healthy")
	if ack, err := alice.Join(ctx, "healthy", nil); err != nil || ack.GetSeq() != 400 {
		t.Fatalf("join of another room: %v %v, want seq 400", ack, err)
	}
	if seq, err := alice.Post(ctx, "healthy", "still here", "h-1"); err != nil || seq != 401 {
		t.Fatalf("post to another room: %d %v", seq, err)
	}
	for {
		if ev := roomEvent(t, ctx, bob, "healthy"); ev.GetSeq() == 401 {
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
