package actors

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/mtibben/confusables"
	"golang.org/x/text/cases"
	"golang.org/x/text/secure/precis"
)

// MaxNameRunes bounds user and room names.
const MaxNameRunes = 32

// User and room names are identifiers, checked with the PRECIS profile for
// usernames (RFC 8265, UsernameCasePreserved): letters and digits of any
// script, ASCII punctuation and symbols, no controls, no invisible or
// bidirectional formatting characters, no symbols outside ASCII. As RFC
// 8265 allows, a name may be several such parts separated by single
// spaces ("Mary Ann"). Enforcement maps a name to its canonical form
// (fullwidth letters to their usual width, a decomposed é to é); a user's
// name is that form, a room's name must already be it.
//
// Two names that look alike are told apart by their confusable skeleton
// (Unicode TS #39) after case folding: "аlice" with a Cyrillic а, "Alice"
// and "alice" share one. Presence refuses a name whose skeleton is that of
// a different user online or reserved (Skeleton).

// CanonicalName returns the canonical form of a user name, or why it is
// not one.
func CanonicalName(s string) (string, error) {
	if !utf8.ValidString(s) {
		return "", errors.New("is not valid UTF-8")
	}
	if strings.TrimSpace(s) == "" {
		if s == "" {
			return "", errors.New("is empty")
		}
		return "", errors.New("is blank")
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return "", fmt.Errorf("contains the control character %U", r)
		}
	}
	parts := strings.Split(s, " ")
	for i, p := range parts {
		if p == "" {
			return "", errors.New("has a space at its start or end, or two in a row")
		}
		c, err := precis.UsernameCasePreserved.String(p)
		if err != nil {
			return "", fmt.Errorf("contains a character not allowed in names (%q: letters, digits and ASCII punctuation only; no invisible, formatting or right-to-left override characters)", p)
		}
		parts[i] = c
	}
	c := strings.Join(parts, " ")
	if n := utf8.RuneCountInString(c); n > MaxNameRunes {
		return "", fmt.Errorf("has %d characters; at most %d are allowed", n, MaxNameRunes)
	}
	return c, nil
}

// ValidName checks that s is a user name in its canonical form.
func ValidName(s string) error { return validCanonical(s) }

// ValidRoom checks that s is a room name in its canonical form.
func ValidRoom(s string) error { return validCanonical(s) }

func validCanonical(s string) error {
	c, err := CanonicalName(s)
	if err != nil {
		return err
	}
	if c != s {
		return fmt.Errorf("is not in its canonical form; write it %q", c)
	}
	return nil
}

// Skeleton is what a name looks like, for telling look-alikes apart: its
// confusable skeleton (Unicode TS #39) after case folding.
func Skeleton(name string) string {
	// A Caser keeps state: one per call.
	return confusables.Skeleton(cases.Fold().String(name))
}

// validText checks a message: non-empty valid UTF-8 with no control
// characters but tab and line breaks. (The stores cannot keep NUL, and no
// chat client wants the rest.)
func validText(s string) error {
	if s == "" {
		return errors.New("is empty")
	}
	if !utf8.ValidString(s) {
		return errors.New("is not valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) && r != '\t' && r != '\n' && r != '\r' {
			return fmt.Errorf("contains the control character %U", r)
		}
	}
	return nil
}
