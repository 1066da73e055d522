package codec_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/proto/codec"
)

// Inbound frames are attacker-controlled: every decoder must reject garbage
// with an error, never a panic, and whatever it accepts must be something
// the server can encode again (a session echoes parts of requests back, and
// rooms re-encode posts for every codec).

func addEnvelopeSeeds(f *testing.F, cd codec.Codec) {
	samples := sampleEnvelopes()
	for _, name := range sortedKeys(samples) {
		frame, err := cd.Encode(samples[name])
		if err != nil {
			f.Fatalf("encode seed %s: %v", name, err)
		}
		f.Add(frame)
	}
}

// reencode checks that an accepted envelope encodes in both native codecs
// and that each encoding decodes to the same envelope.
func reencode(t *testing.T, env *parleypb.Envelope) {
	t.Helper()
	for _, cd := range []codec.Codec{codec.Proto, codec.JSON} {
		frame, err := cd.Encode(env)
		if err != nil {
			t.Fatalf("%s: accepted %v but cannot encode it: %v", cd.Subprotocol(), env, err)
		}
		if cd == codec.JSON {
			// Compact, whatever whitespace protojson chose in this build.
			var compact bytes.Buffer
			if err := json.Compact(&compact, frame); err != nil || !bytes.Equal(compact.Bytes(), frame) {
				t.Fatalf("json: the encoding %q of %v is not compact JSON (%v)", frame, env, err)
			}
		}
		back, err := cd.Decode(frame)
		if err != nil {
			t.Fatalf("%s: cannot decode its own encoding %q of %v: %v", cd.Subprotocol(), frame, env, err)
		}
		want := env
		if cd == codec.JSON {
			// protojson has no place for unknown fields; compare without.
			want = proto.Clone(env).(*parleypb.Envelope)
			discardUnknown(want)
		}
		if !proto.Equal(back, want) {
			t.Fatalf("%s: re-encoding changed the envelope\n got: %v\nwant: %v", cd.Subprotocol(), back, want)
		}
	}
	// The legacy codec must either render a frame or say it has none.
	if _, err := codec.Legacy.Encode(env); err != nil && !errors.Is(err, codec.ErrNoFrame) {
		// Presence with several names is the one documented refusal.
		if env.GetPresence() == nil {
			t.Fatalf("legacy: cannot encode %v: %v", env, err)
		}
	}
}

func discardUnknown(m proto.Message) {
	r := m.ProtoReflect()
	r.SetUnknown(nil)
	r.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := range l.Len() {
				discardUnknown(l.Get(i).Message().Interface())
			}
		case fd.Message() != nil && !fd.IsMap():
			discardUnknown(v.Message().Interface())
		}
		return true
	})
}

func FuzzProtoDecode(f *testing.F) {
	addEnvelopeSeeds(f, codec.Proto)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0x02, 'r', '1', 0xfa, 0x3f, 0x00}) // id + an unknown field
	f.Add([]byte{0xa2, 0x02, 0x80})                       // truncated length
	f.Fuzz(func(t *testing.T, frame []byte) {
		env, err := codec.Proto.Decode(frame)
		if err != nil {
			if env != nil {
				t.Fatalf("Decode returned %v with error %v", env, err)
			}
			return
		}
		reencode(t, env)
	})
}

func FuzzJSONDecode(f *testing.F) {
	addEnvelopeSeeds(f, codec.JSON)
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"id":"x","post":{"room":"r","text":"hi","clientMsgId":"c"},"unknown":[1,{"a":null}]}`))
	f.Add([]byte(`{"join":{"room":"r","since":"18446744073709551615"}}`))
	f.Add([]byte(`{"hello":{"name":"a"},"post":{}}`))
	f.Add([]byte(`{"error":{"code":"ERROR_CODE_TOO_LONG"}}`))
	f.Add([]byte(`{"error":{"code":12345}}`))
	f.Fuzz(func(t *testing.T, frame []byte) {
		env, err := codec.JSON.Decode(frame)
		if err != nil {
			if env != nil {
				t.Fatalf("Decode returned %v with error %v", env, err)
			}
			return
		}
		reencode(t, env)
	})
}

func FuzzLegacyDecode(f *testing.F) {
	for _, s := range []string{
		`{"type":"login","content":"alice"}`,
		`{"type":"user","content":"hi <b>there</b>"}`,
		`{"type":"logout"}`,
		`{"type":"user","content":"\u0000\ud800"}`,
		`{"type":"nope"}`,
		`{"type":"user","content":"x","user_list":["a","b"],"ip":"1.2.3.4"}`,
		`[]`,
		`{`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		env, err := codec.Legacy.Decode(frame)
		if err != nil {
			if env != nil {
				t.Fatalf("Decode returned %v with error %v", env, err)
			}
			return
		}
		switch {
		case env.GetHello() != nil, env.GetLeave().GetRoom() == codec.LegacyRoom, env.GetPost().GetRoom() == codec.LegacyRoom:
		default:
			t.Fatalf("legacy frame decoded to %v; want a hello, or a post or leave of %s", env, codec.LegacyRoom)
		}
		reencode(t, env)
		// Requests have no legacy rendering: the page never sees them back.
		if _, err := codec.Legacy.Encode(env); !errors.Is(err, codec.ErrNoFrame) {
			t.Fatalf("legacy Encode of request %v: %v, want ErrNoFrame", env, err)
		}
	})
}
