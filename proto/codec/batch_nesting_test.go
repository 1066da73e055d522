package codec_test

import (
	"testing"

	"google.golang.org/protobuf/proto"

	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/proto/codec"
)

// TestBatchNeverNests: batching frames of which some are batches already
// gives one flat batch with every item in order, in both native codecs.
func TestBatchNeverNests(t *testing.T) {
	for _, cd := range []codec.Codec{codec.Proto, codec.JSON} {
		t.Run(cd.Subprotocol(), func(t *testing.T) {
			t.Parallel()
			env := func(seq uint64) []byte {
				b, err := cd.Encode(&parleypb.Envelope{Body: &parleypb.Envelope_Event{Event: &parleypb.RoomEvent{Room: "r", Seq: seq, Text: "t"}}})
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
			inner, _ := cd.AppendBatch(nil, [][]byte{env(2), env(3)})
			outer, _ := cd.AppendBatch(nil, [][]byte{env(1), inner, env(4)})
			got, err := cd.Decode(outer)
			if err != nil {
				t.Fatalf("decode %q: %v", outer, err)
			}
			items := got.GetBatch().GetItems()
			if len(items) != 4 {
				t.Fatalf("%d items, want 4 flat: %v", len(items), got)
			}
			for i, it := range items {
				if it.GetBatch() != nil || it.GetEvent().GetSeq() != uint64(i+1) {
					t.Fatalf("item %d = %v", i, it)
				}
			}
			again, _ := cd.AppendBatch(nil, [][]byte{outer})
			if g, _ := cd.Decode(again); !proto.Equal(g, got) {
				t.Fatalf("re-batching a batch changed it: %v", g)
			}
		})
	}
}
