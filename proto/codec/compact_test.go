package codec

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	parleypb "github.com/parleychat/parley/proto"
)

// protojson puts a space after every comma in some builds and not in
// others, so the codec's own output exercises compactJSON only in half of
// the builds. These inputs are what protojson writes in the other half (and
// in its multi-line form), so the compaction is tested in every build.
func TestCompactJSON(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"ack":{"requestId":"2", "room":"general", "seq":"3"}}`, `{"ack":{"requestId":"2","room":"general","seq":"3"}}`},
		{`{"a":"x, y", "b":["1", "2"]}`, `{"a":"x, y","b":["1","2"]}`},
		{`{"a":"q\", r", "b":"\\", "c":"\\\", s"}`, `{"a":"q\", r","b":"\\","c":"\\\", s"}`},
		{"{\n  \"a\": 1,\n\t\"b\": [ ]\r\n}", `{"a":1,"b":[]}`},
		{`{"a":""}`, `{"a":""}`},
		{`{"a":"", "b":"\"\""}`, `{"a":"","b":"\"\""}`},
		{`{}`, `{}`},
		{``, ``},
	} {
		if got := string(compactJSON([]byte(tc.in))); got != tc.want {
			t.Errorf("compactJSON(%s)\n got %s\nwant %s", tc.in, got, tc.want)
		}
	}
}

// TestCompactJSONProtojsonForms: whichever whitespace protojson chooses,
// the result is what encoding/json's Compact makes of it.
func TestCompactJSONProtojsonForms(t *testing.T) {
	env := &parleypb.Envelope{Body: &parleypb.Envelope_Event{Event: &parleypb.RoomEvent{
		Room: "general", Seq: 1, Sender: "alice", Text: "a, b \"c\",\td\\ \n e", ClientMsgId: "x",
	}}}
	for _, o := range []protojson.MarshalOptions{{}, {Multiline: true}, {Multiline: true, Indent: "\t"}} {
		b, err := o.Marshal(env)
		if err != nil {
			t.Fatal(err)
		}
		var want bytes.Buffer
		if err := json.Compact(&want, b); err != nil {
			t.Fatal(err)
		}
		if got := compactJSON(bytes.Clone(b)); !bytes.Equal(got, want.Bytes()) {
			t.Errorf("compactJSON(%s)\n got %s\nwant %s", b, got, want.Bytes())
		}
	}
}

// BenchmarkCompactJSON is the cost of compaction in a build where protojson
// adds spaces (the codec's own benchmarks see whichever form this test
// binary got).
func BenchmarkCompactJSON(b *testing.B) {
	env := &parleypb.Envelope{Body: &parleypb.Envelope_Event{Event: &parleypb.RoomEvent{
		Room: "general", Seq: 123456, TimeMs: 1764000000123, Sender: "alice",
		Text:        "Has anyone tried the new build? The reconnect after a deploy is much faster now.",
		ClientMsgId: "01JDQ7Z8X4N2M5K9P3R6T0V1W2",
	}}}
	compact, _ := JSON.Encode(env)
	spaced := []byte(strings.ReplaceAll(string(compact), `",`, `", `))
	buf := make([]byte, len(spaced))
	b.SetBytes(int64(len(spaced)))
	b.ReportAllocs()
	for b.Loop() {
		copy(buf, spaced)
		compactJSON(buf)
	}
}
