package actors

import (
	"strings"
	"testing"
)

func TestCanonicalName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in string
		want     string // the canonical form
		wantErr  string // substring; "" means valid
	}{
		{"plain", "alice", "alice", ""},
		{"case kept", "Alice", "Alice", ""},
		{"inner space", "Mary Ann", "Mary Ann", ""},
		{"accents", "Zoë Åberg", "Zoë Åberg", ""},
		{"other scripts", "日本語", "日本語", ""},
		{"ASCII punctuation", "<b>ben</b>", "<b>ben</b>", ""},
		{"fullwidth mapped", "ａｌｉｃｅ", "alice", ""},
		{"decomposed é composed", "é", "é", ""},
		{"32 ASCII", strings.Repeat("a", 32), strings.Repeat("a", 32), ""},
		{"33 ASCII", strings.Repeat("a", 33), "", "has 33 characters; at most 32"},
		// The limit counts characters, not bytes.
		{"32 two-byte runes", strings.Repeat("é", 32), strings.Repeat("é", 32), ""},
		{"33 two-byte runes", strings.Repeat("é", 33), "", "has 33 characters"},
		{"empty", "", "", "is empty"},
		{"blank", "   ", "", "is blank"},
		{"no-break spaces", "\u00a0\u3000", "", "is blank"},
		{"trailing space", "alice ", "", "space at its start or end"},
		{"two spaces", "a  b", "", "two in a row"},
		{"emoji", "🎉 party", "", "not allowed in names"},
		{"right-to-left override", "\u202Eecila", "", "not allowed"},
		{"zero-width joiner", "ad\u200Dmin", "", "not allowed"},
		{"zero-width space", "\u200B", "", "not allowed"},
		{"Hangul filler", "\u3164", "", "not allowed"},
		{"Braille blank", "\u2800", "", "not allowed"},
		{"NUL", "al\x00ice", "", "U+0000"},
		{"tab", "al\tice", "", "U+0009"},
		{"newline", "alice\n", "", "U+000A"},
		{"escape", "\x1b[31malice", "", "U+001B"},
		{"DEL", "alice\x7f", "", "U+007F"},
		{"C1 control", "ali\u0085ce", "", "U+0085"},
		{"invalid UTF-8", "al\xffice", "", "not valid UTF-8"},
		{"long invalid UTF-8", strings.Repeat("\xff", 33), "", "not valid UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := CanonicalName(tc.in)
			switch {
			case tc.wantErr == "" && (err != nil || got != tc.want):
				t.Errorf("CanonicalName(%q) = %q, %v, want %q", tc.in, got, err, tc.want)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("CanonicalName(%q) = %q, %v, want an error containing %q", tc.in, got, err, tc.wantErr)
			}
			// ValidRoom takes only what is already canonical.
			if err := ValidRoom(tc.in); (err == nil) != (tc.wantErr == "" && tc.want == tc.in) {
				t.Errorf("ValidRoom(%q) = %v", tc.in, err)
			}
		})
	}
	if err := ValidRoom("ｌｏｂｂｙ"); err == nil || !strings.Contains(err.Error(), `write it "lobby"`) {
		t.Errorf("ValidRoom of a fullwidth name = %v, want it to name the canonical form", err)
	}
}

func TestSkeletonTellsLookAlikes(t *testing.T) {
	t.Parallel()
	for _, alike := range []string{"аlice" /* Cyrillic а */, "Alice", "ALICE", "alicе" /* Cyrillic е */} {
		if Skeleton(alike) != Skeleton("alice") {
			t.Errorf("%q does not look like alice to Skeleton", alike)
		}
	}
	for _, other := range []string{"alicia", "bob", "alice2"} {
		if Skeleton(other) == Skeleton("alice") {
			t.Errorf("%q looks like alice to Skeleton", other)
		}
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
