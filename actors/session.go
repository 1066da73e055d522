package actors

import (
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"
	"unicode/utf8"

	"github.com/asynkron/protoactor-go/actor"
	"golang.org/x/time/rate"

	"github.com/parleychat/parley/auth"
	"github.com/parleychat/parley/codec"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/supervision"
	"github.com/parleychat/parley/transport"
)

// conn is what a session needs from its socket (transport.Conn in
// production, a fake in unit tests). Neither method blocks.
type conn interface {
	Send(frame []byte) bool
	Close(code int, reason string)
	Abort()
	RemoteAddr() string
	Codec() codec.Codec
	ID() string
}

// sessionShared is the part of a session that survives its restarts: the
// socket and what the client asked for (its name, its rooms and how far it
// has read each). It is captured by the session's producer, so a restarted
// instance finds it; only the session's own Receive touches it.
type sessionShared struct {
	id      string
	conn    conn
	codec   codec.Codec
	started bool
	user    string
	watch   bool
	rooms   map[string]*joined
	closing bool
	closed  bool
	// claims is the connection's verified token (nil: anonymous), and
	// expiry the timer that closes the session when it runs out.
	claims *auth.Claims
	expiry *time.Timer
	// inflight holds, in a cluster, the posts sent to a room and not yet
	// answered, by room and request id: if the room dies with its node
	// they are re-sent (or failed) instead of silently lost.
	inflight map[string]map[string]inflightPost
	posted   uint64
}

type inflightPost struct {
	post  *parleypb.RoomPost
	order uint64 // re-sent in the order the client sent them
}

// joined is one room of a session: the last seq delivered to the client,
// which is where it resumes after any restart. synced is false from a
// (re-)join until its ack: replayed and live events may interleave then,
// and only order matters. Once synced, a gap in seqs means a delivery was
// lost (a room instance ended mid-batch): the session re-joins from last and
// the replay fills the hole, so the client never sees one.
type joined struct {
	last   uint64
	synced bool
	// joinID is the request id of the client's join until it is answered;
	// a failed join forgets the room.
	joinID string
	// attempt numbers the joins sent, so a check finds whether the one it
	// was set for is still unanswered.
	attempt uint64
	// resume and rejoin are how the pending join was asked for.
	resume, rejoin bool
}

// joinCheck asks a session whether a join it sent was answered (local).
type joinCheck struct {
	room    string
	attempt uint64
}

// joinRetryAfter is how long a session in a cluster waits for a join's
// answer before sending it again: a join can vanish with a room that was
// stopping on a member that was leaving.
const joinRetryAfter = 2 * time.Second

// session is the actor of one connection: identity, joined rooms, rate
// limit, resume state. It never blocks: frames go to the socket's bounded
// queue, and a client that does not drain it is closed with 1013.
type session struct {
	n       *Node
	sh      *sessionShared
	log     *slog.Logger
	limit   *rate.Limiter
	strikes *rate.Limiter
	idle    *supervision.IdleTimer
}

func newSession(n *Node, sh *sessionShared) *session {
	return &session{
		n: n, sh: sh,
		log:     n.log.With("session", sh.id, "conn", sh.conn.ID()),
		limit:   rate.NewLimiter(rate.Limit(n.cfg.Rate), n.cfg.Burst),
		strikes: rate.NewLimiter(rate.Limit(float64(n.cfg.Strikes)/10), n.cfg.Strikes),
	}
}

func (s *session) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		s.started(ctx)
	case *parleypb.Envelope:
		s.idle.Touch()
		s.request(ctx, m)
	case *parleypb.Deliver:
		if f := s.accept(ctx, m); f != nil {
			s.queue(f)
		}
	case *parleypb.DeliverBatch:
		s.deliverBatch(ctx, m)
	case *parleypb.Ack:
		s.answered(m.GetRoom(), m.GetRequestId())
		s.ack(m)
	case *parleypb.Error:
		s.answered(m.GetRoom(), m.GetRequestId())
		s.roomError(ctx, m)
		s.send(&parleypb.Envelope{Body: &parleypb.Envelope_Error{Error: m}})
	case *parleypb.PresenceEvent:
		s.presence(m)
	case *parleypb.HistoryPage:
		s.send(&parleypb.Envelope{Body: &parleypb.Envelope_HistoryPage{HistoryPage: m}})
	case *parleypb.Reset:
		if j, ok := s.sh.rooms[m.GetRoom()]; ok && m.GetOldestSeq() > 0 {
			// Replay resumes at OldestSeq: after a gap the server no longer
			// has, or, when the client was ahead of the server (history
			// lost), from the server's own start.
			j.last = m.GetOldestSeq() - 1
		}
		s.send(&parleypb.Envelope{Body: &parleypb.Envelope_ResetEvent{ResetEvent: m}})
	case *parleypb.RoomList:
		s.send(&parleypb.Envelope{Body: &parleypb.Envelope_RoomList{RoomList: m}})
	case *parleypb.RoomRestarted:
		if j, ok := s.sh.rooms[m.GetRoom()]; ok {
			s.joinRoom(ctx, m.GetRoom(), &j.last, "", true)
		}
		if m.GetLost() {
			s.resend(ctx, m.GetRoom())
		}
	case *parleypb.PresenceRebuild:
		if s.sh.user != "" {
			ctx.Send(s.n.presence, &parleypb.Online{User: s.sh.user, Session: ctx.Self(), Watch: s.sh.watch, Rejoin: true})
		}
	case *parleypb.BadFrame:
		s.idle.Touch()
		s.log.Info("bad frame from client", "reason", m.GetReason())
		s.fail(ctx, "", "", parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, m.GetReason())
	case *parleypb.ConnClosed:
		s.sh.closed = true
		ctx.Stop(ctx.Self())
	case *parleypb.TokenCheck:
		if c := s.sh.claims; c != nil && !c.Expiry.IsZero() && !time.Now().Before(c.Expiry) {
			s.log.Info("token expired; closing", "code", transport.StatusTokenExpired)
			s.close(transport.StatusTokenExpired, "token expired; reconnect with a new one")
		}
	case *parleypb.KickSession:
		s.log.Warn("kicked by an operator", "reason", m.GetReason(), "code", transport.StatusKicked)
		s.close(transport.StatusKicked, "kicked by an operator: "+m.GetReason())
	case *parleypb.Notice:
		s.send(&parleypb.Envelope{Body: &parleypb.Envelope_Notice{Notice: m}})
	case *parleypb.RoomClosed:
		if _, ok := s.sh.rooms[m.GetRoom()]; ok {
			delete(s.sh.rooms, m.GetRoom())
			s.send(&parleypb.Envelope{Body: &parleypb.Envelope_Notice{Notice: &parleypb.Notice{Room: m.GetRoom(), Text: "the room was closed by an operator: " + m.GetReason()}}})
		}
	case *parleypb.InjectFault:
		if m.GetDrop() && s.n.cfg.Faults.Enabled("session") {
			s.n.cfg.Faults.Injected.Add(1)
			s.log.Warn("injected fault: dropping the socket")
			s.sh.conn.Abort()
		}
	case *parleypb.Shutdown:
		s.close(transport.StatusGoingAway, m.GetReason())
	case joinCheck:
		if j, ok := s.sh.rooms[m.room]; ok && !j.synced && j.attempt == m.attempt {
			s.log.Info("join unanswered; sending it again", "room", m.room, "after", joinRetryAfter)
			s.sendJoin(ctx, m.room, j)
		}
	case *parleypb.IdleCheck:
		if s.idle.Expired() {
			s.log.Info("closing idle session", "idle", s.n.cfg.IdleTimeout, "code", transport.StatusIdleTimeout)
			s.close(transport.StatusIdleTimeout, fmt.Sprintf("no message for %v", s.n.cfg.IdleTimeout))
		}
	case *actor.Restarting:
		s.idle.Stop()
	case *actor.Stopping:
		s.idle.Stop()
		if s.sh.expiry != nil {
			s.sh.expiry.Stop()
		}
		s.stopping(ctx)
	}
}

func (s *session) started(ctx actor.Context) {
	s.n.register(ctx.Self())
	s.idle = supervision.NewIdleTimer(s.n.System, ctx.Self(), s.n.cfg.IdleTimeout, &parleypb.IdleCheck{})
	s.idle.Start()
	if !s.sh.started {
		s.sh.started = true
		if s.sh.codec.Kind() == parleypb.Codec_CODEC_LEGACY {
			// The tutorial's page waits for a handshake listing lobby.
			s.n.Directory.Tell(ctx, &parleypb.RoomWho{Room: codec.LegacyRoom, Session: ctx.Self()})
		}
		return
	}
	// A restart: the socket and the client's rooms are still ours; register
	// again and resume every room after the last event the client got.
	s.log.Info("session restarted; re-joining its rooms", "rooms", len(s.sh.rooms))
	if s.sh.user != "" {
		ctx.Send(s.n.presence, &parleypb.Online{User: s.sh.user, Session: ctx.Self(), Watch: s.sh.watch, Rejoin: true})
	}
	for name, j := range s.sh.rooms {
		s.joinRoom(ctx, name, &j.last, "", true)
	}
}

// stopping runs once, when the session ends for good (never on restart).
func (s *session) stopping(ctx actor.Context) {
	for name := range s.sh.rooms {
		s.n.Directory.Tell(ctx, &parleypb.RoomLeave{Room: name, Session: ctx.Self()})
	}
	if s.sh.user != "" {
		ctx.Send(s.n.presence, &parleypb.Offline{Session: ctx.Self()})
	}
	if !s.sh.closed && !s.sh.closing {
		// Stopped without closing first: the supervisor gave up on us.
		s.close(transport.StatusInternalError, "session failed repeatedly")
	}
	s.n.unregister(ctx.Self())
}

// close closes the socket; the session stops when the transport reports the
// socket gone (ConnClosed), so nothing is sent to a stopped actor meanwhile.
func (s *session) close(code int, reason string) {
	if s.sh.closing || s.sh.closed {
		return
	}
	s.sh.closing = true
	s.sh.conn.Close(code, reason)
}

// send encodes an envelope in the client's codec and queues it.
func (s *session) send(env *parleypb.Envelope) {
	f, err := s.sh.codec.Encode(env)
	if err != nil {
		if err != codec.ErrNoFrame {
			s.log.Error("encode failed", "err", err)
		}
		return
	}
	s.queue(f)
}

func (s *session) queue(frame []byte) {
	if s.sh.closing || s.sh.closed {
		return
	}
	if !s.sh.conn.Send(frame) {
		s.log.Warn("client is not reading; closing it", "code", transport.StatusTryAgainLater)
		s.close(transport.StatusTryAgainLater, "outbound queue full: the client is not reading fast enough; reconnect and resume")
	}
}

// accept applies a delivery to the client's resume state and returns the
// frame to send, or nil: for a room the client left, an event it already
// has, or a gap (which starts a re-join that fills it).
func (s *session) accept(ctx actor.Context, d *parleypb.Deliver) []byte {
	j, ok := s.sh.rooms[d.GetRoom()]
	if !ok {
		return nil // left the room; a late delivery
	}
	if seq := d.GetSeq(); seq != 0 {
		if seq <= j.last {
			return nil // already delivered (a replay overlapping what the client has)
		}
		if j.synced && seq != j.last+1 {
			s.log.Info("gap in room events; resuming from the last one delivered", "room", d.GetRoom(), "last", j.last, "got", seq)
			s.joinRoom(ctx, d.GetRoom(), &j.last, "", true)
			return nil
		}
		j.last = seq
	}
	var f []byte
	switch s.sh.codec.Kind() {
	case parleypb.Codec_CODEC_PROTO:
		f = d.GetProtoFrame()
	case parleypb.Codec_CODEC_JSON:
		f = d.GetJsonFrame()
	case parleypb.Codec_CODEC_LEGACY:
		f = d.GetLegacyFrame()
	}
	if len(f) == 0 {
		return nil
	}
	return f
}

// deliverBatch queues consecutive events as one frame where the codec
// batches: the room's prebuilt frame when the client is exactly at the
// batch's start, else a frame of the items it still lacks.
func (s *session) deliverBatch(ctx actor.Context, b *parleypb.DeliverBatch) {
	items := b.GetItems()
	if j, ok := s.sh.rooms[b.GetRoom()]; ok && j.synced && len(items) > 0 && items[0].GetSeq() == j.last+1 {
		var pre []byte
		switch s.sh.codec.Kind() {
		case parleypb.Codec_CODEC_PROTO:
			pre = b.GetProtoFrame()
		case parleypb.Codec_CODEC_JSON:
			pre = b.GetJsonFrame()
		}
		if pre != nil {
			j.last = items[len(items)-1].GetSeq()
			s.queue(pre)
			return
		}
	}
	frames := make([][]byte, 0, len(b.GetItems()))
	for _, d := range b.GetItems() {
		if f := s.accept(ctx, d); f != nil {
			frames = append(frames, f)
		}
	}
	if len(frames) == 0 {
		return
	}
	if len(frames) > 1 {
		if f, ok := s.sh.codec.AppendBatch(nil, frames); ok {
			s.queue(f)
			return
		}
	}
	for _, f := range frames {
		s.queue(f)
	}
}

// ack forwards a request's answer. An ack without a request id answers
// something the session did on its own (a re-join after a restart, the
// legacy client's lobby): the client asked nothing, so it hears nothing.
func (s *session) ack(a *parleypb.Ack) {
	if a.GetMembers() != nil {
		// A join's ack: everything up to Seq has been replayed.
		if j, ok := s.sh.rooms[a.GetRoom()]; ok {
			j.last = max(j.last, a.GetSeq())
			j.synced, j.joinID = true, ""
		}
	}
	if a.GetRequestId() == "" {
		return
	}
	s.send(&parleypb.Envelope{Body: &parleypb.Envelope_Ack{Ack: a}})
}

func (s *session) presence(p *parleypb.PresenceEvent) {
	if s.sh.codec.Kind() == parleypb.Codec_CODEC_LEGACY {
		if p.GetRoom() == codec.LegacyRoom && p.GetMembers() != nil && len(p.GetJoined())+len(p.GetLeft()) == 0 {
			s.queue(codec.LegacyHandshake(s.sh.conn.RemoteAddr(), p.GetMembers()))
		}
		return
	}
	s.send(&parleypb.Envelope{Body: &parleypb.Envelope_Presence{Presence: p}})
}

// verify checks a token sent in a frame; on failure it answers the request.
func (s *session) verify(ctx actor.Context, id, tok string) (*auth.Claims, bool) {
	if s.n.cfg.Verifier == nil {
		s.fail(ctx, id, "", parleypb.ErrorCode_ERROR_CODE_FORBIDDEN, "this server takes no tokens")
		return nil, false
	}
	c, err := s.n.cfg.Verifier.Verify(tok)
	if errors.Is(err, auth.ErrExpired) {
		s.fail(ctx, id, "", parleypb.ErrorCode_ERROR_CODE_TOKEN_EXPIRED, "the token expired; get a new one")
		return nil, false
	}
	if err != nil {
		s.log.Info("token refused", "err", err)
		s.fail(ctx, id, "", parleypb.ErrorCode_ERROR_CODE_FORBIDDEN, "invalid token")
		return nil, false
	}
	return c, true
}

// refresh swaps in a new token for the same user.
func (s *session) refresh(ctx actor.Context, id string, r *parleypb.Refresh) {
	c, ok := s.verify(ctx, id, r.GetToken())
	if !ok {
		return
	}
	if c.Subject != s.sh.user {
		s.fail(ctx, id, "", parleypb.ErrorCode_ERROR_CODE_FORBIDDEN, fmt.Sprintf("the new token is for %q, not %q", c.Subject, s.sh.user))
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
	s.sh.expiry = time.AfterFunc(time.Until(c.Expiry), func() { sys.Root.Send(self, &parleypb.TokenCheck{}) })
}

func (s *session) expiresMs() int64 {
	if c := s.sh.claims; c != nil && !c.Expiry.IsZero() {
		return c.Expiry.UnixMilli()
	}
	return 0
}

// may reports whether the token allows an action in a room, answering the
// request when it does not.
func (s *session) may(ctx actor.Context, id, room string, post bool) bool {
	c := s.sh.claims
	if c == nil || (post && c.MayPost(room)) || (!post && c.MayJoin(room)) {
		return true
	}
	what := "join"
	if post {
		what = "post to"
	}
	s.fail(ctx, id, room, parleypb.ErrorCode_ERROR_CODE_FORBIDDEN, "your token does not allow you to "+what+" this room")
	return false
}

// rejoinDelay spaces the retries of a re-join a room could not take (its
// store was down).
const rejoinDelay = 500 * time.Millisecond

// roomError handles a room refusing a join. The client's own join is
// forgotten (the client got the error and may retry); a re-join the session
// made by itself is retried after a pause, since the client still counts on
// being in the room.
func (s *session) roomError(ctx actor.Context, e *parleypb.Error) {
	j, ok := s.sh.rooms[e.GetRoom()]
	if !ok || j.synced {
		return
	}
	switch {
	case j.joinID != "" && j.joinID == e.GetRequestId():
		delete(s.sh.rooms, e.GetRoom())
	case j.joinID == "" && e.GetRequestId() == "":
		sys, self, room := s.n.System, ctx.Self(), e.GetRoom()
		time.AfterFunc(rejoinDelay, func() { sys.Root.Send(self, &parleypb.RoomRestarted{Room: room}) })
	}
}

// fail answers a request with an error frame.
func (s *session) fail(_ actor.Context, requestID, room string, code parleypb.ErrorCode, text string) {
	s.send(&parleypb.Envelope{Body: &parleypb.Envelope_Error{Error: &parleypb.Error{RequestId: requestID, Room: room, Code: code, Text: text}}})
}

func (s *session) ackNow(requestID, room string) {
	if requestID == "" {
		return // nothing to name: a request without an id gets no ack
	}
	s.send(&parleypb.Envelope{Body: &parleypb.Envelope_Ack{Ack: &parleypb.Ack{RequestId: requestID, Room: room}}})
}

// request handles one client frame.
func (s *session) request(ctx actor.Context, env *parleypb.Envelope) {
	id := env.GetId()
	if _, isPing := env.GetBody().(*parleypb.Envelope_Ping); !isPing && !s.limit.Allow() {
		s.n.Stats.RateLimited.Add(1)
		if !s.strikes.Allow() {
			s.log.Warn("closing a session that keeps exceeding its rate limit", "code", transport.StatusPolicyViolation)
			s.close(transport.StatusPolicyViolation, "rate limit exceeded repeatedly")
			return
		}
		s.fail(ctx, id, "", parleypb.ErrorCode_ERROR_CODE_RATE_LIMITED, fmt.Sprintf("slow down: at most %g requests per second", s.n.cfg.Rate))
		return
	}
	if h := env.GetHello(); h != nil {
		s.hello(ctx, id, h)
		return
	}
	if env.GetBody() == nil {
		s.fail(ctx, id, "", parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, "empty or unknown request")
		return
	}
	if _, isPing := env.GetBody().(*parleypb.Envelope_Ping); isPing {
		s.ackNow(id, "")
		return
	}
	if s.sh.user == "" {
		s.fail(ctx, id, "", parleypb.ErrorCode_ERROR_CODE_NOT_LOGGED_IN, "send hello first")
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
		if _, ok := s.sh.rooms[room]; !ok {
			s.fail(ctx, id, room, parleypb.ErrorCode_ERROR_CODE_NOT_JOINED, "join the room to type in it")
			return
		}
		if !s.may(ctx, id, room, true) {
			return
		}
		s.n.Directory.Tell(ctx, &parleypb.RoomTyping{Room: room, User: s.sh.user, Session: ctx.Self()})
		if id != "" {
			s.ackNow(id, room)
		}
	case *parleypb.Envelope_History:
		h := b.History
		if _, ok := s.sh.rooms[h.GetRoom()]; !ok {
			s.fail(ctx, id, h.GetRoom(), parleypb.ErrorCode_ERROR_CODE_NOT_JOINED, "join the room to read its history")
			return
		}
		s.n.Directory.Tell(ctx, &parleypb.RoomHistory{Room: h.GetRoom(), BeforeSeq: h.GetBeforeSeq(), Limit: h.GetLimit(), RequestId: id, Session: ctx.Self()})
	case *parleypb.Envelope_Who:
		ctx.Send(s.n.presence, &parleypb.WhoQuery{RequestId: id, Session: ctx.Self()})
	case *parleypb.Envelope_Refresh:
		s.refresh(ctx, id, b.Refresh)
	case *parleypb.Envelope_Rooms:
		s.n.Directory.ListRooms(ctx, &parleypb.RoomsQuery{RequestId: id, Session: ctx.Self()})
	default:
		s.fail(ctx, id, "", parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, fmt.Sprintf("%T is not a request", b))
	}
}

func (s *session) hello(ctx actor.Context, id string, h *parleypb.Hello) {
	if s.sh.user != "" {
		s.fail(ctx, id, "", parleypb.ErrorCode_ERROR_CODE_ALREADY_LOGGED_IN, "already logged in as "+s.sh.user)
		return
	}
	claims := s.sh.claims
	if tok := h.GetToken(); tok != "" {
		if claims != nil {
			s.fail(ctx, id, "", parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, "a token was already given in the handshake")
			return
		}
		var ok bool
		if claims, ok = s.verify(ctx, id, tok); !ok {
			return
		}
	}
	name := h.GetName()
	switch {
	case claims != nil && name != "" && name != claims.Subject:
		s.fail(ctx, id, "", parleypb.ErrorCode_ERROR_CODE_FORBIDDEN, fmt.Sprintf("the token is for %q, not %q", claims.Subject, name))
		return
	case claims != nil:
		name = claims.Subject
	case s.n.cfg.RequireToken:
		s.fail(ctx, id, "", parleypb.ErrorCode_ERROR_CODE_NOT_LOGGED_IN, "this server requires a token: send it in the handshake (Authorization: Bearer, or ?token=) or in hello.token")
		return
	}
	if err := ValidName(name); err != nil {
		s.fail(ctx, id, "", parleypb.ErrorCode_ERROR_CODE_INVALID_NAME, "name "+err.Error())
		return
	}
	h = &parleypb.Hello{Name: name, WatchOnline: h.GetWatchOnline()}
	s.sh.claims = claims
	s.armExpiry(ctx)
	s.sh.user, s.sh.watch = h.GetName(), h.GetWatchOnline()
	s.log = s.log.With("user", s.sh.user)
	s.send(&parleypb.Envelope{Body: &parleypb.Envelope_Welcome{Welcome: &parleypb.Welcome{
		SessionId: s.sh.id, Name: s.sh.user,
		MaxMessageBytes: uint32(s.n.cfg.MaxMessageBytes), MaxRooms: uint32(s.n.cfg.MaxRooms),
		IdleTimeoutMs: uint32(s.n.cfg.IdleTimeout / time.Millisecond),
		MaxTextChars:  uint32(s.n.cfg.MaxTextRunes), Rate: s.n.cfg.Rate, Burst: uint32(s.n.cfg.Burst),
		TokenExpiresMs: s.expiresMs(),
	}}})
	online := &parleypb.Online{User: s.sh.user, Session: ctx.Self(), Watch: s.sh.watch}
	if s.sh.watch {
		online.RequestId = id // presence answers: the online snapshot, then the ack
	}
	ctx.Send(s.n.presence, online)
	if !s.sh.watch {
		s.ackNow(id, "")
	}
	if s.sh.codec.Kind() == parleypb.Codec_CODEC_LEGACY {
		s.joinRoom(ctx, codec.LegacyRoom, nil, "", false)
	}
}

func (s *session) join(ctx actor.Context, id string, j *parleypb.Join) {
	name := j.GetRoom()
	if err := ValidRoom(name); err != nil {
		s.fail(ctx, id, name, parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, "room "+err.Error())
		return
	}
	if !s.may(ctx, id, name, false) {
		return
	}
	if _, ok := s.sh.rooms[name]; !ok && len(s.sh.rooms) >= s.n.cfg.MaxRooms {
		s.fail(ctx, id, name, parleypb.ErrorCode_ERROR_CODE_TOO_MANY_ROOMS, fmt.Sprintf("a session may be in at most %d rooms", s.n.cfg.MaxRooms))
		return
	}
	s.joinRoom(ctx, name, j.Since, id, false)
}

// joinRoom (re-)registers with a room, resuming after since.
func (s *session) joinRoom(ctx actor.Context, name string, since *uint64, requestID string, rejoin bool) {
	j, ok := s.sh.rooms[name]
	if !ok {
		j = &joined{}
		s.sh.rooms[name] = j
	}
	if !rejoin {
		// The client's own join sets its resume point: after since, or
		// (without one) nothing yet, so the window is replayed in full.
		j.last = 0
		if since != nil {
			j.last = *since
		}
	}
	j.synced, j.joinID, j.resume, j.rejoin = false, requestID, since != nil, rejoin
	s.sendJoin(ctx, name, j)
}

// sendJoin sends the room the pending join of j (again).
func (s *session) sendJoin(ctx actor.Context, name string, j *joined) {
	var from *uint64
	if j.resume {
		v := j.last
		from = &v
	}
	j.attempt++
	if s.n.Clustered {
		sys, self, check := s.n.System, ctx.Self(), joinCheck{room: name, attempt: j.attempt}
		time.AfterFunc(joinRetryAfter, func() { sys.Root.Send(self, check) })
	}
	s.n.Directory.Tell(ctx, &parleypb.RoomJoin{Room: name, User: s.sh.user, Session: ctx.Self(), Since: from, Codec: s.sh.codec.Kind(), RequestId: j.joinID, Rejoin: j.rejoin})
}

func (s *session) leave(ctx actor.Context, id, name string) {
	if _, ok := s.sh.rooms[name]; !ok {
		s.fail(ctx, id, name, parleypb.ErrorCode_ERROR_CODE_NOT_JOINED, "not in that room")
		return
	}
	delete(s.sh.rooms, name)
	delete(s.sh.inflight, name)
	s.n.Directory.Tell(ctx, &parleypb.RoomLeave{Room: name, Session: ctx.Self(), RequestId: id})
	if s.sh.codec.Kind() == parleypb.Codec_CODEC_LEGACY {
		// The tutorial's logout ends the connection.
		s.close(transport.StatusNormal, "logged out")
	}
}

func (s *session) post(ctx actor.Context, id string, p *parleypb.Post) {
	room := p.GetRoom()
	if _, ok := s.sh.rooms[room]; !ok {
		s.fail(ctx, id, room, parleypb.ErrorCode_ERROR_CODE_NOT_JOINED, "join the room before posting to it")
		return
	}
	if !s.may(ctx, id, room, true) {
		return
	}
	if err := validText(p.GetText()); err != nil {
		s.fail(ctx, id, room, parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, "text "+err.Error())
		return
	}
	if n := utf8.RuneCountInString(p.GetText()); n > s.n.cfg.MaxTextRunes {
		s.fail(ctx, id, room, parleypb.ErrorCode_ERROR_CODE_TOO_LONG, fmt.Sprintf("text has %d characters; the limit is %d", n, s.n.cfg.MaxTextRunes))
		return
	}
	rp := &parleypb.RoomPost{Room: room, User: s.sh.user, Text: p.GetText(), ClientMsgId: p.GetClientMsgId(), RequestId: id, Session: ctx.Self()}
	if s.n.Clustered && id != "" {
		if s.sh.inflight == nil {
			s.sh.inflight = make(map[string]map[string]inflightPost)
		}
		if s.sh.inflight[room] == nil {
			s.sh.inflight[room] = make(map[string]inflightPost)
		}
		s.sh.posted++
		s.sh.inflight[room][id] = inflightPost{rp, s.sh.posted}
	}
	s.n.Directory.Tell(ctx, rp)
}

// answered forgets an in-flight post once its room answered it.
func (s *session) answered(room, requestID string) {
	if posts := s.sh.inflight[room]; posts != nil {
		delete(posts, requestID)
		if len(posts) == 0 {
			delete(s.sh.inflight, room)
		}
	}
}

// resend handles the posts a lost room never answered. One with a
// client_msg_id goes again, to the room's next activation, whose dedup
// window (loaded from the store) acknowledges it once whether or not the
// dead node stored it. One without cannot be retried safely: the client
// is told, and decides.
func (s *session) resend(ctx actor.Context, room string) {
	posts := s.sh.inflight[room]
	if len(posts) == 0 {
		return
	}
	ids := make([]string, 0, len(posts))
	for id := range posts {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return posts[ids[i]].order < posts[ids[j]].order })
	for _, id := range ids {
		p := posts[id].post
		if p.GetClientMsgId() != "" {
			s.n.Directory.Tell(ctx, p)
			continue
		}
		delete(posts, id)
		s.fail(ctx, id, room, parleypb.ErrorCode_ERROR_CODE_UNAVAILABLE, "the room's node failed before answering; this post may or may not have been stored (send posts with a client_msg_id to have them retried safely)")
	}
	s.log.Info("room lost with its node; unanswered posts handled", "room", room, "posts", len(ids))
}
