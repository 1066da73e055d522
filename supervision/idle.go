package supervision

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// IdleTimer tells an actor that it has been idle for a while: after d
// without Touch it sends msg to the actor, which then calls Expired to
// confirm (a Touch may have come in meanwhile). Sessions use it to reap idle
// clients, rooms to passivate when empty.
//
// It replaces Proto.Actor's SetReceiveTimeout, which races in this version:
// its timer goroutine cancels the context's timer field while the mailbox
// goroutine reads it (go test -race reports it). Here the timer goroutine
// only sends a message; every other method runs on the actor's goroutine.
type IdleTimer struct {
	sys   *actor.ActorSystem
	pid   *actor.PID
	d     time.Duration
	msg   any
	last  time.Time
	timer *time.Timer
}

// NewIdleTimer returns a stopped timer that will send msg to pid.
func NewIdleTimer(sys *actor.ActorSystem, pid *actor.PID, d time.Duration, msg any) *IdleTimer {
	return &IdleTimer{sys: sys, pid: pid, d: d, msg: msg}
}

// Start (re)arms the timer from now. A zero duration disables it.
func (t *IdleTimer) Start() {
	if t.d <= 0 {
		return
	}
	t.last = time.Now()
	t.arm(t.d)
}

func (t *IdleTimer) arm(d time.Duration) {
	if t.timer == nil {
		t.timer = time.AfterFunc(d, func() { t.sys.Root.Send(t.pid, t.msg) })
		return
	}
	t.timer.Reset(d)
}

// Touch records activity; it costs a clock read, no timer operation.
func (t *IdleTimer) Touch() { t.last = time.Now() }

// Expired is called when msg arrives: it reports whether the actor really
// was idle for d, and otherwise re-arms for the time left.
func (t *IdleTimer) Expired() bool {
	if t.timer == nil {
		return false // stopped after the message was sent
	}
	left := t.d - time.Since(t.last)
	if left <= 0 {
		return true
	}
	t.arm(left)
	return false
}

// Stop disarms the timer; a message already sent is then ignored by
// Expired.
func (t *IdleTimer) Stop() {
	if t.timer != nil {
		t.timer.Stop()
		t.timer = nil
	}
}
