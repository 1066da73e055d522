package testenv

import (
	"testing"

	"go.uber.org/goleak"
)

// VerifyNoLeaks runs a package's tests (call it from TestMain) and fails
// them when a goroutine outlives them: every goroutine has an owner that
// stops it (a server's Shutdown, a client's Close), so one left over is a
// leak.
//
// Two goroutines of Proto.Actor are not counted: its log throttles (dead
// letters: 1 s here; cluster gossip errors: 60 s, fixed) start a timer
// goroutine at the first event of each interval that ends by itself when
// the interval does, after the system that started it may be gone, and
// that nothing can stop.
func VerifyNoLeaks(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/actor.NewDeadLetter.NewThrottle.func4.1"),
		goleak.IgnoreTopFunction("github.com/asynkron/protoactor-go/cluster.(*Gossiper).StartGossiping.NewThrottle.func3.1"))
}
