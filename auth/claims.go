package auth

import (
	"fmt"
	"path"
	"time"
)

// Limits on room patterns, so a token cannot make every MayJoin or MayPost
// arbitrarily slow. Room names are at most 32 characters; these are generous.
const (
	MaxPatterns     = 256 // per claim
	MaxPatternBytes = 256
)

// Claims is what a verified token says about a connection.
//
// Patterns use path.Match syntax against the room name: "team-*" matches
// "team-red", "*" matches any room without a '/', '\\' escapes. Read-only
// wins over Rooms, so an operator can grant "*" and still mute
// "announcements".
type Claims struct {
	Subject       string    // the user name (validated by the caller)
	Expiry        time.Time // zero: no expiry
	Rooms         []string  // room name patterns the user may join and post to; nil: every room, empty: none
	ReadOnlyRooms []string  // patterns the user may join but not post to
	// Roles gives the user a role in the rooms matching each pattern
	// ("moderator" or "owner"), on top of its role in the room.
	Roles map[string]string
}

// Role names a roles claim may give.
const (
	RoleModerator = "moderator"
	RoleOwner     = "owner"
)

// RoleIn is the highest role the roles claim gives in room ("" for none).
func (c *Claims) RoleIn(room string) string {
	if c == nil {
		return ""
	}
	best := ""
	for pattern, role := range c.Roles {
		if matchAny([]string{pattern}, room) && (best == "" || role == RoleOwner) {
			best = role
		}
	}
	return best
}

// MayJoin reports whether the user may join room: it matches Rooms (or Rooms
// is nil) or it matches ReadOnlyRooms. A nil *Claims may do nothing, so a
// session that lost its claims fails closed; anonymous sessions should carry
// &Claims{Subject: name}, which may do everything.
func (c *Claims) MayJoin(room string) bool {
	if c == nil {
		return false
	}
	return c.writable(room) || matchAny(c.ReadOnlyRooms, room)
}

// MayPost reports whether the user may post to room: it matches Rooms (or
// Rooms is nil) and does not match ReadOnlyRooms.
func (c *Claims) MayPost(room string) bool {
	if c == nil {
		return false
	}
	return c.writable(room) && !matchAny(c.ReadOnlyRooms, room)
}

func (c *Claims) writable(room string) bool {
	return c.Rooms == nil || matchAny(c.Rooms, room)
}

// matchAny treats a malformed pattern as no match: Verify rejects such
// tokens, and Claims built by hand should fail closed too.
func matchAny(patterns []string, room string) bool {
	for _, p := range patterns {
		if ok, err := path.Match(p, room); ok && err == nil {
			return true
		}
	}
	return false
}

// checkPatterns validates one claim's patterns. path.Match reports a
// malformed pattern even when the name does not match, so matching against
// the empty name checks the whole pattern.
func checkPatterns(claim string, patterns []string) error {
	if len(patterns) > MaxPatterns {
		return fmt.Errorf("%s: %d patterns; at most %d", claim, len(patterns), MaxPatterns)
	}
	for i, p := range patterns {
		switch {
		case p == "":
			return fmt.Errorf("%s[%d]: empty pattern", claim, i)
		case len(p) > MaxPatternBytes:
			return fmt.Errorf("%s[%d]: pattern longer than %d bytes", claim, i, MaxPatternBytes)
		}
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("%s[%d]: %q is not a valid pattern: %w", claim, i, p, err)
		}
	}
	return nil
}
