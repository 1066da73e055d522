package actors

import (
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// MaxNameRunes bounds user and room names.
const MaxNameRunes = 32

// ValidName checks a user name: 1 to 32 characters of valid UTF-8, no
// control characters, not only spaces.
func ValidName(s string) error { return validName(s) }

// ValidRoom checks a room name with the same rules as a user name.
func ValidRoom(s string) error { return validName(s) }

func validName(s string) error {
	if !utf8.ValidString(s) {
		return errors.New("is not valid UTF-8")
	}
	n := utf8.RuneCountInString(s)
	if n == 0 {
		return errors.New("is empty")
	}
	if n > MaxNameRunes {
		return fmt.Errorf("has %d characters; at most %d are allowed", n, MaxNameRunes)
	}
	blank := true
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("contains the control character %U", r)
		}
		if !unicode.IsSpace(r) {
			blank = false
		}
	}
	if blank {
		return errors.New("is blank")
	}
	return nil
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
