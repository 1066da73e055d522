package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/auth"
)

const secret = "0123456789abcdef0123456789abcdef-parley-token"

func env(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

// TestPrintsVerifiableToken runs the command's main logic and checks the
// printed token with the verifier the server will use.
func TestPrintsVerifiableToken(t *testing.T) {
	t.Parallel()
	v, err := auth.NewVerifier(auth.Options{HMACSecret: []byte(secret)})
	if err != nil {
		t.Fatal(err)
	}
	strict, err := auth.NewVerifier(auth.Options{HMACSecret: []byte(secret), Issuer: "dev", Audience: "parley"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		verifier *auth.Verifier
		check    func(t *testing.T, c *auth.Claims)
	}{
		{"flags", []string{"-secret", secret, "-sub", "alice", "-ttl", "30m", "-rooms", "lobby, team-*,", "-read-only", "announcements"}, nil, v,
			func(t *testing.T, c *auth.Claims) {
				if c.Subject != "alice" || !slices.Equal(c.Rooms, []string{"lobby", "team-*"}) || !slices.Equal(c.ReadOnlyRooms, []string{"announcements"}) {
					t.Errorf("claims %+v", c)
				}
				if d := time.Until(c.Expiry); d < 29*time.Minute || d > 30*time.Minute+time.Second {
					t.Errorf("expiry in %v, want 30m", d)
				}
			}},
		{"secret from env, defaults", []string{"-sub", "bob"}, map[string]string{secretEnv: secret}, v,
			func(t *testing.T, c *auth.Claims) {
				if c.Subject != "bob" || c.Rooms != nil || !c.MayPost("anything") {
					t.Errorf("claims %+v, want every room", c)
				}
				if d := time.Until(c.Expiry); d < 59*time.Minute || d > time.Hour+time.Second {
					t.Errorf("expiry in %v, want the 1h default", d)
				}
			}},
		{"flag wins over env", []string{"-secret", secret, "-sub", "carol"}, map[string]string{secretEnv: "some other secret that is long enough!!"}, v, nil},
		{"no expiry", []string{"-sub", "dave", "-ttl", "0"}, map[string]string{secretEnv: secret}, v,
			func(t *testing.T, c *auth.Claims) {
				if !c.Expiry.IsZero() {
					t.Errorf("expiry %v, want none", c.Expiry)
				}
			}},
		{"empty rooms means none", []string{"-sub", "eve", "-rooms", "", "-read-only", "news"}, map[string]string{secretEnv: secret}, v,
			func(t *testing.T, c *auth.Claims) {
				if c.Rooms == nil || c.MayJoin("lobby") || !c.MayJoin("news") || c.MayPost("news") {
					t.Errorf("claims %+v, want read-only news and nothing else", c)
				}
			}},
		{"issuer and audience", []string{"-sub", "frank", "-iss", "dev", "-aud", "parley"}, map[string]string{secretEnv: secret}, strict, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			if code := run(tt.args, env(tt.env), &stdout, &stderr); code != 0 {
				t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
			}
			out := stdout.String()
			if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") || stderr.Len() != 0 {
				t.Fatalf("stdout %q, stderr %q: want one line with the token and nothing else", out, stderr.String())
			}
			c, err := tt.verifier.Verify(strings.TrimSpace(out))
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestMisuse(t *testing.T) {
	t.Parallel()
	withEnv := map[string]string{secretEnv: secret}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		code int
		want string // in stderr
	}{
		{"help", []string{"-h"}, nil, 0, "Usage: parley-token"},
		{"no secret", []string{"-sub", "alice"}, nil, 2, secretEnv},
		{"no sub", nil, withEnv, 2, "-sub is required"},
		{"short secret", []string{"-secret", "hunter2", "-sub", "alice"}, nil, 2, "at least 32 bytes"},
		{"bad pattern", []string{"-sub", "alice", "-rooms", "team-["}, withEnv, 2, `"team-["`},
		{"bad read-only pattern", []string{"-sub", "alice", "-read-only", `x\`}, withEnv, 2, "read_only_rooms"},
		{"negative ttl", []string{"-sub", "alice", "-ttl", "-1h"}, withEnv, 2, "negative"},
		{"bad ttl", []string{"-sub", "alice", "-ttl", "soon"}, withEnv, 2, "-ttl"},
		{"unknown flag", []string{"-sub", "alice", "-room", "x"}, withEnv, 2, "-room"},
		{"extra argument", []string{"-sub", "alice", "lobby"}, withEnv, 2, "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			code := run(tt.args, env(tt.env), &stdout, &stderr)
			if code != tt.code || !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("exit %d, stderr %q; want exit %d mentioning %q", code, stderr.String(), tt.code, tt.want)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout %q, want nothing", stdout.String())
			}
			if strings.Contains(stderr.String(), "hunter2") {
				t.Error("the secret was echoed")
			}
		})
	}
}
