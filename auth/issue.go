package auth

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// IssueOptions describes a token for [IssueWith].
type IssueOptions struct {
	Subject       string
	TTL           time.Duration // >0: exp = now+TTL; 0: no exp
	Rooms         []string      // nil: every room; empty: none
	ReadOnlyRooms []string
	Roles         map[string]string // room pattern -> "moderator" or "owner"
	Issuer        string            // set when the server checks -jwt-issuer
	Audience      string            // set when the server checks -jwt-audience
}

// Issue signs an HS256 token for local testing (cmd/parley-token, tests).
// Production tokens come from the operator's identity provider.
func Issue(secret []byte, subject string, ttl time.Duration, rooms, readOnly []string) (string, error) {
	return IssueWith(secret, IssueOptions{Subject: subject, TTL: ttl, Rooms: rooms, ReadOnlyRooms: readOnly})
}

// IssueWith is Issue with an issuer and audience. It applies the rules Verify
// will, so a bad token fails here rather than at the server.
func IssueWith(secret []byte, o IssueOptions) (string, error) {
	if len(secret) < MinSecretBytes {
		return "", fmt.Errorf("auth: secret is too short: HS256 needs at least %d bytes", MinSecretBytes)
	}
	if o.Subject == "" {
		return "", errors.New("auth: empty subject")
	}
	if o.TTL < 0 {
		return "", fmt.Errorf("auth: negative ttl %v", o.TTL)
	}
	tc := tokenClaims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: o.Subject, Issuer: o.Issuer},
		Rooms:            o.Rooms,
		ReadOnlyRooms:    o.ReadOnlyRooms,
		Roles:            o.Roles,
	}
	if err := checkRoles(o.Roles); err != nil {
		return "", fmt.Errorf("auth: %w", err)
	}
	for _, c := range []struct {
		name     string
		patterns []string
	}{{"rooms", o.Rooms}, {"read_only_rooms", o.ReadOnlyRooms}} {
		if err := checkPatterns(c.name, c.patterns); err != nil {
			return "", fmt.Errorf("auth: %w", err)
		}
	}
	if o.Audience != "" {
		tc.Audience = jwt.ClaimStrings{o.Audience}
	}
	now := time.Now()
	tc.IssuedAt = jwt.NewNumericDate(now)
	if o.TTL > 0 {
		tc.ExpiresAt = jwt.NewNumericDate(now.Add(o.TTL))
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, &tc).SignedString(secret)
}
