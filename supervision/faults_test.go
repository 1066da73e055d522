package supervision

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/parleychat/parley/actors/actorpb"
	parleypb "github.com/parleychat/parley/proto"
)

func TestFaultsMiddlewareOff(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		f    *Faults
		kind string
	}{
		{"nil faults", nil, "room"},
		{"kind not listed", &Faults{Marker: "BOOM", Kinds: []string{"session"}}, "room"},
		{"no kinds", &Faults{Marker: "BOOM"}, "room"},
		{"kind case differs", &Faults{Marker: "BOOM", Kinds: []string{"Room"}}, "room"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// nil, not a pass-through: production props carry no middleware.
			if mw := tc.f.Middleware(tc.kind); mw != nil {
				t.Fatal("Middleware returned a middleware; want nil")
			}
		})
	}
}

func TestFaultsMiddlewarePanics(t *testing.T) {
	t.Parallel()
	const marker = "💥BOOM"
	post := func(text string) *parleypb.Envelope {
		return &parleypb.Envelope{Body: &parleypb.Envelope_Post{Post: &parleypb.Post{Room: "r", Text: text}}}
	}
	for _, tc := range []struct {
		name  string
		kind  string
		msg   any
		panic bool
	}{
		{"client post with marker", "session", post("say " + marker + " now"), true},
		{"client post is the marker", "session", post(marker), true},
		{"client post without marker", "session", post("say boom now"), false},
		{"marker is case-sensitive", "session", post("💥boom"), false},
		{"room post with marker", "room", &actorpb.RoomPost{Room: "r", User: "u", Text: marker}, true},
		{"room post without marker", "room", &actorpb.RoomPost{Room: "r", User: "u", Text: "fine"}, false},
		// Only text a user posts triggers it, never names or other fields.
		{"hello named marker", "session", &parleypb.Envelope{Body: &parleypb.Envelope_Hello{Hello: &parleypb.Hello{Name: marker}}}, false},
		{"join of marker room", "session", &parleypb.Envelope{Body: &parleypb.Envelope_Join{Join: &parleypb.Join{Room: marker}}}, false},
		{"client msg id is marker", "room", &actorpb.RoomPost{Room: "r", Text: "x", ClientMsgId: marker}, false},
		{"room join by marker user", "room", &actorpb.RoomJoin{Room: "r", User: marker}, false},
		{"typing", "room", &actorpb.RoomTyping{Room: "r", User: marker}, false},
		// Lifecycle messages never fail, or a restart could loop on Started.
		{"started", "room", &actor.Started{}, false},
		{"restarting", "room", &actor.Restarting{}, false},
		{"nil message", "room", nil, false},
		{"inject fault", "presence", &actorpb.InjectFault{}, true},
		{"inject drop is the session's", "session", &actorpb.InjectFault{Drop: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := &Faults{Marker: marker, Kinds: []string{"presence", tc.kind}}
			mw := f.Middleware(tc.kind)
			if mw == nil {
				t.Fatal("no middleware for a listed kind")
			}
			called := false
			next := func(actor.ReceiverContext, *actor.MessageEnvelope) { called = true }
			var recovered any
			func() {
				defer func() { recovered = recover() }()
				mw(next)(nil, &actor.MessageEnvelope{Message: tc.msg})
			}()
			if tc.panic {
				if recovered == nil {
					t.Fatal("did not panic")
				}
				if s, _ := recovered.(string); !strings.Contains(s, tc.kind) {
					t.Errorf("panic value %v does not name the kind %q", recovered, tc.kind)
				}
				if n := f.Injected.Load(); n != 1 {
					t.Errorf("Injected = %d after one fault", n)
				}
				if called {
					t.Error("the actor saw the message that was meant to kill it")
				}
				return
			}
			if recovered != nil {
				t.Fatalf("panicked: %v", recovered)
			}
			if !called {
				t.Fatal("the message was not passed on")
			}
		})
	}
}

// TestFaultsUnderStrategy runs the middleware in a real actor, supervised
// by the strategy, as Node wires it: the injected panic is a failure like
// any other, counted and reported with the message that caused it.
func TestFaultsUnderStrategy(t *testing.T) {
	t.Parallel()
	sys := quietSystem(t)
	stats := new(Stats)
	failed := make(chan failure, 4)
	seen := make(chan string, 4)
	started := make(chan struct{}, 4)
	faults := &Faults{Marker: "BOOM", Kinds: []string{"room"}}
	roomProps := actor.PropsFromFunc(func(c actor.Context) {
		switch m := c.Message().(type) {
		case *actor.Started:
			started <- struct{}{}
		case *actorpb.RoomPost:
			seen <- m.GetText()
		}
	}, actor.WithReceiverMiddleware(faults.Middleware("room")))
	born := make(chan *actor.PID, 1)
	sys.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		if _, ok := c.Message().(*actor.Started); ok {
			born <- c.Spawn(roomProps)
		}
	}, actor.WithSupervisor(OneForOne(Options{Kind: "room", Stats: stats, OnFailure: func(_ *actor.PID, reason, message any) {
		failed <- failure{reason: reason, message: message}
	}}))))
	room := recv(t, born, "room spawned")
	recv(t, started, "room started")

	bad := &actorpb.RoomPost{Room: "r", Text: "BOOM"}
	sys.Root.Send(room, bad)
	got := recv(t, failed, "the injected failure")
	if reason, _ := got.reason.(string); got.message != bad || !strings.HasPrefix(reason, "injected fault in room") {
		t.Fatalf("failure = %#v, %#v", got.reason, got.message)
	}
	recv(t, started, "restart")
	sys.Root.Send(room, &actorpb.RoomPost{Room: "r", Text: "fine"})
	if text := recv(t, seen, "the next post"); text != "fine" {
		t.Fatalf("room saw %q", text)
	}
	if stats.Failures.Load() != 1 || stats.Restarts.Load() != 1 {
		t.Fatalf("failures %d, restarts %d; want 1, 1", stats.Failures.Load(), stats.Restarts.Load())
	}
}

// TestFaultsNoMarker: a listed kind with no marker must not treat every
// text as containing the empty marker.
func TestFaultsNoMarker(t *testing.T) {
	t.Parallel()
	f := &Faults{Kinds: []string{"room"}}
	mw := f.Middleware("room")
	if mw == nil {
		t.Fatal("no middleware for a listed kind")
	}
	passed := 0
	next := func(actor.ReceiverContext, *actor.MessageEnvelope) { passed++ }
	for _, text := range []string{"", "anything", "BOOM"} {
		mw(next)(nil, &actor.MessageEnvelope{Message: &actorpb.RoomPost{Room: "r", Text: text}})
	}
	if passed != 3 || f.Injected.Load() != 0 {
		t.Fatalf("passed %d of 3, injected %d", passed, f.Injected.Load())
	}
}

func TestFaultsEveryAndShare(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		f    *Faults
		want []bool // panic on the i-th Parley message
	}{
		{"every third", &Faults{Kinds: []string{"room"}, Every: 3}, []bool{false, false, true, false, false, true, false}},
		{"every one", &Faults{Kinds: []string{"room"}, Every: 1}, []bool{true, true, true}},
		{"share one", &Faults{Kinds: []string{"room"}, Share: 1}, []bool{true, true, true}},
		{"share zero", &Faults{Kinds: []string{"room"}}, []bool{false, false, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			mw := tc.f.Middleware("room")(func(actor.ReceiverContext, *actor.MessageEnvelope) {})
			for i, want := range tc.want {
				// Lifecycle messages in between must not count.
				mw(nil, &actor.MessageEnvelope{Message: &actor.Started{}})
				got := func() (p bool) {
					defer func() { p = recover() != nil }()
					mw(nil, &actor.MessageEnvelope{Message: &actorpb.RoomTyping{Room: "r"}})
					return false
				}()
				if got != want {
					t.Fatalf("message %d: panicked %v, want %v", i+1, got, want)
				}
			}
		})
	}
}

func TestParseFaults(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		spec    string
		want    *Faults // nil: an error is expected
		wantErr string
	}{
		{name: "everything", spec: "kinds=session,room;marker=BOOM;share=0.25;every=7;delay=2ms",
			want: &Faults{Kinds: []string{"session", "room"}, Marker: "BOOM", Share: 0.25, Every: 7, Delay: 2 * time.Millisecond}},
		{name: "spaces and empty parts", spec: " kinds=presence ; ;marker=a=b ",
			want: &Faults{Kinds: []string{"presence"}, Marker: "a=b"}},
		{name: "empty", spec: "", wantErr: "kinds="},
		{name: "no kinds", spec: "marker=BOOM", wantErr: "kinds="},
		{name: "unknown kind", spec: "kinds=bot", wantErr: `unknown kind "bot"`},
		{name: "share above one", spec: "kinds=room;share=1.5", wantErr: "share"},
		{name: "share negative", spec: "kinds=room;share=-0.1", wantErr: "share"},
		{name: "share not a number", spec: "kinds=room;share=lots", wantErr: "share"},
		{name: "every not a number", spec: "kinds=room;every=x", wantErr: "every"},
		{name: "bad delay", spec: "kinds=room;delay=2", wantErr: "delay"},
		{name: "not key=value", spec: "kinds=room;marker", wantErr: "not key=value"},
		{name: "unknown key", spec: "kinds=room;colour=red", wantErr: `unknown key "colour"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseFaults(tc.spec)
			if tc.want == nil {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseFaults(%q) = %+v, %v; want an error containing %q", tc.spec, got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseFaults(%q): %v", tc.spec, err)
			}
			if !slices.Equal(got.Kinds, tc.want.Kinds) || got.Marker != tc.want.Marker || got.Share != tc.want.Share ||
				got.Every != tc.want.Every || got.Delay != tc.want.Delay {
				t.Fatalf("ParseFaults(%q) = kinds %q marker %q share %v every %d delay %v; want %q %q %v %d %v", tc.spec,
					got.Kinds, got.Marker, got.Share, got.Every, got.Delay,
					tc.want.Kinds, tc.want.Marker, tc.want.Share, tc.want.Every, tc.want.Delay)
			}
		})
	}
}
