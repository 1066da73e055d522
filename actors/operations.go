package actors

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/actors/actorpb"
	parleypb "github.com/parleychat/parley/proto"
)

// The operator's API: each call is a message to the actor that owns the
// state (the directory, a room, presence), never a look into its state. The
// answer comes back to a short-lived actor made for the call (not a
// Proto.Actor future, whose Result/Respond race trips -race: #1145).

// ask spawns an actor for the replies, calls send with its PID, and returns
// the replies up to and including the first one done accepts.
func (n *Node) ask(ctx context.Context, send func(replyTo *actor.PID), done func(proto.Message) bool) ([]proto.Message, error) {
	ch := make(chan proto.Message, 64)
	pid := n.System.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		if m, ok := c.Message().(proto.Message); ok && actorpb.IsParley(m) {
			select {
			case ch <- m:
			default: // the caller gave up; drop
			}
		}
	}))
	defer n.System.Root.Stop(pid)
	send(pid)
	var got []proto.Message
	for {
		select {
		case m := <-ch:
			got = append(got, m)
			if e, ok := m.(*parleypb.Error); ok {
				return got, &RequestError{Code: e.GetCode(), Text: e.GetText()}
			}
			if done(m) {
				return got, nil
			}
		case <-ctx.Done():
			return got, ctx.Err()
		}
	}
}

func isAck(m proto.Message) bool { _, ok := m.(*parleypb.Ack); return ok }

// RequestError is a request the actors refused: its code and why.
type RequestError struct {
	Code parleypb.ErrorCode
	Text string
}

func (e *RequestError) Error() string { return fmt.Sprintf("actors: %s: %s", e.Code, e.Text) }

// ListRooms returns the active rooms with their member counts.
func (n *Node) ListRooms(ctx context.Context) ([]*parleypb.RoomInfo, error) {
	got, err := n.ask(ctx, func(to *actor.PID) {
		n.dir.ListRooms(n.System.Root, &actorpb.RoomsQuery{Session: to})
	}, isAck)
	if err != nil {
		return nil, err
	}
	for _, m := range got {
		if l, ok := m.(*parleypb.RoomList); ok {
			return l.GetRooms(), nil
		}
	}
	return nil, nil
}

// ErrNoRoom reports a room that is not active and has no stored history:
// as far as the node can tell, there is no such room.
var ErrNoRoom = errors.New("actors: no such room: it is not active and has no stored history")

// RoomMembers returns who is in a room. A room that is not active is not
// started to answer (an inactive room has no members): it is an empty list
// if the store has history for it, else ErrNoRoom.
func (n *Node) RoomMembers(ctx context.Context, room string) ([]*parleypb.Member, error) {
	active, unsure, err := n.roomActive(ctx, room)
	if err != nil {
		return nil, err
	}
	if !active {
		b, err := n.cfg.Store.Bounds(ctx, room)
		if err != nil {
			return nil, fmt.Errorf("actors: room %q: %w", room, err)
		}
		if b.Latest == 0 {
			return nil, ErrNoRoom
		}
		if !unsure {
			return nil, nil
		}
		// The cluster's list was cut short: ask the room itself, which
		// exists (it has history), even if that starts it.
	}
	got, err := n.ask(ctx, func(to *actor.PID) {
		n.dir.Tell(n.System.Root, &actorpb.RoomWho{Room: room, Session: to})
	}, func(m proto.Message) bool { _, ok := m.(*parleypb.PresenceEvent); return ok })
	if err != nil {
		return nil, err
	}
	return got[len(got)-1].(*parleypb.PresenceEvent).GetMembers(), nil
}

// roomActive reports whether a room runs: here (a room actor, or a grain
// this node hosts), or, in a cluster, with members on another member, as
// far as the list of active rooms tells. That list holds the busiest
// maxListed rooms; unsure says it was full, so a room on another member
// may be missing from it. (Such a room with no history yet is reported as
// not active.)
func (n *Node) roomActive(ctx context.Context, room string) (active, unsure bool, err error) {
	if _, ok := n.Stats.mailboxes.Load(room); ok {
		return true, false, nil
	}
	if n.cfg.Cluster == nil {
		return false, false, nil
	}
	rooms, err := n.ListRooms(ctx)
	if err != nil {
		return false, false, err
	}
	for _, r := range rooms {
		if r.GetName() == room {
			return true, false, nil
		}
	}
	return false, len(rooms) >= maxListed, nil
}

// Kick closes every connection of user with close code 4002 and returns how
// many there were. In a cluster every member's presence is asked, and a
// member that does not answer before ctx ends makes it an error (with the
// count of those that did).
func (n *Node) Kick(ctx context.Context, user, reason string) (int, error) {
	targets := append([]*actor.PID{n.presence}, n.peerPresences()...)
	answered := 0
	got, err := n.ask(ctx, func(to *actor.PID) {
		for _, p := range targets {
			n.System.Root.Send(p, &actorpb.Kick{User: user, Reason: reason, ReplyTo: to})
		}
	}, func(m proto.Message) bool {
		if isAck(m) {
			answered++
		}
		return answered == len(targets)
	})
	kicked := 0
	for _, m := range got {
		if a, ok := m.(*parleypb.Ack); ok {
			kicked += int(a.GetSeq())
		}
	}
	if err != nil {
		return kicked, fmt.Errorf("actors: %d of %d members answered: %w", answered, len(targets), err)
	}
	return kicked, nil
}

// CloseRoom evicts everyone from a room (each gets a notice) and stops it;
// its history stays. It returns how many connections were evicted.
func (n *Node) CloseRoom(ctx context.Context, room, reason string) (int, error) {
	got, err := n.ask(ctx, func(to *actor.PID) {
		n.dir.Tell(n.System.Root, &actorpb.CloseRoom{Room: room, Reason: reason, ReplyTo: to})
	}, isAck)
	if err != nil {
		return 0, err
	}
	return int(got[len(got)-1].(*parleypb.Ack).GetSeq()), nil
}

// Broadcast sends a server notice to every connection and returns how many
// sessions of this node it was sent to (in a cluster, the other members'
// logged-in sessions get it too).
func (n *Node) Broadcast(text string) int {
	count := n.Sessions()
	n.eachSession(&parleypb.Notice{Text: text})
	// Other members pass it to their logged-in sessions.
	for _, p := range n.peerPresences() {
		n.System.Root.Send(p, &parleypb.Notice{Text: text})
	}
	return count
}

// peerPresence is the presence actor of the cluster member at addr.
func (n *Node) peerPresence(addr string) *actor.PID {
	if n.cfg.peerPID != nil {
		return n.cfg.peerPID(addr)
	}
	return actor.NewPID(addr, PresenceName)
}

// peerPresences are the presence actors of the other cluster members.
func (n *Node) peerPresences() []*actor.PID {
	if n.cfg.Cluster == nil {
		return nil
	}
	return n.cfg.Cluster.PeerPresences()
}

// Online says which of users are online anywhere in the cluster, with how
// many connections; no users means everyone (an operator's question: no
// client may ask it).
func (n *Node) Online(ctx context.Context, users ...string) ([]*parleypb.Member, error) {
	got, err := n.ask(ctx, func(to *actor.PID) {
		n.System.Root.Send(n.presence, &actorpb.WhoQuery{Session: to, Users: users})
	}, isAck)
	if err != nil {
		return nil, err
	}
	for _, m := range got {
		if p, ok := m.(*parleypb.PresenceEvent); ok {
			return p.GetMembers(), nil
		}
	}
	return nil, nil
}

// Moderate acts on a user in a room as the system (an operator, or the
// application through it): the same actions, checks and room events as a
// moderator's, with every right. It returns the seq of the event.
func (n *Node) Moderate(ctx context.Context, room, user string, action parleypb.ModAction, role parleypb.Role, reason string, until time.Time) (uint64, error) {
	m := &actorpb.RoomModerate{Room: room, User: SystemName, Kind: parleypb.SenderKind_SENDER_KIND_SYSTEM, Target: user,
		Action: action, Role: role, Reason: reason, RequestId: "system"}
	if !until.IsZero() {
		m.UntilMs = until.UnixMilli()
	}
	got, err := n.ask(ctx, func(to *actor.PID) {
		m.Session = to
		n.dir.Tell(n.System.Root, m)
	}, isAck)
	if err != nil {
		return 0, err
	}
	return got[len(got)-1].(*parleypb.Ack).GetSeq(), nil
}
