package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

// cfPush is a publication push as Centrifugo v6.9.1 writes it to a client
// that published data {"text":...} (captured from the server; the client
// id and epoch vary).
func cfPush(room, text string, offset int) string {
	return `{"push":{"channel":"room:` + room + `","pub":{"data":{"text":"` + text +
		`"},"info":{"user":"","client":"045b33a0-af98-43d6-8d6e-c84e50f94df9"},"offset":` +
		fmt.Sprint(offset) + `,"epoch":"NpLWadxA"}}}`
}

// decodePush is the reference: encoding/json's reading of a push line.
func decodePush(t testing.TB, line string) (channel, text string, isPub bool) {
	t.Helper()
	var v struct {
		Push *struct {
			Channel string
			Pub     *struct{ Data struct{ Text *string } }
		}
	}
	if err := json.Unmarshal([]byte(line), &v); err != nil {
		t.Fatalf("reference decode of %q: %v", line, err)
	}
	if v.Push == nil || v.Push.Pub == nil || v.Push.Pub.Data.Text == nil {
		return "", "", false
	}
	return v.Push.Channel, *v.Push.Pub.Data.Text, true
}

// pushLines are pushes and replies in the forms the adapter must read:
// the first takes the one-pass path, the others the general walk.
var pushLines = []struct {
	line string
	fast bool
}{
	{cfPush("a", "plt 1 2 xx", 1), true},
	{`{"push":{"channel":"room:a","pub":{"data":{"text":"plt 3 4 "},"offset":7}}}`, true},
	{`{"push":{"channel":"room:a","pub":{"data":{"text":""}}}}`, true},
	// Fields in another order.
	{`{"push":{"pub":{"data":{"text":"plt 5 6 "}},"channel":"room:a"}}`, false},
	{`{"push":{"channel":"room:a","pub":{"offset":3,"data":{"text":"plt 5 6 "}}}}`, false},
	{`{"push":{"channel":"room:a","pub":{"data":{"kind":1,"text":"plt 5 6 "}}}}`, false},
	// data with more than text.
	{`{"push":{"channel":"room:a","pub":{"data":{"text":"plt 5 6 ","x":1}}}}`, false},
	// Escapes: a quote inside the text or the channel, a \u escape.
	{`{"push":{"channel":"room:a","pub":{"data":{"text":"plt 7 8 \"q\" "}}}}`, false},
	{`{"push":{"channel":"room:a\"b","pub":{"data":{"text":"plt 7 8 "}}}}`, false},
	{`{"push":{"channel":"room:a","pub":{"data":{"text":"plt 9 10 \u0078"}}}}`, false},
	{`{"push":{"channel":"room:a","pub":{"data":{"text":"plt 9 10 \\"}}}}`, false},
	// Spaces between tokens.
	{`{"push": {"channel": "room:a", "pub": {"data": {"text": "plt 11 12 "}}}}`, false},
}

func TestFastPush(t *testing.T) {
	for _, tc := range pushLines {
		channel, text, ok := fastPush([]byte(tc.line))
		if ok != tc.fast {
			t.Errorf("fastPush(%s): ok = %v, want %v", tc.line, ok, tc.fast)
			continue
		}
		if !ok {
			continue
		}
		wc, wt, _ := decodePush(t, tc.line)
		if string(channel) != wc || string(text) != wt {
			t.Errorf("fastPush(%s) = %q, %q; want %q, %q", tc.line, channel, text, wc, wt)
		}
	}
	for _, line := range []string{
		`{}`, `{"id":3,"publish":{}}`, `{"id":2,"error":{"code":102,"message":"unknown channel"}}`,
		`{"push":{"channel":"room:a","join":{"info":{"client":"c"}}}}`,
		`{"push":{"channel":"room:a","pub":{"data":{"text":"unterminated`,
		`{"push":{"channel":"room:a","pub":{"data":{"text":"x"`,
		`{"push":{"channel":"room:a`,
	} {
		if _, _, ok := fastPush([]byte(line)); ok {
			t.Errorf("fastPush(%s): ok, want the general walk", line)
		}
	}
}

// TestFrameReadsEveryPush feeds one frame holding every form above, with
// replies and a ping among them, and checks that each push reaches onMsg
// once, with the room and text encoding/json reads from it.
func TestFrameReadsEveryPush(t *testing.T) {
	var lines, want []string
	for i, tc := range pushLines {
		lines = append(lines, tc.line, fmt.Sprintf(`{"id":%d,"publish":{}}`, i+1))
		ch, text, _ := decodePush(t, tc.line)
		want = append(want, strings.TrimPrefix(ch, centrifugoNamespace)+"|"+text)
	}
	lines = append(lines, `{"push":{"channel":"room:a","join":{"info":{"client":"c"}}}}`, "")
	var got []string
	c := &cfConn{pending: map[uint64]chan error{}, onMsg: func(room, payload []byte) {
		got = append(got, string(room)+"|"+string(payload))
	}}
	if err := c.frame([]byte(strings.Join(lines, "\n"))); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("onMsg got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// FuzzFastPush: whenever the one-pass path reads a line that the general
// walk reads too (it does not look past the text, so it takes some lines
// the walk refuses), both read the same room and text; and when the line
// is valid JSON in valid UTF-8, that is what encoding/json reads.
func FuzzFastPush(f *testing.F) {
	for _, tc := range pushLines {
		f.Add(tc.line)
	}
	f.Fuzz(func(t *testing.T, line string) {
		channel, text, ok := fastPush([]byte(line))
		if !ok {
			return
		}
		var calls int
		var wr, wt string
		c := &cfConn{pending: map[uint64]chan error{}, onMsg: func(room, payload []byte) {
			calls++
			wr, wt = string(room), string(payload)
		}}
		if err := c.walk([]byte(line)); err != nil {
			return
		}
		room := strings.TrimPrefix(string(channel), centrifugoNamespace)
		if calls != 1 || room != wr || string(text) != wt {
			t.Errorf("fastPush(%q) = %q, %q; the general walk: %d calls, %q, %q", line, room, text, calls, wr, wt)
		}
		if !json.Valid([]byte(line)) || !utf8.ValidString(line) {
			return
		}
		jc, jt, isPub := decodePush(t, line)
		if !isPub || string(channel) != jc || string(text) != jt {
			t.Errorf("fastPush(%q) = %q, %q; encoding/json: %q, %q (publication %v)", line, channel, text, jc, jt, isPub)
		}
	})
}

// benchFrame is a frame of n pushes of 64-byte payloads to one room, as
// Centrifugo batches them for a member of a busy room.
func benchFrame(n int, shape func(room, text string, offset int) string) []byte {
	var lines []string
	for i := range n {
		p := makePayload(nil, uint64(i), 123456789, 64)
		lines = append(lines, shape("f-abcdef-0", string(p), i+1))
	}
	return []byte(strings.Join(lines, "\n"))
}

// BenchmarkCentrifugoFrame is the adapter's cost per push received, in a
// frame of 16, through the same onMsg work a receiver does (parsing the
// payload). "general" is the walk every push took before the one-pass
// path (forced here by putting "pub" before "channel").
func BenchmarkCentrifugoFrame(b *testing.B) {
	shapes := map[string]func(room, text string, offset int) string{
		"onepass": cfPush,
		"general": func(room, text string, offset int) string {
			return `{"push":{"pub":{"data":{"text":"` + text +
				`"},"info":{"user":"","client":"045b33a0-af98-43d6-8d6e-c84e50f94df9"},"offset":` +
				fmt.Sprint(offset) + `,"epoch":"NpLWadxA"},"channel":"room:` + room + `"}}`
		},
	}
	for _, name := range []string{"onepass", "general"} {
		b.Run(name, func(b *testing.B) {
			const n = 16
			frame := benchFrame(n, shapes[name])
			var sum uint64
			c := &cfConn{pending: map[uint64]chan error{}, onMsg: func(room, payload []byte) {
				v, _, _ := parsePayload(payload)
				sum += v + uint64(len(room))
			}}
			b.SetBytes(int64(len(frame) / n))
			b.ReportAllocs()
			for b.Loop() {
				if err := c.frame(frame); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/push")
			if sum == 0 || !bytes.Contains(frame, []byte(`"text":"plt `)) {
				b.Fatal("nothing read")
			}
		})
	}
}
