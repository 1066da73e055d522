package hooks

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSignAndVerify(t *testing.T) {
	secret := []byte("a-secret-of-thirty-two-bytes-or-more")
	body := []byte(`{"room":"chat"}`)
	now := time.Unix(1_800_000_000, 0)
	sig := Sign(secret, now, body)
	if err := Verify(secret, sig, body, now.Add(time.Minute), 5*time.Minute); err != nil {
		t.Fatalf("a good signature: %v", err)
	}
	for _, c := range []struct {
		name   string
		secret []byte
		header string
		body   []byte
		at     time.Time
		want   error
	}{
		{"a changed body", secret, sig, []byte(`{"room":"chat2"}`), now, ErrBadSignature},
		{"another secret", []byte("another-secret-of-thirty-two-bytes"), sig, body, now, ErrBadSignature},
		{"a replay an hour later", secret, sig, body, now.Add(time.Hour), ErrStale},
		{"a clock far behind", secret, sig, body, now.Add(-time.Hour), ErrStale},
		{"no header", secret, "", body, now, ErrNoSignature},
		{"no MAC", secret, "t=1800000000", body, now, ErrNoSignature},
		{"garbage", secret, "v1", body, now, ErrNoSignature},
		{"a changed timestamp", secret, strings.Replace(sig, "t=1800000000", "t=1800000001", 1), body, now, ErrBadSignature},
	} {
		if err := Verify(c.secret, c.header, c.body, c.at, 5*time.Minute); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	// While a secret rotates, a header may carry both MACs.
	old := []byte("the-old-secret-of-thirty-two-bytes!!")
	both := sig + ",v1=" + strings.SplitN(Sign(old, now, body), "v1=", 2)[1]
	for _, s := range [][]byte{secret, old} {
		if err := Verify(s, both, body, now, time.Minute); err != nil {
			t.Errorf("a header with two MACs, checked with one secret: %v", err)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	secretFile := write("secret", "  from-a-file-thirty-two-bytes-long!!\n")
	c, err := Load(write("hooks.json", `{"post": {"url": "http://127.0.0.1:9000/hooks", "timeout": "750ms", "fail_open": true},
		"join": {"url": "https://app.example/hooks", "timeout": 2.5}, "secret_file": "`+secretFile+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(c.Post.Timeout) != 750*time.Millisecond || !c.Post.FailOpen || time.Duration(c.Join.Timeout) != 2500*time.Millisecond || c.Join.FailOpen || c.Secret != "from-a-file-thirty-two-bytes-long!!" {
		t.Fatalf("loaded %+v", c)
	}
	if _, err := New(c, Options{}); err != nil {
		t.Fatalf("New: %v", err)
	}
	for _, bad := range []struct{ name, text, want string }{
		{"unknown.json", `{"post": {"url": "http://x", "timout": "1s"}}`, "unknown field"},
		{"duration.json", `{"post": {"url": "http://x", "timeout": "soon"}}`, "duration"},
	} {
		if _, err := Load(write(bad.name, bad.text)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: %v, want an error about %q", bad.text, err, bad.want)
		}
	}
	if _, err := New(Config{Post: Hook{URL: "http://x"}, Secret: "short"}, Options{}); err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Errorf("a short secret: %v", err)
	}
	if _, err := New(Config{Post: Hook{URL: "ftp://x"}, Secret: strings.Repeat("s", 32)}, Options{}); err == nil || !strings.Contains(err.Error(), "http") {
		t.Errorf("an ftp URL: %v", err)
	}
	if cl, err := New(Config{}, Options{}); cl != nil || err != nil || cl.Authenticator() != nil || cl.ActorHooks().Post != nil {
		t.Errorf("no hooks: %v, %v", cl, err)
	}
}
