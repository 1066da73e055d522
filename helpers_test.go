package main_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/parleychat/parley/client"
	"github.com/parleychat/parley/internal/testenv"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/proto/codec"
	"github.com/parleychat/parley/server"
)

// testLogger sends server logs to t.Log until the test ends.
func testLogger(t *testing.T) *slog.Logger { return testenv.Logger(t, slog.LevelDebug) }

// startServer runs a server on 127.0.0.1:0 with test-friendly defaults,
// changed by edit; Cleanup shuts it down.
func startServer(t *testing.T, edit func(*server.Config)) *server.Server {
	t.Helper()
	cfg := server.Config{Addr: "127.0.0.1:0", Logger: testLogger(t)}
	cfg.Actors.Rate = 1000
	cfg.Actors.Burst = 1000
	if edit != nil {
		edit(&cfg)
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatalf("start server: %v", err)
	}
	srv.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return srv
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// dial connects a native client; Cleanup closes it.
func dial(t *testing.T, ctx context.Context, srv *server.Server, cd codec.Codec) *client.Client {
	t.Helper()
	c, err := client.Dial(ctx, srv.URL(), cd, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", cd.Subprotocol(), err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// login dials, says hello and joins rooms (which makes the user a member
// of each, an event in its log; latest tells a room's seq after that).
func login(t *testing.T, ctx context.Context, srv *server.Server, cd codec.Codec, name string, rooms ...string) *client.Client {
	t.Helper()
	c := dial(t, ctx, srv, cd)
	if err := c.Hello(ctx, name, false); err != nil {
		t.Fatalf("%s hello: %v", name, err)
	}
	for _, r := range rooms {
		if _, err := c.Join(ctx, r, nil); err != nil {
			t.Fatalf("%s join %s: %v", name, r, err)
		}
	}
	return c
}

// loginAt is login to one room, and the room's latest seq after the join
// (which made the user a member: changes to a room take seqs too).
func loginAt(t *testing.T, ctx context.Context, srv *server.Server, cd codec.Codec, name, room string) (*client.Client, uint64) {
	t.Helper()
	c := login(t, ctx, srv, cd, name)
	ack, err := c.Join(ctx, room, nil)
	if err != nil {
		t.Fatalf("%s join %s: %v", name, room, err)
	}
	return c, ack.GetSeq()
}

// nextEvent returns the next envelope that match accepts, skipping others.
func nextEvent(t *testing.T, ctx context.Context, c *client.Client, what string, match func(*parleypb.Envelope) bool) *parleypb.Envelope {
	t.Helper()
	for {
		env, err := c.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if match(env) {
			return env
		}
	}
}

// roomEvent waits for the next post in room (changes to the room, such
// as members joining, are skipped).
func roomEvent(t *testing.T, ctx context.Context, c *client.Client, room string) *parleypb.RoomEvent {
	t.Helper()
	return nextEvent(t, ctx, c, "a message in "+room, func(e *parleypb.Envelope) bool {
		return e.GetEvent() != nil && e.GetEvent().GetRoom() == room && e.GetEvent().GetChange() == nil
	}).GetEvent()
}

// closeCode waits for the connection to end and returns its close code.
func closeCode(t *testing.T, ctx context.Context, c *client.Client) (parleypb.CloseCode, string) {
	t.Helper()
	for {
		_, err := c.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				t.Fatalf("connection still open: %v", err)
			}
			return client.CloseCode(err), client.CloseReason(err)
		}
	}
}

// waitFor polls try until it returns nil or d passes.
var waitFor = testenv.WaitFor

func noSessions(srv *server.Server) func() error {
	return func() error {
		if n := srv.Node.Sessions(); n != 0 {
			return fmt.Errorf("%d sessions still alive", n)
		}
		return nil
	}
}

var codecs = []codec.Codec{codec.Proto, codec.JSON}

// quietLogger logs warnings and errors only, for tests that would drown
// the output in connection lines.
func quietLogger(t *testing.T) *slog.Logger { return testenv.Logger(t, slog.LevelWarn) }
