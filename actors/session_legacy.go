package actors

import (
	"github.com/asynkron/protoactor-go/actor"

	"github.com/parleychat/parley/actors/actorpb"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/proto/codec"
)

// What a session does differently for the tutorial's protocol (codec
// legacy: no subprotocol; see docs/LEGACY-PROTOCOL.md). The codec maps the
// tutorial's frames onto Envelopes (login is Hello, user is a Post to
// lobby, logout a Leave of lobby); the rest of the conversation is here:
// the handshake frame on connect, lobby joined at login, logout ending the
// connection. Rooms have their part in room_legacy.go.

func (s *session) legacy() bool { return s.sh.codec.Kind() == parleypb.Codec_CODEC_LEGACY }

// legacyStarted asks lobby who is in it: the tutorial's page waits for a
// handshake frame listing them before it sends its login.
func (s *session) legacyStarted(ctx actor.Context) {
	if s.legacy() {
		s.n.dir.Tell(ctx, &actorpb.RoomWho{Room: codec.LegacyRoom, Session: ctx.Self()})
	}
}

// legacyLoggedIn puts a tutorial client in lobby, the one room it knows.
func (s *session) legacyLoggedIn(ctx actor.Context) {
	if s.legacy() {
		s.sh.member.Join(ctx, codec.LegacyRoom, JoinOptions{})
	}
}

// legacyLeft ends a tutorial client's connection: its logout leaves lobby.
func (s *session) legacyLeft() {
	if s.legacy() {
		s.close(parleypb.Close(parleypb.CloseCode_CLOSE_CODE_NORMAL, "logged out"))
	}
}

// legacyPresence turns lobby's member list (the answer to legacyStarted)
// into the handshake frame, and reports whether the session is a legacy
// one: the tutorial's page hears of presence only through the room's
// login and logout frames.
func (s *session) legacyPresence(p *parleypb.PresenceEvent) bool {
	if !s.legacy() {
		return false
	}
	if p.GetRoom() == codec.LegacyRoom && p.GetMembers() != nil && len(p.GetJoined())+len(p.GetLeft()) == 0 {
		s.queue(codec.LegacyHandshake(s.sh.sock.RemoteAddr(), p.GetMembers()))
	}
	return true
}
