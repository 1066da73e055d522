package auth

import (
	"strings"
	"testing"
	"time"
)

func TestMayJoinMayPost(t *testing.T) {
	t.Parallel()
	type access struct{ join, post bool }
	tests := []struct {
		name   string
		claims *Claims
		want   map[string]access // room: expected
	}{
		{"nil claims fail closed", nil, map[string]access{"lobby": {false, false}}},
		{"nil rooms: every room", &Claims{Subject: "a"}, map[string]access{
			"lobby": {true, true}, "team-red": {true, true}, "a/b": {true, true}}},
		{"empty rooms: none", &Claims{Subject: "a", Rooms: []string{}}, map[string]access{
			"lobby": {false, false}}},
		{"patterns", &Claims{Subject: "a", Rooms: []string{"lobby", "team-*", "dm-?", `lit\*`}}, map[string]access{
			"lobby": {true, true}, "lobby2": {false, false}, "team-red": {true, true}, "team-": {true, true},
			"team-a/b": {false, false}, "dm-1": {true, true}, "dm-12": {false, false}, "lit*": {true, true}, "litx": {false, false}}},
		{"read-only only", &Claims{Subject: "a", Rooms: []string{}, ReadOnlyRooms: []string{"news-*"}}, map[string]access{
			"news-today": {true, false}, "lobby": {false, false}}},
		{"read-only beats rooms", &Claims{Subject: "a", Rooms: []string{"*"}, ReadOnlyRooms: []string{"announcements"}}, map[string]access{
			"announcements": {true, false}, "lobby": {true, true}}},
		{"read-only with nil rooms", &Claims{Subject: "a", ReadOnlyRooms: []string{"announcements"}}, map[string]access{
			"announcements": {true, false}, "lobby": {true, true}}},
		{"malformed hand-built pattern matches nothing", &Claims{Subject: "a", Rooms: []string{"[", "ok"}, ReadOnlyRooms: []string{"["}}, map[string]access{
			"[": {false, false}, "ok": {true, true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for room, want := range tt.want {
				if got := tt.claims.MayJoin(room); got != want.join {
					t.Errorf("MayJoin(%q) = %v, want %v", room, got, want.join)
				}
				if got := tt.claims.MayPost(room); got != want.post {
					t.Errorf("MayPost(%q) = %v, want %v", room, got, want.post)
				}
			}
		})
	}
}

func TestCheckPatterns(t *testing.T) {
	t.Parallel()
	tests := []struct {
		patterns []string
		ok       bool
	}{
		{nil, true},
		{[]string{}, true},
		{[]string{"lobby", "*", "team-[a-z]*", `a\*`}, true},
		{[]string{"["}, false},
		{[]string{"team-[a-"}, false},
		{[]string{`trailing\`}, false},
		{[]string{"x*["}, false}, // malformed after a star: caught without a match
		{[]string{""}, false},
		{[]string{strings.Repeat("a", MaxPatternBytes+1)}, false},
		{make([]string, MaxPatterns+1), false},
	}
	for _, tt := range tests {
		if err := checkPatterns("rooms", tt.patterns); (err == nil) != tt.ok {
			t.Errorf("checkPatterns(%.40q) = %v, want ok %v", tt.patterns, err, tt.ok)
		}
	}
}

func TestIssueErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		secret []byte
		o      IssueOptions
		want   string
	}{
		{"short secret", []byte("short"), IssueOptions{Subject: "a"}, "32 bytes"},
		{"no subject", testSecret, IssueOptions{}, "subject"},
		{"negative ttl", testSecret, IssueOptions{Subject: "a", TTL: -time.Second}, "ttl"},
		{"bad room", testSecret, IssueOptions{Subject: "a", Rooms: []string{"["}}, "rooms[0]"},
		{"bad read-only", testSecret, IssueOptions{Subject: "a", ReadOnlyRooms: []string{"ok", "[x"}}, "read_only_rooms[1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tok, err := IssueWith(tt.secret, tt.o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("IssueWith = %q, %v; want error mentioning %q", tok, err, tt.want)
			}
		})
	}
}

func TestIssueWithIssuerAudience(t *testing.T) {
	t.Parallel()
	v := mustVerifier(t, Options{HMACSecret: testSecret, Issuer: "parley-dev", Audience: "parley"})
	tok, err := IssueWith(testSecret, IssueOptions{Subject: "alice", TTL: time.Minute, Issuer: "parley-dev", Audience: "parley"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(tok); err != nil {
		t.Fatal(err)
	}
	plain, err := Issue(testSecret, "alice", time.Minute, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(plain); err == nil {
		t.Fatal("token without iss/aud accepted by a verifier that checks them")
	}
}
