package codec_test

import (
	"encoding/json"
	"testing"

	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/proto/codec"
)

// typicalEvent is what a room encodes once per codec per post: a chat line
// of ordinary length with every field set.
func typicalEvent() *parleypb.Envelope {
	return &parleypb.Envelope{Body: &parleypb.Envelope_Event{Event: &parleypb.RoomEvent{
		Room: "general", Seq: 123456, TimeMs: 1764000000123, Sender: "alice",
		Text:        "Has anyone tried the new build? The reconnect after a deploy is much faster now.",
		ClientMsgId: "01JDQ7Z8X4N2M5K9P3R6T0V1W2",
	}}}
}

var benchCodecs = []struct {
	name string
	cd   codec.Codec
}{{"proto", codec.Proto}, {"json", codec.JSON}, {"legacy", codec.Legacy}}

func BenchmarkEncodeEvent(b *testing.B) {
	env := typicalEvent()
	for _, bc := range benchCodecs {
		b.Run(bc.name, func(b *testing.B) {
			frame, err := bc.cd.Encode(env)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.cd.Encode(env); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeEvent decodes the frame each codec would carry a chat line
// in. Native codecs decode the RoomEvent envelope itself; the legacy codec
// only ever decodes client frames, so it decodes the tutorial's "user"
// frame of the same text (which becomes a Post).
func BenchmarkDecodeEvent(b *testing.B) {
	env := typicalEvent()
	for _, bc := range benchCodecs {
		b.Run(bc.name, func(b *testing.B) {
			var frame []byte
			var err error
			if bc.cd == codec.Legacy {
				frame, err = json.Marshal(map[string]string{"type": "user", "content": env.GetEvent().GetText()})
			} else {
				frame, err = bc.cd.Encode(env)
			}
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bc.cd.Decode(frame); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAppendBatch16 is the writer coalescing a queue of 16 event frames
// into one Batch frame, reusing its buffer as transport's pool does.
func BenchmarkAppendBatch16(b *testing.B) {
	env := typicalEvent()
	for _, bc := range benchCodecs[:2] {
		b.Run(bc.name, func(b *testing.B) {
			frame, err := bc.cd.Encode(env)
			if err != nil {
				b.Fatal(err)
			}
			frames := make([][]byte, 16)
			for i := range frames {
				frames[i] = frame
			}
			buf, _ := bc.cd.AppendBatch(nil, frames)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				buf, _ = bc.cd.AppendBatch(buf[:0], frames)
			}
		})
	}
}
