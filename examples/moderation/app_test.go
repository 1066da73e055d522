package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/api"
	"github.com/parleychat/parley/client"
	"github.com/parleychat/parley/hooks"
	"github.com/parleychat/parley/internal/testenv"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/proto/codec"
	"github.com/parleychat/parley/server"
	"github.com/parleychat/parley/webhooks"
)

func TestMain(m *testing.M) { testenv.VerifyNoLeaks(m) }

const (
	testKey    = "example-key-0123456789abcdef0123456789"
	testSecret = "example-secret-0123456789abcdef012345"
)

// TestModerationApp runs the example against a real Parley on 127.0.0.1:
// the welcome through the server API (once, however often the app
// starts), the word filter and the shouting rule through the post hook,
// and a notify webhook for a member who was mentioned while away.
func TestModerationApp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log := testenv.Logger(t, 0)
	// The app's address first: Parley's hook points at it, and the app
	// points at Parley's API.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	keys, err := api.LoadKeys("", testKey)
	if err != nil {
		t.Fatal(err)
	}
	parley, err := server.New(server.Config{
		Addr: "127.0.0.1:0", APIAddr: "127.0.0.1:0", APIKeys: keys, Logger: log,
		Hooks:    hooks.Config{Post: hooks.Hook{URL: "http://" + ln.Addr().String()}, Secret: testSecret},
		Webhooks: webhooks.Config{URL: "http://" + ln.Addr().String() + "/webhooks", Secret: []byte(testSecret), Events: []string{"notify"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	parley.Start()
	defer parley.Shutdown(context.Background())
	app := New(Config{APIURL: "http://" + parley.APIAddr(), APIKey: testKey, Secret: []byte(testSecret), Words: []string{"darn", "heck"}, Logger: log})
	appSrv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: app.Handler()}}
	appSrv.Start()
	defer appSrv.Close()

	seq, err := app.Welcome(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if again, err := app.Welcome(ctx); err != nil || again != seq {
		t.Fatalf("a second start's welcome: %d (%v), want the first one, %d", again, err, seq)
	}

	// bob becomes a member of the room, then goes away.
	bob, err := client.Dial(ctx, parley.URL(), codec.JSON, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := bob.Hello(ctx, "bob", false); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Join(ctx, WelcomeRoom, nil); err != nil {
		t.Fatal(err)
	}
	bob.Close()
	testenv.WaitFor(t, 10*time.Second, func() error {
		members, err := parley.Node.RoomMembers(ctx, WelcomeRoom)
		for _, m := range members {
			if m.GetName() == "bob" {
				return errors.New("bob is still connected")
			}
		}
		return err
	})

	alice, err := client.Dial(ctx, parley.URL(), codec.JSON, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer alice.CloseNow()
	if err := alice.Hello(ctx, "alice", false); err != nil {
		t.Fatal(err)
	}
	since := uint64(0)
	if _, err := alice.Join(ctx, WelcomeRoom, &since); err != nil {
		t.Fatal(err)
	}
	next := func(what string) *parleypb.RoomEvent {
		t.Helper()
		for {
			env, err := alice.Next(ctx)
			if err != nil {
				t.Fatalf("waiting for %s: %v", what, err)
			}
			if ev := env.GetEvent(); ev != nil && ev.GetChange() == nil {
				return ev
			}
		}
	}
	if ev := next("the welcome"); ev.GetSeq() != seq || ev.GetSenderKind() != parleypb.SenderKind_SENDER_KIND_SYSTEM || !strings.HasPrefix(ev.GetText(), "Welcome!") {
		t.Fatalf("the first post alice sees: %v", ev)
	}
	if _, err := alice.Post(ctx, WelcomeRoom, "well, Darn it, hello", "p1"); err != nil {
		t.Fatal(err)
	}
	if ev := next("the filtered post"); ev.GetText() != "well, **** it, hello" {
		t.Fatalf("the filtered post reads %q", ev.GetText())
	}
	_, err = alice.Post(ctx, WelcomeRoom, "WHY IS NOBODY HERE", "p2")
	if client.ErrorCode(err) != parleypb.ErrorCode_ERROR_CODE_FORBIDDEN || !strings.Contains(err.Error(), "no shouting") {
		t.Fatalf("shouting: %v, want FORBIDDEN with the app's reason", err)
	}

	// bob is away: a mention brings the app a notify webhook for him.
	seq, err = alice.Post(ctx, WelcomeRoom, "@bob are you there?", "p3")
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, func() error {
		for _, n := range app.Notices() {
			if n.User == "bob" && n.Seq == seq && n.From == "alice" && n.Text == "@bob are you there?" {
				return nil
			}
		}
		return fmt.Errorf("notices %+v: none for bob's mention at seq %d", app.Notices(), seq)
	})
	if n := len(app.Notices()); n != 1 {
		t.Fatalf("%d notices, want 1 (alice is connected; bob was mentioned once)", n)
	}
}
