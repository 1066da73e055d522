package supervision

import (
	"strings"

	"github.com/asynkron/protoactor-go/actor"

	parleypb "github.com/parleychat/parley/proto"
)

// Faults makes actors panic on purpose, for tests. It is never built from
// flags or the environment: only code that constructs a server (tests) can
// enable it, so production cannot switch it on by accident.
type Faults struct {
	// Marker makes an actor of a kind in Kinds panic when a message it
	// receives carries text containing Marker. Empty disables.
	Marker string
	// Kinds lists the actor kinds that panic on Marker.
	Kinds []string
}

// Middleware returns the receiver middleware for one actor kind, or nil when
// f injects nothing into it.
func (f *Faults) Middleware(kind string) actor.ReceiverMiddleware {
	if f == nil || f.Marker == "" || !contains(f.Kinds, kind) {
		return nil
	}
	marker := f.Marker
	return func(next actor.ReceiverFunc) actor.ReceiverFunc {
		return func(c actor.ReceiverContext, env *actor.MessageEnvelope) {
			if t, ok := textOf(env.Message); ok && strings.Contains(t, marker) {
				panic("injected fault in " + kind)
			}
			next(c, env)
		}
	}
}

// textOf finds the user text a message carries: a post as the client sent
// it (an Envelope) or as a room receives it (a RoomPost).
func textOf(msg any) (string, bool) {
	switch m := msg.(type) {
	case *parleypb.Envelope:
		if p := m.GetPost(); p != nil {
			return p.GetText(), true
		}
	case *parleypb.RoomPost:
		return m.GetText(), true
	}
	return "", false
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
