package main

import (
	"fmt"
	"io"
	"testing"
	"time"
)

func TestFlagsFromEnvAndCommandLine(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"PARLEY_ADDR":          "127.0.0.1:9999",
		"PARLEY_PING_INTERVAL": "5s",
		"PARLEY_ORIGINS":       "a.example, null",
		"PARLEY_HISTORY":       "7",
	}
	o, err := parseFlags([]string{"-history", "9"}, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	c := o.server
	if c.Addr != "127.0.0.1:9999" || c.Transport.PingInterval != 5*time.Second || c.Actors.History != 9 {
		t.Fatalf("addr %q ping %v history %d: env then command line not applied", c.Addr, c.Transport.PingInterval, c.Actors.History)
	}
	if got := c.Transport.OriginPatterns; len(got) != 2 || got[0] != "a.example" || got[1] != "null" {
		t.Fatalf("origins = %q", got)
	}
	if o.store != "bolt" || o.data != "./parley-data" {
		t.Fatalf("store defaults: %q %q", o.store, o.data)
	}
}

func TestFlagErrorsNameTheCulprit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"bad env duration", nil, map[string]string{"PARLEY_PONG_TIMEOUT": "soon"}},
		{"bad level", []string{"-log-level", "loud"}, nil},
		{"stray argument", []string{"serve"}, nil},
		{"bad trusted proxy", []string{"-trusted-proxies", "127.0.0.1,proxy.internal"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseFlags(tc.args, func(k string) string { return tc.env[k] }, io.Discard); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

// TestProxyDefaults: behind a reverse proxy on the same host (README's
// nginx example), the client's address comes from X-Forwarded-For, which
// only loopback peers are believed about.
func TestProxyDefaults(t *testing.T) {
	t.Parallel()
	o, err := parseFlags(nil, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	tr := o.server.Transport
	if tr.ClientIPHeader != "X-Forwarded-For" || fmt.Sprint(tr.TrustedProxies) != "[127.0.0.0/8 ::1/128]" {
		t.Fatalf("client-ip-header %q, trusted proxies %v", tr.ClientIPHeader, tr.TrustedProxies)
	}
	for _, tc := range []struct{ flag, want string }{
		{"10.0.0.0/8, 192.0.2.7", "[10.0.0.0/8 192.0.2.7/32]"},
		{"::ffff:10.1.2.3", "[10.1.2.3/32]"},
		{"", "[]"},
		{"none", "[]"},
	} {
		o, err := parseFlags([]string{"-trusted-proxies=" + tc.flag}, func(string) string { return "" }, io.Discard)
		if err != nil || fmt.Sprint(o.server.Transport.TrustedProxies) != tc.want {
			t.Errorf("-trusted-proxies %q: %v %v, want %s", tc.flag, o.server.Transport.TrustedProxies, err, tc.want)
		}
	}
}
