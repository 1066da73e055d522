package actors

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
	"unicode/utf8"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/parleychat/parley/actors/actorpb"
	"github.com/parleychat/parley/auth"
	parleypb "github.com/parleychat/parley/proto"
)

// request handles one client frame: the rate limit first, then Hello, then
// (once logged in) everything else. Every request with an id gets exactly
// one Ack or Error naming it, here or from the actor that handles it.
func (s *session) request(ctx actor.Context, env *parleypb.Envelope) {
	id := env.GetId()
	if _, isPing := env.GetBody().(*parleypb.Envelope_Ping); !isPing && !s.allow(id) {
		return
	}
	if h := env.GetHello(); h != nil {
		s.hello(ctx, id, h)
		return
	}
	if env.GetBody() == nil {
		s.fail(id, "", parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, "empty or unknown request")
		return
	}
	if _, isPing := env.GetBody().(*parleypb.Envelope_Ping); isPing {
		s.ackNow(id, "")
		return
	}
	if s.sh.user == "" {
		s.fail(id, "", parleypb.ErrorCode_ERROR_CODE_NOT_LOGGED_IN, "send hello first")
		return
	}
	switch b := env.GetBody().(type) {
	case *parleypb.Envelope_Join:
		s.join(ctx, id, b.Join)
	case *parleypb.Envelope_Leave:
		s.leave(ctx, id, b.Leave.GetRoom())
	case *parleypb.Envelope_Post:
		s.post(ctx, id, b.Post)
	case *parleypb.Envelope_Typing:
		room := b.Typing.GetRoom()
		if !s.sh.member.In(room) {
			s.fail(id, room, parleypb.ErrorCode_ERROR_CODE_NOT_JOINED, "join the room to type in it")
			return
		}
		if !s.may(id, room, true) {
			return
		}
		s.n.dir.Tell(ctx, &actorpb.RoomTyping{Room: room, User: s.sh.user, Session: ctx.Self()})
		s.ackNow(id, room)
	case *parleypb.Envelope_History:
		h := b.History
		if !s.sh.member.In(h.GetRoom()) {
			s.fail(id, h.GetRoom(), parleypb.ErrorCode_ERROR_CODE_NOT_JOINED, "join the room to read its history")
			return
		}
		s.n.dir.Tell(ctx, &actorpb.RoomHistory{Room: h.GetRoom(), BeforeSeq: h.GetBeforeSeq(), Limit: h.GetLimit(), RequestId: id, Session: ctx.Self()})
	case *parleypb.Envelope_Who:
		ctx.Send(s.n.presence, &actorpb.WhoQuery{RequestId: id, Session: ctx.Self()})
	case *parleypb.Envelope_Refresh:
		s.refresh(ctx, id, b.Refresh)
	case *parleypb.Envelope_Rooms:
		s.n.dir.ListRooms(ctx, &actorpb.RoomsQuery{RequestId: id, Session: ctx.Self()})
	default:
		s.fail(id, "", parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, fmt.Sprintf("%T is not a request", b))
	}
}

// allow takes a token from the session's rate limit, answering the request
// with RATE_LIMITED when there is none, and closing a session that keeps
// going with POLICY_VIOLATION.
func (s *session) allow(id string) bool {
	if s.limit.Allow() {
		return true
	}
	s.n.Stats.RateLimited.Add(1)
	if !s.strikes.Allow() {
		s.closeWith(parleypb.CloseCode_CLOSE_CODE_POLICY_VIOLATION, "rate limit exceeded repeatedly", slog.LevelWarn)
		return false
	}
	s.fail(id, "", parleypb.ErrorCode_ERROR_CODE_RATE_LIMITED, fmt.Sprintf("slow down: at most %g requests per second", s.n.cfg.Rate))
	return false
}

func (s *session) hello(ctx actor.Context, id string, h *parleypb.Hello) {
	if s.sh.user != "" {
		s.fail(id, "", parleypb.ErrorCode_ERROR_CODE_ALREADY_LOGGED_IN, "already logged in as "+s.sh.user)
		return
	}
	claims := s.sh.claims
	if tok := h.GetToken(); tok != "" {
		if claims != nil {
			s.fail(id, "", parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, "a token was already given in the handshake")
			return
		}
		var ok bool
		if claims, ok = s.verify(id, tok); !ok {
			return
		}
	}
	name := h.GetName()
	switch {
	case claims != nil && name != "" && name != claims.Subject:
		s.fail(id, "", parleypb.ErrorCode_ERROR_CODE_FORBIDDEN, fmt.Sprintf("the token is for %q, not %q", claims.Subject, name))
		return
	case claims != nil:
		name = claims.Subject
	case s.n.cfg.RequireToken:
		s.fail(id, "", parleypb.ErrorCode_ERROR_CODE_NOT_LOGGED_IN, "this server requires a token: send it in the handshake (Authorization: Bearer, or ?token=) or in hello.token")
		return
	}
	if err := ValidName(name); err != nil {
		s.fail(id, "", parleypb.ErrorCode_ERROR_CODE_INVALID_NAME, "name "+err.Error())
		return
	}
	s.sh.claims = claims
	s.armExpiry(ctx)
	s.sh.user, s.sh.watch = name, h.GetWatchOnline()
	s.sh.member = NewMember(s.n, MemberOptions{User: name, Codec: s.sh.codec.Kind()})
	s.log = s.log.With("user", s.sh.user)
	s.send(&parleypb.Envelope{Body: &parleypb.Envelope_Welcome{Welcome: &parleypb.Welcome{
		SessionId: s.sh.id, Name: s.sh.user,
		MaxMessageBytes: uint32(s.n.cfg.MaxMessageBytes), MaxRooms: uint32(s.n.cfg.MaxRooms),
		IdleTimeoutMs: uint32(s.n.cfg.IdleTimeout / time.Millisecond),
		MaxTextChars:  uint32(s.n.cfg.MaxTextRunes), Rate: s.n.cfg.Rate, Burst: uint32(s.n.cfg.Burst),
		TokenExpiresMs: s.expiresMs(),
	}}})
	online := &actorpb.Online{User: s.sh.user, Session: ctx.Self(), Watch: s.sh.watch}
	if s.sh.watch {
		online.RequestId = id // presence answers: the online snapshot, then the ack
	}
	ctx.Send(s.n.presence, online)
	if !s.sh.watch {
		s.ackNow(id, "")
	}
	s.legacyLoggedIn(ctx)
}

func (s *session) join(ctx actor.Context, id string, j *parleypb.Join) {
	name := j.GetRoom()
	if err := ValidRoom(name); err != nil {
		s.fail(id, name, parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, "room "+err.Error())
		return
	}
	if !s.may(id, name, false) {
		return
	}
	if s.sh.member.Joining(name) {
		s.fail(id, name, parleypb.ErrorCode_ERROR_CODE_RATE_LIMITED, "a join of this room is still waiting for its answer; send the next one after it")
		return
	}
	if !s.sh.member.In(name) && s.sh.member.Len() >= s.n.cfg.MaxRooms {
		s.fail(id, name, parleypb.ErrorCode_ERROR_CODE_TOO_MANY_ROOMS, fmt.Sprintf("a session may be in at most %d rooms", s.n.cfg.MaxRooms))
		return
	}
	s.sh.member.Join(ctx, name, JoinOptions{Since: j.Since, RequestID: id})
}

func (s *session) leave(ctx actor.Context, id, name string) {
	if !s.sh.member.In(name) {
		s.fail(id, name, parleypb.ErrorCode_ERROR_CODE_NOT_JOINED, "not in that room")
		return
	}
	s.sh.member.Leave(ctx, name, id)
	s.legacyLeft()
}

func (s *session) post(ctx actor.Context, id string, p *parleypb.Post) {
	room := p.GetRoom()
	if !s.sh.member.In(room) {
		s.fail(id, room, parleypb.ErrorCode_ERROR_CODE_NOT_JOINED, "join the room before posting to it")
		return
	}
	if !s.may(id, room, true) {
		return
	}
	if err := validText(p.GetText()); err != nil {
		s.fail(id, room, parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, "text "+err.Error())
		return
	}
	if n := utf8.RuneCountInString(p.GetText()); n > s.n.cfg.MaxTextRunes {
		s.fail(id, room, parleypb.ErrorCode_ERROR_CODE_TOO_LONG, fmt.Sprintf("text has %d characters; the limit is %d", n, s.n.cfg.MaxTextRunes))
		return
	}
	s.sh.member.Post(ctx, &actorpb.RoomPost{Room: room, User: s.sh.user, Text: p.GetText(), ClientMsgId: p.GetClientMsgId(), RequestId: id, Session: ctx.Self()})
}

// verify checks a token sent in a frame; on failure it answers the request.
func (s *session) verify(id, tok string) (*auth.Claims, bool) {
	if s.n.cfg.Verifier == nil {
		s.fail(id, "", parleypb.ErrorCode_ERROR_CODE_FORBIDDEN, "this server takes no tokens")
		return nil, false
	}
	c, err := s.n.cfg.Verifier.Verify(tok)
	if errors.Is(err, auth.ErrExpired) {
		s.fail(id, "", parleypb.ErrorCode_ERROR_CODE_TOKEN_EXPIRED, "the token expired; get a new one")
		return nil, false
	}
	if err != nil {
		s.log.Info("token refused", "err", err)
		s.fail(id, "", parleypb.ErrorCode_ERROR_CODE_FORBIDDEN, "invalid token")
		return nil, false
	}
	return c, true
}

// refresh swaps in a new token for the same user.
func (s *session) refresh(ctx actor.Context, id string, r *parleypb.Refresh) {
	c, ok := s.verify(id, r.GetToken())
	if !ok {
		return
	}
	if c.Subject != s.sh.user {
		s.fail(id, "", parleypb.ErrorCode_ERROR_CODE_FORBIDDEN, fmt.Sprintf("the new token is for %q, not %q", c.Subject, s.sh.user))
		return
	}
	s.sh.claims = c
	s.armExpiry(ctx)
	s.ackNow(id, "")
}

// armExpiry (re)sets the timer that ends the session when its token runs
// out. The timer only sends a message; the check runs in Receive.
func (s *session) armExpiry(ctx actor.Context) {
	if s.sh.expiry != nil {
		s.sh.expiry.Stop()
		s.sh.expiry = nil
	}
	c := s.sh.claims
	if c == nil || c.Expiry.IsZero() {
		return
	}
	sys, self := s.n.System, ctx.Self()
	s.sh.expiry = time.AfterFunc(time.Until(c.Expiry), func() { sys.Root.Send(self, &actorpb.TokenCheck{}) })
}

func (s *session) expiresMs() int64 {
	if c := s.sh.claims; c != nil && !c.Expiry.IsZero() {
		return c.Expiry.UnixMilli()
	}
	return 0
}

// may reports whether the token allows an action in a room, answering the
// request when it does not.
func (s *session) may(id, room string, post bool) bool {
	c := s.sh.claims
	if c == nil || (post && c.MayPost(room)) || (!post && c.MayJoin(room)) {
		return true
	}
	what := "join"
	if post {
		what = "post to"
	}
	s.fail(id, room, parleypb.ErrorCode_ERROR_CODE_FORBIDDEN, "your token does not allow you to "+what+" this room")
	return false
}
