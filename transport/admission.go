package transport

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// admission decides whether a connection may open: the node's total, the
// client address's open connections and its handshake rate. Refusals are
// plain HTTP answers (503 for a full node, 429 for one address asking too
// much), which every WebSocket client reports.
//
// When the server's listener is wrapped by Server.Listener, every accepted
// TCP connection counts, WebSocket or plain HTTP (an idle keep-alive
// connection holds a goroutine and a socket as much as a WebSocket does),
// under the peer's address, or under none when the peer is a trusted proxy:
// its clients cannot be told apart by the peer address. A WebSocket from a
// trusted proxy then counts under the client address the proxy names in
// ClientIPHeader. Without the wrapper (tests serving a Server through
// httptest), WebSocket handshakes alone count.
type admission struct {
	opts Options

	mu      sync.Mutex
	total   int
	byIP    map[string]*ipState
	pruned  time.Time
	refused int           // accepted connections refused, waiting to be answered
	node    *rate.Limiter // the node's handshakes, nil: no limit
	// nodeNext is the next free slot of the node limit's virtual queue:
	// each refused handshake is told to come back at its own slot.
	nodeNext time.Time
}

type ipState struct {
	open int
	hs   *rate.Limiter
	seen time.Time
}

func newAdmission(o Options) *admission {
	a := &admission{opts: o, byIP: make(map[string]*ipState)}
	if r := o.NodeHandshakesPerSecond; r > 0 {
		a.node = rate.NewLimiter(rate.Limit(r), max(1, int(r)))
	}
	return a
}

// refusal is why admission said no.
type refusal struct {
	status int
	reason string
	// retryAfter is the Retry-After to send, in seconds (0: 1).
	retryAfter int
}

// slot is what one connection holds: a place in the node's total, and one
// in its address's count (ip "" for none).
type slot struct {
	node bool
	ip   string
}

func (a *admission) state(ip string, now time.Time) *ipState {
	st := a.byIP[ip]
	if st == nil {
		st = &ipState{}
		a.byIP[ip] = st
	}
	st.seen = now
	return st
}

// handshake takes one of the node's and one of ip's connection attempts,
// or says why not.
func (a *admission) handshake(ip string, now time.Time) *refusal {
	if a.node != nil && !a.node.AllowN(now, 1) {
		return &refusal{status: http.StatusServiceUnavailable, retryAfter: a.spread(now),
			reason: fmt.Sprintf("the node is busy: more than %g connection attempts per second (-max-node-handshake-rate); retry in a moment or on another node", a.opts.NodeHandshakesPerSecond)}
	}
	if ip == "" || a.opts.HandshakesPerSecond <= 0 {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pruneLocked(now)
	st := a.state(ip, now)
	if st.hs == nil {
		st.hs = rate.NewLimiter(rate.Limit(a.opts.HandshakesPerSecond), max(1, int(a.opts.HandshakesPerSecond*2)))
	}
	if !st.hs.AllowN(now, 1) {
		return &refusal{status: http.StatusTooManyRequests, reason: fmt.Sprintf("too many connection attempts from %s: at most %g per second (-max-handshake-rate)", ip, a.opts.HandshakesPerSecond)}
	}
	return nil
}

// spread is the Retry-After for a handshake the node's rate refused: the
// next free slot of a virtual queue that advances by 1/rate per refusal,
// so a crowd that arrived at once is told to come back one after another
// at the rate the node admits, instead of all again a second later (each
// retry that is refused again costs about what an admission does, and the
// members already connected pay for it in delivery latency).
func (a *admission) spread(now time.Time) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.nodeNext.Before(now) {
		a.nodeNext = now
	}
	a.nodeNext = a.nodeNext.Add(time.Duration(float64(time.Second) / a.opts.NodeHandshakesPerSecond))
	return max(1, int(math.Ceil(a.nodeNext.Sub(now).Seconds())))
}

// take reserves s, or says why not. A reserved slot must be given back
// once.
func (a *admission) take(s slot, now time.Time) *refusal {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pruneLocked(now)
	if s.node && a.opts.MaxConns > 0 && a.total >= a.opts.MaxConns {
		return &refusal{status: http.StatusServiceUnavailable, reason: fmt.Sprintf("server full: %d connections (-max-conns); retry later or on another node", a.opts.MaxConns)}
	}
	var st *ipState
	if s.ip != "" {
		st = a.state(s.ip, now)
		if a.opts.MaxConnsPerIP > 0 && st.open >= a.opts.MaxConnsPerIP {
			return &refusal{status: http.StatusTooManyRequests, reason: fmt.Sprintf("too many connections from %s: at most %d (-max-conns-per-ip)", s.ip, a.opts.MaxConnsPerIP)}
		}
		st.open++
	}
	if s.node {
		a.total++
	}
	return nil
}

func (a *admission) give(s slot) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if s.node {
		a.total--
	}
	if st := a.byIP[s.ip]; s.ip != "" && st != nil {
		st.open--
	}
}

// pruneLocked forgets addresses with no open connection that have not been
// seen for a minute, so the table stays as small as the active clients.
func (a *admission) pruneLocked(now time.Time) {
	if now.Sub(a.pruned) < 10*time.Second {
		return
	}
	a.pruned = now
	for ip, st := range a.byIP {
		if st.open == 0 && now.Sub(st.seen) > time.Minute {
			delete(a.byIP, ip)
		}
	}
}

// trusted reports whether addr is one of the trusted proxies.
func (o *Options) trusted(addr netip.Addr) bool {
	for _, p := range o.TrustedProxies {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// peerAddr is a connection's remote address, IPv4 unmapped.
func peerAddr(remote string) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap().WithZone(""), true
}

// peerSlot is the address a connection from remote counts under: none for
// a trusted proxy.
func (o *Options) peerSlot(remote string) string {
	addr, ok := peerAddr(remote)
	switch {
	case !ok:
		host, _, err := net.SplitHostPort(remote)
		if err != nil {
			return remote
		}
		return host
	case o.trusted(addr):
		return ""
	}
	return addr.String()
}

// clientIP is the address a request's limits apply to: the peer's, unless
// the peer is a trusted proxy. Then it is the address the proxy put in
// ClientIPHeader: the last one in the list that is not itself a trusted
// proxy (X-Forwarded-For grows by one address per proxy, and only what the
// trusted ones appended is known to be true; the first may be anything the
// client sent). A trusted proxy's request without it has no client address
// (""): it is not limited per address.
func (o *Options) clientIP(r *http.Request) string {
	peer, ok := peerAddr(r.RemoteAddr)
	if !ok || !o.trusted(peer) {
		return o.peerSlot(r.RemoteAddr)
	}
	if o.ClientIPHeader == "" {
		return ""
	}
	var list []string
	for _, v := range r.Header.Values(o.ClientIPHeader) {
		list = append(list, strings.Split(v, ",")...)
	}
	for i := len(list) - 1; i >= 0; i-- {
		addr, err := netip.ParseAddr(strings.TrimSpace(list[i]))
		if err != nil {
			return "" // a list the proxies did not write: name no one
		}
		if addr = addr.Unmap().WithZone(""); !o.trusted(addr) {
			return addr.String()
		}
	}
	return ""
}

// Limits says, in one line for the start-up log, which limits apply to
// which addresses.
func (o Options) Limits() string {
	var b strings.Builder
	perAddr := []string{}
	if o.MaxConnsPerIP > 0 {
		perAddr = append(perAddr, fmt.Sprintf("%d connections", o.MaxConnsPerIP))
	}
	if o.HandshakesPerSecond > 0 {
		perAddr = append(perAddr, fmt.Sprintf("%g WebSocket handshakes/s", o.HandshakesPerSecond))
	}
	if len(perAddr) == 0 {
		b.WriteString("no limit per client address")
	} else {
		b.WriteString("per client address " + strings.Join(perAddr, " and "))
	}
	proxies := make([]string, len(o.TrustedProxies))
	for i, p := range o.TrustedProxies {
		proxies[i] = p.String()
	}
	switch {
	case len(proxies) == 0:
		b.WriteString(" (the peer address; no trusted proxies)")
	case o.ClientIPHeader == "":
		fmt.Fprintf(&b, " (the peer address; connections from the trusted proxies %s are not limited per address)", strings.Join(proxies, ", "))
	default:
		fmt.Fprintf(&b, " (the peer address, or from %s when the peer is a trusted proxy: %s; a trusted proxy's connection without it is not limited per address)",
			o.ClientIPHeader, strings.Join(proxies, ", "))
	}
	switch {
	case o.MaxConns > 0 && o.NodeHandshakesPerSecond > 0:
		fmt.Fprintf(&b, "; per node %d connections and %g WebSocket handshakes/s", o.MaxConns, o.NodeHandshakesPerSecond)
	case o.MaxConns > 0:
		fmt.Fprintf(&b, "; per node %d connections", o.MaxConns)
	case o.NodeHandshakesPerSecond > 0:
		fmt.Fprintf(&b, "; per node %g WebSocket handshakes/s", o.NodeHandshakesPerSecond)
	default:
		b.WriteString("; no limit per node")
	}
	return b.String()
}

// maxRefusedOpen bounds the accepted connections that wait to be answered
// with a refusal; past it, refused connections are closed at once.
const maxRefusedOpen = 256

// Listener wraps ln so that every connection it accepts counts against
// MaxConns and MaxConnsPerIP while it is open. A connection over a limit is
// still accepted, and its first request is answered with the refusal (503
// or 429) by Guard, then it is closed; past maxRefusedOpen such connections
// waiting at once, further ones are closed without an answer. The server's
// http.Server must use ConnContext and Guard for this to work.
func (s *Server) Listener(ln net.Listener) net.Listener {
	return &listener{Listener: ln, s: s}
}

type listener struct {
	net.Listener
	s *Server
}

func (l *listener) Accept() (net.Conn, error) {
	a := l.s.admit
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc := &trackedConn{Conn: nc, a: a, slot: slot{node: true, ip: l.s.opts.peerSlot(nc.RemoteAddr().String())}}
		no := a.take(tc.slot, time.Now())
		if no == nil {
			return tc, nil
		}
		tc.refused = no
		a.mu.Lock()
		full := a.refused >= maxRefusedOpen
		if !full {
			a.refused++
		}
		a.mu.Unlock()
		if !full {
			return tc, nil
		}
		l.s.Stats.refused("limit")
		nc.Close()
	}
}

// trackedConn is an accepted connection holding its admission slot until
// it is closed (by net/http, or by transport once hijacked).
type trackedConn struct {
	net.Conn
	a       *admission
	slot    slot
	refused *refusal // over a limit: answer the first request with it
	once    sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		if c.refused != nil {
			c.a.mu.Lock()
			c.a.refused--
			c.a.mu.Unlock()
			return
		}
		c.a.give(c.slot)
	})
	return c.Conn.Close()
}

type connKey struct{}

// ConnContext is the http.Server's ConnContext: it makes the accepted
// connection known to the handlers.
func (s *Server) ConnContext(ctx context.Context, nc net.Conn) context.Context {
	for nc != nil {
		if tc, ok := nc.(*trackedConn); ok {
			return context.WithValue(ctx, connKey{}, tc)
		}
		u, ok := nc.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		nc = u.NetConn()
	}
	return ctx
}

func trackedFrom(ctx context.Context) *trackedConn {
	tc, _ := ctx.Value(connKey{}).(*trackedConn)
	return tc
}

// Guard answers every request on a connection that Listener accepted over
// a limit with its refusal, and closes the connection; other requests go to
// next.
func (s *Server) Guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tc := trackedFrom(r.Context())
		if tc == nil || tc.refused == nil {
			next.ServeHTTP(w, r)
			return
		}
		s.Stats.refused("limit")
		s.log.Warn("connection refused", "remote", r.RemoteAddr, "path", r.URL.Path, "status", tc.refused.status, "reason", tc.refused.reason)
		w.Header().Set("Connection", "close")
		w.Header().Set("Retry-After", "1")
		http.Error(w, tc.refused.reason, tc.refused.status)
	})
}
