package actorpb

import (
	"google.golang.org/protobuf/proto"

	parleypb "github.com/parleychat/parley/proto"
)

// Frame is d's frame in codec k, nil when it has none. The one place that
// knows which field holds which codec's frame.
func (d *Deliver) Frame(k parleypb.Codec) []byte {
	switch k {
	case parleypb.Codec_CODEC_PROTO:
		return d.GetProtoFrame()
	case parleypb.Codec_CODEC_JSON:
		return d.GetJsonFrame()
	case parleypb.Codec_CODEC_LEGACY:
		return d.GetLegacyFrame()
	}
	return nil
}

// SetFrame sets d's frame in codec k.
func (d *Deliver) SetFrame(k parleypb.Codec, f []byte) {
	switch k {
	case parleypb.Codec_CODEC_PROTO:
		d.ProtoFrame = f
	case parleypb.Codec_CODEC_JSON:
		d.JsonFrame = f
	case parleypb.Codec_CODEC_LEGACY:
		d.LegacyFrame = f
	}
}

// Has reports whether d carries what a member of codec k needs: its frame,
// or for an actor member (CODEC_UNSPECIFIED) the decoded event.
func (d *Deliver) Has(k parleypb.Codec) bool {
	if k == parleypb.Codec_CODEC_UNSPECIFIED {
		return d.GetEvent() != nil || d.GetPresence() != nil
	}
	return d.Frame(k) != nil
}

// Frame is b's prebuilt Batch frame in codec k, nil when it has none (the
// legacy codec cannot batch).
func (b *DeliverBatch) Frame(k parleypb.Codec) []byte {
	switch k {
	case parleypb.Codec_CODEC_PROTO:
		return b.GetProtoFrame()
	case parleypb.Codec_CODEC_JSON:
		return b.GetJsonFrame()
	}
	return nil
}

// SetFrame sets b's prebuilt Batch frame in codec k (a native one).
func (b *DeliverBatch) SetFrame(k parleypb.Codec, f []byte) {
	switch k {
	case parleypb.Codec_CODEC_PROTO:
		b.ProtoFrame = f
	case parleypb.Codec_CODEC_JSON:
		b.JsonFrame = f
	}
}

// IsParley reports whether m is one of Parley's messages (the wire
// protocol's or the actors'), as opposed to Proto.Actor's own.
func IsParley(m any) bool {
	pm, ok := m.(proto.Message)
	if !ok {
		return false
	}
	switch pm.ProtoReflect().Descriptor().ParentFile().Package() {
	case "parley.v1", "parley.actors.v1":
		return true
	}
	return false
}
