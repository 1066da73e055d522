package transport

import (
	"testing"

	"github.com/coder/websocket"

	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/proto/codec"
)

// BenchmarkDeliverJSON measures decoding one inbound JSON post and telling
// the peer, on the reader's own goroutine and handed to the shared decoder
// workers as serve does for the text codecs: the difference is what the
// hand-over costs per inbound frame.
func BenchmarkDeliverJSON(b *testing.B) {
	frame, err := codec.JSON.Encode(&parleypb.Envelope{Id: "42", Body: &parleypb.Envelope_Post{Post: &parleypb.Post{
		Room: "room-1", Text: "a chat line of about eighty characters, as the load tool and the codec benchmarks send", ClientMsgId: "c-1-42"}}})
	if err != nil {
		b.Fatal(err)
	}
	for _, onWorker := range []bool{false, true} {
		name := "reader"
		if onWorker {
			name = "decoder"
		}
		b.Run(name, func(b *testing.B) {
			s := NewServer(nil, Options{})
			defer s.dec.close()
			c := &Conn{srv: s, codec: codec.JSON}
			b.ReportAllocs()
			for b.Loop() {
				if onWorker {
					s.dec.deliver(c, discardPeer{}, websocket.MessageText, websocket.MessageText, frame)
				} else {
					c.deliver(discardPeer{}, websocket.MessageText, websocket.MessageText, frame)
				}
			}
		})
	}
}
