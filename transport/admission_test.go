package transport

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestClientIP(t *testing.T) {
	t.Parallel()
	o := Options{ClientIPHeader: "X-Forwarded-For", TrustedProxies: []netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128"), netip.MustParsePrefix("10.0.0.0/8"),
	}}
	for _, tc := range []struct {
		name, remote string
		header       []string
		want         string
	}{
		{"direct client", "198.51.100.1:5000", nil, "198.51.100.1"},
		{"direct client's header is ignored", "198.51.100.1:5000", []string{"192.0.2.9"}, "198.51.100.1"},
		{"trusted proxy", "127.0.0.1:5000", []string{"192.0.2.9"}, "192.0.2.9"},
		{"trusted proxy over IPv6", "[::1]:5000", []string{"192.0.2.9"}, "192.0.2.9"},
		{"trusted proxy without the header", "127.0.0.1:5000", nil, ""},
		{"trusted proxy, garbage header", "127.0.0.1:5000", []string{"unknown"}, ""},
		{"appended: the last untrusted one", "127.0.0.1:5000", []string{"6.6.6.6, 192.0.2.9, 10.1.2.3"}, "192.0.2.9"},
		{"appended over two lines", "127.0.0.1:5000", []string{"6.6.6.6", "192.0.2.9"}, "192.0.2.9"},
		{"only proxies in the list", "127.0.0.1:5000", []string{"10.1.2.3"}, ""},
		{"IPv4-mapped", "127.0.0.1:5000", []string{"::ffff:192.0.2.9"}, "192.0.2.9"},
		{"IPv6 client", "127.0.0.1:5000", []string{" 2001:db8::1 "}, "2001:db8::1"},
		{"IPv4-mapped peer", "[::ffff:127.0.0.1]:5000", []string{"192.0.2.9"}, "192.0.2.9"},
	} {
		r := httptest.NewRequest("GET", "/ws", nil)
		r.RemoteAddr = tc.remote
		for _, v := range tc.header {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := o.clientIP(r); got != tc.want {
			t.Errorf("%s: clientIP = %q, want %q", tc.name, got, tc.want)
		}
	}
	noHeader := o
	noHeader.ClientIPHeader = ""
	r := httptest.NewRequest("GET", "/ws", nil)
	r.RemoteAddr, r.Header = "127.0.0.1:5000", http.Header{"X-Forwarded-For": {"192.0.2.9"}}
	if got := noHeader.clientIP(r); got != "" {
		t.Errorf("no header configured, trusted peer: %q, want none", got)
	}
	r.RemoteAddr = "192.0.2.1:5000"
	if got := (&Options{ClientIPHeader: "X-Forwarded-For"}).clientIP(r); got != "192.0.2.1" {
		t.Errorf("no trusted proxies: %q, want the peer", got)
	}
}

func TestLimitsLine(t *testing.T) {
	t.Parallel()
	o := Options{MaxConns: 100000, MaxConnsPerIP: 100, HandshakesPerSecond: 20, ClientIPHeader: "X-Forwarded-For",
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}}
	want := "per client address 100 connections and 20 WebSocket handshakes/s (the peer address, or from X-Forwarded-For when the peer is a trusted proxy: 127.0.0.0/8, ::1/128; a trusted proxy's connection without it is not limited per address); per node 100000 connections"
	if got := o.Limits(); got != want {
		t.Errorf("Limits()\n got %s\nwant %s", got, want)
	}
	o.NodeHandshakesPerSecond = 500
	if got := o.Limits(); !strings.HasSuffix(got, "; per node 100000 connections and 500 WebSocket handshakes/s") {
		t.Errorf("Limits() with a node handshake rate: %s", got)
	}
	if got := (Options{}).Limits(); !strings.Contains(got, "no limit per client address") || !strings.Contains(got, "no limit per node") {
		t.Errorf("Limits() of no limits: %s", got)
	}
}

// TestAdmissionSlots: a slot is given back once, and only what was taken.
func TestAdmissionSlots(t *testing.T) {
	t.Parallel()
	a := newAdmission(Options{MaxConns: 3, MaxConnsPerIP: 2})
	now := time.Now()
	for i := range 2 {
		if no := a.take(slot{node: true, ip: "a"}, now); no != nil {
			t.Fatalf("take %d: %v", i, no.reason)
		}
	}
	if no := a.take(slot{ip: "a"}, now); no == nil || no.status != http.StatusTooManyRequests {
		t.Fatalf("third for one address: %v, want 429", no)
	}
	if no := a.take(slot{node: true, ip: "b"}, now); no != nil {
		t.Fatal(no.reason)
	}
	if no := a.take(slot{node: true}, now); no == nil || no.status != http.StatusServiceUnavailable {
		t.Fatalf("fourth on the node: %v, want 503", no)
	}
	if no := a.take(slot{ip: "b"}, now); no != nil { // an address slot only
		t.Fatal(no.reason)
	}
	a.give(slot{node: true, ip: "a"})
	if no := a.take(slot{node: true}, now); no != nil {
		t.Fatalf("after one was given back: %v", no.reason)
	}
	if a.total != 3 || a.byIP["a"].open != 1 || a.byIP["b"].open != 2 {
		t.Fatalf("total %d, a %d, b %d", a.total, a.byIP["a"].open, a.byIP["b"].open)
	}
}

// FuzzClientIP: the client-address header is whatever a client or a proxy
// wrote. From a trusted proxy it yields no address or a valid one that is
// not a trusted proxy; from anyone else, the peer's address.
func FuzzClientIP(f *testing.F) {
	for _, s := range []string{"192.0.2.9", "6.6.6.6, 192.0.2.9, 10.1.2.3", "unknown", "", ",,,", " , 2001:db8::1", "::ffff:192.0.2.9", "fe80::1%eth0", "10.0.0.1, 999.1.1.1"} {
		f.Add(s)
	}
	o := Options{ClientIPHeader: "X-Forwarded-For", TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8")}}
	f.Fuzz(func(t *testing.T, header string) {
		r := httptest.NewRequest("GET", "/ws", nil)
		r.Header.Set("X-Forwarded-For", header)
		r.RemoteAddr = "127.0.0.1:5000"
		if got := o.clientIP(r); got != "" {
			addr, err := netip.ParseAddr(got)
			if err != nil || o.trusted(addr) || addr.String() != got {
				t.Fatalf("clientIP(%q) = %q: not an untrusted address", header, got)
			}
		}
		r.RemoteAddr = "198.51.100.1:5000"
		if got := o.clientIP(r); got != "198.51.100.1" {
			t.Fatalf("clientIP(%q) from an untrusted peer = %q", header, got)
		}
	})
}

// TestNodeRateSpreadsRetries: past the node's handshake rate each refusal
// is told a later second to come back (Retry-After), one slot of a virtual
// queue per refusal at the node's rate: the k-th refusal at rate r waits
// about k/r seconds; a queue that drained starts again at one second.
func TestNodeRateSpreadsRetries(t *testing.T) {
	t.Parallel()
	a := newAdmission(Options{NodeHandshakesPerSecond: 2})
	now := time.Unix(1000, 0)
	for i := range 2 { // the burst: one second's worth
		if no := a.handshake("", now); no != nil {
			t.Fatalf("handshake %d within the burst refused: %s", i+1, no.reason)
		}
	}
	for k := 1; k <= 200; k++ {
		no := a.handshake("", now)
		if no == nil || no.status != http.StatusServiceUnavailable || !strings.Contains(no.reason, "-max-node-handshake-rate") {
			t.Fatalf("refusal %d: %+v; want 503 naming -max-node-handshake-rate", k, no)
		}
		if want := max(1, (k+1)/2); no.retryAfter != want {
			t.Fatalf("refusal %d at 2/s: Retry-After %d; want %d", k, no.retryAfter, want)
		}
	}
	later := now.Add(200 * time.Second) // the queue has drained; the bucket holds two again
	for i := range 2 {
		if no := a.handshake("", later); no != nil {
			t.Fatalf("handshake %d after the queue drained refused: %s", i+1, no.reason)
		}
	}
	if no := a.handshake("", later); no == nil || no.retryAfter != 1 {
		t.Errorf("the first refusal after the queue drained: %+v; want one with Retry-After 1", no)
	}
}
