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
