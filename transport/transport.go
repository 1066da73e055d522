// Package transport owns every WebSocket the server accepts: it checks the
// Origin and the handshake limits, picks the codec from the subprotocol,
// runs heartbeats, reads and writes frames and closes sockets. Of the
// server's packages only this one imports github.com/coder/websocket (the Go
// client in package client and the load tools dial with it too), and it
// knows nothing of actors: it imports only the wire protocol (proto/...) and
// auth. Package server hands its connections to the session actors.
//
// Each accepted socket becomes a Conn and is handed to a Handler, which
// returns the Peer that receives what the socket reads. A Conn is written only through its bounded
// outbound queue (Send), from any goroutine; only transport reads it.
// Goroutines per connection: one reader, started when the handshake is done
// (the HTTP handler returns), and a writer only while frames are queued;
// pings run on a timer. Frames of the text codecs are decoded by a few
// workers shared by all connections (see decoders).
package transport

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/parleychat/parley/auth"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/proto/codec"
)

// Peer receives what a connection reads, in order: each frame decoded, each
// frame that did not decode, and once, last, how the connection ended. None
// of its methods may block (they run on the connection's reader).
type Peer interface {
	Frame(env *parleypb.Envelope)
	BadFrame(reason string)
	Closed(how *parleypb.CloseError)
}

// Handler is given each accepted connection and returns the peer that
// receives its frames (in Parley, the session actor).
type Handler interface {
	Open(c *Conn) (Peer, error)
}

// DefaultMaxMessageBytes is the frame size limit when Options leaves it zero.
const DefaultMaxMessageBytes = 64 << 10

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(c *Conn) (Peer, error)

// Open implements Handler.
func (f HandlerFunc) Open(c *Conn) (Peer, error) { return f(c) }

// Options configures a Server. Zero values mean the documented defaults.
type Options struct {
	// OriginPatterns are host patterns (path.Match syntax, as in
	// coder/websocket's AcceptOptions.OriginPatterns) allowed besides
	// same-origin requests. "*" allows every origin, "null" the Origin a page
	// opened from a file sends.
	OriginPatterns []string
	// PingInterval is the time between pings. Zero means 25s.
	PingInterval time.Duration
	// PongTimeout is how long a ping waits for its pong before the connection
	// is closed with CLOSE_CODE_PONG_TIMEOUT. Zero means 10s.
	PongTimeout time.Duration
	// WriteTimeout bounds one frame write (the socket's write deadline is
	// renewed lazily, so a write may be cut after ¾ of it). Zero means 10s.
	WriteTimeout time.Duration
	// MaxMessageBytes is the largest frame read; a larger one closes the
	// connection with 1009. Zero means 64 KiB.
	MaxMessageBytes int64
	// QueueSize is the outbound queue length in frames; a client that lets it
	// fill is closed with 1013. Zero means 256.
	QueueSize int
	// MaxBatch is the most queued frames coalesced into one Batch frame.
	// Zero means 64.
	MaxBatch int
	// MaxConns caps the node's open connections (every accepted TCP
	// connection when the listener is wrapped by Listener, else
	// WebSockets); past it requests get HTTP 503. Zero means no cap.
	MaxConns int
	// MaxConnsPerIP caps one client address's open connections; past it
	// requests get HTTP 429. Zero means no cap.
	MaxConnsPerIP int
	// HandshakesPerSecond limits one client address's WebSocket handshakes
	// (a token bucket with a burst of twice the rate); past it handshakes
	// get HTTP 429. Zero means no limit.
	HandshakesPerSecond float64
	// NodeHandshakesPerSecond limits the node's WebSocket handshakes from
	// every address together (a token bucket with a burst of one second's
	// worth); past it handshakes get HTTP 503 with Retry-After, so a
	// reconnect storm (a node died, its clients come here) is spread over
	// time instead of starving the members already connected. Zero means
	// no limit.
	NodeHandshakesPerSecond float64
	// ClientIPHeader names a header (such as X-Forwarded-For or X-Real-IP)
	// that carries the client's address when the peer is one of
	// TrustedProxies: the last address in it that is not a trusted proxy is
	// the client's. From any other peer it is ignored. Empty: the peer
	// address, always.
	ClientIPHeader string
	// TrustedProxies are the peers (reverse proxies, load balancers) whose
	// ClientIPHeader is believed. A connection from one that names no
	// client is not limited per address (its clients cannot be told apart;
	// MaxConns still applies). Nil: none.
	TrustedProxies []netip.Prefix
	// Verifier checks a token sent with the handshake (Authorization:
	// Bearer, or ?token= for browsers); a bad one is refused with HTTP 401.
	// Nil: tokens in the handshake are refused (there is nothing to check
	// them with).
	Verifier *auth.Verifier
	// Authenticator admits a handshake without a token some other way
	// (the application's connect hook); nil: such a handshake comes in
	// with no claims, and Hello decides.
	Authenticator auth.Authenticator
	// Logger receives one line per connection open and close. Nil discards.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.PingInterval <= 0 {
		o.PingInterval = 25 * time.Second
	}
	if o.PongTimeout <= 0 {
		o.PongTimeout = 10 * time.Second
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	if o.MaxMessageBytes <= 0 {
		o.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 256
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 64
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Server is the /ws endpoint.
type Server struct {
	opts    Options
	handler Handler
	log     *slog.Logger

	admit *admission
	dec   *decoders
	Stats Stats

	mu       sync.Mutex
	conns    map[*Conn]struct{}
	draining bool
	wg       sync.WaitGroup // one per live connection
	nextID   atomic.Uint64
}

// NewServer returns a Server that hands connections to h.
func NewServer(h Handler, opts Options) *Server {
	opts = opts.withDefaults()
	return &Server{opts: opts, handler: h, log: opts.Logger, conns: make(map[*Conn]struct{}), admit: newAdmission(opts), dec: newDecoders()}
}

// Conns reports how many connections are open.
func (s *Server) Conns() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// ServeHTTP accepts one WebSocket, hands it to the Handler and returns; the
// connection is then served on a goroutine of its own, so that nothing of
// the handshake (net/http's request, buffers and the handler's grown stack)
// stays alive with it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := s.checkOrigin(r); err != nil {
		s.Stats.refused("origin")
		s.log.Warn("connection refused", "remote", r.RemoteAddr, "origin", r.Header.Get("Origin"), "status", http.StatusForbidden)
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	cd, err := pickCodec(r)
	if err != nil {
		s.Stats.refused("subprotocol")
		s.log.Warn("connection refused", "remote", r.RemoteAddr, "err", err, "status", http.StatusBadRequest)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	draining := s.draining
	if !draining {
		s.wg.Add(1)
	}
	s.mu.Unlock()
	if draining {
		s.Stats.refused("draining")
		http.Error(w, "server is shutting down; reconnect to another node or retry later", http.StatusServiceUnavailable)
		return
	}
	handedOff := false // to serveConn, which then releases what is deferred here
	defer func() {
		if !handedOff {
			s.wg.Done()
		}
	}()
	// The limits: the handshake rate of the client's address, then a slot.
	// A connection the Listener accepted holds its node slot, and its
	// address's when the peer is the client; a proxied one takes its
	// client's address slot here. Without the Listener, the handshake
	// takes both.
	ip := s.opts.clientIP(r)
	var sl slot
	if tc := trackedFrom(r.Context()); tc == nil {
		sl = slot{node: true, ip: ip}
	} else if ip != tc.slot.ip {
		sl = slot{ip: ip}
	}
	now := time.Now()
	no := s.admit.handshake(ip, now)
	if no == nil {
		no = s.admit.take(sl, now)
	}
	if no != nil {
		s.Stats.refused("limit")
		s.log.Warn("connection refused", "remote", r.RemoteAddr, "ip", ip, "status", no.status, "reason", no.reason)
		w.Header().Set("Retry-After", strconv.Itoa(max(1, no.retryAfter)))
		http.Error(w, no.reason, no.status)
		return
	}
	defer func() {
		if !handedOff {
			s.admit.give(sl)
		}
	}()
	claims, err := s.authenticate(r, ip)
	if err != nil {
		status := http.StatusUnauthorized
		var denied *auth.Denied
		switch {
		case errors.As(err, &denied):
			status = http.StatusForbidden
		case errors.Is(err, auth.ErrUnavailable):
			status = http.StatusServiceUnavailable
			w.Header().Set("Retry-After", "5")
		}
		s.Stats.refused("auth")
		s.log.Warn("connection refused", "remote", r.RemoteAddr, "status", status, "reason", err)
		http.Error(w, err.Error(), status)
		return
	}

	var protos []string
	if cd.Subprotocol() != "" {
		// Only the one picked: coder/websocket would otherwise choose by
		// its own list's order, not the client's, and could echo another.
		protos = []string{cd.Subprotocol()}
	}
	up := &upgrader{ResponseWriter: w, timeout: s.opts.WriteTimeout}
	ws, err := websocket.Accept(up, r, &websocket.AcceptOptions{
		Subprotocols: protos,
		// The Origin was checked above with a clearer refusal than Accept's.
		InsecureSkipVerify: true,
		CompressionMode:    websocket.CompressionDisabled,
	})
	if err != nil {
		s.log.Debug("websocket handshake failed", "remote", r.RemoteAddr, "err", err)
		return
	}
	ws.SetReadLimit(s.opts.MaxMessageBytes)

	c := newConn(s, ws, up.wire, cd, fmt.Sprintf("c%d", s.nextID.Add(1)), r.RemoteAddr)
	c.claims = claims
	if !s.track(c) {
		ws.Close(websocket.StatusGoingAway, "server is shutting down")
		return
	}
	peer, err := s.handler.Open(c)
	if err != nil {
		s.untrack(c)
		s.log.Error("session could not start", "conn", c.id, "remote", c.remote, "codec", codecName(cd), "err", err)
		ws.Close(websocket.StatusInternalError, "session could not start")
		return
	}
	s.log.Info("connection open", "conn", c.id, "remote", c.remote, "codec", codecName(cd))
	s.Stats.open(cd.Kind(), 1)
	handedOff = true
	go s.serveConn(c, peer, sl)
}

// serveConn is a connection's reader goroutine, the one goroutine an idle
// connection holds. It releases what ServeHTTP took for the connection.
func (s *Server) serveConn(c *Conn, peer Peer, sl slot) {
	defer s.wg.Done()
	defer s.admit.give(sl)
	defer s.untrack(c)
	how := c.serve(peer)
	s.Stats.open(c.codec.Kind(), -1)
	s.Stats.closed(how.Code)
	s.log.Info("connection closed", "conn", c.id, "remote", c.remote, "codec", codecName(c.codec), "code", int32(how.Code), "reason", how.Reason)
}

// Buffer sizes of a connection after the handshake. net/http's are 4 KiB
// each; a chat connection reads small frames, and its data frames are
// written without a bufio.Writer (see wire), so coder/websocket's writer
// only ever holds one control frame (at most 127 bytes).
const (
	readBufferSize    = 512
	controlBufferSize = 256
)

// upgrader is the ResponseWriter coder/websocket hijacks: it swaps net/http's
// buffers for smaller ones and keeps the socket for Conn's own writes.
type upgrader struct {
	http.ResponseWriter
	timeout time.Duration
	wire    *wire
}

func (u *upgrader) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(u.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	if err := brw.Writer.Flush(); err != nil { // the 101 response is normally out already
		nc.Close()
		return nil, nil, err
	}
	// net/http's deadlines (its ReadTimeout, which bounds reading a
	// request) must not end the WebSocket: heartbeats and the wire's own
	// write deadline bound it from here on.
	if err := nc.SetDeadline(time.Time{}); err != nil {
		nc.Close()
		return nil, nil, err
	}
	u.wire = &wire{nc: nc, timeout: u.timeout}
	br := brw.Reader
	if br.Buffered() == 0 { // else the client sent frames before our 101: keep them
		br = bufio.NewReaderSize(nc, readBufferSize)
	}
	return nc, bufio.NewReadWriter(br, bufio.NewWriterSize(u.wire, controlBufferSize)), nil
}

func (s *Server) track(c *Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c *Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// Shutdown stops accepting, closes every connection with 1001 and reason,
// and waits until all are gone or ctx ends; then the decoder workers exit.
// It returns how many connections it closed, and ctx.Err() if some were
// still open. Calling it again is harmless.
func (s *Server) Shutdown(ctx context.Context, reason string) (int, error) {
	defer s.dec.close()
	s.mu.Lock()
	s.draining = true
	open := make([]*Conn, 0, len(s.conns))
	for c := range s.conns {
		open = append(open, c)
	}
	s.mu.Unlock()
	for _, c := range open {
		c.Close(parleypb.Close(parleypb.CloseCode_CLOSE_CODE_GOING_AWAY, reason))
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return len(open), nil
	case <-ctx.Done():
		return len(open), ctx.Err()
	}
}

// checkOrigin follows coder/websocket's rules (same host, or a pattern
// matching the Origin's host, or scheme://host when the pattern has a
// scheme) and adds "null" for pages opened from a file, so that a refusal
// can say which flag allows the Origin.
func (s *Server) checkOrigin(r *http.Request) error {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil // not a browser
	}
	for _, p := range s.opts.OriginPatterns {
		if p == "*" || (p == "null" && origin == "null") {
			return nil
		}
	}
	u, err := url.Parse(origin)
	if err == nil && u.Host != "" {
		if strings.EqualFold(r.Host, u.Host) {
			return nil
		}
		for _, p := range s.opts.OriginPatterns {
			target := u.Host
			if strings.Contains(p, "://") {
				target = u.Scheme + "://" + u.Host
			}
			if ok, _ := path.Match(strings.ToLower(p), strings.ToLower(target)); ok {
				return nil
			}
		}
	}
	hint := origin
	if err == nil && u.Host != "" {
		hint = u.Host
	}
	return fmt.Errorf("origin %q is not allowed; allow it with the -origins flag (or PARLEY_ORIGINS), e.g. -origins=%s", origin, hint)
}

// authenticate checks a token brought with the handshake. No token is not
// an error here: the session decides whether anonymous users may log in, or
// takes a token in Hello. The reason given to the client never echoes the
// token or the verifier's details.
func (s *Server) authenticate(r *http.Request, ip string) (*auth.Claims, error) {
	tok := auth.TokenFromRequest(r)
	if tok == "" {
		if s.opts.Authenticator != nil {
			return s.opts.Authenticator.Authenticate(r, ip)
		}
		return nil, nil
	}
	if s.opts.Verifier == nil {
		return nil, errors.New("this server takes no tokens (it was started without -jwt-secret, -jwt-public-key or -jwt-jwks)")
	}
	c, err := s.opts.Verifier.Verify(tok)
	if errors.Is(err, auth.ErrExpired) {
		return nil, errors.New("token expired; get a new one")
	}
	if err != nil {
		return nil, errors.New("invalid token")
	}
	return c, nil
}

var errUnknownSubprotocol = errors.New("unsupported WebSocket subprotocol")

// pickCodec chooses the first offered subprotocol Parley speaks; no offer
// means the legacy protocol, offers of only unknown ones are refused.
func pickCodec(r *http.Request) (codec.Codec, error) {
	var offered []string
	for _, h := range r.Header.Values("Sec-WebSocket-Protocol") {
		for _, p := range strings.Split(h, ",") {
			if p = strings.TrimSpace(p); p != "" {
				offered = append(offered, p)
			}
		}
	}
	if len(offered) == 0 {
		return codec.Legacy, nil
	}
	for _, p := range offered {
		if cd, ok := codec.BySubprotocol(p); ok {
			return cd, nil
		}
	}
	return nil, fmt.Errorf("%w %q; this server speaks %s, or no subprotocol for the legacy JSON protocol",
		errUnknownSubprotocol, strings.Join(offered, ", "), strings.Join(codec.Subprotocols(), " and "))
}

func codecName(cd codec.Codec) string {
	if cd.Subprotocol() == "" {
		return "legacy"
	}
	return cd.Subprotocol()
}
