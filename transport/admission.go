package transport

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// admission decides, before the WebSocket handshake, whether a connection
// may open: the node's total, the client address's open connections and its
// handshake rate. Refusals are plain HTTP answers (503 for a full node, 429
// for one address asking too much), which every WebSocket client reports.
type admission struct {
	opts Options

	mu     sync.Mutex
	total  int
	byIP   map[string]*ipState
	pruned time.Time
}

type ipState struct {
	open int
	hs   *rate.Limiter
	seen time.Time
}

func newAdmission(o Options) *admission {
	return &admission{opts: o, byIP: make(map[string]*ipState)}
}

// refusal is why admission said no.
type refusal struct {
	status int
	reason string
}

// admit reserves a slot for ip, or says why not. A reserved slot must be
// released once.
func (a *admission) admit(ip string, now time.Time) *refusal {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pruneLocked(now)
	st := a.byIP[ip]
	if st == nil {
		st = &ipState{}
		if a.opts.HandshakesPerSecond > 0 {
			st.hs = rate.NewLimiter(rate.Limit(a.opts.HandshakesPerSecond), max(1, int(a.opts.HandshakesPerSecond*2)))
		}
		a.byIP[ip] = st
	}
	st.seen = now
	if st.hs != nil && !st.hs.AllowN(now, 1) {
		return &refusal{http.StatusTooManyRequests, fmt.Sprintf("too many connection attempts from %s: at most %g per second (-max-handshake-rate)", ip, a.opts.HandshakesPerSecond)}
	}
	if a.opts.MaxConns > 0 && a.total >= a.opts.MaxConns {
		return &refusal{http.StatusServiceUnavailable, fmt.Sprintf("server full: %d connections (-max-conns); retry later or on another node", a.opts.MaxConns)}
	}
	if a.opts.MaxConnsPerIP > 0 && st.open >= a.opts.MaxConnsPerIP {
		return &refusal{http.StatusTooManyRequests, fmt.Sprintf("too many connections from %s: at most %d (-max-conns-per-ip)", ip, a.opts.MaxConnsPerIP)}
	}
	a.total++
	st.open++
	return nil
}

func (a *admission) release(ip string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.total--
	if st := a.byIP[ip]; st != nil {
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

// clientIP is the address limits apply to: the peer's IP, or the first
// address in ClientIPHeader when the server sits behind a proxy that sets it.
func clientIP(r *http.Request, header string) string {
	if header != "" {
		if v := r.Header.Get(header); v != "" {
			first, _, _ := strings.Cut(v, ",")
			if ip := net.ParseIP(strings.TrimSpace(first)); ip != nil {
				return ip.String()
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
