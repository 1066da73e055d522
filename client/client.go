// Package client is Parley's Go client, at two levels.
//
// Connect returns a Session: a chat session that outlives connections. It
// logs in with a name or a token, reconnects with full-jitter backoff,
// resumes every joined room from the last seq it delivered (no hole, no
// duplicate), retries posts with their clientMsgId until the server stored
// each once, and hands out typed events (Message and Change from a room's
// log, Presence, Typing, RoomUpdate, Disconnected...) from Next. It asks
// for everything rooms, members and moderation offer (CreateRoom, Direct,
// Moderate, Members...), and refusals match errors.Is against ErrBanned,
// ErrForbidden and the like.
//
// Dial returns a Client: one connection, requests that await their ack or
// error, and raw envelopes from Next. The end-to-end tests, the load tool
// and bots outside the server use it, so no program hand-rolls frames.
//
// Both read on a goroutine of their own and may be used from several
// goroutines. Events are buffered (EventBuffer); a program that stops
// calling Next stops reading the socket, as a slow client would, and the
// server closes it with 1013 (a Session then reconnects and resumes).
package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/proto/codec"
)

// Options configures Dial. The zero value is usable.
type Options struct {
	// Header is sent with the handshake (an Origin, an Authorization).
	Header http.Header
	// EventBuffer is how many events wait for Next before the client stops
	// reading the socket. Zero means 4096.
	EventBuffer int
	// ReadLimit is the largest frame accepted from the server. Zero means 16 MiB.
	ReadLimit int64
	// OnRoomEvent, when set, receives every room event on the client's read
	// goroutine instead of Next, without decoding it into an Envelope (see
	// RawEvent; fast.go). It must not block, and must not keep the
	// RawEvent's slices after it returns. For programs that read many
	// events cheaply, such as the load tool.
	OnRoomEvent func(RawEvent)
	// OnEvent, when set, receives on the read goroutine every other event
	// that Next would return (presence, welcome, notices, errors not tied to
	// a request...), instead of Next. It must not block.
	OnEvent func(*parleypb.Envelope)
	// LocalAddr, if set, is the local IP to dial from (tests use 127.0.0.2
	// to look like a second client address).
	LocalAddr string
	// TLSConfig is used for wss:// URLs; nil means the system defaults.
	TLSConfig *tls.Config
	// Token, if set, is a connection token (JWT) sent with the handshake:
	// as Authorization: Bearer, or as ?token= with TokenInQuery (what a
	// browser must do). A bad one is refused with HTTP 401 (a *DialError).
	Token        string
	TokenInQuery bool
}

// DialError is a refused handshake: the HTTP status and the server's reason
// (401: a bad token; 403: a refused Origin; 429 and 503: too many
// connections, with the server's Retry-After).
type DialError struct {
	StatusCode int
	Body       string
	RetryAfter time.Duration
	Err        error
}

func (e *DialError) Error() string {
	return fmt.Sprintf("parley: dial refused with HTTP %d: %s", e.StatusCode, e.Body)
}

func (e *DialError) Unwrap() error { return e.Err }

// ServerError is an Error frame answering a request.
type ServerError struct{ Frame *parleypb.Error }

func (e *ServerError) Error() string {
	return fmt.Sprintf("parley: %s: %s", e.Frame.GetCode(), e.Frame.GetText())
}

// Is lets errors.Is match a refusal by its code against the Err values
// below (and a NOT_JOINED against ErrNotJoined), so a caller need not
// unwrap the frame for the refusals it acts on.
func (e *ServerError) Is(target error) bool {
	if target == ErrNotJoined {
		return e.Frame.GetCode() == parleypb.ErrorCode_ERROR_CODE_NOT_JOINED
	}
	c, ok := target.(codeError)
	return ok && parleypb.ErrorCode(c) == e.Frame.GetCode()
}

// codeError stands for one ErrorCode: comparable, so errors.Is matches it.
type codeError parleypb.ErrorCode

func (c codeError) Error() string { return "parley: " + parleypb.ErrorCode(c).String() }

// Refusals a *ServerError matches with errors.Is, for rooms, members and
// moderation (ErrorCode reports any code).
var (
	// ErrForbidden: not allowed (a private room uninvited, a member
	// moderating, the owner leaving others behind, the token's claims).
	ErrForbidden error = codeError(parleypb.ErrorCode_ERROR_CODE_FORBIDDEN)
	// ErrBanned: banned from the room; the text says until when.
	ErrBanned error = codeError(parleypb.ErrorCode_ERROR_CODE_BANNED)
	// ErrMuted: muted in the room: read, don't post.
	ErrMuted error = codeError(parleypb.ErrorCode_ERROR_CODE_MUTED)
	// ErrNotMember: the user acted on is not what the action needs (not a
	// member, not invited, not banned, not muted).
	ErrNotMember error = codeError(parleypb.ErrorCode_ERROR_CODE_NOT_MEMBER)
	// ErrNoSuchRoom: deleted, or a direct room nobody made.
	ErrNoSuchRoom error = codeError(parleypb.ErrorCode_ERROR_CODE_NO_SUCH_ROOM)
	// ErrRoomExists: CreateRoom with a name that is taken.
	ErrRoomExists error = codeError(parleypb.ErrorCode_ERROR_CODE_ROOM_EXISTS)
	// ErrNoSuchMessage: the room has no message with that seq (or
	// retention deleted it).
	ErrNoSuchMessage error = codeError(parleypb.ErrorCode_ERROR_CODE_NO_SUCH_MESSAGE)
	// ErrNotYours: editing another's post, or deleting it without being a
	// moderator.
	ErrNotYours error = codeError(parleypb.ErrorCode_ERROR_CODE_NOT_YOURS)
	// ErrNotAllowed: the message is a change to the room, not a post.
	ErrNotAllowed error = codeError(parleypb.ErrorCode_ERROR_CODE_NOT_ALLOWED)
	// ErrAlreadyDeleted: the post was deleted.
	ErrAlreadyDeleted error = codeError(parleypb.ErrorCode_ERROR_CODE_ALREADY_DELETED)
)

// ErrorCode reports the code of a *ServerError inside err, or UNSPECIFIED.
func ErrorCode(err error) parleypb.ErrorCode {
	var se *ServerError
	if errors.As(err, &se) {
		return se.Frame.GetCode()
	}
	return parleypb.ErrorCode_ERROR_CODE_UNSPECIFIED
}

// CloseCode reports the close code of the *parleypb.CloseError inside err
// (how the server closed the connection), or CLOSE_CODE_UNSPECIFIED.
func CloseCode(err error) parleypb.CloseCode {
	var ce *parleypb.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return parleypb.CloseCode_CLOSE_CODE_UNSPECIFIED
}

// CloseReason reports the close reason inside err, or "".
func CloseReason(err error) string {
	var ce *parleypb.CloseError
	if errors.As(err, &ce) {
		return ce.Reason
	}
	return ""
}

// readEnded turns the error that ended reading into the client's Err: a
// close frame from the server becomes a *parleypb.CloseError.
func readEnded(err error) error {
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		return parleypb.Close(parleypb.CloseCode(ce.Code), ce.Reason)
	}
	return err
}

// pending is a request waiting for its answer. hook, if set, sees the
// answer on the read goroutine before the next frame is handled: a Session
// applies a join's ack there, in order with the events around it.
type pending struct {
	ch   chan *parleypb.Envelope
	hook func(*parleypb.Envelope)
}

// Client is one connection speaking a native codec.
type Client struct {
	ws     *websocket.Conn
	codec  codec.Codec
	events chan *parleypb.Envelope

	mu      sync.Mutex
	pending map[string]pending
	nextID  atomic.Uint64
	welcome atomic.Pointer[parleypb.Welcome]

	done    chan struct{}
	readErr error // set before done is closed

	onRoomEvent func(RawEvent)           // Options.OnRoomEvent
	onEvent     func(*parleypb.Envelope) // Options.OnEvent
}

// Dial connects to a Parley /ws URL with a native codec (codec.Proto or
// codec.JSON).
func Dial(ctx context.Context, url string, cd codec.Codec, opts *Options) (*Client, error) {
	if cd == nil || cd.Subprotocol() == "" {
		return nil, errors.New("parley: Dial needs a native codec; use DialRaw for the legacy protocol")
	}
	var o Options
	if opts != nil {
		o = *opts
	}
	ws, err := dial(ctx, url, o, []string{cd.Subprotocol()})
	if err != nil {
		return nil, err
	}
	if ws.Subprotocol() != cd.Subprotocol() {
		ws.CloseNow()
		return nil, fmt.Errorf("parley: server chose subprotocol %q, asked for %q", ws.Subprotocol(), cd.Subprotocol())
	}
	if o.EventBuffer <= 0 {
		o.EventBuffer = 4096
	}
	c := &Client{ws: ws, codec: cd, events: make(chan *parleypb.Envelope, o.EventBuffer),
		pending: make(map[string]pending), done: make(chan struct{}),
		onRoomEvent: o.OnRoomEvent, onEvent: o.OnEvent}
	if c.onRoomEvent != nil {
		go c.readLoopFast()
	} else {
		go c.readLoop()
	}
	return c, nil
}

func dial(ctx context.Context, url string, o Options, protos []string) (*websocket.Conn, error) {
	header := o.Header
	if o.Token != "" {
		if o.TokenInQuery {
			u, err := neturl.Parse(url)
			if err != nil {
				return nil, fmt.Errorf("parley: dial %s: %w", url, err)
			}
			q := u.Query()
			q.Set("token", o.Token)
			u.RawQuery = q.Encode()
			url = u.String()
		} else {
			header = header.Clone()
			if header == nil {
				header = http.Header{}
			}
			header.Set("Authorization", "Bearer "+o.Token)
		}
	}
	dopts := &websocket.DialOptions{HTTPHeader: header, Subprotocols: protos}
	if o.LocalAddr != "" || o.TLSConfig != nil {
		d := &net.Dialer{}
		if o.LocalAddr != "" {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(o.LocalAddr)}
			d.Control = bindAddressNoPort
		}
		dopts.HTTPClient = &http.Client{Transport: &http.Transport{DialContext: d.DialContext, TLSClientConfig: o.TLSConfig}}
	}
	ws, resp, err := websocket.Dial(ctx, url, dopts)
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			body := ""
			if resp.Body != nil {
				b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
				body = string(b)
			}
			return nil, &DialError{StatusCode: resp.StatusCode, Body: body, RetryAfter: retryAfter(resp.Header.Get("Retry-After")), Err: err}
		}
		return nil, fmt.Errorf("parley: dial %s: %w", redact(url), err)
	}
	limit := o.ReadLimit
	if limit <= 0 {
		limit = 16 << 20
	}
	ws.SetReadLimit(limit)
	return ws, nil
}

// retryAfter reads a Retry-After header in seconds (what Parley sends).
func retryAfter(v string) time.Duration {
	secs, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || secs < 0 {
		return 0
	}
	return time.Duration(secs) * time.Second
}

// redact drops a token from a URL before it goes into an error message.
func redact(url string) string {
	u, err := neturl.Parse(url)
	if err != nil || !u.Query().Has("token") {
		return url
	}
	q := u.Query()
	q.Set("token", "REDACTED")
	u.RawQuery = q.Encode()
	return u.String()
}

func (c *Client) readLoop() {
	defer close(c.events)
	for {
		_, b, err := c.ws.Read(context.Background())
		if err != nil {
			c.readErr = readEnded(err)
			close(c.done)
			return
		}
		env, err := c.codec.Decode(b)
		if err != nil {
			c.readErr = fmt.Errorf("parley: undecodable frame from server: %w", err)
			close(c.done)
			c.ws.Close(websocket.StatusProtocolError, "undecodable frame")
			return
		}
		if batch := env.GetBatch(); batch != nil {
			for _, item := range batch.GetItems() {
				c.dispatch(item)
			}
			continue
		}
		c.dispatch(env)
	}
}

// dispatch routes an ack or error to its waiting request and everything
// else, in order, to the event buffer.
func (c *Client) dispatch(env *parleypb.Envelope) {
	var id string
	switch b := env.GetBody().(type) {
	case *parleypb.Envelope_Ack:
		id = b.Ack.GetRequestId()
	case *parleypb.Envelope_Error:
		id = b.Error.GetRequestId()
	}
	if id != "" {
		c.mu.Lock()
		p, ok := c.pending[id]
		delete(c.pending, id)
		c.mu.Unlock()
		if ok {
			if p.hook != nil {
				p.hook(env)
			}
			p.ch <- env
			return
		}
	}
	if w := env.GetWelcome(); w != nil {
		c.welcome.Store(w)
	}
	if c.onEvent != nil {
		c.onEvent(env)
		return
	}
	select {
	case c.events <- env:
	case <-c.done:
	}
}

// Err is why the connection ended (a *parleypb.CloseError when the server
// closed it: see CloseCode), or nil while it is open.
func (c *Client) Err() error {
	select {
	case <-c.done:
		return c.readErr
	default:
		return nil
	}
}

// Done is closed when the connection has ended.
func (c *Client) Done() <-chan struct{} { return c.done }

// Next returns the next event (room events, presence, typing, history pages,
// welcome, notices, and errors not tied to a request). After the connection
// ends and buffered events are drained it returns the reason.
func (c *Client) Next(ctx context.Context) (*parleypb.Envelope, error) {
	select {
	case env, ok := <-c.events:
		if !ok {
			return nil, c.readErr
		}
		return env, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Send writes one envelope without waiting for an answer.
func (c *Client) Send(ctx context.Context, env *parleypb.Envelope) error {
	b, err := c.codec.Encode(env)
	if err != nil {
		return err
	}
	return c.WriteRaw(ctx, b)
}

// WriteRaw writes one frame as is, in the codec's frame type (for tests that
// send what no encoder would).
func (c *Client) WriteRaw(ctx context.Context, frame []byte) error {
	typ := websocket.MessageText
	if c.codec.Binary() {
		typ = websocket.MessageBinary
	}
	return c.ws.Write(ctx, typ, frame)
}

// Request sends env with a fresh id and waits for its Ack; an Error frame
// comes back as *ServerError.
func (c *Client) Request(ctx context.Context, env *parleypb.Envelope) (*parleypb.Ack, error) {
	return c.request(ctx, env, nil)
}

func (c *Client) request(ctx context.Context, env *parleypb.Envelope, hook func(*parleypb.Envelope)) (*parleypb.Ack, error) {
	id := strconv.FormatUint(c.nextID.Add(1), 10)
	env.Id = id
	ch := make(chan *parleypb.Envelope, 1)
	c.mu.Lock()
	c.pending[id] = pending{ch: ch, hook: hook}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}()
	if err := c.Send(ctx, env); err != nil {
		return nil, err
	}
	select {
	case reply := <-ch:
		if e := reply.GetError(); e != nil {
			return nil, &ServerError{e}
		}
		return reply.GetAck(), nil
	case <-c.done:
		return nil, fmt.Errorf("parley: connection ended before the answer: %w", c.readErr)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Hello logs in with a name.
func (c *Client) Hello(ctx context.Context, name string, watchOnline bool) error {
	_, err := c.Login(ctx, Login{Name: name, WatchOnline: watchOnline})
	return err
}

// Login is what a Hello says: a name, or a token (whose subject is the
// name), or both when they agree.
type Login struct {
	Name string
	// Token is sent in the hello frame; leave it empty when the handshake
	// carried one (Options.Token).
	Token       string
	WatchOnline bool
}

// Login logs in and returns the server's Welcome (the user name, the
// server's limits, when the token expires). The Welcome is also an event,
// for Next or OnEvent.
func (c *Client) Login(ctx context.Context, l Login) (*parleypb.Welcome, error) {
	_, err := c.Request(ctx, &parleypb.Envelope{Body: &parleypb.Envelope_Hello{Hello: &parleypb.Hello{Name: l.Name, Token: l.Token, WatchOnline: l.WatchOnline}}})
	if err != nil {
		return nil, err
	}
	return c.welcome.Load(), nil
}

// Refresh replaces the connection's token before it expires (same user).
func (c *Client) Refresh(ctx context.Context, token string) error {
	_, err := c.Request(ctx, &parleypb.Envelope{Body: &parleypb.Envelope_Refresh{Refresh: &parleypb.Refresh{Token: token}}})
	return err
}

// Join joins a room; since, if not nil, resumes after that seq. History is
// replayed as events before Join returns the ack (seq = the room's latest,
// members = who is in it).
func (c *Client) Join(ctx context.Context, room string, since *uint64) (*parleypb.Ack, error) {
	return c.Request(ctx, &parleypb.Envelope{Body: &parleypb.Envelope_Join{Join: &parleypb.Join{Room: room, Since: since}}})
}

// Leave leaves a room.
func (c *Client) Leave(ctx context.Context, room string) error {
	_, err := c.Request(ctx, &parleypb.Envelope{Body: &parleypb.Envelope_Leave{Leave: &parleypb.Leave{Room: room}}})
	return err
}

// Post sends a message and returns the seq it was given. Retrying with the
// same clientMsgID is safe: the server acks the original seq.
func (c *Client) Post(ctx context.Context, room, text, clientMsgID string) (uint64, error) {
	ack, err := c.Request(ctx, &parleypb.Envelope{Body: &parleypb.Envelope_Post{Post: &parleypb.Post{Room: room, Text: text, ClientMsgId: clientMsgID}}})
	if err != nil {
		return 0, err
	}
	return ack.GetSeq(), nil
}

// Typing says the user is typing in room.
func (c *Client) Typing(ctx context.Context, room string) error {
	return c.Send(ctx, &parleypb.Envelope{Body: &parleypb.Envelope_Typing{Typing: &parleypb.Typing{Room: room}}})
}

// History asks for up to limit events before beforeSeq (0: the newest); the
// page arrives as an event before the ack.
func (c *Client) History(ctx context.Context, room string, beforeSeq uint64, limit uint32) error {
	_, err := c.Request(ctx, &parleypb.Envelope{Body: &parleypb.Envelope_History{History: &parleypb.HistoryRequest{Room: room, BeforeSeq: beforeSeq, Limit: limit}}})
	return err
}

// Who asks for everyone online; the list arrives as a presence event.
func (c *Client) Who(ctx context.Context) error {
	_, err := c.Request(ctx, &parleypb.Envelope{Body: &parleypb.Envelope_Who{Who: &parleypb.WhoRequest{}}})
	return err
}

// Rooms asks for the active rooms; the list arrives as a room_list event.
func (c *Client) Rooms(ctx context.Context) error {
	_, err := c.Request(ctx, &parleypb.Envelope{Body: &parleypb.Envelope_Rooms{Rooms: &parleypb.RoomsRequest{}}})
	return err
}

// Ping is an application-level keepalive.
func (c *Client) Ping(ctx context.Context) error {
	_, err := c.Request(ctx, &parleypb.Envelope{Body: &parleypb.Envelope_Ping{Ping: &parleypb.Ping{}}})
	return err
}

// Close closes the connection normally.
func (c *Client) Close() error {
	err := c.ws.Close(websocket.StatusNormalClosure, "bye")
	<-c.done
	return err
}

// CloseNow drops the TCP connection without a close handshake, as a
// crashed client would.
func (c *Client) CloseNow() { c.ws.CloseNow() }
