package codec

import (
	"bytes"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	parleypb "github.com/parleychat/parley/proto"
)

// Proto is parley.v1.proto: one binary protobuf Envelope per frame.
var Proto Codec = protoCodec{}

// JSON is parley.v1.json: one protojson Envelope per text frame.
var JSON Codec = jsonCodec{}

type protoCodec struct{}

func (protoCodec) Kind() parleypb.Codec { return parleypb.Codec_CODEC_PROTO }
func (protoCodec) Subprotocol() string  { return ProtoSubprotocol }
func (protoCodec) Binary() bool         { return true }

func (protoCodec) Decode(frame []byte) (*parleypb.Envelope, error) {
	env := new(parleypb.Envelope)
	if err := proto.Unmarshal(frame, env); err != nil {
		return nil, fmt.Errorf("codec: bad protobuf envelope: %w", err)
	}
	return env, nil
}

func (protoCodec) Encode(env *parleypb.Envelope) ([]byte, error) {
	return proto.Marshal(env)
}

// batchField is Envelope.batch; itemsField is Batch.items.
const (
	batchField = 36
	itemsField = 1
)

// AppendBatch builds Envelope{batch: Batch{items: frames}} from frames that
// are already encoded envelopes, without decoding them: an embedded message
// is its tag, its length and its bytes. A frame that is itself a batch is
// spliced in item by item, so a batch never holds a batch.
func (protoCodec) AppendBatch(dst []byte, frames [][]byte) ([]byte, bool) {
	inner := 0
	for _, f := range frames {
		if items, ok := protoBatchItems(f); ok {
			inner += len(items)
		} else {
			inner += protowire.SizeTag(itemsField) + protowire.SizeBytes(len(f))
		}
	}
	dst = protowire.AppendTag(dst, batchField, protowire.BytesType)
	dst = protowire.AppendVarint(dst, uint64(inner))
	for _, f := range frames {
		if items, ok := protoBatchItems(f); ok {
			dst = append(dst, items...)
			continue
		}
		dst = protowire.AppendTag(dst, itemsField, protowire.BytesType)
		dst = protowire.AppendBytes(dst, f)
	}
	return dst, true
}

// protoBatchItems returns the encoded items field of a frame that is exactly
// one Envelope{batch}, as AppendBatch writes it.
func protoBatchItems(f []byte) ([]byte, bool) {
	num, typ, n := protowire.ConsumeTag(f)
	if n < 0 || num != batchField || typ != protowire.BytesType {
		return nil, false
	}
	body, m := protowire.ConsumeBytes(f[n:])
	if m < 0 || n+m != len(f) {
		return nil, false
	}
	return body, true
}

type jsonCodec struct{}

var (
	jsonIn  = protojson.UnmarshalOptions{DiscardUnknown: true}
	jsonOut = protojson.MarshalOptions{}
)

func (jsonCodec) Kind() parleypb.Codec { return parleypb.Codec_CODEC_JSON }
func (jsonCodec) Subprotocol() string  { return JSONSubprotocol }
func (jsonCodec) Binary() bool         { return false }

func (jsonCodec) Decode(frame []byte) (*parleypb.Envelope, error) {
	env := new(parleypb.Envelope)
	if err := jsonIn.Unmarshal(frame, env); err != nil {
		return nil, fmt.Errorf("codec: bad JSON envelope: %w", err)
	}
	return env, nil
}

// Encode renders env as compact JSON, the same bytes in every build.
// protojson on its own does not: it adds a space after every comma in some
// builds and not in others, on purpose (its output is seeded by a hash of
// the binary so that nobody relies on it). Encode removes whitespace outside
// strings from its output, in place.
func (jsonCodec) Encode(env *parleypb.Envelope) ([]byte, error) {
	b, err := jsonOut.Marshal(env)
	if err != nil {
		return nil, err
	}
	return compactJSON(b), nil
}

// compactJSON removes the whitespace outside strings from well-formed JSON,
// in place, and returns the shortened slice. Strings are skipped with
// bytes.IndexByte, so the cost is in the few structural bytes of a frame,
// not in its text; output without whitespace is not rewritten at all.
func compactJSON(b []byte) []byte {
	w := -1 // where the next byte goes, once the first whitespace was dropped
	for r := 0; r < len(b); {
		switch c := b[r]; c {
		case '"':
			end := jsonStringEnd(b, r+1)
			if w >= 0 {
				w += copy(b[w:], b[r:end])
			}
			r = end
		case ' ', '\n', '\t', '\r':
			if w < 0 {
				w = r
			}
			r++
		default:
			if w >= 0 {
				b[w] = c
				w++
			}
			r++
		}
	}
	if w < 0 {
		return b
	}
	return b[:w]
}

// jsonStringEnd returns the index just past the quote that closes the JSON
// string whose contents start at i (len(b) if it is not closed).
func jsonStringEnd(b []byte, i int) int {
	for {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return len(b)
		}
		i += j
		// A quote preceded by an odd number of backslashes is escaped.
		n := 0
		for k := i - 1; b[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			return i + 1
		}
		i++
	}
}

const (
	jsonBatchOpen  = `{"batch":{"items":[`
	jsonBatchClose = `]}}`
)

// AppendBatch splices already encoded JSON envelopes into
// {"batch":{"items":[...]}} without re-encoding them. A frame that is itself
// such a batch is spliced in item by item, so a batch never holds a batch.
func (jsonCodec) AppendBatch(dst []byte, frames [][]byte) ([]byte, bool) {
	dst = append(dst, jsonBatchOpen...)
	first := true
	for _, f := range frames {
		if bytes.HasPrefix(f, []byte(jsonBatchOpen)) && bytes.HasSuffix(f, []byte(jsonBatchClose)) {
			f = f[len(jsonBatchOpen) : len(f)-len(jsonBatchClose)]
			if len(f) == 0 {
				continue
			}
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, f...)
	}
	return append(dst, jsonBatchClose...), true
}
