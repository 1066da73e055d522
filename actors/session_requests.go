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

// Bounds on the fields a client sends, besides the frame size (-max-
// message-bytes), the names' (MaxNameRunes) and the text's (MaxTextRunes):
// what the server keeps of a request (a dedup id for every post, a request
// id in every answer) is bounded too.
const (
	MaxRequestIDBytes   = 128
	MaxClientMsgIDBytes = 128
	// MaxReasonBytes bounds a delete's reason, which is stored with it.
	MaxReasonBytes = 1000
	MaxTokenBytes  = 8 << 10
)

// request handles one client frame: the rate limit first (every frame
// counts, pings and frames that did not decode too), then the bounds, then
// Hello, then (once logged in) everything else. Every request with an id
// gets exactly one Ack or Error naming it, here or from the actor that
// handles it.
func (s *session) request(ctx actor.Context, env *parleypb.Envelope) {
	id := env.GetId()
	if len(id) > MaxRequestIDBytes {
		// An id that long is not echoed back: the error names none.
		if s.allow("") {
			s.fail("", "", parleypb.ErrorCode_ERROR_CODE_TOO_LONG, fmt.Sprintf("the request id has %d bytes; at most %d", len(id), MaxRequestIDBytes))
		}
		return
	}
	if !s.allow(id) {
		return
	}
	if field, n, max := tooLong(env); field != "" {
		s.fail(id, "", parleypb.ErrorCode_ERROR_CODE_TOO_LONG, fmt.Sprintf("%s has %d bytes; at most %d", field, n, max))
		return
	}
	if h := env.GetHello(); h != nil {
		s.hello(ctx, id, h)
		return
	}
	if l := s.sh.login; l != nil && len(l.queued) < maxQueuedBehindHello {
		// A client may send its first requests right behind its Hello:
		// they wait for the login, in order.
		l.queued = append(l.queued, env)
		return
	}
	s.handle(ctx, env)
}

// maxQueuedBehindHello bounds the requests kept while a Hello is answered
// (the rate limit bounds them too); more get NOT_LOGGED_IN.
const maxQueuedBehindHello = 64

// handle handles a request once the rate limit, the bounds and Hello are
// behind it.
func (s *session) handle(ctx actor.Context, env *parleypb.Envelope) {
	id := env.GetId()
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
	case *parleypb.Envelope_Edit:
		e := b.Edit
		if s.checkText(id, e.GetRoom(), e.GetText()) {
			s.alter(ctx, id, e.GetRoom(), &actorpb.RoomPost{Op: actorpb.PostOp_POST_OP_EDIT, TargetSeq: e.GetSeq(), Text: e.GetText(), ClientMsgId: e.GetClientMsgId()})
		}
	case *parleypb.Envelope_DeleteMessage:
		d := b.DeleteMessage
		if len(d.GetReason()) > MaxReasonBytes {
			s.badInput(id, d.GetRoom(), parleypb.ErrorCode_ERROR_CODE_TOO_LONG, fmt.Sprintf("reason has %d bytes; at most %d", len(d.GetReason()), MaxReasonBytes))
			return
		}
		if err := validText(d.GetReason()); d.GetReason() != "" && err != nil {
			s.badInput(id, d.GetRoom(), parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, "reason "+err.Error())
			return
		}
		s.alter(ctx, id, d.GetRoom(), &actorpb.RoomPost{Op: actorpb.PostOp_POST_OP_DELETE, TargetSeq: d.GetSeq(), Reason: d.GetReason(), ClientMsgId: d.GetClientMsgId()})
	case *parleypb.Envelope_React:
		re := b.React
		if n := len(re.GetEmoji()); n > MaxEmojiBytes {
			s.badInput(id, re.GetRoom(), parleypb.ErrorCode_ERROR_CODE_TOO_LONG, fmt.Sprintf("emoji has %d bytes; at most %d", n, MaxEmojiBytes))
			return
		}
		if err := validEmoji(re.GetEmoji()); err != nil {
			s.badInput(id, re.GetRoom(), parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, "emoji "+err.Error())
			return
		}
		op := actorpb.PostOp_POST_OP_REACT
		if re.GetRemove() {
			op = actorpb.PostOp_POST_OP_UNREACT
		}
		s.alter(ctx, id, re.GetRoom(), &actorpb.RoomPost{Op: op, TargetSeq: re.GetSeq(), Emoji: re.GetEmoji(), ClientMsgId: re.GetClientMsgId()})
	case *parleypb.Envelope_MarkRead:
		mr := b.MarkRead
		if s.roomRequest(id, mr.GetRoom()) {
			s.n.dir.Tell(ctx, &actorpb.RoomMarkRead{Room: mr.GetRoom(), User: s.sh.user, Seq: mr.GetSeq(), Session: ctx.Self(), RequestId: id})
		}
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
		s.n.dir.Tell(ctx, &actorpb.RoomHistory{Room: h.GetRoom(), BeforeSeq: h.GetBeforeSeq(), Limit: h.GetLimit(), RequestId: id, Session: ctx.Self(), User: s.sh.user})
	case *parleypb.Envelope_Who:
		s.who(ctx, id, b.Who)
	case *parleypb.Envelope_Refresh:
		s.refresh(ctx, id, b.Refresh)
	case *parleypb.Envelope_Rooms:
		s.rooms(id, b.Rooms)
	case *parleypb.Envelope_Direct:
		s.direct(ctx, id, b.Direct)
	case *parleypb.Envelope_CreateRoom:
		s.createRoom(ctx, id, b.CreateRoom)
	case *parleypb.Envelope_Moderate:
		m := b.Moderate
		if s.roomRequest(id, m.GetRoom()) {
			s.n.dir.Tell(ctx, &actorpb.RoomModerate{Room: m.GetRoom(), User: s.sh.user, Kind: parleypb.SenderKind_SENDER_KIND_USER, ClaimRole: s.claimRole(m.GetRoom()),
				Target: m.GetUser(), Action: m.GetAction(), Role: m.GetRole(), Reason: m.GetReason(), UntilMs: m.GetUntilMs(), Session: ctx.Self(), RequestId: id})
		}
	case *parleypb.Envelope_UpdateRoom:
		u := b.UpdateRoom
		if s.roomRequest(id, u.GetRoom()) {
			s.n.dir.Tell(ctx, &actorpb.RoomUpdate{Room: u.GetRoom(), User: s.sh.user, Kind: parleypb.SenderKind_SENDER_KIND_USER, ClaimRole: s.claimRole(u.GetRoom()),
				Title: u.Title, Topic: u.Topic, ReadPositions: u.ReadPositions, Session: ctx.Self(), RequestId: id})
		}
	case *parleypb.Envelope_DeleteRoom:
		d := b.DeleteRoom
		if s.roomRequest(id, d.GetRoom()) {
			s.n.dir.Tell(ctx, &actorpb.RoomDelete{Room: d.GetRoom(), User: s.sh.user, Kind: parleypb.SenderKind_SENDER_KIND_USER, ClaimRole: s.claimRole(d.GetRoom()),
				Reason: d.GetReason(), Session: ctx.Self(), RequestId: id})
		}
	case *parleypb.Envelope_Members:
		mr := b.Members
		if s.roomRequest(id, mr.GetRoom()) {
			s.n.dir.Tell(ctx, &actorpb.RoomMembers{Room: mr.GetRoom(), User: s.sh.user, After: mr.GetAfter(), Limit: mr.GetLimit(), Session: ctx.Self(), RequestId: id})
		}
	default:
		s.fail(id, "", parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, fmt.Sprintf("%T is not a request", b))
	}
}

// tooLong names a field of env longer than its bound, with its length and
// the bound; "" when none is.
func tooLong(env *parleypb.Envelope) (field string, n, limit int) {
	switch b := env.GetBody().(type) {
	case *parleypb.Envelope_Post:
		if n := len(b.Post.GetClientMsgId()); n > MaxClientMsgIDBytes {
			return "client_msg_id", n, MaxClientMsgIDBytes
		}
		if n := len(b.Post.GetMentions()); n > MaxMentions {
			return "mentions", n, MaxMentions
		}
	case *parleypb.Envelope_Edit:
		if n := len(b.Edit.GetClientMsgId()); n > MaxClientMsgIDBytes {
			return "client_msg_id", n, MaxClientMsgIDBytes
		}
	case *parleypb.Envelope_DeleteMessage:
		if n := len(b.DeleteMessage.GetClientMsgId()); n > MaxClientMsgIDBytes {
			return "client_msg_id", n, MaxClientMsgIDBytes
		}
	case *parleypb.Envelope_React:
		if n := len(b.React.GetClientMsgId()); n > MaxClientMsgIDBytes {
			return "client_msg_id", n, MaxClientMsgIDBytes
		}
	case *parleypb.Envelope_Hello:
		if n := len(b.Hello.GetToken()); n > MaxTokenBytes {
			return "token", n, MaxTokenBytes
		}
	case *parleypb.Envelope_Refresh:
		if n := len(b.Refresh.GetToken()); n > MaxTokenBytes {
			return "token", n, MaxTokenBytes
		}
	}
	return "", 0, 0
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

// hello checks a login and asks presence to take it; the session is
// logged in once presence answers (loggedIn), or not (its Error names the
// request).
func (s *session) hello(ctx actor.Context, id string, h *parleypb.Hello) {
	if s.sh.user != "" {
		s.fail(id, "", parleypb.ErrorCode_ERROR_CODE_ALREADY_LOGGED_IN, "already logged in as "+s.sh.user)
		return
	}
	if s.sh.login != nil {
		s.fail(id, "", parleypb.ErrorCode_ERROR_CODE_ALREADY_LOGGED_IN, "a hello is already being answered")
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
		if err := ValidName(claims.Subject); err != nil {
			s.fail(id, "", parleypb.ErrorCode_ERROR_CODE_INVALID_NAME, "the token's subject "+err.Error())
			return
		}
		name = claims.Subject
	case s.n.cfg.RequireToken:
		s.fail(id, "", parleypb.ErrorCode_ERROR_CODE_NOT_LOGGED_IN, "this server requires a token: send it in the handshake (Authorization: Bearer, or ?token=) or in hello.token")
		return
	default:
		c, err := CanonicalName(name)
		if err != nil {
			s.fail(id, "", parleypb.ErrorCode_ERROR_CODE_INVALID_NAME, "name "+err.Error())
			return
		}
		name = c
	}
	s.sh.login = &login{id: id, name: name, watch: h.GetWatchOnline(), claims: claims}
	// A name nobody vouches for must not look like someone else's.
	ctx.Send(s.n.presence, &actorpb.Online{User: name, Session: ctx.Self(), RequestId: id, CheckLookAlikes: claims == nil})
}

// loggedIn completes the login presence took: the client gets its Welcome,
// and the Hello's Ack (from presence, after the online snapshot, when it
// watches).
func (s *session) loggedIn(ctx actor.Context, m *actorpb.LoggedIn) {
	l := s.sh.login
	if l == nil || l.id != m.GetRequestId() {
		return
	}
	s.sh.login = nil
	s.sh.claims = l.claims
	s.armExpiry(ctx)
	s.sh.user = l.name
	s.sh.member = NewMember(s.n, MemberOptions{User: l.name, Codec: s.sh.codec.Kind()})
	s.log = s.log.With("user", s.sh.user)
	rooms, more := s.userRooms()
	s.send(&parleypb.Envelope{Body: &parleypb.Envelope_Welcome{Welcome: &parleypb.Welcome{
		SessionId: s.sh.id, Name: s.sh.user,
		MaxMessageBytes: uint32(s.n.cfg.MaxMessageBytes), MaxRooms: uint32(s.n.cfg.MaxRooms),
		IdleTimeoutMs: uint32(s.n.cfg.IdleTimeout / time.Millisecond),
		MaxTextChars:  uint32(s.n.cfg.MaxTextRunes), Rate: s.n.cfg.Rate, Burst: uint32(s.n.cfg.Burst),
		TokenExpiresMs: s.expiresMs(), Rooms: rooms, MoreRooms: more,
	}}})
	if l.watch {
		// Deprecated: the server-wide online list is no more; an empty
		// snapshot, as a client that asked for it waits for one.
		s.send(&parleypb.Envelope{Body: &parleypb.Envelope_Presence{Presence: &parleypb.PresenceEvent{}}})
	}
	s.ackNow(l.id, "")
	s.legacyLoggedIn(ctx)
	for _, env := range l.queued {
		s.handle(ctx, env)
	}
}

// loginRefused forgets a login presence refused: the client gets the
// Error, then an answer (NOT_LOGGED_IN) to each request it sent behind
// the Hello. It reports whether e was that refusal.
func (s *session) loginRefused(ctx actor.Context, e *parleypb.Error) bool {
	l := s.sh.login
	if l == nil || l.id != e.GetRequestId() || e.GetCode() != parleypb.ErrorCode_ERROR_CODE_INVALID_NAME {
		return false
	}
	s.log.Info("login refused", "name", l.name, "reason", e.GetText())
	s.sh.login = nil
	s.send(&parleypb.Envelope{Body: &parleypb.Envelope_Error{Error: e}})
	for _, env := range l.queued {
		s.handle(ctx, env)
	}
	return true
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
	s.sh.member.Join(ctx, name, JoinOptions{Since: j.Since, RequestID: id, ClaimRole: s.claimRole(name)})
}

// claimRole is the role the session's token gives it in room.
func (s *session) claimRole(room string) parleypb.Role {
	switch s.sh.claims.RoleIn(room) {
	case auth.RoleOwner:
		return parleypb.Role_ROLE_OWNER
	case auth.RoleModerator:
		return parleypb.Role_ROLE_MODERATOR
	}
	return parleypb.Role_ROLE_NONE
}

// roomRequest checks a request's room name and that the token allows the
// room, answering the request when not.
func (s *session) roomRequest(id, room string) bool {
	if err := ValidRoom(room); err != nil {
		s.fail(id, room, parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, "room "+err.Error())
		return false
	}
	return s.may(id, room, false)
}

// createRoom asks a room to create itself (CreateRoom).
func (s *session) createRoom(ctx actor.Context, id string, c *parleypb.CreateRoom) {
	room := c.GetRoom()
	if !s.roomRequest(id, room) {
		return
	}
	if IsDirectRoom(room) {
		s.fail(id, room, parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, "room names starting with "+directPrefix+" are direct rooms', made by a direct message")
		return
	}
	if len(c.GetInvite()) > maxInvites {
		s.fail(id, room, parleypb.ErrorCode_ERROR_CODE_TOO_LONG, fmt.Sprintf("%d invitations; at most %d at once", len(c.GetInvite()), maxInvites))
		return
	}
	s.n.dir.Tell(ctx, &actorpb.RoomCreate{Room: room, User: s.sh.user, Kind: parleypb.SenderKind_SENDER_KIND_USER, RoomKind: c.GetKind(),
		Title: c.GetTitle(), Topic: c.GetTopic(), Invite: c.GetInvite(), Session: ctx.Self(), RequestId: id})
}

// maxInvites bounds the invitations of one CreateRoom.
const maxInvites = 100

// direct posts to the direct room of the user and another (DirectMessage),
// which the post creates the first time.
func (s *session) direct(ctx actor.Context, id string, d *parleypb.DirectMessage) {
	to := d.GetTo()
	if err := ValidName(to); err != nil {
		s.fail(id, "", parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, "to: user "+err.Error())
		return
	}
	if to == s.sh.user {
		s.fail(id, "", parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, "a direct message goes to another user")
		return
	}
	room := DirectRoom(s.sh.user, to)
	if !s.checkText(id, room, d.GetText()) {
		return
	}
	s.sh.member.Post(ctx, &actorpb.RoomPost{Room: room, User: s.sh.user, Text: d.GetText(), ClientMsgId: d.GetClientMsgId(), RequestId: id, Session: ctx.Self(), DirectWith: to})
}

// checkText checks a post's text, answering the request when it is bad.
func (s *session) checkText(id, room, text string) bool {
	if err := validText(text); err != nil {
		s.fail(id, room, parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, "text "+err.Error())
		return false
	}
	if n := utf8.RuneCountInString(text); n > s.n.cfg.MaxTextRunes {
		s.fail(id, room, parleypb.ErrorCode_ERROR_CODE_TOO_LONG, fmt.Sprintf("text has %d characters; the limit is %d", n, s.n.cfg.MaxTextRunes))
		return false
	}
	return true
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
	if !s.checkText(id, room, p.GetText()) {
		return
	}
	for _, u := range p.GetMentions() {
		if err := ValidName(u); err != nil {
			s.badInput(id, room, parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, "mentions: user "+err.Error())
			return
		}
	}
	s.sh.member.Post(ctx, &actorpb.RoomPost{Room: room, User: s.sh.user, Text: p.GetText(), ClientMsgId: p.GetClientMsgId(), RequestId: id, Session: ctx.Self(),
		ReplyTo: p.GetReplyTo(), Mentions: p.GetMentions()})
}

// badInput refuses a malformed request, with a log line: a client that
// sends one is broken or probing, and its operator wants to know which
// (the rate limit bounds how often).
func (s *session) badInput(id, room string, code parleypb.ErrorCode, text string) {
	s.log.Info("bad request", "user", s.sh.user, "room", room, "code", code.String(), "err", text)
	s.fail(id, room, code, text)
}

// alter sends an edit, delete or reaction (p, its room and request still
// to fill in) to a joined room, the way of posts: a retry with the same
// client_msg_id applies once.
func (s *session) alter(ctx actor.Context, id, room string, p *actorpb.RoomPost) {
	if !s.sh.member.In(room) {
		s.fail(id, room, parleypb.ErrorCode_ERROR_CODE_NOT_JOINED, "join the room before changing its messages")
		return
	}
	if !s.may(id, room, true) {
		return
	}
	if p.GetTargetSeq() == 0 {
		s.badInput(id, room, parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, "seq: name the message (its seq)")
		return
	}
	p.Room, p.User, p.RequestId, p.Session, p.ClaimRole = room, s.sh.user, id, ctx.Self(), s.claimRole(room)
	s.sh.member.Post(ctx, p)
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
