package actors

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"golang.org/x/time/rate"

	"github.com/parleychat/parley/actors/actorpb"
	"github.com/parleychat/parley/auth"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/proto/codec"
	"github.com/parleychat/parley/supervision"
)

// Socket is what a session needs from its connection (transport.Conn in
// production, a fake in unit tests). None of its methods block.
type Socket interface {
	// Send queues one encoded frame; false means the queue is full: the
	// client is not reading, and the session closes it.
	Send(frame []byte) bool
	// Close closes the connection after what is queued (TRY_AGAIN_LATER
	// drops the queue); the socket's reader then reports Closed.
	Close(how *parleypb.CloseError)
	// Abort drops the connection with no close frame (fault injection).
	Abort()
	RemoteAddr() string
	Codec() codec.Codec
	// ID names the connection in logs.
	ID() string
	// Claims is what a token brought with the handshake says; nil when
	// the client brought none.
	Claims() *auth.Claims
}

// sessionShared is the part of a session that survives its restarts: the
// socket and what the client asked for (its name, its rooms and how far it
// has read each, in member). It is captured by the session's producer, so a
// restarted instance finds it; only the session's own Receive touches it.
type sessionShared struct {
	id      string
	sock    Socket
	codec   codec.Codec
	started bool
	user    string
	member  *Member // nil until logged in
	// login is the Hello being answered (presence takes or refuses it).
	login   *login
	closing bool
	closed  bool
	// claims is the connection's verified token (nil: anonymous), and
	// expiry the timer that closes the session when it runs out.
	claims *auth.Claims
	expiry *time.Timer
}

// login is a Hello waiting for presence's answer.
type login struct {
	id, name string
	watch    bool
	claims   *auth.Claims
	queued   []*parleypb.Envelope // requests sent right behind the Hello
}

// session is the actor of one connection: identity, rooms (through the
// member contract), rate limit, the client's requests. It never blocks:
// frames go to the socket's bounded queue, and a client that does not
// drain it is closed with TRY_AGAIN_LATER. Its requests are in
// session_requests.go, the tutorial protocol's quirks in session_legacy.go.
type session struct {
	n   *Node
	sh  *sessionShared
	log *slog.Logger
	// noisy logs what a client can make the session say again and again
	// (bad frames): throttled, with a count of the lines dropped.
	noisy   *slog.Logger
	limit   *rate.Limiter
	strikes *rate.Limiter
	idle    *supervision.IdleTimer
}

func newSession(n *Node, sh *sessionShared) *session {
	log := n.log.With("session", sh.id, "conn", sh.sock.ID())
	if sh.user != "" {
		log = log.With("user", sh.user)
	}
	return &session{
		n: n, sh: sh, log: log,
		noisy:   n.noisy.With("session", sh.id, "conn", sh.sock.ID()),
		limit:   rate.NewLimiter(rate.Limit(n.cfg.Rate), n.cfg.Burst),
		strikes: rate.NewLimiter(rate.Limit(float64(n.cfg.Strikes)/10), n.cfg.Strikes),
	}
}

func (s *session) Receive(ctx actor.Context) {
	if s.sh.member != nil {
		if d, done := s.sh.member.Receive(ctx); done {
			s.write(d)
			return
		}
	}
	switch m := ctx.Message().(type) {
	case *actor.Started:
		s.started(ctx)
	case *parleypb.Envelope:
		s.idle.Touch()
		s.request(ctx, m)
	case *parleypb.Ack:
		s.ack(m)
	case *parleypb.Error:
		if !s.loginRefused(ctx, m) {
			s.send(&parleypb.Envelope{Body: &parleypb.Envelope_Error{Error: m}})
		}
	case *actorpb.LoggedIn:
		s.loggedIn(ctx, m)
	case *parleypb.PresenceEvent:
		s.presence(m)
	case *parleypb.HistoryPage:
		s.send(&parleypb.Envelope{Body: &parleypb.Envelope_HistoryPage{HistoryPage: m}})
	case *parleypb.Reset:
		s.send(&parleypb.Envelope{Body: &parleypb.Envelope_ResetEvent{ResetEvent: m}})
	case *parleypb.RoomList:
		s.send(&parleypb.Envelope{Body: &parleypb.Envelope_RoomList{RoomList: m}})
	case *parleypb.RoomInfo:
		// The user's standing in a room changed (from the room, through
		// presence): every connection of the user hears it.
		s.send(&parleypb.Envelope{Body: &parleypb.Envelope_Room{Room: m}})
	case *parleypb.MemberList:
		s.send(&parleypb.Envelope{Body: &parleypb.Envelope_MemberList{MemberList: m}})
	case *actorpb.PresenceRebuild:
		if s.sh.user != "" {
			ctx.Send(s.n.presence, &actorpb.Online{User: s.sh.user, Session: ctx.Self(), Rejoin: true})
		}
	case *actorpb.BadFrame:
		s.idle.Touch()
		if s.allow("") { // garbage counts against the rate limit like any frame
			s.noisy.Info("bad frame from client", "reason", m.GetReason())
			s.fail("", "", parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, m.GetReason())
		}
	case *actorpb.ConnClosed:
		s.sh.closed = true
		ctx.Stop(ctx.Self())
	case *actorpb.TokenCheck:
		if c := s.sh.claims; c != nil && !c.Expiry.IsZero() && !time.Now().Before(c.Expiry) {
			s.closeWith(parleypb.CloseCode_CLOSE_CODE_TOKEN_EXPIRED, "token expired; reconnect with a new one", slog.LevelInfo)
		}
	case *actorpb.KickSession:
		s.closeWith(parleypb.CloseCode_CLOSE_CODE_KICKED, "kicked by an operator: "+m.GetReason(), slog.LevelWarn)
	case *parleypb.Notice:
		s.send(&parleypb.Envelope{Body: &parleypb.Envelope_Notice{Notice: m}})
	case *actorpb.RoomClosed:
		// Member.Receive forgot the room; the client hears why, in the
		// room's words: an operator's close, a kick, a ban, a leave on
		// another device, the room's deletion.
		s.send(&parleypb.Envelope{Body: &parleypb.Envelope_Notice{Notice: &parleypb.Notice{Room: m.GetRoom(), Text: m.GetReason()}}})
	case *actorpb.InjectFault:
		if m.GetDrop() && s.n.cfg.Faults.Enabled("session") {
			s.n.cfg.Faults.Injected.Add(1)
			s.log.Warn("injected fault: dropping the socket")
			s.sh.sock.Abort()
		}
	case *actorpb.Shutdown:
		s.close(parleypb.Close(parleypb.CloseCode_CLOSE_CODE_GOING_AWAY, m.GetReason()))
	case *actorpb.IdleCheck:
		if s.idle.Expired() {
			s.closeWith(parleypb.CloseCode_CLOSE_CODE_IDLE_TIMEOUT, fmt.Sprintf("no message for %v", s.n.cfg.IdleTimeout), slog.LevelInfo)
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
	s.idle = supervision.NewIdleTimer(s.n.System, ctx.Self(), s.n.cfg.IdleTimeout, &actorpb.IdleCheck{})
	s.idle.Start()
	if !s.sh.started {
		s.sh.started = true
		s.legacyStarted(ctx)
		return
	}
	// A restart: the socket and the client's rooms are still ours; register
	// again and resume every room after the last event the client got.
	if s.sh.user == "" {
		return
	}
	s.log.Info("session restarted; re-joining its rooms", "rooms", s.sh.member.Len())
	ctx.Send(s.n.presence, &actorpb.Online{User: s.sh.user, Session: ctx.Self(), Rejoin: true})
	s.sh.member.Rejoin(ctx)
}

// stopping runs once, when the session ends for good (never on restart).
func (s *session) stopping(ctx actor.Context) {
	if s.sh.member != nil {
		s.sh.member.DisconnectAll(ctx)
	}
	if s.sh.user != "" {
		ctx.Send(s.n.presence, &actorpb.Offline{Session: ctx.Self()})
	}
	if !s.sh.closed && !s.sh.closing {
		// Stopped without closing first: the supervisor gave up on us.
		s.close(parleypb.Close(parleypb.CloseCode_CLOSE_CODE_INTERNAL_ERROR, "session failed repeatedly"))
	}
	s.n.unregister(ctx.Self())
}

// closeWith logs why the session ends, then closes it.
func (s *session) closeWith(code parleypb.CloseCode, reason string, level slog.Level) {
	s.log.Log(context.Background(), level, "closing the session", "code", int32(code), "reason", reason)
	s.close(parleypb.Close(code, reason))
}

// close closes the socket; the session stops when the transport reports the
// socket gone (ConnClosed), so nothing is sent to a stopped actor meanwhile.
func (s *session) close(how *parleypb.CloseError) {
	if s.sh.closing || s.sh.closed {
		return
	}
	s.sh.closing = true
	s.sh.sock.Close(how)
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
	if !s.sh.sock.Send(frame) {
		s.closeWith(parleypb.CloseCode_CLOSE_CODE_TRY_AGAIN_LATER, "outbound queue full: the client is not reading fast enough; reconnect and resume", slog.LevelWarn)
	}
}

// write queues what the member contract delivered: the room's prebuilt
// Batch frame when the whole batch is new to the client, else the frames
// of the new items, as one Batch frame where the codec allows.
func (s *session) write(d Delivery) {
	k := s.sh.codec.Kind()
	if d.Batch != nil {
		if pre := d.Batch.Frame(k); pre != nil {
			s.queue(pre)
			return
		}
	}
	if len(d.Items) == 1 {
		if f := d.Items[0].Frame(k); f != nil {
			s.queue(f)
		}
		return
	}
	frames := make([][]byte, 0, len(d.Items))
	for _, item := range d.Items {
		if f := item.Frame(k); f != nil {
			frames = append(frames, f)
		}
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
	if a.GetRequestId() == "" {
		return
	}
	s.send(&parleypb.Envelope{Body: &parleypb.Envelope_Ack{Ack: a}})
}

func (s *session) presence(p *parleypb.PresenceEvent) {
	if s.legacyPresence(p) {
		return
	}
	s.send(&parleypb.Envelope{Body: &parleypb.Envelope_Presence{Presence: p}})
}

// fail answers a request with an error frame.
func (s *session) fail(requestID, room string, code parleypb.ErrorCode, text string) {
	s.send(&parleypb.Envelope{Body: &parleypb.Envelope_Error{Error: &parleypb.Error{RequestId: requestID, Room: room, Code: code, Text: text}}})
}

func (s *session) ackNow(requestID, room string) {
	if requestID == "" {
		return // nothing to name: a request without an id gets no ack
	}
	s.send(&parleypb.Envelope{Body: &parleypb.Envelope_Ack{Ack: &parleypb.Ack{RequestId: requestID, Room: room}}})
}
