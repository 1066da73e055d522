// Package dice is a bot: an actor that joins rooms and answers "/roll 2d6"
// with a roll of the dice. It is Parley's worked example of extending the
// server with a new actor type, kept under test (dice_test.go).
//
// What it shows:
//   - A bot is an ordinary actor. It needs no socket: it talks to rooms
//     through the node's Directory with the same protobuf messages a session
//     sends (RoomJoin, RoomPost), and receives what a session receives
//     (Deliver, Ack, Error, RoomRestarted).
//   - It joins with codec CODEC_UNSPECIFIED, which asks the room to put the
//     decoded RoomEvent in each Deliver instead of wire frames.
//   - It resumes like a session: it remembers the last seq it saw per room
//     and re-joins from there when the room restarts, so it answers every
//     roll once, even across restarts (its replies carry a client_msg_id
//     derived from the roll's seq, which the room deduplicates).
package dice

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/parleychat/parley/actors"
	parleypb "github.com/parleychat/parley/proto"
)

// Options configures a bot. Zero values mean the documented defaults.
type Options struct {
	// Name is the user the bot posts as. Empty means "dicebot".
	Name string
	// Rooms are joined at start.
	Rooms []string
	// Rand rolls the dice. Nil means a randomly seeded generator.
	Rand *rand.Rand
}

// Spawn starts a dice bot on node n.
func Spawn(n *actors.Node, o Options) (*actor.PID, error) {
	if o.Name == "" {
		o.Name = "dicebot"
	}
	if err := actors.ValidName(o.Name); err != nil {
		return nil, fmt.Errorf("dice: bot name %w", err)
	}
	for _, r := range o.Rooms {
		if err := actors.ValidRoom(r); err != nil {
			return nil, fmt.Errorf("dice: room %q %w", r, err)
		}
	}
	if o.Rand == nil {
		o.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	rooms := make(map[string]*roomState) // survives restarts: captured, not state
	props := actor.PropsFromProducer(func() actor.Actor { return &bot{n: n, o: o, rooms: rooms} })
	return n.System.Root.SpawnNamed(props, "bot-"+o.Name)
}

type bot struct {
	n     *actors.Node
	o     Options
	rooms map[string]*roomState
}

// roomState is where the bot is in a room. Until the first join's ack
// (caughtUp), delivered events are history from before the bot came: it
// reads them but answers none.
type roomState struct {
	last     uint64
	caughtUp bool
}

func (b *bot) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		for _, room := range b.o.Rooms {
			b.join(ctx, room)
		}
	case *parleypb.Deliver:
		st := b.rooms[m.GetRoom()]
		if ev := m.GetEvent(); st != nil && ev != nil && ev.GetSeq() > st.last {
			st.last = ev.GetSeq()
			if st.caughtUp {
				b.answer(ctx, ev)
			}
		}
	case *parleypb.Ack:
		if st := b.rooms[m.GetRoom()]; st != nil && m.GetMembers() != nil && !st.caughtUp {
			st.last = max(st.last, m.GetSeq())
			st.caughtUp = true
		}
	case *parleypb.RoomRestarted:
		b.join(ctx, m.GetRoom())
	case *parleypb.Error:
		// A reply the room could not take (store down): it is lost, like a
		// message typed into a broken chat; the next roll works again.
		b.n.System.Logger().Warn("dice: reply failed", "room", m.GetRoom(), "err", m.GetText())
	}
}

// join registers with a room, resuming after the last event seen: a fresh
// bot starts from the room's latest message rather than replaying history.
func (b *bot) join(ctx actor.Context, room string) {
	st, ok := b.rooms[room]
	if !ok {
		st = &roomState{}
		b.rooms[room] = st
	}
	var since *uint64
	if st.caughtUp {
		last := st.last
		since = &last
	}
	b.n.Directory.Tell(ctx, &parleypb.RoomJoin{Room: room, User: b.o.Name, Session: ctx.Self(), Since: since, Codec: parleypb.Codec_CODEC_UNSPECIFIED, Rejoin: ok})
}

func (b *bot) answer(ctx actor.Context, ev *parleypb.RoomEvent) {
	if ev.GetSender() == b.o.Name {
		return
	}
	reply, ok := Roll(ev.GetText(), b.o.Rand)
	if !ok {
		return
	}
	b.n.Directory.Tell(ctx, &parleypb.RoomPost{
		Room: ev.GetRoom(), User: b.o.Name, Session: ctx.Self(),
		Text:        ev.GetSender() + " " + reply,
		ClientMsgId: "roll-" + strconv.FormatUint(ev.GetSeq(), 10),
	})
}

var rollRe = regexp.MustCompile(`^/roll\s+(\d{1,3})d(\d{1,4})\s*$`)

// Most dice one roll may throw and most faces a die may have.
const (
	MaxDice  = 100
	MaxFaces = 1000
)

// Roll answers a "/roll NdM" command; ok is false for any other text.
func Roll(text string, r *rand.Rand) (reply string, ok bool) {
	if !strings.HasPrefix(text, "/roll") {
		return "", false
	}
	m := rollRe.FindStringSubmatch(text)
	if m == nil {
		return "asked for a roll I cannot read; try /roll 2d6", true
	}
	n, _ := strconv.Atoi(m[1])
	faces, _ := strconv.Atoi(m[2])
	if n < 1 || n > MaxDice || faces < 2 || faces > MaxFaces {
		return fmt.Sprintf("asked for %dd%d; I roll 1 to %d dice of 2 to %d faces", n, faces, MaxDice, MaxFaces), true
	}
	parts := make([]string, n)
	sum := 0
	for i := range parts {
		v := r.IntN(faces) + 1
		sum += v
		parts[i] = strconv.Itoa(v)
	}
	if n == 1 {
		return fmt.Sprintf("rolled %s: %d", m[1]+"d"+m[2], sum), true
	}
	return fmt.Sprintf("rolled %dd%d: %s = %d", n, faces, strings.Join(parts, " + "), sum), true
}
