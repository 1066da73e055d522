// Package greeter is a bot that welcomes people to rooms: the first time a
// user joins a room it watches, it posts "Welcome to <room>, <user>!". It
// is the second worked example of a new actor type (after bots/dice),
// written in this one file and started by one line in package bots; its
// test is greeter_test.go, and README's "Adding an actor type" walks
// through it.
//
// Everything about being in rooms comes from the member contract
// (actors.Member): joining, the events of each room once and in order,
// re-joining after a room restarts. The greeter only decides what to say.
// "First time" means the first time this greeter saw the user join that
// room: it remembers whom it greeted for as long as the server runs, and
// its welcome carries a client_msg_id naming the user, so the room's dedup
// window keeps a restarted greeter from welcoming the same user twice.
package greeter

import (
	"fmt"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/parleychat/parley/actors"
	"github.com/parleychat/parley/actors/actorpb"
	parleypb "github.com/parleychat/parley/proto"
)

// Options configures a greeter. Zero values mean the documented defaults.
type Options struct {
	// Name is the user the greeter posts as. Empty means "greeter".
	Name string
	// Rooms are the rooms it watches.
	Rooms []string
	// Text makes the welcome from the room and the user's name. Nil means
	// "Welcome to <room>, <user>!".
	Text func(room, user string) string
}

// Start starts a greeter in rooms with the default options (package bots
// calls it for -bots greeter=...).
func Start(n *actors.Node, rooms []string) error {
	_, err := Spawn(n, Options{Rooms: rooms})
	return err
}

// Spawn starts a greeter on node n.
func Spawn(n *actors.Node, o Options) (*actor.PID, error) {
	if o.Name == "" {
		o.Name = "greeter"
	}
	if o.Text == nil {
		o.Text = func(room, user string) string { return fmt.Sprintf("Welcome to %s, %s!", room, user) }
	}
	if err := actors.ValidName(o.Name); err != nil {
		return nil, fmt.Errorf("greeter: name %w", err)
	}
	for _, r := range o.Rooms {
		if err := actors.ValidRoom(r); err != nil {
			return nil, fmt.Errorf("greeter: room %q %w", r, err)
		}
	}
	// What must outlive a restart of the actor is made here, outside it.
	g := &greeter{
		o:       o,
		member:  actors.NewMember(n, actors.MemberOptions{User: o.Name, Codec: parleypb.Codec_CODEC_UNSPECIFIED, Bot: true}),
		greeted: make(map[string]bool),
	}
	return n.System.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return g }), "bot-"+o.Name)
}

type greeter struct {
	o       Options
	member  *actors.Member
	greeted map[string]bool // room + "\x00" + user
	started bool
}

func (g *greeter) Receive(ctx actor.Context) {
	if d, done := g.member.Receive(ctx); done {
		for _, item := range d.Items {
			for _, user := range item.GetPresence().GetJoined() {
				g.welcome(ctx, d.Room, user)
			}
		}
		return
	}
	switch ctx.Message().(type) {
	case *actor.Started:
		if g.started { // restarted: back into every room, from where it was
			g.member.Rejoin(ctx)
			return
		}
		g.started = true
		for _, room := range g.o.Rooms {
			g.member.Join(ctx, room, actors.JoinOptions{Latest: true})
		}
	}
}

func (g *greeter) welcome(ctx actor.Context, room, user string) {
	key := room + "\x00" + user
	if user == g.o.Name || g.greeted[key] {
		return
	}
	g.greeted[key] = true
	g.member.Post(ctx, &actorpb.RoomPost{Room: room, User: g.o.Name, Session: ctx.Self(),
		Text: g.o.Text(room, user), ClientMsgId: "welcome-" + user, RequestId: "welcome-" + user})
}
