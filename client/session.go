package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/proto/codec"
)

// TokenPlacement says where a Session sends its token.
type TokenPlacement int

const (
	// TokenInHello sends the token in the hello frame: never in a URL that
	// a proxy logs. The default.
	TokenInHello TokenPlacement = iota
	// TokenInHeader sends it as Authorization: Bearer with the handshake,
	// which lets the server refuse a bad one with HTTP 401 before the upgrade.
	TokenInHeader
	// TokenInQuery sends it as ?token= with the handshake, as browsers must.
	TokenInQuery
)

// Backoff is the reconnect policy: after the n-th failed attempt in a row
// a Session waits a uniformly random time in [0, min(Cap, Base·2ⁿ)) (full
// jitter, so a crowd of clients that lost the same server spreads over the
// window instead of knocking together when it returns).
type Backoff struct {
	Base time.Duration // zero: 500 ms
	Cap  time.Duration // zero: 10 s
	// StableAfter is how long a connection must last to reset the attempt
	// count; resetting on the handshake alone would let a server that
	// accepts and at once closes drive a tight loop. Zero: 10 s.
	StableAfter time.Duration
}

func (b Backoff) withDefaults() Backoff {
	if b.Base <= 0 {
		b.Base = 500 * time.Millisecond
	}
	if b.Cap <= 0 {
		b.Cap = 10 * time.Second
	}
	if b.StableAfter <= 0 {
		b.StableAfter = 10 * time.Second
	}
	return b
}

// Delay is the wait before retry number attempt (0 for the first).
func (b Backoff) Delay(attempt int) time.Duration {
	b = b.withDefaults()
	ceiling := b.Cap
	if attempt < 62 && b.Base<<attempt > 0 && b.Base<<attempt < b.Cap {
		ceiling = b.Base << attempt
	}
	return rand.N(ceiling)
}

// SessionOptions configures Connect. Name or a token is needed.
type SessionOptions struct {
	// Codec is codec.Proto (the default) or codec.JSON.
	Codec codec.Codec
	// Name is the user name, for servers that allow anonymous names.
	Name string
	// Token is a connection token (JWT); its subject is the user.
	Token string
	// TokenSource, if set, is asked for a fresh token before every
	// connection and before the current token expires (the Session sends
	// refresh then); it wins over Token.
	TokenSource func(context.Context) (string, error)
	TokenIn     TokenPlacement
	// WatchOnline asked for the server-wide online list.
	//
	// Deprecated: the server no longer sends one (it answers an empty
	// snapshot); presence is per room: Presence events of the rooms
	// joined, and Who.
	WatchOnline bool
	Backoff     Backoff
	// NoReconnect ends the Session with the first connection.
	NoReconnect bool
	// RequestTimeout bounds waiting for one answer. Zero: 10 s.
	RequestTimeout time.Duration
	// PingInterval is how often an application ping keeps the session
	// inside the server's idle timeout and finds a dead connection. Zero:
	// 30 s, or a third of the server's idle timeout if that is shorter.
	PingInterval time.Duration
	// EventBuffer is how many events wait for Next before the Session stops
	// reading the socket. Zero: 4096.
	EventBuffer int
	// Dial holds the connection's other options (Header, TLSConfig,
	// LocalAddr, ReadLimit); its Token and callbacks are the Session's.
	Dial Options
}

// Event is what Session.Next returns: one of *Message, *Change, *Presence,
// *Typing, *RoomUpdate, *ReadPositions, *Reset, *Rewound, *Notice,
// *RoomClosed, *Joined, *Connected, *Disconnected, *ErrorEvent.
type Event interface{ event() }

// Message is a post in a room. A room's log holds posts and changes (see
// Change) under one sequence: each seq comes once, as a Message or as a
// Change, ascending within a room, across reconnects.
type Message struct{ *parleypb.RoomEvent }

// Change is a change to a room, from its log: who (Sender, SenderKind) did
// what (Change.Kind) to whom (Change.User), with the role, reason, end of
// a ban or mute, or the room's new title and topic that go with it. It has
// a seq like a post, and no text.
type Change struct{ *parleypb.RoomEvent }

// Presence says who connected to or disconnected from a room; with
// Members set (no Joined, no Left), it is a snapshot (Who's answer).
type Presence struct{ *parleypb.PresenceEvent }

// Typing says a user is typing in a room.
type Typing struct{ Room, User string }

// RoomUpdate says the user's standing in a room changed (joined on another
// device, invited, added, kicked, banned, muted, given a role, or someone
// started a direct conversation with the user), or the room was deleted.
// Every connection of the user gets it, whether it joined the room or not;
// MyRooms follows it.
type RoomUpdate struct{ *parleypb.RoomInfo }

// ReadPositions says where members of a room that shows read positions
// (RoomInfo.ReadPositions, SetReadPositions) have read to: with Snapshot,
// the room's positions as they stand (after each join, and when the
// setting is turned on); otherwise the cursors that moved in the last
// half second, each member's last one.
type ReadPositions struct{ *parleypb.ReadPositions }

// Reset says part of a resume gap will not be replayed (retention deleted
// it, or it was longer than the server replays at once); replay goes on
// from OldestSeq.
type Reset struct{ *parleypb.Reset }

// Rewound says the room lost its history on the server and its seqs start
// over; its recent messages follow.
type Rewound struct{ Room string }

// Notice is a message from the server: an operator's, or (with Room set)
// why the Session is out of a room, which a RoomClosed event says too.
type Notice struct{ *parleypb.Notice }

// RoomClosed says the Session is out of a room it was in and will not
// re-join it: an operator closed it, the user was kicked or banned, left
// it on another connection, or the room was deleted (Text says which, in
// the server's words); or, with Code set, the server refused to let it
// back in after a reconnect (banned meanwhile, say).
type RoomClosed struct {
	Room, Text string
	Code       parleypb.ErrorCode
}

// Joined says a room was joined on the current connection; Resumed when it
// was re-joined after a reconnect from its last seq.
type Joined struct {
	Room      string
	Seq       uint64 // the room's latest seq
	OldestSeq uint64 // the oldest the server still has
	Members   []*parleypb.Member
	Resumed   bool
}

// Connected says a connection is logged in.
type Connected struct {
	Welcome *parleypb.Welcome
	Attempt int // failed attempts before this one
}

// Disconnected says a connection ended. Code is the server's close code
// (CLOSE_CODE_TRY_AGAIN_LATER: we read too slowly), or UNSPECIFIED when the
// connection dropped or the handshake failed.
type Disconnected struct {
	Err          error
	Code         parleypb.CloseCode
	Reconnecting bool
	Retry        time.Duration // the wait before the next attempt
}

// ErrorEvent is an Error frame no request waited for (a RATE_LIMITED).
type ErrorEvent struct{ Err *ServerError }

func (*Message) event()       {}
func (*Change) event()        {}
func (*Presence) event()      {}
func (*Typing) event()        {}
func (*RoomUpdate) event()    {}
func (*ReadPositions) event() {}
func (*Reset) event()         {}
func (*Rewound) event()       {}
func (*Notice) event()        {}
func (*RoomClosed) event()    {}
func (*Joined) event()        {}
func (*Connected) event()     {}
func (*Disconnected) event()  {}
func (*ErrorEvent) event()    {}

// ErrClosed is what a closed Session's calls return.
var ErrClosed = errors.New("parley: session closed")

// ErrNotJoined is returned for a room the Session is not in.
var ErrNotJoined = errors.New("parley: not in that room")

// Session is a chat session that outlives connections (see the package
// comment). Its methods may be called from several goroutines; read events
// with Next concurrently with calls that wait for answers.
type Session struct {
	url  string
	opts SessionOptions

	events chan Event
	closed chan struct{} // Close was called
	done   chan struct{} // run has returned

	mu       sync.Mutex
	conn     *Client // logged in, nil while offline
	connGone <-chan struct{}
	gen      uint64 // connection generation
	online   chan struct{}
	welcome  *parleypb.Welcome
	rooms    map[string]*roomState
	order    []string // rooms in join order, for re-joining
	joinReq  chan string
	mine     map[string]*parleypb.RoomInfo // the user's rooms: the Welcome's, then RoomUpdates
	err      error                         // why the Session ended; set before done closes

	// Listings answer a request with data that names no request (a page,
	// a snapshot), just before its ack: one at a time (lists), so the
	// data before an ack is that request's.
	lists   chan struct{}
	page    *parleypb.HistoryPage
	who     *parleypb.PresenceEvent
	list    *parleypb.RoomList
	members *parleypb.MemberList
}

type roomState struct {
	lastSeq uint64
	resume  bool
	readyOn uint64        // generation it was joined on; 0: none
	ready   chan struct{} // closed and replaced when joined or refused
	last    *Joined
	err     error // a refused join
}

// Connect starts a Session and returns once it is logged in, or with the
// error that stopped it (a *DialError for a refused token in the handshake,
// a *ServerError for a refused hello), or ctx's when ctx ends first.
func Connect(ctx context.Context, url string, opts SessionOptions) (*Session, error) {
	if opts.Codec == nil {
		opts.Codec = codec.Proto
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 10 * time.Second
	}
	if opts.PingInterval <= 0 {
		opts.PingInterval = 30 * time.Second
	}
	if opts.EventBuffer <= 0 {
		opts.EventBuffer = 4096
	}
	opts.Backoff = opts.Backoff.withDefaults()
	s := &Session{url: url, opts: opts, events: make(chan Event, opts.EventBuffer),
		closed: make(chan struct{}), done: make(chan struct{}), online: make(chan struct{}),
		rooms: make(map[string]*roomState), joinReq: make(chan string, 1), lists: make(chan struct{}, 1),
		mine: make(map[string]*parleypb.RoomInfo)}
	online := s.online
	go s.run()
	select {
	case <-online:
		return s, nil
	case <-s.done:
		return nil, s.err
	case <-ctx.Done():
		s.Close()
		return nil, ctx.Err()
	}
}

// Close ends the Session and its connection; Next returns ErrClosed once
// the buffered events are drained.
func (s *Session) Close() error {
	s.stop()
	<-s.done
	return nil
}

func (s *Session) stop() {
	select {
	case <-s.closed:
	default:
		close(s.closed)
	}
}

// Err is why the Session ended (ErrClosed after Close), or nil while it runs.
func (s *Session) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Done is closed when the Session has ended.
func (s *Session) Done() <-chan struct{} { return s.done }

// Next returns the next event; after the Session ended and its events are
// drained, the reason it ended.
func (s *Session) Next(ctx context.Context) (Event, error) {
	select {
	case ev, ok := <-s.events:
		if !ok {
			return nil, s.err
		}
		return ev, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Welcome is the last connection's Welcome (user name, server limits).
func (s *Session) Welcome() *parleypb.Welcome {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.welcome
}

// LastSeq is the last seq delivered in room: where a reconnect resumes.
func (s *Session) LastSeq(room string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.rooms[room]; r != nil {
		return r.lastSeq
	}
	return 0
}

// Rooms lists the rooms the Session is in (and re-joins on reconnect).
func (s *Session) Rooms() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.order...)
}

// Join joins room and keeps it joined across reconnects. Joining a public
// room makes the user a member of it (a JOINED change); a private room
// takes its members and invited users, a direct room its two users. The
// events the join replays, posts and changes, come before the Joined
// event; Join returns after it. A refusal is a *ServerError (ErrForbidden,
// ErrBanned, ErrNoSuchRoom...).
func (s *Session) Join(ctx context.Context, room string) (*Joined, error) {
	s.mu.Lock()
	r := s.rooms[room]
	if r == nil {
		r = &roomState{ready: make(chan struct{})}
		s.rooms[room] = r
		s.order = append(s.order, room)
		select {
		case s.joinReq <- room:
		default: // run is re-joining everything anyway, or will pick it up
		}
	}
	s.mu.Unlock()
	for {
		s.mu.Lock()
		if r.err != nil {
			err := r.err
			s.mu.Unlock()
			return nil, err
		}
		if r.readyOn != 0 && r.readyOn == s.gen {
			j := r.last
			s.mu.Unlock()
			return j, nil
		}
		ready := r.ready
		s.mu.Unlock()
		select {
		case <-ready:
		case <-s.done:
			return nil, s.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// MyRooms lists the user's rooms (member of, invited to), by name, each
// with its kind, title, the user's role and its last seq: the last
// Welcome's, kept current by RoomUpdate events. The Welcome lists at most
// 500 (Welcome().GetMoreRooms() says there are more; RoomsPage with Mine
// pages through all). They are not joined by themselves: Join those to
// follow.
func (s *Session) MyRooms() []*parleypb.RoomInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*parleypb.RoomInfo, 0, len(s.mine))
	for _, ri := range s.mine {
		out = append(out, ri)
	}
	slices.SortFunc(out, func(a, b *parleypb.RoomInfo) int { return strings.Compare(a.GetName(), b.GetName()) })
	return out
}

// belongs says whether a RoomInfo names one of the user's rooms, as the
// Welcome lists them.
func belongs(ri *parleypb.RoomInfo) bool {
	return !ri.GetDeleted() && (ri.GetRole() >= parleypb.Role_ROLE_MEMBER || ri.GetInvited())
}

// Leave ends the user's membership of room (a LEFT change; every
// connection of the user leaves it) and stops re-joining it. Only the
// server ends a membership, so Leave waits for the room to be joined on a
// live connection (ctx bounds it). An owner with other members is refused
// (ErrForbidden: transfer ownership first) and stays in the room.
func (s *Session) Leave(ctx context.Context, room string) error {
	for tries := 0; ; tries++ {
		c, err := s.roomConn(ctx, room)
		if errors.Is(err, ErrNotJoined) {
			return nil
		}
		if err != nil {
			return err
		}
		s.mu.Lock()
		r := s.rooms[room]
		s.mu.Unlock()
		// The room is forgotten on the read goroutine as the answer
		// arrives: a reconnect right after it must not join it again.
		hook := func(env *parleypb.Envelope) {
			if env.GetAck() == nil && env.GetError().GetCode() != parleypb.ErrorCode_ERROR_CODE_NOT_JOINED {
				return
			}
			s.mu.Lock()
			if s.rooms[room] == r {
				s.dropRoom(room, fmt.Errorf("%w: left %s", ErrNotJoined, room))
			}
			s.mu.Unlock()
		}
		rctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
		_, err = c.request(rctx, &parleypb.Envelope{Body: &parleypb.Envelope_Leave{Leave: &parleypb.Leave{Room: room}}}, hook)
		cancel()
		if err == nil || errors.Is(err, ErrNotJoined) {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var se *ServerError
		if errors.As(err, &se) && !retryable(se.Frame.GetCode()) {
			return err
		}
		if c.Err() != nil {
			continue // the next connection re-joins the room; leave it there
		}
		if err := s.pause(ctx, tries); err != nil {
			return err
		}
	}
}

// dropRoom forgets a room and wakes its waiters with err. s.mu is held.
func (s *Session) dropRoom(room string, err error) {
	r := s.rooms[room]
	if r == nil {
		return
	}
	delete(s.rooms, room)
	for i, n := range s.order {
		if n == room {
			s.order = append(s.order[:i], s.order[i+1:]...)
			break
		}
	}
	r.err = err
	close(r.ready)
}

// roomConn waits until room is joined on a live connection.
func (s *Session) roomConn(ctx context.Context, room string) (*Client, error) {
	for {
		s.mu.Lock()
		r := s.rooms[room]
		if r == nil {
			s.mu.Unlock()
			return nil, fmt.Errorf("%w: %s", ErrNotJoined, room)
		}
		if s.conn != nil && s.conn.Err() == nil && r.readyOn == s.gen {
			c := s.conn
			s.mu.Unlock()
			return c, nil
		}
		ready := r.ready // closed when the room is joined on the next connection
		s.mu.Unlock()
		select {
		case <-ready:
		case <-s.done:
			return nil, s.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// current waits for a live connection.
func (s *Session) current(ctx context.Context) (*Client, error) {
	for {
		s.mu.Lock()
		c, gone := s.conn, s.connGone
		var wait <-chan struct{} = s.online
		s.mu.Unlock()
		if c != nil && c.Err() == nil {
			return c, nil
		}
		if c != nil {
			wait = gone // ended, not yet withdrawn: wait until it is
		}
		select {
		case <-wait:
		case <-s.done:
			return nil, s.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// connFor waits for a connection on which a request about room can be
// answered: one where it is joined, if the Session is in it (the server
// answers NOT_JOINED on a connection that has not re-joined it yet).
func (s *Session) connFor(ctx context.Context, room string) (*Client, error) {
	s.mu.Lock()
	_, in := s.rooms[room]
	s.mu.Unlock()
	if in {
		return s.roomConn(ctx, room)
	}
	return s.current(ctx)
}

// Post sends text to a joined room and returns the seq the server stored
// it at. Until then it waits out disconnections and retries with the same
// clientMsgID (empty: one is made up), which the server stores once, so a
// message is never posted twice however often it is retried. ctx bounds it.
// A refusal is a *ServerError (ErrMuted, ErrBanned, ErrForbidden...).
func (s *Session) Post(ctx context.Context, room, text, clientMsgID string) (uint64, error) {
	if clientMsgID == "" {
		clientMsgID = NewClientMsgID()
	}
	ack, err := s.retry(ctx, func(ctx context.Context) (*Client, error) { return s.roomConn(ctx, room) }, func() *parleypb.Envelope {
		return &parleypb.Envelope{Body: &parleypb.Envelope_Post{Post: &parleypb.Post{Room: room, Text: text, ClientMsgId: clientMsgID}}}
	})
	return ack.GetSeq(), err
}

// Reply posts text to a joined room as a reply to the post replyTo (0:
// none) mentioning the users named (members of the room), and returns its
// seq; retried as Post is.
func (s *Session) Reply(ctx context.Context, room, text string, replyTo uint64, mentions []string, clientMsgID string) (uint64, error) {
	if clientMsgID == "" {
		clientMsgID = NewClientMsgID()
	}
	ack, err := s.retry(ctx, func(ctx context.Context) (*Client, error) { return s.roomConn(ctx, room) }, func() *parleypb.Envelope {
		return &parleypb.Envelope{Body: &parleypb.Envelope_Post{Post: &parleypb.Post{Room: room, Text: text, ClientMsgId: clientMsgID, ReplyTo: replyTo, Mentions: mentions}}}
	})
	return ack.GetSeq(), err
}

// Edit replaces the text of the user's own post seq in a joined room and
// returns the seq of the EDITED event. Retried as Post is, with one
// clientMsgID (empty: one is made up), so it applies once. Refusals:
// ErrNotYours, ErrNoSuchMessage, ErrNotAllowed, ErrAlreadyDeleted.
func (s *Session) Edit(ctx context.Context, room string, seq uint64, text, clientMsgID string) (uint64, error) {
	return s.alter(ctx, room, clientMsgID, func(id string) *parleypb.Envelope {
		return &parleypb.Envelope{Body: &parleypb.Envelope_Edit{Edit: &parleypb.EditMessage{Room: room, Seq: seq, Text: text, ClientMsgId: id}}}
	})
}

// DeleteMessage deletes post seq of a joined room (the user's own; a
// moderator's or owner's, anyone's) and returns the seq of the
// MESSAGE_DELETED event; its text is erased from the server's store.
// Retried and refused as Edit is.
func (s *Session) DeleteMessage(ctx context.Context, room string, seq uint64, reason, clientMsgID string) (uint64, error) {
	return s.alter(ctx, room, clientMsgID, func(id string) *parleypb.Envelope {
		return &parleypb.Envelope{Body: &parleypb.Envelope_DeleteMessage{DeleteMessage: &parleypb.DeleteMessage{Room: room, Seq: seq, Reason: reason, ClientMsgId: id}}}
	})
}

// React adds the user's emoji to post seq of a joined room, or with remove
// takes it back, and returns the seq of the REACTED or UNREACTED event (0
// when nothing changed: the reaction was there, or was not). Retried as
// Edit is.
func (s *Session) React(ctx context.Context, room string, seq uint64, emoji string, remove bool, clientMsgID string) (uint64, error) {
	return s.alter(ctx, room, clientMsgID, func(id string) *parleypb.Envelope {
		return &parleypb.Envelope{Body: &parleypb.Envelope_React{React: &parleypb.React{Room: room, Seq: seq, Emoji: emoji, Remove: remove, ClientMsgId: id}}}
	})
}

func (s *Session) alter(ctx context.Context, room, clientMsgID string, env func(id string) *parleypb.Envelope) (uint64, error) {
	if clientMsgID == "" {
		clientMsgID = NewClientMsgID()
	}
	ack, err := s.retry(ctx, func(ctx context.Context) (*Client, error) { return s.roomConn(ctx, room) }, func() *parleypb.Envelope { return env(clientMsgID) })
	return ack.GetSeq(), err
}

// Direct posts text to the user's direct room with the user to, which the
// first message creates (to hears of it with a RoomUpdate), and returns
// the room's name and the post's seq; join the room to follow the
// conversation. Like Post, it waits out disconnections and retries with
// the same clientMsgID until the server stored it once.
func (s *Session) Direct(ctx context.Context, to, text, clientMsgID string) (room string, seq uint64, err error) {
	if clientMsgID == "" {
		clientMsgID = NewClientMsgID()
	}
	ack, err := s.retry(ctx, s.current, func() *parleypb.Envelope {
		return &parleypb.Envelope{Body: &parleypb.Envelope_Direct{Direct: &parleypb.DirectMessage{To: to, Text: text, ClientMsgId: clientMsgID}}}
	})
	return ack.GetRoom(), ack.GetSeq(), err
}

// retry sends an idempotent request (a post with its clientMsgId) until it
// is answered: again on the next connection when one drops, again after a
// pause when the server is busy or the answer is late; a refusal ends it.
func (s *Session) retry(ctx context.Context, conn func(context.Context) (*Client, error), env func() *parleypb.Envelope) (*parleypb.Ack, error) {
	for tries := 0; ; tries++ {
		c, err := conn(ctx)
		if err != nil {
			return nil, err
		}
		rctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
		ack, err := c.Request(rctx, env())
		cancel()
		if err == nil {
			return ack, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var se *ServerError
		if errors.As(err, &se) && !retryable(se.Frame.GetCode()) {
			return nil, err
		}
		if c.Err() != nil {
			continue // the next connection (re-joining the room first); the same id again
		}
		if err := s.pause(ctx, tries); err != nil {
			return nil, err
		}
	}
}

// pause waits before the next try of a request the server was too busy
// for, or answered too late.
func (s *Session) pause(ctx context.Context, tries int) error {
	t := time.NewTimer(Backoff{Base: time.Second}.Delay(tries))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-s.done:
		return s.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func retryable(code parleypb.ErrorCode) bool {
	return code == parleypb.ErrorCode_ERROR_CODE_UNAVAILABLE || code == parleypb.ErrorCode_ERROR_CODE_RATE_LIMITED
}

// NewClientMsgID returns a random client message id.
func NewClientMsgID() string {
	return fmt.Sprintf("%016x%016x", rand.Uint64(), rand.Uint64())
}

// Typing says the user is typing in room. It is dropped while the room is
// not joined on a live connection: typing is not worth a wait.
func (s *Session) Typing(ctx context.Context, room string) error {
	s.mu.Lock()
	r, c := s.rooms[room], s.conn
	live := r != nil && c != nil && r.readyOn == s.gen
	s.mu.Unlock()
	if !live {
		return nil
	}
	return c.Typing(ctx, room)
}

// Request sends one request on the current connection (waiting for one)
// and returns its Ack; for requests Session has no method for.
func (s *Session) Request(ctx context.Context, env *parleypb.Envelope) (*parleypb.Ack, error) {
	return s.request(ctx, s.current, env, nil)
}

func (s *Session) request(ctx context.Context, conn func(context.Context) (*Client, error), env *parleypb.Envelope, hook func(*parleypb.Envelope)) (*parleypb.Ack, error) {
	c, err := conn(ctx)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	defer cancel()
	return c.request(rctx, env, hook)
}

// listing sends a request answered by data before its ack, and calls take
// as the ack arrives (on the read goroutine, so the data handle kept is
// this request's): one listing at a time, since the data names no request.
func (s *Session) listing(ctx context.Context, conn func(context.Context) (*Client, error), env *parleypb.Envelope, take func()) error {
	select {
	case s.lists <- struct{}{}:
	case <-s.done:
		return s.err
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.lists }()
	s.mu.Lock()
	s.page, s.who, s.list, s.members = nil, nil, nil, nil
	s.mu.Unlock()
	_, err := s.request(ctx, conn, env, func(reply *parleypb.Envelope) {
		if reply.GetAck() == nil {
			return
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		take()
	})
	return err
}

// History reads up to limit events (posts and changes) before beforeSeq
// (0: the newest), in ascending order, from a room the Session is in.
func (s *Session) History(ctx context.Context, room string, beforeSeq uint64, limit uint32) (*parleypb.HistoryPage, error) {
	var page *parleypb.HistoryPage
	err := s.listing(ctx, func(ctx context.Context) (*Client, error) { return s.connFor(ctx, room) },
		&parleypb.Envelope{Body: &parleypb.Envelope_History{History: &parleypb.HistoryRequest{Room: room, BeforeSeq: beforeSeq, Limit: limit}}},
		func() { page = s.page })
	if err != nil {
		return nil, err
	}
	if page == nil {
		page = &parleypb.HistoryPage{Room: room}
	}
	return page, nil
}

// Who lists who is connected to the rooms the Session is in (the first
// 100 by name; WhoPage pages through them all): never the whole server.
func (s *Session) Who(ctx context.Context) ([]*parleypb.Member, error) {
	p, err := s.WhoPage(ctx, "", "", 0)
	return p.GetMembers(), err
}

// WhoPage lists who is connected to room (one the Session is in), or with
// room "" to any of the Session's rooms: at most limit (0: 100, at most
// 500) by name after the name after; Next says where the next page
// starts, "" at the end.
func (s *Session) WhoPage(ctx context.Context, room, after string, limit uint32) (*parleypb.PresenceEvent, error) {
	var who *parleypb.PresenceEvent
	err := s.listing(ctx, func(ctx context.Context) (*Client, error) { return s.connFor(ctx, room) },
		&parleypb.Envelope{Body: &parleypb.Envelope_Who{Who: &parleypb.WhoRequest{Room: room, After: after, Limit: limit}}},
		func() { who = s.who })
	if err != nil {
		return nil, err
	}
	if who == nil {
		who = &parleypb.PresenceEvent{Room: room}
	}
	return who, nil
}

// ListRooms lists the public rooms and the user's own, with their member
// counts and the user's standing in each: the first 100 by name
// (RoomsPage pages through them all).
func (s *Session) ListRooms(ctx context.Context) ([]*parleypb.RoomInfo, error) {
	l, err := s.RoomsPage(ctx, RoomsQuery{})
	return l.GetRooms(), err
}

// RoomsQuery asks for a page of rooms.
type RoomsQuery struct {
	After string // the page starts after this name (RoomList.Next)
	Limit uint32 // 0: 100; at most 500
	Mine  bool   // the user's own rooms only (member of, invited to)
}

// RoomsPage lists a page of the public rooms and the user's own (private
// and direct rooms are listed to their members only), by name; Next says
// where the next page starts, "" at the end.
func (s *Session) RoomsPage(ctx context.Context, q RoomsQuery) (*parleypb.RoomList, error) {
	var list *parleypb.RoomList
	err := s.listing(ctx, s.current, &parleypb.Envelope{Body: &parleypb.Envelope_Rooms{Rooms: &parleypb.RoomsRequest{After: q.After, Limit: q.Limit, Mine: q.Mine}}},
		func() { list = s.list })
	if err != nil {
		return nil, err
	}
	if list == nil {
		list = &parleypb.RoomList{}
	}
	return list, nil
}

// Members lists a page of room's members, invited and banned users with
// their standing, by name: at most limit (0: 100, at most 500) after the
// name after; Next says where the next page starts. Members of the room
// may ask (of a public room, anyone).
func (s *Session) Members(ctx context.Context, room, after string, limit uint32) (*parleypb.MemberList, error) {
	var list *parleypb.MemberList
	err := s.listing(ctx, s.current, &parleypb.Envelope{Body: &parleypb.Envelope_Members{Members: &parleypb.MembersRequest{Room: room, After: after, Limit: limit}}},
		func() { list = s.members })
	if err != nil {
		return nil, err
	}
	if list == nil {
		list = &parleypb.MemberList{Room: room}
	}
	return list, nil
}

// NewRoom is a room for CreateRoom to make.
type NewRoom struct {
	Name string
	// Kind is ROOM_KIND_PUBLIC (the default: anyone may join) or
	// ROOM_KIND_PRIVATE (members and invited users only). Direct rooms come
	// from Direct.
	Kind         parleypb.RoomKind
	Title, Topic string
	// Invite names users to invite to a private room.
	Invite []string
}

// CreateRoom makes a room with the user its owner (a CREATED change, and
// an INVITED one per invitation); ErrRoomExists if the name is taken. It
// does not join it. Not retried: after a lost connection, MyRooms or
// RoomsPage tells whether the room was made.
func (s *Session) CreateRoom(ctx context.Context, r NewRoom) error {
	_, err := s.request(ctx, s.current, &parleypb.Envelope{Body: &parleypb.Envelope_CreateRoom{CreateRoom: &parleypb.CreateRoom{
		Room: r.Name, Kind: r.Kind, Title: r.Title, Topic: r.Topic, Invite: r.Invite}}}, nil)
	return err
}

// Moderation is an action on a user in a room (Moderate).
type Moderation struct {
	Room, User string
	Action     parleypb.ModAction
	// Role is what SET_ROLE makes the user: ROLE_MEMBER or ROLE_MODERATOR.
	Role   parleypb.Role
	Reason string
	// Until is when a BAN or MUTE ends; zero: never.
	Until time.Time
}

// Moderate invites, adds, kicks, bans, mutes, promotes... a user in a room
// (see parleypb.ModAction) and returns the seq of the change it made. A
// moderator acts on members, an owner on anyone, nobody on the owner or on
// themselves; refusals are *ServerError (ErrForbidden, ErrNotMember...).
// Not retried: after a lost connection, the room's log tells whether it
// was done.
func (s *Session) Moderate(ctx context.Context, m Moderation) (uint64, error) {
	var until int64
	if !m.Until.IsZero() {
		until = m.Until.UnixMilli()
	}
	ack, err := s.request(ctx, s.current, &parleypb.Envelope{Body: &parleypb.Envelope_Moderate{Moderate: &parleypb.Moderate{
		Room: m.Room, User: m.User, Action: m.Action, Role: m.Role, Reason: m.Reason, UntilMs: until}}}, nil)
	return ack.GetSeq(), err
}

// UpdateRoom sets a room's title, topic or both (owners and moderators;
// nil leaves one as it is, proto.String makes one) and returns the seq of
// the UPDATED change.
func (s *Session) UpdateRoom(ctx context.Context, room string, title, topic *string) (uint64, error) {
	ack, err := s.request(ctx, s.current, &parleypb.Envelope{Body: &parleypb.Envelope_UpdateRoom{UpdateRoom: &parleypb.UpdateRoom{Room: room, Title: title, Topic: topic}}}, nil)
	return ack.GetSeq(), err
}

// SetReadPositions turns a room's read positions setting on or off
// (owners and moderators) and returns the seq of the UPDATED change; when
// on, the room's Sessions get ReadPositions events.
func (s *Session) SetReadPositions(ctx context.Context, room string, on bool) (uint64, error) {
	ack, err := s.request(ctx, s.current, &parleypb.Envelope{Body: &parleypb.Envelope_UpdateRoom{UpdateRoom: &parleypb.UpdateRoom{Room: room, ReadPositions: &on}}}, nil)
	return ack.GetSeq(), err
}

// MarkRead moves the user's read cursor in a room forward to seq and
// returns the cursor after it (a seq behind it changes nothing).
func (s *Session) MarkRead(ctx context.Context, room string, seq uint64) (uint64, error) {
	ack, err := s.request(ctx, s.current, &parleypb.Envelope{Body: &parleypb.Envelope_MarkRead{MarkRead: &parleypb.MarkRead{Room: room, Seq: seq}}}, nil)
	return ack.GetSeq(), err
}

// DeleteRoom deletes a room (its owner): everyone is out of it, with a
// RoomClosed event on every Session in it, and the name is not used again.
func (s *Session) DeleteRoom(ctx context.Context, room, reason string) error {
	_, err := s.request(ctx, s.current, &parleypb.Envelope{Body: &parleypb.Envelope_DeleteRoom{DeleteRoom: &parleypb.DeleteRoom{Room: room, Reason: reason}}}, nil)
	return err
}

// Ping is an application-level round trip.
func (s *Session) Ping(ctx context.Context) error {
	_, err := s.Request(ctx, &parleypb.Envelope{Body: &parleypb.Envelope_Ping{Ping: &parleypb.Ping{}}})
	return err
}

// emit queues an event for Next. It blocks while the buffer is full, which
// stops the connection's reading as a slow reader would, until gone closes.
func (s *Session) emit(ev Event, gone <-chan struct{}) {
	select {
	case s.events <- ev:
	case <-gone:
	case <-s.closed:
	}
}

// ---------------------------------------------------------------- the connection loop

// run owns the connections: dial, log in, re-join, wait for the end,
// back off, again; until Close or a reason not to.
func (s *Session) run() {
	defer close(s.done)
	defer close(s.events)
	attempt := 0
	for {
		c, welcome, err := s.connect()
		if err == nil {
			start := time.Now()
			err = s.serve(c, welcome, attempt)
			if time.Since(start) >= s.opts.Backoff.StableAfter {
				attempt = 0
			}
		}
		if fatal := s.fatal(err); fatal != nil {
			s.err = fatal
			s.emit(&Disconnected{Err: fatal, Code: CloseCode(fatal)}, s.closed)
			s.shutdown(fatal)
			return
		}
		delay := s.opts.Backoff.Delay(attempt)
		var de *DialError
		if errors.As(err, &de) && de.RetryAfter > delay {
			delay = de.RetryAfter
		}
		attempt++
		s.emit(&Disconnected{Err: err, Code: CloseCode(err), Reconnecting: true, Retry: delay}, s.closed)
		select {
		case <-time.After(delay):
		case <-s.closed:
			s.err = ErrClosed
			s.shutdown(ErrClosed)
			return
		}
	}
}

// shutdown wakes every waiter with err.
func (s *Session) shutdown(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.rooms {
		if r.err == nil {
			r.err = err
		}
	}
}

// fatal says whether err ends the Session, and with what.
func (s *Session) fatal(err error) error {
	select {
	case <-s.closed:
		return ErrClosed
	default:
	}
	if s.opts.NoReconnect {
		return err
	}
	var de *DialError
	if errors.As(err, &de) && (de.StatusCode == 401 || de.StatusCode == 403 || de.StatusCode == 400) {
		return err // the same handshake would be refused again
	}
	var se *ServerError
	if errors.As(err, &se) && !retryable(se.Frame.GetCode()) &&
		(se.Frame.GetCode() != parleypb.ErrorCode_ERROR_CODE_TOKEN_EXPIRED || s.opts.TokenSource == nil) {
		return err // a name or token the server refused
	}
	switch CloseCode(err) {
	case parleypb.CloseCode_CLOSE_CODE_NORMAL, parleypb.CloseCode_CLOSE_CODE_KICKED, parleypb.CloseCode_CLOSE_CODE_POLICY_VIOLATION:
		return err
	case parleypb.CloseCode_CLOSE_CODE_TOKEN_EXPIRED:
		if s.opts.TokenSource == nil {
			return err
		}
	}
	return nil
}

func (s *Session) token(ctx context.Context) (string, error) {
	if s.opts.TokenSource != nil {
		return s.opts.TokenSource(ctx)
	}
	return s.opts.Token, nil
}

// connect dials and logs in.
func (s *Session) connect() (*Client, *parleypb.Welcome, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.RequestTimeout)
	defer cancel()
	go func() {
		select {
		case <-s.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	tok, err := s.token(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("parley: getting a token: %w", err)
	}
	o := s.opts.Dial
	o.Token, o.TokenInQuery = "", false
	if s.opts.TokenIn != TokenInHello {
		o.Token, o.TokenInQuery = tok, s.opts.TokenIn == TokenInQuery
	}
	s.mu.Lock()
	s.gen++
	s.mu.Unlock()
	// gone closes once the connection has ended and the Session no longer
	// offers it: an emit blocked on a full buffer gives up then, and a
	// waiter that found the dead connection waits for it.
	gone := make(chan struct{})
	o.OnRoomEvent, o.OnEvent = nil, func(env *parleypb.Envelope) { s.handle(env, gone) }
	c, err := Dial(ctx, s.url, s.opts.Codec, &o)
	if err != nil {
		close(gone)
		return nil, nil, err
	}
	go func() {
		<-c.Done()
		s.mu.Lock()
		if s.conn == c {
			s.conn = nil
			s.online = make(chan struct{})
		}
		s.mu.Unlock()
		close(gone)
	}()
	s.mu.Lock()
	s.connGone = gone
	s.mu.Unlock()
	l := Login{Name: s.opts.Name, WatchOnline: s.opts.WatchOnline}
	if s.opts.TokenIn == TokenInHello {
		l.Token = tok
	}
	w, err := c.Login(ctx, l)
	if err != nil {
		c.CloseNow()
		<-gone
		return nil, nil, err
	}
	return c, w, nil
}

// serve runs one logged-in connection until it ends.
func (s *Session) serve(c *Client, w *parleypb.Welcome, attempt int) error {
	s.mu.Lock()
	gen := s.gen
	s.conn, s.welcome = c, w
	online := s.online
	rooms := append([]string(nil), s.order...)
	s.mu.Unlock()
	close(online) // wakes Connect and whoever waits for a connection
	s.emit(&Connected{Welcome: w, Attempt: attempt}, c.Done())
	defer func() {
		c.CloseNow()
		s.mu.Lock()
		gone := s.connGone
		s.mu.Unlock()
		<-gone // no more events from c
	}()
	// Re-join every room: resumed ones from their last seq, which the
	// server replays (as events, before the ack) exactly past.
	for _, room := range rooms {
		if err := s.join(c, gen, room); err != nil {
			return err
		}
	}
	ping := s.opts.PingInterval
	if idle := time.Duration(w.GetIdleTimeoutMs()) * time.Millisecond; idle > 0 && idle/3 < ping {
		ping = idle / 3
	}
	pings := time.NewTicker(ping)
	defer pings.Stop()
	refresh := s.refreshTimer(time.UnixMilli(w.GetTokenExpiresMs()), w.GetTokenExpiresMs() != 0)
	defer refresh.Stop()
	for {
		select {
		case <-c.Done():
			return c.Err()
		case <-s.closed:
			c.Close()
			return ErrClosed
		case room := <-s.joinReq:
			if err := s.join(c, gen, room); err != nil {
				return err
			}
			// Another Join may have added a room while this one ran, and
			// found the one-slot queue full: re-join whatever is not live.
			s.mu.Lock()
			var missed []string
			for _, n := range s.order {
				if r := s.rooms[n]; r.readyOn != gen {
					missed = append(missed, n)
				}
			}
			s.mu.Unlock()
			for _, n := range missed {
				if err := s.join(c, gen, n); err != nil {
					return err
				}
			}
		case <-pings.C:
			ctx, cancel := context.WithTimeout(context.Background(), s.opts.RequestTimeout)
			err := c.Ping(ctx)
			cancel()
			if err != nil && c.Err() == nil {
				return fmt.Errorf("parley: no answer to ping: %w", err)
			}
		case <-refresh.C:
			exp, err := s.refresh(c)
			if err != nil {
				s.emit(&ErrorEvent{Err: &ServerError{&parleypb.Error{Code: ErrorCode(err), Text: err.Error()}}}, c.Done())
			}
			refresh = s.refreshTimer(exp, err == nil && !exp.IsZero())
		}
	}
}

// refreshTimer fires well before exp when there is a token source to ask.
func (s *Session) refreshTimer(exp time.Time, ok bool) *time.Timer {
	if !ok || s.opts.TokenSource == nil {
		t := time.NewTimer(time.Hour)
		t.Stop()
		return t
	}
	left := time.Until(exp)
	return time.NewTimer(max(0, min(left-5*time.Second, left*4/5)))
}

// refresh gets a new token and sends it; it returns the new expiry.
func (s *Session) refresh(c *Client) (time.Time, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.RequestTimeout)
	defer cancel()
	tok, err := s.opts.TokenSource(ctx)
	if err != nil {
		return time.Time{}, err
	}
	if err := c.Refresh(ctx, tok); err != nil {
		return time.Time{}, err
	}
	return jwtExpiry(tok), nil
}

// jwtExpiry reads a JWT's exp claim without verifying it: only to schedule
// the next refresh (the server verifies).
func jwtExpiry(tok string) time.Time {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return time.Time{}
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}
	}
	var claims struct {
		Exp float64 `json:"exp"`
	}
	if json.Unmarshal(b, &claims) != nil || claims.Exp == 0 {
		return time.Time{}
	}
	return time.Unix(int64(claims.Exp), 0)
}

// join joins room on c: resumed from its last seq if it was joined before.
// A refusal drops the room (its waiters get the error); only a failed
// connection is returned.
func (s *Session) join(c *Client, gen uint64, room string) error {
	for tries := 0; ; tries++ {
		s.mu.Lock()
		r := s.rooms[room]
		if r == nil || r.readyOn == gen {
			s.mu.Unlock()
			return nil
		}
		j := &parleypb.Join{Room: room}
		resumed := r.resume
		if resumed {
			since := r.lastSeq
			j.Since = &since
		}
		s.mu.Unlock()
		rewind := false
		// The ack is applied on the read goroutine, in order with the events
		// around it: the replay before it has moved lastSeq, and a message
		// after it must find the room live.
		hook := func(env *parleypb.Envelope) {
			ack := env.GetAck()
			if ack == nil {
				return
			}
			s.mu.Lock()
			if s.rooms[room] != r {
				s.mu.Unlock()
				return
			}
			if resumed && ack.GetSeq() < r.lastSeq {
				rewind = true
				s.mu.Unlock()
				return
			}
			r.lastSeq = max(r.lastSeq, ack.GetSeq())
			r.resume = true
			r.readyOn = gen
			r.last = &Joined{Room: room, Seq: ack.GetSeq(), OldestSeq: ack.GetOldestSeq(), Members: ack.GetMembers(), Resumed: resumed}
			close(r.ready)
			r.ready = make(chan struct{})
			joined := r.last
			s.mu.Unlock()
			s.emit(joined, c.Done())
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.opts.RequestTimeout)
		_, err := c.request(ctx, &parleypb.Envelope{Body: &parleypb.Envelope_Join{Join: j}}, hook)
		cancel()
		if c.Err() != nil {
			return c.Err()
		}
		var se *ServerError
		switch {
		case err == nil && rewind:
			// The room's latest seq is behind what we saw: it lost its
			// history and its seqs start over. (This server says so with a
			// Reset instead, before the replay; an older one did not.)
			// Forget ours and join afresh on the same connection: a leave
			// would end the user's membership.
			s.mu.Lock()
			r.lastSeq, r.resume = 0, false
			s.mu.Unlock()
			s.emit(&Rewound{Room: room}, c.Done())
			continue
		case err == nil:
			return nil
		case errors.As(err, &se) && !retryable(se.Frame.GetCode()):
			s.mu.Lock()
			mine := s.rooms[room] == r
			if mine {
				s.dropRoom(room, err)
			}
			s.mu.Unlock()
			if mine && resumed {
				// Nobody waits on a Join for a room joined before: say it
				// here (banned, or the room deleted, while we were away).
				s.emit(&RoomClosed{Room: room, Text: se.Frame.GetText(), Code: se.Frame.GetCode()}, c.Done())
			}
			return nil
		case tries >= 5:
			return fmt.Errorf("parley: joining %s: %w", room, err)
		}
		select {
		case <-time.After(Backoff{Base: 500 * time.Millisecond}.Delay(tries)):
		case <-c.Done():
			return c.Err()
		case <-s.closed:
			return ErrClosed
		}
	}
}

// deliver hands out a room event not delivered yet, as a Message or a
// Change. The server delivers each seq once and in order, and a resume
// replays only seq > since; still, never hand out a seq twice. Changes
// take seqs like posts: the resume point counts both.
func (s *Session) deliver(ev *parleypb.RoomEvent, gone <-chan struct{}) {
	s.mu.Lock()
	r := s.rooms[ev.GetRoom()]
	if r == nil || ev.GetSeq() <= r.lastSeq {
		s.mu.Unlock()
		return
	}
	r.lastSeq = ev.GetSeq()
	s.mu.Unlock()
	if ev.GetChange() != nil {
		s.emit(&Change{ev}, gone)
	} else {
		s.emit(&Message{ev}, gone)
	}
}

// handle runs on connection gen's read goroutine for every envelope that
// answers no request: it keeps each room's resume point and turns
// envelopes into events, dropping what was already delivered.
func (s *Session) handle(env *parleypb.Envelope, gone <-chan struct{}) {
	switch b := env.GetBody().(type) {
	case *parleypb.Envelope_Event:
		s.deliver(b.Event, gone)
	case *parleypb.Envelope_Room:
		ri := b.Room
		s.mu.Lock()
		if belongs(ri) {
			s.mine[ri.GetName()] = ri
		} else {
			delete(s.mine, ri.GetName())
		}
		s.mu.Unlock()
		s.emit(&RoomUpdate{ri}, gone)
	case *parleypb.Envelope_Presence:
		p := b.Presence
		if len(p.GetJoined()) == 0 && len(p.GetLeft()) == 0 {
			s.mu.Lock()
			s.who = p // a snapshot: Who's answer (or the deprecated watchOnline's, empty)
			s.mu.Unlock()
		}
		s.emit(&Presence{p}, gone)
	case *parleypb.Envelope_Typing:
		s.emit(&Typing{Room: b.Typing.GetRoom(), User: b.Typing.GetUser()}, gone)
	case *parleypb.Envelope_ReadPositions:
		s.emit(&ReadPositions{b.ReadPositions}, gone)
	case *parleypb.Envelope_HistoryPage:
		s.mu.Lock()
		s.page = b.HistoryPage
		s.mu.Unlock()
	case *parleypb.Envelope_RoomList:
		s.mu.Lock()
		s.list = b.RoomList
		s.mu.Unlock()
	case *parleypb.Envelope_MemberList:
		s.mu.Lock()
		s.members = b.MemberList
		s.mu.Unlock()
	case *parleypb.Envelope_ResetEvent:
		rs := b.ResetEvent
		s.mu.Lock()
		r := s.rooms[rs.GetRoom()]
		rewound := r != nil && rs.GetSince() >= rs.GetOldestSeq()
		if r != nil {
			// The replay that follows starts at oldest_seq.
			r.lastSeq = max(rs.GetOldestSeq(), 1) - 1
			if rewound {
				r.resume = false
			}
		}
		s.mu.Unlock()
		if rewound {
			s.emit(&Rewound{Room: rs.GetRoom()}, gone)
		} else {
			s.emit(&Reset{rs}, gone)
		}
	case *parleypb.Envelope_Notice:
		n := b.Notice
		if n.GetRoom() != "" {
			s.mu.Lock()
			_, in := s.rooms[n.GetRoom()]
			if in {
				// Kicked, banned, left elsewhere, deleted, closed by an
				// operator: re-joining on the next reconnect would undo it.
				s.dropRoom(n.GetRoom(), fmt.Errorf("%w: out of %s: %s", ErrNotJoined, n.GetRoom(), n.GetText()))
			}
			s.mu.Unlock()
			if !in {
				return // a room we left ourselves ("you left the room"): nothing new
			}
			s.emit(&RoomClosed{Room: n.GetRoom(), Text: n.GetText()}, gone)
		}
		s.emit(&Notice{n}, gone)
	case *parleypb.Envelope_Error:
		s.emit(&ErrorEvent{Err: &ServerError{b.Error}}, gone)
	case *parleypb.Envelope_Welcome:
		// Login returns it and Connected carries it; the user's rooms are
		// taken here, in order with the RoomUpdates that follow it.
		mine := make(map[string]*parleypb.RoomInfo, len(b.Welcome.GetRooms()))
		for _, ri := range b.Welcome.GetRooms() {
			mine[ri.GetName()] = ri
		}
		s.mu.Lock()
		s.mine = mine
		s.mu.Unlock()
	}
}
