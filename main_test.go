package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/server"
	"github.com/parleychat/parley/webhooks"
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

// TestWebhookFlags: the secret comes from its file (trimmed) or flag, the
// event list is split, and a bad combination is refused naming the flags;
// the server refuses an unknown event type or a short secret.
func TestWebhookFlags(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	parse := func(args ...string) (options, error) {
		o, err := parseFlags(args, func(string) string { return "" }, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		return o, setupWebhooks(&o, log)
	}
	o, err := parse("-webhook-url", "http://127.0.0.1:9/h", "-webhook-secret-file", secretFile, "-webhook-events", "notify, message.created")
	if err != nil {
		t.Fatal(err)
	}
	w := o.server.Webhooks
	if string(w.Secret) != "0123456789abcdef0123456789abcdef" || !slices.Equal(w.Events, []string{"notify", "message.created"}) || w.Timeout != 10*time.Second {
		t.Fatalf("webhooks config %+v", w)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-webhook-url", "http://x/h"}, "-webhook-secret"},
		{[]string{"-webhook-secret", "x"}, "need -webhook-url"},
		{[]string{"-webhook-url", "http://x/h", "-webhook-secret", "x", "-webhook-secret-file", secretFile}, "not both"},
		{[]string{"-webhook-url", "http://x/h", "-webhook-secret-file", filepath.Join(dir, "missing")}, "-webhook-secret-file"},
	} {
		if _, err := parse(tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error naming %s", tc.args, err, tc.want)
		}
	}
	for _, tc := range []struct {
		cfg  webhooks.Config
		want string
	}{
		{webhooks.Config{URL: "http://127.0.0.1:9/h", Secret: []byte("short")}, "at least 32"},
		{webhooks.Config{URL: "http://127.0.0.1:9/h", Secret: w.Secret, Events: []string{"message.sent"}}, `unknown event type "message.sent"`},
		{webhooks.Config{URL: "127.0.0.1:9", Secret: w.Secret}, "not an http"},
	} {
		_, err := server.New(server.Config{Addr: "127.0.0.1:0", Webhooks: tc.cfg})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("server.New with %+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
}
