package auth

import (
	"bytes"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// verifiers builds one verifier per key configuration, with the key files in
// a temporary directory.
func verifiers(t *testing.T) map[string]*Verifier {
	t.Helper()
	dir := t.TempDir()
	rsaA, ecA, ecB := rsaKeyA(), ecKeyA(), ecKeyB()
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(&rsaA.PublicKey)})
	return map[string]*Verifier{
		"hs":     mustVerifier(t, Options{HMACSecret: testSecret}),
		"rs":     mustVerifier(t, Options{PublicKeyFile: writeFile(t, dir, "rsa.pem", pemPKIX(t, &rsaA.PublicKey))}),
		"rs1":    mustVerifier(t, Options{PublicKeyFile: writeFile(t, dir, "rsa1.pem", pkcs1)}),
		"rsCert": mustVerifier(t, Options{PublicKeyFile: writeFile(t, dir, "cert.pem", pemCert(t, rsaA))}),
		"es":     mustVerifier(t, Options{PublicKeyFile: writeFile(t, dir, "ec.pem", pemPKIX(t, &ecA.PublicKey))}),
		"jwks": mustVerifier(t, Options{JWKSFile: writeFile(t, dir, "jwks.json",
			jwksJSON(t, jwkOf("a", &rsaA.PublicKey), jwkOf("b", &ecB.PublicKey)))}),
		"both":   mustVerifier(t, Options{HMACSecret: testSecret, PublicKeyFile: writeFile(t, dir, "rsa2.pem", pemPKIX(t, &rsaA.PublicKey))}),
		"strict": mustVerifier(t, Options{HMACSecret: testSecret, Issuer: "https://id.example", Audience: "parley"}),
	}
}

func TestVerify(t *testing.T) {
	t.Parallel()
	vs := verifiers(t)
	rsaA, rsaB, ecA, ecB := rsaKeyA(), rsaKeyB(), ecKeyA(), ecKeyB()
	rsaPEM := pemPKIX(t, &rsaA.PublicKey)
	rsaDER, _ := x509.MarshalPKIXPublicKey(&rsaA.PublicKey)
	now := time.Now()
	hs := func(extra jwt.MapClaims) string {
		return sign(t, jwt.SigningMethodHS256, testSecret, claimsFor(extra), nil)
	}
	issued, err := Issue(testSecret, "alice", time.Hour, []string{"lobby", "team-*"}, []string{"announcements"})
	if err != nil {
		t.Fatal(err)
	}
	forever, err := Issue(testSecret, "bob", 0, nil, nil)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		verifier string
		token    string
		want     error // nil, ErrExpired or ErrInvalid
		check    func(t *testing.T, c *Claims)
	}{
		{name: "HS256 round trip", verifier: "hs", token: issued, check: func(t *testing.T, c *Claims) {
			if c.Subject != "alice" || !slices.Equal(c.Rooms, []string{"lobby", "team-*"}) || !slices.Equal(c.ReadOnlyRooms, []string{"announcements"}) {
				t.Errorf("claims = %+v", c)
			}
			if d := time.Until(c.Expiry); d < 59*time.Minute || d > time.Hour+time.Second {
				t.Errorf("expiry in %v, want about 1h", d)
			}
		}},
		{name: "no exp is zero Expiry", verifier: "hs", token: forever, check: func(t *testing.T, c *Claims) {
			if !c.Expiry.IsZero() || c.Rooms != nil || c.ReadOnlyRooms != nil {
				t.Errorf("claims = %+v, want zero expiry and nil rooms", c)
			}
		}},
		{name: "empty rooms means none", verifier: "hs", token: hs(jwt.MapClaims{"rooms": []string{}}), check: func(t *testing.T, c *Claims) {
			if c.Rooms == nil || c.MayJoin("lobby") {
				t.Errorf("rooms %#v: want empty non-nil and no access", c.Rooms)
			}
		}},
		{name: "null rooms means every room", verifier: "hs", token: hs(jwt.MapClaims{"rooms": nil}), check: func(t *testing.T, c *Claims) {
			if c.Rooms != nil || !c.MayPost("anything") {
				t.Errorf("rooms %#v: want nil and full access", c.Rooms)
			}
		}},
		{name: "expired", verifier: "hs", token: hs(jwt.MapClaims{"exp": now.Add(-time.Hour).Unix()}), want: ErrExpired},
		{name: "expired within leeway", verifier: "hs", token: hs(jwt.MapClaims{"exp": now.Add(-10 * time.Second).Unix()})},
		{name: "nbf in the future", verifier: "hs", token: hs(jwt.MapClaims{"nbf": now.Add(time.Hour).Unix()}), want: ErrInvalid},
		{name: "nbf within leeway", verifier: "hs", token: hs(jwt.MapClaims{"nbf": now.Add(10 * time.Second).Unix()})},
		{name: "iat in the future", verifier: "hs", token: hs(jwt.MapClaims{"iat": now.Add(time.Hour).Unix()}), want: ErrInvalid},
		{name: "expired and not yet valid is invalid", verifier: "hs", token: hs(jwt.MapClaims{"exp": now.Add(-time.Hour).Unix(), "nbf": now.Add(time.Hour).Unix()}), want: ErrInvalid},
		{name: "expired with bad rooms is invalid", verifier: "hs", token: hs(jwt.MapClaims{"exp": now.Add(-time.Hour).Unix(), "rooms": []string{"["}}), want: ErrInvalid},
		{name: "expired forgery is invalid", verifier: "hs", token: sign(t, jwt.SigningMethodHS256, []byte("another secret of thirty-two bytes!!"), claimsFor(jwt.MapClaims{"exp": now.Add(-time.Hour).Unix()}), nil), want: ErrInvalid},
		{name: "exp not a number", verifier: "hs", token: hs(jwt.MapClaims{"exp": "tomorrow"}), want: ErrInvalid},
		{name: "wrong secret", verifier: "hs", token: sign(t, jwt.SigningMethodHS256, []byte("another secret of thirty-two bytes!!"), claimsFor(nil), nil), want: ErrInvalid},
		{name: "alg none", verifier: "hs", token: sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claimsFor(nil), nil), want: ErrInvalid},
		{name: "alg none against public key", verifier: "rs", token: sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claimsFor(nil), nil), want: ErrInvalid},
		{name: "missing sub", verifier: "hs", token: hs(jwt.MapClaims{"sub": absent{}}), want: ErrInvalid},
		{name: "empty sub", verifier: "hs", token: hs(jwt.MapClaims{"sub": ""}), want: ErrInvalid},
		{name: "sub not a string", verifier: "hs", token: hs(jwt.MapClaims{"sub": 7}), want: ErrInvalid},
		{name: "bad room pattern", verifier: "hs", token: hs(jwt.MapClaims{"rooms": []string{"lobby", "team-["}}), want: ErrInvalid},
		{name: "bad read-only pattern", verifier: "hs", token: hs(jwt.MapClaims{"read_only_rooms": []string{`news\`}}), want: ErrInvalid},
		{name: "empty room pattern", verifier: "hs", token: hs(jwt.MapClaims{"rooms": []string{""}}), want: ErrInvalid},
		{name: "too many patterns", verifier: "hs", token: hs(jwt.MapClaims{"rooms": slices.Repeat([]string{"a"}, MaxPatterns+1)}), want: ErrInvalid},
		{name: "rooms not an array", verifier: "hs", token: hs(jwt.MapClaims{"rooms": "lobby"}), want: ErrInvalid},
		{name: "rooms not strings", verifier: "hs", token: hs(jwt.MapClaims{"rooms": []any{1, 2}}), want: ErrInvalid},
		{name: "issuer and audience match", verifier: "strict", token: hs(jwt.MapClaims{"iss": "https://id.example", "aud": []string{"other", "parley"}})},
		{name: "issuer mismatch", verifier: "strict", token: hs(jwt.MapClaims{"iss": "https://evil.example", "aud": "parley"}), want: ErrInvalid},
		{name: "issuer missing", verifier: "strict", token: hs(jwt.MapClaims{"aud": "parley"}), want: ErrInvalid},
		{name: "audience mismatch", verifier: "strict", token: hs(jwt.MapClaims{"iss": "https://id.example", "aud": "other"}), want: ErrInvalid},
		{name: "audience missing", verifier: "strict", token: hs(jwt.MapClaims{"iss": "https://id.example"}), want: ErrInvalid},
		{name: "expired with wrong audience is invalid", verifier: "strict", token: hs(jwt.MapClaims{"iss": "https://id.example", "aud": "other", "exp": now.Add(-time.Hour).Unix()}), want: ErrInvalid},
		{name: "RS256 PKIX", verifier: "rs", token: sign(t, jwt.SigningMethodRS256, rsaA, claimsFor(nil), nil)},
		{name: "RS256 PKCS1", verifier: "rs1", token: sign(t, jwt.SigningMethodRS256, rsaA, claimsFor(nil), nil)},
		{name: "RS256 certificate", verifier: "rsCert", token: sign(t, jwt.SigningMethodRS256, rsaA, claimsFor(nil), nil)},
		{name: "RS256 with unknown kid uses the single key", verifier: "rs", token: sign(t, jwt.SigningMethodRS256, rsaA, claimsFor(nil), map[string]any{"kid": "k1"})},
		{name: "RS256 wrong key", verifier: "rs", token: sign(t, jwt.SigningMethodRS256, rsaB, claimsFor(nil), nil), want: ErrInvalid},
		{name: "RS512 not allowed", verifier: "rs", token: sign(t, jwt.SigningMethodRS512, rsaA, claimsFor(nil), nil), want: ErrInvalid},
		{name: "PS256 not allowed", verifier: "rs", token: sign(t, jwt.SigningMethodPS256, rsaA, claimsFor(nil), nil), want: ErrInvalid},
		{name: "RS256 expired", verifier: "rs", token: sign(t, jwt.SigningMethodRS256, rsaA, claimsFor(jwt.MapClaims{"exp": now.Add(-time.Hour).Unix()}), nil), want: ErrExpired},
		{name: "ES256", verifier: "es", token: sign(t, jwt.SigningMethodES256, ecA, claimsFor(nil), nil)},
		{name: "ES256 wrong key", verifier: "es", token: sign(t, jwt.SigningMethodES256, ecB, claimsFor(nil), nil), want: ErrInvalid},
		{name: "ES256 to an RSA verifier", verifier: "rs", token: sign(t, jwt.SigningMethodES256, ecA, claimsFor(nil), nil), want: ErrInvalid},
		{name: "RS256 to an EC verifier", verifier: "es", token: sign(t, jwt.SigningMethodRS256, rsaA, claimsFor(nil), nil), want: ErrInvalid},
		{name: "RS256 to an HS256 verifier", verifier: "hs", token: sign(t, jwt.SigningMethodRS256, rsaA, claimsFor(nil), nil), want: ErrInvalid},
		{name: "HS256 signed with public key PEM", verifier: "rs", token: sign(t, jwt.SigningMethodHS256, rsaPEM, claimsFor(nil), nil), want: ErrInvalid},
		{name: "HS256 signed with public key DER", verifier: "rs", token: sign(t, jwt.SigningMethodHS256, rsaDER, claimsFor(nil), nil), want: ErrInvalid},
		{name: "HS256 signed with public key PEM, secret also set", verifier: "both", token: sign(t, jwt.SigningMethodHS256, rsaPEM, claimsFor(nil), nil), want: ErrInvalid},
		{name: "both: HS256", verifier: "both", token: hs(nil)},
		{name: "both: RS256", verifier: "both", token: sign(t, jwt.SigningMethodRS256, rsaA, claimsFor(nil), nil)},
		{name: "JWKS RSA kid", verifier: "jwks", token: sign(t, jwt.SigningMethodRS256, rsaA, claimsFor(nil), map[string]any{"kid": "a"})},
		{name: "JWKS EC kid", verifier: "jwks", token: sign(t, jwt.SigningMethodES256, ecB, claimsFor(nil), map[string]any{"kid": "b"})},
		{name: "JWKS kid of the other key", verifier: "jwks", token: sign(t, jwt.SigningMethodES256, ecB, claimsFor(nil), map[string]any{"kid": "a"}), want: ErrInvalid},
		{name: "JWKS right alg, wrong key", verifier: "jwks", token: sign(t, jwt.SigningMethodRS256, rsaB, claimsFor(nil), map[string]any{"kid": "a"}), want: ErrInvalid},
		{name: "JWKS unknown kid", verifier: "jwks", token: sign(t, jwt.SigningMethodRS256, rsaA, claimsFor(nil), map[string]any{"kid": "zzz"}), want: ErrInvalid},
		{name: "JWKS no kid", verifier: "jwks", token: sign(t, jwt.SigningMethodRS256, rsaA, claimsFor(nil), nil), want: ErrInvalid},
		{name: "JWKS kid not a string", verifier: "jwks", token: sign(t, jwt.SigningMethodRS256, rsaA, claimsFor(nil), map[string]any{"kid": 1}), want: ErrInvalid},
		{name: "JWKS HS256 with the kid", verifier: "jwks", token: sign(t, jwt.SigningMethodHS256, rsaPEM, claimsFor(nil), map[string]any{"kid": "a"}), want: ErrInvalid},
		{name: "crit header", verifier: "hs", token: sign(t, jwt.SigningMethodHS256, testSecret, claimsFor(nil), map[string]any{"crit": []string{"exp"}}), want: ErrInvalid},
		{name: "empty token", verifier: "hs", token: "", want: ErrInvalid},
		{name: "garbage", verifier: "hs", token: "not.a.jwt", want: ErrInvalid},
		{name: "too long", verifier: "hs", token: hs(jwt.MapClaims{"pad": strings.Repeat("x", MaxTokenBytes)}), want: ErrInvalid},
		{name: "tampered payload", verifier: "hs", token: tamper(hs(nil)), want: ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := vs[tt.verifier].Verify(tt.token)
			checkErr(t, err, tt.want)
			if err != nil {
				if c != nil {
					t.Errorf("claims %+v returned with error", c)
				}
				if strings.Contains(err.Error(), string(testSecret)) || (tt.token != "" && strings.Contains(err.Error(), tt.token)) {
					t.Errorf("error leaks the secret or the token: %v", err)
				}
				return
			}
			if c.Subject == "" {
				t.Error("empty subject accepted")
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

// checkErr asserts err wraps want (nil: no error), and never both sentinels.
func checkErr(t *testing.T, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("error %v, want none", err)
	case want != nil && !errors.Is(err, want):
		t.Fatalf("error %v, want %v", err, want)
	case errors.Is(err, ErrExpired) && errors.Is(err, ErrInvalid):
		t.Fatalf("error %v is both expired and invalid", err)
	}
}

// tamper changes the subject in a token's payload, keeping its signature.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	parts[1] = b64([]byte(`{"sub":"admin"}`))
	return strings.Join(parts, ".")
}

func TestNewVerifierErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	rsaA, ecA := rsaKeyA(), ecKeyA()
	privDER, _ := x509.MarshalPKCS8PrivateKey(rsaA)
	p384 := mustEC(elliptic.P384())
	oct := map[string]any{"kty": "oct", "kid": "s", "k": b64(testSecret)}
	withD := jwkOf("a", &rsaA.PublicKey)
	withD["d"] = "AAAA"
	noKid := jwkOf("", &ecA.PublicKey)
	badPoint := jwkOf("p", &ecA.PublicKey)
	badPoint["y"] = b64(make([]byte, 32))

	tests := []struct {
		name string
		o    Options
		want []string // substrings of the error
	}{
		{"no key", Options{}, []string{"-jwt-secret", "-jwt-public-key", "-jwt-jwks"}},
		{"short secret", Options{HMACSecret: []byte("hunter2")}, []string{"-jwt-secret", "32 bytes"}},
		{"negative leeway", Options{HMACSecret: testSecret, Leeway: -time.Second}, []string{"leeway"}},
		{"missing public key file", Options{PublicKeyFile: dir + "/nope.pem"}, []string{"-jwt-public-key", "nope.pem"}},
		{"public key file not PEM", Options{PublicKeyFile: writeFile(t, dir, "junk.pem", []byte("hello"))}, []string{"-jwt-public-key", "no PEM"}},
		{"private key PEM", Options{PublicKeyFile: writeFile(t, dir, "priv.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}))}, []string{"-jwt-public-key", "PRIVATE KEY", "public key"}},
		{"P-384 key", Options{PublicKeyFile: writeFile(t, dir, "p384.pem", pemPKIX(t, &p384.PublicKey))}, []string{"-jwt-public-key", "P-384"}},
		{"corrupt DER", Options{PublicKeyFile: writeFile(t, dir, "bad.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2, 3}}))}, []string{"-jwt-public-key"}},
		{"missing JWKS", Options{JWKSFile: dir + "/nope.json"}, []string{"-jwt-jwks"}},
		{"JWKS not JSON", Options{JWKSFile: writeFile(t, dir, "junk.json", []byte("{"))}, []string{"-jwt-jwks", "JSON"}},
		{"JWKS empty", Options{JWKSFile: writeFile(t, dir, "empty.json", []byte(`{"keys":[]}`))}, []string{"-jwt-jwks", "no RS256 or ES256"}},
		{"JWKS only oct", Options{JWKSFile: writeFile(t, dir, "oct.json", jwksJSON(t, oct))}, []string{"-jwt-jwks", "skipped", "oct"}},
		{"JWKS private", Options{JWKSFile: writeFile(t, dir, "d.json", jwksJSON(t, withD))}, []string{"-jwt-jwks", "private"}},
		{"JWKS duplicate kid", Options{JWKSFile: writeFile(t, dir, "dup.json", jwksJSON(t, jwkOf("a", &rsaA.PublicKey), jwkOf("a", &ecA.PublicKey)))}, []string{"-jwt-jwks", "duplicate"}},
		{"JWKS no kid", Options{JWKSFile: writeFile(t, dir, "nokid.json", jwksJSON(t, noKid))}, []string{"-jwt-jwks", "kid"}},
		{"JWKS point off curve", Options{JWKSFile: writeFile(t, dir, "point.json", jwksJSON(t, badPoint))}, []string{"-jwt-jwks", `"p"`}},
		{"JWKS bad base64", Options{JWKSFile: writeFile(t, dir, "b64.json", []byte(`{"keys":[{"kty":"RSA","kid":"x","n":"!!","e":"AQAB"}]}`))}, []string{"-jwt-jwks", "base64url"}},
		{"JWKS bad exponent", Options{JWKSFile: writeFile(t, dir, "e.json", []byte(`{"keys":[{"kty":"RSA","kid":"x","n":"`+b64(rsaA.N.Bytes())+`","e":"Ag"}]}`))}, []string{"-jwt-jwks", "exponent"}},
		{"good secret, bad file", Options{HMACSecret: testSecret, JWKSFile: dir + "/nope.json"}, []string{"-jwt-jwks"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			v, err := NewVerifier(tt.o)
			if err == nil {
				t.Fatalf("NewVerifier(%v) = %v, want error", tt.o, v)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if len(tt.o.HMACSecret) > 0 && strings.Contains(err.Error(), string(tt.o.HMACSecret)) {
				t.Errorf("error leaks the secret: %v", err)
			}
		})
	}
}

func TestJWKSSkipsForeignKeys(t *testing.T) {
	t.Parallel()
	ecA := ecKeyA()
	enc := jwkOf("enc", &rsaKeyA().PublicKey)
	enc["use"] = "enc"
	okp := map[string]any{"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": b64(make([]byte, 32))}
	v := mustVerifier(t, Options{JWKSFile: writeFile(t, t.TempDir(), "jwks.json", jwksJSON(t, enc, okp, jwkOf("b", &ecA.PublicKey)))})
	if got := v.Algorithms(); !slices.Equal(got, []string{ES256}) {
		t.Errorf("Algorithms() = %v, want [ES256]", got)
	}
	if _, err := v.Verify(sign(t, jwt.SigningMethodRS256, rsaKeyA(), claimsFor(nil), map[string]any{"kid": "enc"})); !errors.Is(err, ErrInvalid) {
		t.Errorf("encryption key accepted for a signature: %v", err)
	}
}

// TestReload rotates a JWKS file: the retired key stops working, the new one
// starts, and a broken file leaves the keys in use alone. Verify runs
// throughout, for the race detector.
func TestReload(t *testing.T) {
	t.Parallel()
	rsaA, rsaB, ecB := rsaKeyA(), rsaKeyB(), ecKeyB()
	dir := t.TempDir()
	path := writeFile(t, dir, "jwks.json", jwksJSON(t, jwkOf("a", &rsaA.PublicKey), jwkOf("b", &ecB.PublicKey)))
	v := mustVerifier(t, Options{JWKSFile: path})
	tokA := sign(t, jwt.SigningMethodRS256, rsaA, claimsFor(nil), map[string]any{"kid": "a"})
	tokB := sign(t, jwt.SigningMethodES256, ecB, claimsFor(nil), map[string]any{"kid": "b"})
	tokC := sign(t, jwt.SigningMethodRS256, rsaB, claimsFor(nil), map[string]any{"kid": "c"})

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				// B is in every generation, so it must always verify.
				if _, err := v.Verify(tokB); err != nil {
					t.Errorf("kid b during reloads: %v", err)
					return
				}
			}
		})
	}
	defer func() { close(stop); wg.Wait() }()

	steps := []struct {
		name      string
		file      []byte
		reloadErr bool
		valid     map[string]bool // token kid: verifies
	}{
		{"initial", nil, false, map[string]bool{"a": true, "b": true, "c": false}},
		{"rotate a out, c in", jwksJSON(t, jwkOf("b", &ecB.PublicKey), jwkOf("c", &rsaB.PublicKey)), false, map[string]bool{"a": false, "b": true, "c": true}},
		{"broken file keeps keys", []byte(`{"keys": [`), true, map[string]bool{"a": false, "b": true, "c": true}},
		{"empty set keeps keys", []byte(`{"keys": []}`), true, map[string]bool{"a": false, "b": true, "c": true}},
	}
	toks := map[string]string{"a": tokA, "b": tokB, "c": tokC}
	for _, s := range steps {
		if s.file != nil {
			writeFile(t, dir, "jwks.json", s.file)
			if err := v.Reload(); (err != nil) != s.reloadErr {
				t.Fatalf("%s: Reload() = %v, want error %v", s.name, err, s.reloadErr)
			}
		}
		for kid, want := range s.valid {
			if _, err := v.Verify(toks[kid]); (err == nil) != want {
				t.Errorf("%s: kid %s: error %v, want valid %v", s.name, kid, err, want)
			}
		}
	}
	var reloads sync.WaitGroup
	for range 4 {
		reloads.Go(func() {
			if err := v.Reload(); err == nil {
				t.Error("concurrent Reload of a broken file succeeded")
			}
		})
	}
	reloads.Wait()
}

func TestReloadPublicKeyFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := writeFile(t, dir, "key.pem", pemPKIX(t, &rsaKeyA().PublicKey))
	v := mustVerifier(t, Options{PublicKeyFile: path})
	writeFile(t, dir, "key.pem", pemPKIX(t, &ecKeyA().PublicKey))
	if err := v.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := v.Algorithms(); !slices.Equal(got, []string{ES256}) {
		t.Errorf("after rotating to an EC key, Algorithms() = %v", got)
	}
	if _, err := v.Verify(sign(t, jwt.SigningMethodRS256, rsaKeyA(), claimsFor(nil), nil)); !errors.Is(err, ErrInvalid) {
		t.Errorf("retired RSA key still verifies: %v", err)
	}
	if _, err := v.Verify(sign(t, jwt.SigningMethodES256, ecKeyA(), claimsFor(nil), nil)); err != nil {
		t.Errorf("new EC key: %v", err)
	}
}

// TestSecretNeverPrinted covers the ways a secret usually escapes: fmt verbs
// on the options or the verifier, and slog records.
func TestSecretNeverPrinted(t *testing.T) {
	t.Parallel()
	o := Options{HMACSecret: testSecret, Issuer: "iss"}
	v := mustVerifier(t, o)
	var buf bytes.Buffer
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%d", "%q"} {
		fmt.Fprintf(&buf, verb+"\n"+verb+"\n"+verb+"\n", o, &o, v)
	}
	slog.New(slog.NewTextHandler(&buf, nil)).Info("text", "opts", o, "ptr", &o, "verifier", v)
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("json", "opts", o, "ptr", &o, "verifier", v)
	out := buf.String()
	for _, leak := range []string{string(testSecret), fmt.Sprintf("%x", testSecret), fmt.Sprint(testSecret), fmt.Sprint(testSecret[0:4])} {
		if strings.Contains(out, leak) {
			t.Fatalf("secret printed:\n%s", out)
		}
	}
	if !strings.Contains(out, "[redacted]") || !strings.Contains(out, "HS256") {
		t.Errorf("output should say a secret is set and the algorithm:\n%s", out)
	}
}

// TestVerifierCopiesSecret: zeroing the caller's slice after NewVerifier
// (good hygiene) must not change the key.
func TestVerifierCopiesSecret(t *testing.T) {
	t.Parallel()
	secret := slices.Clone(testSecret)
	v := mustVerifier(t, Options{HMACSecret: secret})
	clear(secret)
	tok, err := Issue(testSecret, "alice", time.Minute, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(tok); err != nil {
		t.Fatal(err)
	}
}

// TestErrorLengthBounded: an unsigned token can carry a huge claim that JSON
// errors quote; the error must stay short enough to log.
func TestErrorLengthBounded(t *testing.T) {
	t.Parallel()
	v := mustVerifier(t, Options{HMACSecret: testSecret})
	tok := sign(t, jwt.SigningMethodHS256, []byte("whatever"), jwt.MapClaims{"sub": "a", "exp": strings.Repeat("é", 5000)}, nil)
	_, err := v.Verify(tok)
	if !errors.Is(err, ErrInvalid) || !errors.Is(err, jwt.ErrTokenMalformed) {
		t.Fatalf("error %v, want ErrInvalid wrapping the jwt error", err)
	}
	if n := len(err.Error()); n > maxDetail+64 {
		t.Errorf("error is %d bytes", n)
	}
}
