package actors

import (
	"strings"
	"testing"
)

func TestValidName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in string
		wantErr  string // substring; "" means valid
	}{
		{"plain", "alice", ""},
		{"inner space", "Mary Ann", ""},
		{"accents", "Zoë Åberg", ""},
		{"emoji", "🎉 party 🎉", ""},
		{"32 ASCII", strings.Repeat("a", 32), ""},
		{"33 ASCII", strings.Repeat("a", 33), "has 33 characters; at most 32"},
		// The limit counts characters, not bytes.
		{"32 two-byte runes", strings.Repeat("é", 32), ""},
		{"33 two-byte runes", strings.Repeat("é", 33), "has 33 characters"},
		{"32 emoji", strings.Repeat("🎉", 32), ""},
		{"33 emoji", strings.Repeat("🎉", 33), "has 33 characters"},
		{"empty", "", "is empty"},
		{"blank", "   ", "is blank"},
		{"no-break spaces", "\u00a0\u3000", "is blank"},
		{"NUL", "al\x00ice", "U+0000"},
		{"tab", "al\tice", "U+0009"},
		{"newline", "alice\n", "U+000A"},
		{"carriage return", "\ralice", "U+000D"},
		{"escape", "\x1b[31malice", "U+001B"},
		{"DEL", "alice\x7f", "U+007F"},
		{"C1 control", "ali\u0085ce", "U+0085"},
		{"invalid UTF-8", "al\xffice", "not valid UTF-8"},
		{"truncated rune", "\xe2\x82", "not valid UTF-8"},
		// 33 bytes that are not UTF-8 must say so, not count characters.
		{"long invalid UTF-8", strings.Repeat("\xff", 33), "not valid UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for fn, check := range map[string]func(string) error{"ValidName": ValidName, "ValidRoom": ValidRoom} {
				err := check(tc.in)
				switch {
				case tc.wantErr == "" && err != nil:
					t.Errorf("%s(%q) = %v, want nil", fn, tc.in, err)
				case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
					t.Errorf("%s(%q) = %v, want an error containing %q", fn, tc.in, err, tc.wantErr)
				}
			}
		})
	}
}

func TestValidText(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in string
		wantErr  string
	}{
		{"plain", "hello", ""},
		{"emoji", "🎉🎉🎉", ""},
		// Line breaks and tabs are how people format messages.
		{"tab", "a\tb", ""},
		{"newline", "line one\nline two", ""},
		{"CRLF", "line one\r\nline two", ""},
		{"only a newline", "\n", ""},
		// Unlike names, a message of spaces is a message.
		{"blank", "   ", ""},
		{"long", strings.Repeat("x", 10000), ""},
		{"empty", "", "is empty"},
		{"NUL", "a\x00b", "U+0000"},
		{"bell", "ding\a", "U+0007"},
		{"escape", "\x1b[2J", "U+001B"},
		{"vertical tab", "a\vb", "U+000B"},
		{"form feed", "a\fb", "U+000C"},
		{"DEL", "a\x7f", "U+007F"},
		{"C1 control", "a\u009bb", "U+009B"},
		{"invalid UTF-8", "caf\xe9", "not valid UTF-8"},
		{"surrogate half", "\xed\xa0\x80", "not valid UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := validText(tc.in)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("validText(%q) = %v, want nil", tc.in, err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("validText(%q) = %v, want an error containing %q", tc.in, err, tc.wantErr)
			}
		})
	}
}
