package greeter_test

import (
	"context"
	"testing"
	"time"

	"github.com/parleychat/parley/bots/greeter"
	"github.com/parleychat/parley/client"
	"github.com/parleychat/parley/proto/codec"
	"github.com/parleychat/parley/server"
)

// TestGreeterWelcomesFirstJoinsOnly runs a greeter on a real server: each
// user who joins gets one welcome, the first time; joining again (another
// device, or after leaving) gets none.
func TestGreeterWelcomesFirstJoinsOnly(t *testing.T) {
	t.Parallel()
	srv, err := server.New(server.Config{Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	if _, err := greeter.Spawn(srv.Node, greeter.Options{Rooms: []string{"lobby"}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	login := func(name string) *client.Client {
		c, err := client.Dial(ctx, srv.URL(), codec.JSON, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.CloseNow() })
		if err := c.Hello(ctx, name, false); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Join(ctx, "lobby", nil); err != nil {
			t.Fatal(err)
		}
		return c
	}
	// welcomes reads c's events until the greeter's welcome to want, and
	// returns every welcome seen on the way.
	welcomes := func(c *client.Client, want string) []string {
		var got []string
		for {
			env, err := c.Next(ctx)
			if err != nil {
				t.Fatalf("waiting for the welcome to %q: %v (saw %q)", want, err, got)
			}
			// The greeter's own JOINED (it is a member) is no welcome.
			if ev := env.GetEvent(); ev.GetSender() == "greeter" && ev.GetChange() == nil {
				got = append(got, ev.GetText())
				if ev.GetText() == want {
					return got
				}
			}
		}
	}

	alice := login("alice")
	if got := welcomes(alice, "Welcome to lobby, alice!"); len(got) != 1 {
		t.Fatalf("alice saw %q", got)
	}
	// A second device, and leaving and coming back: no new welcome.
	phone := login("alice")
	if err := phone.Leave(ctx, "lobby"); err != nil {
		t.Fatal(err)
	}
	// Leaving ends alice's membership, so her first connection is out too.
	for {
		env, err := alice.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for alice's first connection to be taken out of lobby: %v", err)
		}
		if n := env.GetNotice(); n.GetRoom() == "lobby" {
			break
		}
	}
	if _, err := alice.Join(ctx, "lobby", nil); err != nil {
		t.Fatal(err)
	}
	login("bob")
	// Alice hears bob's welcome, and nothing for herself on the way (her
	// re-join replays history: her own welcome once more, seq and all).
	got := welcomes(alice, "Welcome to lobby, bob!")
	for _, w := range got[:len(got)-1] {
		if w != "Welcome to lobby, alice!" {
			t.Fatalf("unexpected welcome %q", w)
		}
	}
	ack, err := alice.Join(ctx, "lobby", ptr(uint64(0)))
	if err != nil {
		t.Fatal(err)
	}
	if n := countGreeterPosts(t, ctx, alice, ack.GetSeq()); n != 2 {
		t.Fatalf("the room holds %d welcomes, want 2 (alice and bob once each)", n)
	}
}

// countGreeterPosts reads c's events until seq upto and counts the
// greeter's.
func countGreeterPosts(t *testing.T, ctx context.Context, c *client.Client, upto uint64) int {
	t.Helper()
	n := 0
	seen := map[uint64]bool{}
	for {
		env, err := c.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ev := env.GetEvent()
		if ev == nil {
			continue
		}
		if ev.GetSender() == "greeter" && ev.GetChange() == nil && !seen[ev.GetSeq()] {
			n++
		}
		seen[ev.GetSeq()] = true
		if ev.GetSeq() >= upto {
			return n
		}
	}
}

func ptr[T any](v T) *T { return &v }
