package supervision

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Messages of the test actors. Plain Go types: nothing leaves the process.
type (
	boom struct{ why string } // the child panics with why
	ping struct{}             // the child answers on its pings channel
)

// family is a parent supervising one child with the strategy under test,
// and channels that report what the child and the strategy did.
type family struct {
	sys      *actor.ActorSystem
	child    *actor.PID
	started  chan int       // incarnation number, on every Started
	pings    chan int       // incarnation that answered a ping
	gone     chan struct{}  // closed when the parent hears the child stopped
	failures chan failure   // OnFailure calls
	logs     *recordHandler // the strategy's log lines
	stats    *Stats
}

type failure struct {
	child           *actor.PID
	reason, message any
}

func quietSystem(t *testing.T) *actor.ActorSystem {
	t.Helper()
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
		return slog.New(slog.DiscardHandler)
	}))
	t.Cleanup(sys.Shutdown)
	return sys
}

func newFamily(t *testing.T, o Options) *family {
	t.Helper()
	f := &family{
		sys:      quietSystem(t),
		started:  make(chan int, 64),
		pings:    make(chan int, 64),
		gone:     make(chan struct{}),
		failures: make(chan failure, 64),
		logs:     &recordHandler{},
		stats:    new(Stats),
	}
	o.Logger = slog.New(f.logs)
	o.Stats = f.stats
	o.OnFailure = func(child *actor.PID, reason, message any) {
		// Runs on the failing actor's goroutine and must not block: the
		// channel is buffered beyond what any test provokes.
		f.failures <- failure{child, reason, message}
	}
	// Each restart calls the producer again, possibly on another dispatcher
	// goroutine: the counter needs its lock.
	var incarnation int
	var incMu sync.Mutex
	childProps := actor.PropsFromProducer(func() actor.Actor {
		incMu.Lock()
		incarnation++
		n := incarnation
		incMu.Unlock()
		return actor.ReceiveFunc(func(c actor.Context) {
			switch m := c.Message().(type) {
			case *actor.Started:
				f.started <- n
			case *boom:
				panic(m.why)
			case *ping:
				f.pings <- n
			}
		})
	})
	born := make(chan *actor.PID, 1)
	parent := actor.PropsFromFunc(func(c actor.Context) {
		switch c.Message().(type) {
		case *actor.Started:
			born <- c.Spawn(childProps)
		case *actor.Terminated:
			close(f.gone)
		}
	}, actor.WithSupervisor(OneForOne(o)))
	f.sys.Root.Spawn(parent)
	f.child = recv(t, born, "child spawned")
	if n := recv(t, f.started, "child started"); n != 1 {
		t.Fatalf("first incarnation is %d", n)
	}
	return f
}

// recv waits for one value with a deadline, so a broken strategy fails the
// test instead of hanging it.
func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for: %s", what)
		var zero T
		return zero
	}
}

// fail makes the child panic and waits until the strategy has decided.
func (f *family) fail(t *testing.T, why string) failure {
	t.Helper()
	f.sys.Root.Send(f.child, &boom{why: why})
	return recv(t, f.failures, "OnFailure for "+why)
}

// alive proves the child runs (restarted) and says which incarnation.
func (f *family) alive(t *testing.T) int {
	t.Helper()
	f.sys.Root.Send(f.child, &ping{})
	return recv(t, f.pings, "a ping answer")
}

func TestBudgetThenStop(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		maxRestarts int
		restarts    int // restarts before the stop
	}{
		{"default budget", 0, 5},
		{"budget of two", 2, 2},
		{"budget of one", 1, 1},
		{"never restart", -1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFamily(t, Options{Kind: "child", MaxRestarts: tc.maxRestarts, Window: time.Minute, Backoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond})
			for i := range tc.restarts {
				f.fail(t, fmt.Sprint("failure ", i+1))
				if n := recv(t, f.started, "restart"); n != i+2 {
					t.Fatalf("after failure %d the child is incarnation %d, want %d", i+1, n, i+2)
				}
				if n := f.alive(t); n != i+2 {
					t.Fatalf("incarnation %d answered, want %d", n, i+2)
				}
			}
			f.fail(t, "one too many")
			recv(t, f.gone, "the parent hearing its child stopped")
			if got := [3]int64{f.stats.Failures.Load(), f.stats.Restarts.Load(), f.stats.Stops.Load()}; got != [3]int64{int64(tc.restarts + 1), int64(tc.restarts), 1} {
				t.Fatalf("failures, restarts, stops = %v, want [%d %d 1]", got, tc.restarts+1, tc.restarts)
			}
			select {
			case n := <-f.started:
				t.Fatalf("a stopped child started again (incarnation %d)", n)
			default:
			}
		})
	}
}

// TestBudgetWindow: failures older than Window no longer count, so a child
// that fails rarely is restarted forever.
func TestBudgetWindow(t *testing.T) {
	t.Parallel()
	// Wide enough that two failures sent back to back fall into one
	// window however loaded the machine is.
	const window = 500 * time.Millisecond
	f := newFamily(t, Options{Kind: "child", MaxRestarts: 1, Window: window, Backoff: time.Millisecond})
	for i := range 3 {
		f.fail(t, fmt.Sprint("rare failure ", i))
		recv(t, f.started, "restart")
		// Let this failure age out of the window, counted from the restart
		// (the supervisor recorded the failure before it), not from the
		// send: under load the supervisor may see a failure long after it
		// was sent. Elapsed time is the scenario here, not a
		// synchronisation.
		time.Sleep(window + 20*time.Millisecond)
	}
	if got := f.stats.Stops.Load(); got != 0 {
		t.Fatalf("%d stops for failures spread wider than the window", got)
	}
	// Two failures inside one window spend a budget of one.
	f.fail(t, "first")
	recv(t, f.started, "restart")
	f.fail(t, "second")
	recv(t, f.gone, "the stop")
}

func TestOnFailureGetsUnwrappedMessage(t *testing.T) {
	t.Parallel()
	f := newFamily(t, Options{Kind: "child", MaxRestarts: 10, Window: time.Minute})
	for _, tc := range []struct {
		name string
		send func(msg any)
	}{
		{"plain send", func(msg any) { f.sys.Root.Send(f.child, msg) }},
		// With a sender the mailbox holds a MessageEnvelope; the hook must
		// still see the message itself (rooms type-switch on it).
		{"with sender", func(msg any) { f.sys.Root.RequestWithCustomSender(f.child, msg, f.child) }},
	} {
		msg := &boom{why: "reason " + tc.name}
		tc.send(msg)
		got := recv(t, f.failures, tc.name)
		if got.message != msg {
			t.Errorf("%s: OnFailure message = %#v, want the *boom sent", tc.name, got.message)
		}
		if got.reason != msg.why {
			t.Errorf("%s: OnFailure reason = %#v, want the panic value %q", tc.name, got.reason, msg.why)
		}
		if !got.child.Equal(f.child) {
			t.Errorf("%s: OnFailure child = %v, want %v", tc.name, got.child, f.child)
		}
		recv(t, f.started, "restart")
	}
}

// TestBackoffLogged checks the delays the strategy actually orders, through
// its log lines: immediate, then Backoff doubling up to MaxBackoff.
func TestBackoffLogged(t *testing.T) {
	t.Parallel()
	f := newFamily(t, Options{Kind: "child", MaxRestarts: 5, Window: time.Minute, Backoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond})
	for i := range 5 {
		f.fail(t, fmt.Sprint("failure ", i+1))
		recv(t, f.started, "restart")
	}
	f.fail(t, "past the budget")
	recv(t, f.gone, "the stop")

	want := []time.Duration{0, time.Millisecond, 2 * time.Millisecond, 4 * time.Millisecond, 4 * time.Millisecond}
	restarts := f.logs.find("actor failed; restarting it")
	if len(restarts) != len(want) {
		t.Fatalf("%d restart lines, want %d", len(restarts), len(want))
	}
	for i, r := range restarts {
		if d, _ := r["delay"].(time.Duration); d != want[i] {
			t.Errorf("restart %d: delay %v, want %v", i+1, r["delay"], want[i])
		}
		if r["kind"] != "child" || r["failures"] != int64(i+1) || r["budget"] != int64(5) {
			t.Errorf("restart %d logged %v", i+1, r)
		}
	}
	stops := f.logs.find("actor failed past its retry budget; stopping it")
	if len(stops) != 1 || stops[0]["reason"] != "past the budget" {
		t.Fatalf("stop lines = %v", stops)
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	ms := time.Millisecond
	for _, tc := range []struct {
		name            string
		backoff, maxOff time.Duration
		want            []time.Duration // for failures 1, 2, 3, …
	}{
		{"defaults", 0, 0, []time.Duration{0, 10 * ms, 20 * ms, 40 * ms, 80 * ms, 160 * ms, 320 * ms, 640 * ms, time.Second, time.Second, time.Second}},
		{"capped early", 10 * ms, 25 * ms, []time.Duration{0, 10 * ms, 20 * ms, 25 * ms, 25 * ms}},
		{"cap below backoff", 2 * time.Second, time.Second, []time.Duration{0, time.Second, time.Second}},
		{"cap equals backoff", 5 * ms, 5 * ms, []time.Duration{0, 5 * ms, 5 * ms, 5 * ms}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := OneForOne(Options{Backoff: tc.backoff, MaxBackoff: tc.maxOff}).(*strategy)
			if got := s.backoff(0); got != 0 {
				t.Errorf("backoff(0) = %v, want 0", got)
			}
			for i, want := range tc.want {
				if got := s.backoff(i + 1); got != want {
					t.Errorf("backoff(%d) = %v, want %v", i+1, got, want)
				}
			}
			// Far past the cap the doubling must not overflow into a
			// negative or tiny delay.
			if got, limit := s.backoff(1000), max(s.o.MaxBackoff, 0); got != limit {
				t.Errorf("backoff(1000) = %v, want the cap %v", got, limit)
			}
		})
	}
}

func TestOneForOneDefaults(t *testing.T) {
	t.Parallel()
	s := OneForOne(Options{}).(*strategy)
	if s.o.MaxRestarts != 5 || s.o.Window != 10*time.Second || s.o.Backoff != 10*time.Millisecond || s.o.MaxBackoff != time.Second {
		t.Fatalf("defaults = %+v", s.o)
	}
	if s.o.Logger == nil || s.o.Stats == nil {
		t.Fatal("nil Logger or Stats left in place")
	}
	if s := OneForOne(Options{MaxRestarts: -1}).(*strategy); s.o.MaxRestarts != -1 {
		t.Fatalf("MaxRestarts -1 became %d; negative means never restart", s.o.MaxRestarts)
	}
}

func TestPIDString(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		pid  *actor.PID
		want string
	}{
		{"nil", nil, "<nil>"},
		{"local", actor.NewPID("nonhost", "sessions/s1"), "nonhost/sessions/s1"},
		{"remote", actor.NewPID("10.0.0.2:8090", "room-7"), "10.0.0.2:8090/room-7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := PIDString(tc.pid); got != tc.want {
				t.Fatalf("PIDString = %q, want %q", got, tc.want)
			}
		})
	}
}

// recordHandler keeps every record's attributes, flattened, per message.
type recordHandler struct {
	mu   sync.Mutex
	recs []record
}

type record struct {
	msg   string
	attrs map[string]any
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	m := make(map[string]any)
	r.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.Any()
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, record{r.Message, m})
	return nil
}

func (h *recordHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &withAttrs{root: h, attrs: as}
}

func (h *recordHandler) WithGroup(string) slog.Handler { return h }

func (h *recordHandler) find(msg string) []map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []map[string]any
	for _, r := range h.recs {
		if r.msg == msg {
			out = append(out, r.attrs)
		}
	}
	return out
}

// withAttrs is a recordHandler view with bound attributes (Logger.With),
// writing into the root's records.
type withAttrs struct {
	root  *recordHandler
	attrs []slog.Attr
}

func (w *withAttrs) Enabled(context.Context, slog.Level) bool { return true }

func (w *withAttrs) Handle(ctx context.Context, r slog.Record) error {
	r2 := slog.NewRecord(r.Time, r.Level, r.Message, r.PC)
	r2.AddAttrs(w.attrs...)
	r.Attrs(func(a slog.Attr) bool { r2.AddAttrs(a); return true })
	return w.root.Handle(ctx, r2)
}

func (w *withAttrs) WithAttrs(as []slog.Attr) slog.Handler {
	return &withAttrs{root: w.root, attrs: append(append([]slog.Attr(nil), w.attrs...), as...)}
}

func (w *withAttrs) WithGroup(string) slog.Handler { return w }
