package auth

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// FuzzVerify feeds arbitrary strings to a verifier holding every kind of
// key: it must never panic, must fail with exactly one of the two sentinels,
// and must never accept a token without a subject.
func FuzzVerify(f *testing.F) {
	dir := f.TempDir()
	v := mustVerifier(f, Options{
		HMACSecret:    testSecret,
		PublicKeyFile: writeFile(f, dir, "rsa.pem", pemPKIX(f, &rsaKeyA().PublicKey)),
		JWKSFile:      writeFile(f, dir, "jwks.json", jwksJSON(f, jwkOf("b", &ecKeyB().PublicKey))),
	})
	good, err := Issue(testSecret, "alice", time.Hour, []string{"team-*"}, []string{"news"})
	if err != nil {
		f.Fatal(err)
	}
	for _, seed := range []string{
		"", ".", "..", "...", "a.b.c", "e30.e30.", "e30.e30.e30",
		good,
		good[:len(good)-3],
		strings.Replace(good, ".", "..", 1),
		sign(f, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claimsFor(nil), nil),
		sign(f, jwt.SigningMethodRS256, rsaKeyA(), claimsFor(jwt.MapClaims{"rooms": []string{"["}}), nil),
		sign(f, jwt.SigningMethodES256, ecKeyB(), claimsFor(nil), map[string]any{"kid": "b"}),
		sign(f, jwt.SigningMethodES256, ecKeyB(), claimsFor(nil), map[string]any{"kid": []int{1}}),
		sign(f, jwt.SigningMethodHS256, testSecret, claimsFor(jwt.MapClaims{"exp": -1, "aud": 3}), nil),
		`eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIiwicm9vbXMiOm51bGx9.AAAA`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, token string) {
		c, err := v.Verify(token)
		if err != nil {
			if c != nil {
				t.Fatalf("claims with error %v", err)
			}
			if errors.Is(err, ErrExpired) == errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not exactly one of ErrExpired, ErrInvalid", err)
			}
			return
		}
		if c.Subject == "" {
			t.Fatal("accepted a token without a subject")
		}
		c.MayJoin("lobby")
		c.MayPost("lobby")
	})
}
