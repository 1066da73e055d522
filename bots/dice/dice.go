// Package dice is a bot: an actor that joins rooms and answers "/roll 2d6"
// with a roll of the dice. It is Parley's worked example of extending the
// server with a new actor type, kept under test (dice_test.go).
//
// What it shows:
//   - A bot is an ordinary actor. It needs no socket: it belongs to rooms
//     through the member contract (actors.Member), which a session uses
//     too. The Member joins, hands over each room event once and in order
//     (whether the room sent it alone, in a batch of posts committed
//     together, or in a replay), and re-joins from the last event seen
//     when a room restarts or passivates.
//   - It joins with codec CODEC_UNSPECIFIED, so deliveries carry the
//     decoded RoomEvent instead of wire frames, and with Latest, so it
//     answers what comes after it arrived, not the room's history.
//   - It answers every roll once, even across restarts (its own and the
//     room's): the Member lives outside the actor's state, and replies
//     carry a client_msg_id derived from the roll's seq, which the room
//     deduplicates.
package dice

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/parleychat/parley/actors"
	"github.com/parleychat/parley/actors/actorpb"
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

// Start starts a dice bot in rooms with the default options (package bots
// calls it for -bots dice=...).
func Start(n *actors.Node, rooms []string) error {
	_, err := Spawn(n, Options{Rooms: rooms})
	return err
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
	// Captured by the producer, so a restarted bot keeps its rooms and
	// where it is in each.
	member := actors.NewMember(n, actors.MemberOptions{User: o.Name, Codec: parleypb.Codec_CODEC_UNSPECIFIED, Bot: true})
	started := false
	props := actor.PropsFromProducer(func() actor.Actor { return &bot{n: n, o: o, member: member, started: &started} })
	return n.System.Root.SpawnNamed(props, "bot-"+o.Name)
}

type bot struct {
	n       *actors.Node
	o       Options
	member  *actors.Member
	started *bool
}

func (b *bot) Receive(ctx actor.Context) {
	if d, done := b.member.Receive(ctx); done {
		for _, item := range d.Items {
			if ev := item.GetEvent(); ev != nil {
				b.answer(ctx, ev)
			}
		}
		return
	}
	switch m := ctx.Message().(type) {
	case *actor.Started:
		if *b.started {
			b.member.Rejoin(ctx)
			return
		}
		*b.started = true
		for _, room := range b.o.Rooms {
			b.member.Join(ctx, room, actors.JoinOptions{Latest: true})
		}
	case *parleypb.Error:
		// A reply the room could not take (store down): it is lost, like a
		// message typed into a broken chat; the next roll works again.
		b.n.System.Logger().Warn("dice: reply failed", "room", m.GetRoom(), "err", m.GetText())
	}
}

func (b *bot) answer(ctx actor.Context, ev *parleypb.RoomEvent) {
	// Only posts are commands: a change to the room (a join, a kick, a new
	// topic) says nothing to roll, whatever its fields hold.
	if ev.GetSender() == b.o.Name || ev.GetChange() != nil {
		return
	}
	reply, ok := Roll(ev.GetText(), b.o.Rand)
	if !ok {
		return
	}
	b.member.Post(ctx, &actorpb.RoomPost{
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
