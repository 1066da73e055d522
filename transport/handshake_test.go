package transport

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/parleychat/parley/proto/codec"
)

func TestCheckOrigin(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		host     string // request Host; "" means chat.example.com
		origin   string // "" means no Origin header
		patterns []string
		allowed  bool
		hint     string // for refusals: the -origins value suggested
	}{
		{name: "no origin is not a browser", allowed: true},
		{name: "same host", origin: "https://chat.example.com", allowed: true},
		{name: "same host any scheme", origin: "http://chat.example.com", allowed: true},
		{name: "same host other case", origin: "https://CHAT.Example.COM", allowed: true},
		{name: "same host and port", host: "chat.example.com:8080", origin: "http://chat.example.com:8080", allowed: true},
		{name: "same host other port", host: "chat.example.com:8080", origin: "http://chat.example.com:9090", hint: "chat.example.com:9090"},
		{name: "other host", origin: "https://evil.example.net", hint: "evil.example.net"},
		{name: "suffix is not same host", origin: "https://chat.example.com.evil.net", hint: "chat.example.com.evil.net"},
		{name: "pattern exact", origin: "https://app.example.org", patterns: []string{"app.example.org"}, allowed: true},
		{name: "pattern glob", origin: "https://app.example.org", patterns: []string{"*.example.org"}, allowed: true},
		{name: "pattern glob with port", origin: "http://localhost:5173", patterns: []string{"localhost:*"}, allowed: true},
		{name: "pattern glob misses", origin: "https://example.org", patterns: []string{"*.example.org"}, hint: "example.org"},
		{name: "pattern case-insensitive", origin: "https://APP.example.org", patterns: []string{"*.EXAMPLE.org"}, allowed: true},
		{name: "second pattern", origin: "https://b.test", patterns: []string{"a.test", "b.test"}, allowed: true},
		{name: "scheme pattern matches", origin: "https://app.example.org", patterns: []string{"https://*.example.org"}, allowed: true},
		{name: "scheme pattern other scheme", origin: "http://app.example.org", patterns: []string{"https://*.example.org"}, hint: "app.example.org"},
		{name: "scheme pattern case-insensitive", origin: "HTTPS://App.Example.org", patterns: []string{"https://app.example.ORG"}, allowed: true},
		{name: "star allows any", origin: "https://anything.invalid", patterns: []string{"*"}, allowed: true},
		{name: "star allows null", origin: "null", patterns: []string{"*"}, allowed: true},
		{name: "star allows malformed", origin: "http://[::1", patterns: []string{"*"}, allowed: true},
		{name: "null allowed", origin: "null", patterns: []string{"null"}, allowed: true},
		{name: "null not allowed", origin: "null", patterns: []string{"*.example.org"}, hint: "null"},
		{name: "null not allowed by default", origin: "null", hint: "null"},
		{name: "null pattern allows no other", origin: "https://other.test", patterns: []string{"null"}, hint: "other.test"},
		{name: "malformed origin", origin: "http://[::1", hint: "http://[::1"},
		{name: "origin without host", origin: "file:///home/me/chat.html", patterns: []string{"*.example.org"}, hint: "file:///home/me/chat.html"},
		{name: "not a URL", origin: "chat.example.com", hint: "chat.example.com"},
		// A bad pattern is the operator's mistake; it must refuse, not
		// panic or allow.
		{name: "bad pattern", origin: "https://a.test", patterns: []string{"[a-"}, hint: "a.test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := NewServer(nil, Options{OriginPatterns: tc.patterns})
			host := tc.host
			if host == "" {
				host = "chat.example.com"
			}
			r := httptest.NewRequest(http.MethodGet, "http://"+host+"/ws", nil)
			if tc.origin != "" {
				r.Header.Set("Origin", tc.origin)
			}
			err := s.checkOrigin(r)
			if tc.allowed {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Origin %q allowed with patterns %q", tc.origin, tc.patterns)
			}
			// The operator reading the refusal must learn which flag fixes it.
			msg := err.Error()
			if !strings.Contains(msg, "-origins") {
				t.Errorf("refusal %q does not name the -origins flag", msg)
			}
			if !strings.Contains(msg, "-origins="+tc.hint) {
				t.Errorf("refusal %q does not suggest -origins=%s", msg, tc.hint)
			}
			if !strings.Contains(msg, tc.origin) {
				t.Errorf("refusal %q does not quote the Origin %q", msg, tc.origin)
			}
		})
	}
}

func TestPickCodec(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		headers []string // Sec-WebSocket-Protocol lines
		want    codec.Codec
		wantErr bool
	}{
		{name: "none is legacy", want: codec.Legacy},
		{name: "blank tokens are none", headers: []string{" , ,"}, want: codec.Legacy},
		{name: "proto", headers: []string{"parley.v1.proto"}, want: codec.Proto},
		{name: "json", headers: []string{"parley.v1.json"}, want: codec.JSON},
		{name: "first known wins", headers: []string{"parley.v1.json, parley.v1.proto"}, want: codec.JSON},
		{name: "unknown then known", headers: []string{"chat, parley.v1.proto"}, want: codec.Proto},
		{name: "across header lines", headers: []string{"chat", "parley.v1.json", "parley.v1.proto"}, want: codec.JSON},
		{name: "spaces trimmed", headers: []string{"  parley.v1.proto  "}, want: codec.Proto},
		{name: "only unknown", headers: []string{"chat, superchat"}, wantErr: true},
		{name: "other version", headers: []string{"parley.v2.proto"}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest(http.MethodGet, "http://chat.example.com/ws", nil)
			for _, h := range tc.headers {
				r.Header.Add("Sec-WebSocket-Protocol", h)
			}
			got, err := pickCodec(r)
			if !tc.wantErr {
				if err != nil || got != tc.want {
					t.Fatalf("pickCodec = %v, %v; want %v", got, err, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("pickCodec = %v; want an error", got)
			}
			if !errors.Is(err, errUnknownSubprotocol) {
				t.Errorf("error %v does not wrap errUnknownSubprotocol", err)
			}
			// The refusal tells the client what would have worked.
			for _, want := range append(codec.Subprotocols(), "legacy") {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not mention %q", err, want)
				}
			}
		})
	}
}

func TestTruncateReason(t *testing.T) {
	t.Parallel()
	const limit = 123
	for _, tc := range []struct {
		name, in string
	}{
		{"empty", ""},
		{"short", "bye"},
		{"exactly 123 ASCII", strings.Repeat("a", 123)},
		{"124 ASCII", strings.Repeat("a", 124)},
		{"long ASCII", strings.Repeat("abc", 100)},
		{"2-byte runes", strings.Repeat("é", 100)},
		{"2-byte runes off by one", "x" + strings.Repeat("é", 100)},
		{"3-byte runes", strings.Repeat("€", 50)},
		{"3-byte runes off by one", "x" + strings.Repeat("€", 50)},
		{"3-byte runes off by two", "xy" + strings.Repeat("€", 50)},
		{"4-byte runes", strings.Repeat("🎉", 40)},
		{"4-byte runes off by one", "x" + strings.Repeat("🎉", 40)},
		{"4-byte runes off by two", "xy" + strings.Repeat("🎉", 40)},
		{"4-byte runes off by three", "xyz" + strings.Repeat("🎉", 40)},
		{"multi-byte fits", strings.Repeat("🎉", 30)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got := truncateReason(tc.in)
			if len(tc.in) <= limit {
				if got != tc.in {
					t.Fatalf("truncateReason changed a reason that fits: %q -> %q", tc.in, got)
				}
				return
			}
			if len(got) > limit {
				t.Fatalf("kept %d bytes, want at most %d", len(got), limit)
			}
			if !strings.HasPrefix(tc.in, got) {
				t.Fatalf("%q is not a prefix of the reason", got)
			}
			if !utf8.ValidString(got) {
				t.Fatalf("%q is cut inside a rune", got)
			}
			// Only the runes at the cut may go, not more of the reason.
			if len(got) < limit-2*utf8.UTFMax+1 {
				t.Fatalf("kept only %d bytes", len(got))
			}
		})
	}
}
