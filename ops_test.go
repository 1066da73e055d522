package main_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/parleychat/parley/auth"
	"github.com/parleychat/parley/client"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/proto/codec"
	"github.com/parleychat/parley/server"
)

var testSecret = []byte("a test secret that is long enough for HS256")

func token(t *testing.T, sub string, ttl time.Duration, rooms, readOnly []string) string {
	t.Helper()
	tok, err := auth.Issue(testSecret, sub, ttl, rooms, readOnly)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func tokenServer(t *testing.T) *server.Server {
	t.Helper()
	v, err := auth.NewVerifier(auth.Options{HMACSecret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	return startServer(t, func(c *server.Config) {
		c.Auth = v
		c.Actors.RequireToken = true
	})
}

// TestTokens: with tokens required, a bad token is refused at the handshake
// (401), a missing one at hello (NOT_LOGGED_IN); the subject is the user;
// room claims limit joins and posts (FORBIDDEN).
func TestTokens(t *testing.T) {
	t.Parallel()
	srv := tokenServer(t)
	ctx := testCtx(t, 10*time.Second)

	_, err := client.Dial(ctx, srv.URL()+"?token=garbage", codec.JSON, nil)
	wantRefusal(t, err, http.StatusUnauthorized, "invalid token")
	expired, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "old", "exp": time.Now().Add(-time.Minute).Unix()}).SignedString(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	_, err = client.Dial(ctx, srv.URL(), codec.JSON, &client.Options{Header: http.Header{"Authorization": {"Bearer " + expired}}})
	wantRefusal(t, err, http.StatusUnauthorized, "expired")

	anon := dial(t, ctx, srv, codec.JSON)
	if err := anon.Hello(ctx, "mallory", false); client.ErrorCode(err) != parleypb.ErrorCode_ERROR_CODE_NOT_LOGGED_IN {
		t.Fatalf("hello without a token: %v, want NOT_LOGGED_IN", err)
	}
	// A token in hello works too; its subject is the name.
	if _, err := anon.Request(ctx, &parleypb.Envelope{Body: &parleypb.Envelope_Hello{Hello: &parleypb.Hello{Token: token(t, "bob", time.Hour, nil, nil)}}}); err != nil {
		t.Fatalf("hello with a token: %v", err)
	}

	tok := token(t, "alice", time.Hour, []string{"team-*"}, []string{"news"})
	c, err := client.Dial(ctx, srv.URL(), codec.JSON, &client.Options{Header: http.Header{"Authorization": {"Bearer " + tok}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if err := c.Hello(ctx, "eve", false); client.ErrorCode(err) != parleypb.ErrorCode_ERROR_CODE_FORBIDDEN {
		t.Fatalf("hello as someone else: %v, want FORBIDDEN", err)
	}
	if err := c.Hello(ctx, "", false); err != nil {
		t.Fatalf("hello with the handshake's token: %v", err)
	}
	if _, err := c.Join(ctx, "random", nil); client.ErrorCode(err) != parleypb.ErrorCode_ERROR_CODE_FORBIDDEN {
		t.Fatalf("join outside the claims: %v, want FORBIDDEN", err)
	}
	for _, r := range []string{"team-a", "news"} {
		if _, err := c.Join(ctx, r, nil); err != nil {
			t.Fatalf("join %s: %v", r, err)
		}
	}
	if _, err := c.Post(ctx, "news", "hi", "1"); client.ErrorCode(err) != parleypb.ErrorCode_ERROR_CODE_FORBIDDEN {
		t.Fatalf("post to a read-only room: %v, want FORBIDDEN", err)
	}
	if ev := func() *parleypb.RoomEvent {
		if _, err := c.Post(ctx, "team-a", "hi", "2"); err != nil {
			t.Fatal(err)
		}
		return roomEvent(t, ctx, c, "team-a")
	}(); ev.GetSender() != "alice" {
		t.Fatalf("sender %q, want the token's subject", ev.GetSender())
	}
}

// TestTokenExpiryAndRefresh: a session ends with 4003 when its token runs
// out, unless a refresh brought a new one for the same user.
func TestTokenExpiryAndRefresh(t *testing.T) {
	t.Parallel()
	srv := tokenServer(t)
	ctx := testCtx(t, 15*time.Second)
	hello := func(tok string) *client.Client {
		c := dial(t, ctx, srv, codec.JSON)
		if _, err := c.Request(ctx, &parleypb.Envelope{Body: &parleypb.Envelope_Hello{Hello: &parleypb.Hello{Token: tok}}}); err != nil {
			t.Fatal(err)
		}
		return c
	}
	short := hello(token(t, "brief", 1500*time.Millisecond, nil, nil))
	refreshed := hello(token(t, "kept", 1500*time.Millisecond, nil, nil))
	if _, err := refreshed.Request(ctx, &parleypb.Envelope{Body: &parleypb.Envelope_Refresh{Refresh: &parleypb.Refresh{Token: token(t, "someone-else", time.Hour, nil, nil)}}}); client.ErrorCode(err) != parleypb.ErrorCode_ERROR_CODE_FORBIDDEN {
		t.Fatalf("refresh for another user: %v, want FORBIDDEN", err)
	}
	if _, err := refreshed.Request(ctx, &parleypb.Envelope{Body: &parleypb.Envelope_Refresh{Refresh: &parleypb.Refresh{Token: token(t, "kept", time.Hour, nil, nil)}}}); err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if code, reason := closeCode(t, ctx, short); code != parleypb.CloseCode_CLOSE_CODE_TOKEN_EXPIRED {
		t.Fatalf("expired session closed with %d %q, want 4003", code, reason)
	}
	if err := refreshed.Ping(ctx); err != nil {
		t.Fatalf("refreshed session after the first token's expiry: %v", err)
	}
}

// TestAdminAPI: the operator's listener needs its token; it lists rooms and
// members, kicks (4002), closes rooms, broadcasts notices, and serves
// /metrics and pprof.
func TestAdminAPI(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *server.Config) {
		c.AdminAddr, c.AdminToken = "127.0.0.1:0", "admin-secret"
	})
	ctx := testCtx(t, 10*time.Second)
	alice := login(t, ctx, srv, codec.JSON, "alice", "ops", "other")
	bob := login(t, ctx, srv, codec.Proto, "bob", "ops")

	call := func(method, path, body string, auth bool) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+srv.AdminAddr()+path, strings.NewReader(body))
		if method == "POST" {
			req.Header.Set("Content-Type", "application/json")
		}
		if auth {
			req.Header.Set("Authorization", "Bearer admin-secret")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := call("GET", "/rooms", "", false); code != http.StatusUnauthorized {
		t.Fatalf("no token: %d, want 401", code)
	}
	if code, body := call("GET", "/rooms", "", true); code != 200 || !strings.Contains(body, `{"name":"ops","members":2}`) {
		t.Fatalf("rooms: %d %s", code, body)
	}
	if code, body := call("GET", "/rooms/ops", "", true); code != 200 || !strings.Contains(body, `"alice"`) || !strings.Contains(body, `"bob"`) {
		t.Fatalf("members: %d %s", code, body)
	}
	if code, body := call("POST", "/notice", `{"text":"maintenance at noon"}`, true); code != 200 || !strings.Contains(body, `"sessions":2`) {
		t.Fatalf("notice: %d %s", code, body)
	}
	n := nextEvent(t, ctx, alice, "the notice", func(e *parleypb.Envelope) bool { return e.GetNotice() != nil })
	if n.GetNotice().GetText() != "maintenance at noon" {
		t.Fatalf("notice = %v", n)
	}
	if code, body := call("POST", "/rooms/other/close", `{"reason":"spam"}`, true); code != 200 || !strings.Contains(body, `"connections_evicted":1`) {
		t.Fatalf("close room: %d %s", code, body)
	}
	closed := nextEvent(t, ctx, alice, "the room-closed notice", func(e *parleypb.Envelope) bool { return e.GetNotice().GetRoom() == "other" })
	if !strings.Contains(closed.GetNotice().GetText(), "spam") {
		t.Fatalf("notice = %v", closed)
	}
	if _, err := alice.Post(ctx, "other", "still here?", "x"); client.ErrorCode(err) != parleypb.ErrorCode_ERROR_CODE_NOT_JOINED {
		t.Fatalf("post to a closed room: %v, want NOT_JOINED", err)
	}
	if code, body := call("POST", "/kick", `{"user":"bob","reason":"rude"}`, true); code != 200 || !strings.Contains(body, `"connections_closed":1`) {
		t.Fatalf("kick: %d %s", code, body)
	}
	if code, reason := closeCode(t, ctx, bob); code != parleypb.CloseCode_CLOSE_CODE_KICKED || !strings.Contains(reason, "rude") {
		t.Fatalf("kicked: %d %q, want 4002 naming the reason", code, reason)
	}
	waitFor(t, 5*time.Second, func() error {
		code, body := call("GET", "/metrics", "", true)
		for _, want := range []string{"parley_connections{codec=\"json\"} 1", "parley_posts_total", "parley_deliveries_total", `parley_closes_total{code="4002"} 1`, "parley_actor_restarts_total{kind=\"room\"} 0", "parley_store_seconds_bucket"} {
			if code != 200 || !strings.Contains(body, want) {
				return fmt.Errorf("/metrics lacks %s:\n%.3000s", want, body)
			}
		}
		return nil
	})
	if code, _ := call("GET", "/debug/pprof/", "", true); code != 200 {
		t.Fatalf("pprof: %d", code)
	}
	if resp, err := http.Get("http://" + srv.Addr() + "/debug/pprof/"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("pprof is served on the public listener")
		}
	}
}

// TestTLS: with a certificate the server speaks wss://.
func TestTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	srv := startServer(t, func(c *server.Config) { c.TLSCert, c.TLSKey = certFile, keyFile })
	if !strings.HasPrefix(srv.URL(), "wss://") {
		t.Fatalf("URL %s", srv.URL())
	}
	ctx := testCtx(t, 10*time.Second)
	c, err := client.Dial(ctx, srv.URL(), codec.JSON, &client.Options{TLSConfig: &tls.Config{RootCAs: pool}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if err := c.Hello(ctx, "secure", false); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Dial(ctx, "ws://"+srv.Addr()+"/ws", codec.JSON, nil); err == nil {
		t.Fatal("plain ws:// accepted on a TLS listener")
	}
}

func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestShutdownBeforeStart: a server that never served (main takes this
// path when a bot cannot start) shuts down at once, closing the listeners
// New opened, instead of waiting out its shutdown timeout.
func TestShutdownBeforeStart(t *testing.T) {
	t.Parallel()
	srv, err := server.New(server.Config{Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", ShutdownTimeout: time.Hour, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	addr, admin := srv.Addr(), srv.AdminAddr()
	ctx := testCtx(t, 30*time.Second)
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown before Start: %v", err)
	}
	for _, a := range []string{addr, admin} {
		if c, err := net.Dial("tcp", a); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after Shutdown", a)
		}
	}
	if err := srv.Wait(); err != nil {
		t.Errorf("Wait after Shutdown: %v", err)
	}
}
