package supervision

import (
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

type tick struct{}

// idleSink spawns an actor that reports each tick, standing in for the
// session or room that owns the timer. The test goroutine plays the actor's
// own goroutine: it is the only caller of the timer's methods.
func idleSink(t *testing.T) (*actor.ActorSystem, *actor.PID, <-chan struct{}) {
	t.Helper()
	sys := quietSystem(t)
	ticks := make(chan struct{}, 16)
	pid := sys.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		if _, ok := c.Message().(*tick); ok {
			ticks <- struct{}{}
		}
	}))
	return sys, pid, ticks
}

func TestIdleTimer(t *testing.T) {
	t.Parallel()
	const d = 20 * time.Millisecond

	t.Run("fires once idle", func(t *testing.T) {
		t.Parallel()
		sys, pid, ticks := idleSink(t)
		it := NewIdleTimer(sys, pid, d, &tick{})
		start := time.Now()
		it.Start()
		recv(t, ticks, "the idle tick")
		if !it.Expired() {
			t.Fatalf("not expired %v after Start (d = %v)", time.Since(start), d)
		}
	})

	t.Run("touch postpones", func(t *testing.T) {
		t.Parallel()
		sys, pid, ticks := idleSink(t)
		it := NewIdleTimer(sys, pid, d, &tick{})
		it.Start()
		recv(t, ticks, "the first tick")
		it.Touch() // activity just before the actor looks
		if it.Expired() {
			t.Fatal("expired right after a Touch")
		}
		recv(t, ticks, "the re-armed tick")
		if !it.Expired() {
			t.Fatal("not expired after a full idle period")
		}
	})

	t.Run("stop discards a sent tick", func(t *testing.T) {
		t.Parallel()
		sys, pid, ticks := idleSink(t)
		it := NewIdleTimer(sys, pid, d, &tick{})
		it.Start()
		recv(t, ticks, "the tick")
		it.Stop()
		if it.Expired() {
			t.Fatal("a stopped timer reported expiry")
		}
		it.Stop() // twice is harmless
		it.Start()
		recv(t, ticks, "the tick after a restart")
		if !it.Expired() {
			t.Fatal("a restarted timer did not expire")
		}
	})

	t.Run("zero duration disables", func(t *testing.T) {
		t.Parallel()
		sys, pid, ticks := idleSink(t)
		it := NewIdleTimer(sys, pid, 0, &tick{})
		it.Start()
		it.Touch()
		if it.Expired() {
			t.Fatal("a disabled timer expired")
		}
		// A tick would come within d; waiting 5d for one that must not
		// come is the assertion itself.
		select {
		case <-ticks:
			t.Fatal("a disabled timer sent a tick")
		case <-time.After(5 * d):
		}
	})
}
