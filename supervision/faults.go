package supervision

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/parleychat/parley/actors/actorpb"
	parleypb "github.com/parleychat/parley/proto"
)

// Faults makes actors fail on purpose, for tests and staging. Nothing builds
// it from configuration in a normal binary: tests construct it in code, and
// only a binary built with `-tags faults` has the -faults flag (see
// ParseFaults). A nil *Faults injects nothing.
type Faults struct {
	// Kinds lists the actor kinds faults apply to: "session", "room",
	// "presence". Empty means none.
	Kinds []string
	// Marker makes an actor panic on a post whose text contains it.
	Marker string
	// Share makes an actor panic on this fraction (0 to 1) of the Parley
	// messages it receives.
	Share float64
	// Every makes an actor panic on every Every-th Parley message of its kind.
	Every int
	// Delay stalls each message of the kind this long before it is handled,
	// as an overloaded actor would.
	Delay time.Duration

	// Injected counts the faults fired (panics and socket drops).
	Injected atomic.Int64
	count    atomic.Int64
}

// Enabled reports whether f injects faults into kind.
func (f *Faults) Enabled(kind string) bool {
	if f == nil {
		return false
	}
	for _, k := range f.Kinds {
		if k == kind {
			return true
		}
	}
	return false
}

// Middleware returns the receiver middleware for one actor kind, or nil when
// f injects nothing into it. Only Parley's own messages trigger faults, never
// Proto.Actor's lifecycle messages, so a restart cannot loop on Started.
func (f *Faults) Middleware(kind string) actor.ReceiverMiddleware {
	if !f.Enabled(kind) {
		return nil
	}
	return func(next actor.ReceiverFunc) actor.ReceiverFunc {
		return func(c actor.ReceiverContext, env *actor.MessageEnvelope) {
			if f.shouldFail(env.Message) {
				f.Injected.Add(1)
				panic(fmt.Sprintf("injected fault in %s on %T", kind, env.Message))
			}
			if f.Delay > 0 && actorpb.IsParley(env.Message) {
				time.Sleep(f.Delay)
			}
			next(c, env)
		}
	}
}

func (f *Faults) shouldFail(msg any) bool {
	if !actorpb.IsParley(msg) {
		return false
	}
	if inj, ok := msg.(*actorpb.InjectFault); ok {
		return !inj.GetDrop() // a drop is the session's to carry out
	}
	if f.Marker != "" {
		if t, ok := textOf(msg); ok && strings.Contains(t, f.Marker) {
			return true
		}
	}
	if f.Every > 0 && f.count.Add(1)%int64(f.Every) == 0 {
		return true
	}
	return f.Share > 0 && rand.Float64() < f.Share
}

// textOf finds the user text a message carries: a post as the client sent
// it (an Envelope) or as a room receives it (a RoomPost).
func textOf(msg any) (string, bool) {
	switch m := msg.(type) {
	case *parleypb.Envelope:
		if p := m.GetPost(); p != nil {
			return p.GetText(), true
		}
	case *actorpb.RoomPost:
		return m.GetText(), true
	}
	return "", false
}

// ParseFaults reads a -faults flag value: semicolon-separated key=value
// pairs, e.g. "kinds=session,room;share=0.001;delay=2ms". Keys: kinds,
// marker, share, every, delay.
func ParseFaults(spec string) (*Faults, error) {
	f := new(Faults)
	for _, part := range strings.Split(spec, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("faults: %q is not key=value", part)
		}
		var err error
		switch k {
		case "kinds":
			for _, kind := range strings.Split(v, ",") {
				switch kind {
				case "session", "room", "presence":
					f.Kinds = append(f.Kinds, kind)
				default:
					return nil, fmt.Errorf("faults: unknown kind %q (session, room, presence)", kind)
				}
			}
		case "marker":
			f.Marker = v
		case "share":
			f.Share, err = strconv.ParseFloat(v, 64)
			if err == nil && (f.Share < 0 || f.Share > 1) {
				err = fmt.Errorf("must be between 0 and 1")
			}
		case "every":
			f.Every, err = strconv.Atoi(v)
		case "delay":
			f.Delay, err = time.ParseDuration(v)
		default:
			return nil, fmt.Errorf("faults: unknown key %q (kinds, marker, share, every, delay)", k)
		}
		if err != nil {
			return nil, fmt.Errorf("faults: %s: %w", k, err)
		}
	}
	if len(f.Kinds) == 0 {
		return nil, fmt.Errorf("faults: name the actor kinds to fail with kinds=")
	}
	return f, nil
}
