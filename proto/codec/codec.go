// Package codec turns Parley's protobuf Envelope into WebSocket frames and
// back, once per wire format: parley.v1.proto (binary protobuf),
// parley.v1.json (protojson) and the tutorial's legacy JSON.
//
// Codecs are stateless and safe for concurrent use. Rooms use them to encode
// an event once per fan-out; transport uses them to decode inbound frames and
// to coalesce queued frames into one Batch frame.
package codec

import (
	"errors"

	parleypb "github.com/parleychat/parley/proto"
)

// Subprotocol names, as sent in Sec-WebSocket-Protocol.
const (
	ProtoSubprotocol = "parley.v1.proto"
	JSONSubprotocol  = "parley.v1.json"
)

// ErrNoFrame is returned by Encode when the codec has nothing to send for an
// envelope (the legacy protocol has no acks, for instance).
var ErrNoFrame = errors.New("codec: nothing to send for this message")

// Codec is one wire format.
type Codec interface {
	// Kind identifies the codec inside actor messages.
	Kind() parleypb.Codec
	// Subprotocol is the Sec-WebSocket-Protocol value; empty for legacy.
	Subprotocol() string
	// Binary reports whether frames are binary (else text) messages.
	Binary() bool
	// Decode parses one inbound frame.
	Decode(frame []byte) (*parleypb.Envelope, error)
	// Encode renders one outbound envelope as a frame.
	Encode(env *parleypb.Envelope) ([]byte, error)
	// AppendBatch appends to dst one frame carrying every frame of frames, in
	// order, as a Batch envelope; ok is false when the codec cannot batch.
	AppendBatch(dst []byte, frames [][]byte) (out []byte, ok bool)
}

// For returns the codec of a kind; nil for an unknown kind.
func For(k parleypb.Codec) Codec {
	switch k {
	case parleypb.Codec_CODEC_PROTO:
		return Proto
	case parleypb.Codec_CODEC_JSON:
		return JSON
	case parleypb.Codec_CODEC_LEGACY:
		return Legacy
	}
	return nil
}

// BySubprotocol returns the codec a client asked for; "" means legacy.
func BySubprotocol(name string) (Codec, bool) {
	switch name {
	case ProtoSubprotocol:
		return Proto, true
	case JSONSubprotocol:
		return JSON, true
	case "":
		return Legacy, true
	}
	return nil, false
}

// Subprotocols lists the subprotocols the server accepts, preferred first.
func Subprotocols() []string { return []string{ProtoSubprotocol, JSONSubprotocol} }
