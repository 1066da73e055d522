// Package supervision owns how Parley's actors fail and end: the one-for-one
// strategies that restart failed sessions and rooms within a retry budget,
// the counters of those decisions, and the fault injection that tests use to
// make actors fail on purpose.
//
// Failure semantics, per actor kind:
//
//   - session: restarted in place (same PID, same socket: the socket lives in
//     the actor's props, not its state). The restarted session re-registers
//     with presence and re-joins its rooms from the last sequence number it
//     delivered, so the client sees neither a close nor a duplicate. The
//     message that panicked is lost; if it was a request the client gets no
//     ack and retries it. Past the budget (MaxRestarts within Window) the
//     session is stopped and its socket closed with 1011.
//   - room: restarted in place; the new instance reloads its sequence number
//     and history window from the store. The old instance tells its members
//     to re-join (they resume from their last seq) and fails its unwritten
//     posts with an UNAVAILABLE error the client may retry with the same
//     client_msg_id. Past the budget the room is stopped; the next message
//     for it starts a fresh one.
//   - presence: restarted in place; it asks every live session to register
//     again, announcing nothing, so watchers see no false joins or leaves.
//
// Restarts after the first are delayed by an exponential backoff (Backoff,
// doubling, capped at MaxBackoff) so a child failing in a loop cannot spin a
// core. Every decision is logged with the actor, the reason and the count,
// and counted in Stats.
package supervision

import (
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// Options configures a Strategy. Zero values mean the documented defaults.
type Options struct {
	// Kind names the supervised actors in logs and counters ("session").
	Kind string
	// MaxRestarts is the retry budget: restarts allowed within Window.
	// Zero means 5; negative means never restart (stop at once).
	MaxRestarts int
	// Window is the span the budget counts over. Zero means 10s.
	Window time.Duration
	// Backoff delays the second restart within Window; each further one
	// waits twice as long. Zero means 10ms. The first restart is immediate.
	Backoff time.Duration
	// MaxBackoff caps the delay. Zero means 1s.
	MaxBackoff time.Duration
	// Logger receives one line per decision. Nil discards.
	Logger *slog.Logger
	// Stats, if set, counts the decisions.
	Stats *Stats
	// OnFailure, if set, is called with the failed child, the panic value and
	// the message being handled, before the decision is carried out. It runs
	// on the failing actor's goroutine and must not block.
	OnFailure func(child *actor.PID, reason, message any)
}

// Stats counts supervision decisions; safe for concurrent use.
type Stats struct {
	Failures atomic.Int64 // panics seen
	Restarts atomic.Int64 // restarts ordered
	Stops    atomic.Int64 // children stopped after spending their budget
}

type strategy struct{ o Options }

// OneForOne returns a strategy that restarts only the failed child, within
// the retry budget, then stops it.
func OneForOne(o Options) actor.SupervisorStrategy {
	if o.MaxRestarts == 0 {
		o.MaxRestarts = 5
	}
	if o.Window <= 0 {
		o.Window = 10 * time.Second
	}
	if o.Backoff <= 0 {
		o.Backoff = 10 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Stats == nil {
		o.Stats = new(Stats)
	}
	return &strategy{o: o}
}

// HandleFailure implements actor.SupervisorStrategy.
func (s *strategy) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason, message any) {
	message = actor.UnwrapEnvelopeMessage(message)
	s.o.Stats.Failures.Add(1)
	if s.o.OnFailure != nil {
		s.o.OnFailure(child, reason, message)
	}
	rs.Fail()
	n := rs.NumberOfFailures(s.o.Window)
	log := s.o.Logger.With("kind", s.o.Kind, "actor", PIDString(child), "reason", fmt.Sprint(reason),
		"message", fmt.Sprintf("%T", message), "failures", n, "budget", s.o.MaxRestarts, "window", s.o.Window)
	if s.o.MaxRestarts < 0 || n > s.o.MaxRestarts {
		rs.Reset()
		s.o.Stats.Stops.Add(1)
		log.Error("actor failed past its retry budget; stopping it")
		sup.StopChildren(child)
		return
	}
	s.o.Stats.Restarts.Add(1)
	delay := s.backoff(n)
	log.Warn("actor failed; restarting it", "delay", delay)
	if delay == 0 {
		sup.RestartChildren(child)
		return
	}
	// The child's mailbox stays suspended until the restart, so messages wait
	// for it rather than being lost.
	time.AfterFunc(delay, func() { sup.RestartChildren(child) })
}

func (s *strategy) backoff(n int) time.Duration {
	if n <= 1 {
		return 0
	}
	d := s.o.Backoff
	for i := 2; i < n && d < s.o.MaxBackoff; i++ {
		d *= 2
	}
	return min(d, s.o.MaxBackoff)
}

// PIDString renders a PID compactly for logs ("nonhost/sessions/s1").
func PIDString(p *actor.PID) string {
	if p == nil {
		return "<nil>"
	}
	return p.GetAddress() + "/" + p.GetId()
}
