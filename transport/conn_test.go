package transport

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/codec"
	parleypb "github.com/parleychat/parley/proto"
)

// discardPeer stands in for a session: these tests drive the Conn directly.
type discardPeer struct{}

func (discardPeer) Tell(proto.Message) {}

// startServer serves /ws on 127.0.0.1 and hands each accepted Conn to the
// test through the returned channel.
func startServer(t *testing.T, opts Options) (url string, opened <-chan *Conn) {
	t.Helper()
	ch := make(chan *Conn, 4)
	s := NewServer(HandlerFunc(func(c *Conn) (Peer, error) {
		ch <- c
		return discardPeer{}, nil
	}), opts)
	ts := httptest.NewServer(s)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := s.Shutdown(ctx, "test over"); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		ts.Close()
	})
	return "ws" + strings.TrimPrefix(ts.URL, "http"), ch
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func accepted(t *testing.T, ctx context.Context, opened <-chan *Conn) *Conn {
	t.Helper()
	select {
	case c := <-opened:
		return c
	case <-ctx.Done():
		t.Fatal("no connection reached the handler")
		return nil
	}
}

// TestNegotiatedSubprotocolIsTheCodec: the subprotocol the server answers
// with in the handshake is the one the client will speak, so it must be the
// codec the connection decodes and encodes with, whatever order a client
// (a browser, say) lists its offers in.
func TestNegotiatedSubprotocolIsTheCodec(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		offer []string
	}{
		{"proto", []string{codec.ProtoSubprotocol}},
		{"json", []string{codec.JSONSubprotocol}},
		{"proto then json", []string{codec.ProtoSubprotocol, codec.JSONSubprotocol}},
		{"json then proto", []string{codec.JSONSubprotocol, codec.ProtoSubprotocol}},
		{"unknown then json", []string{"chat", codec.JSONSubprotocol}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			url, opened := startServer(t, Options{})
			ctx := testCtx(t)
			ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: tc.offer})
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer ws.CloseNow()
			c := accepted(t, ctx, opened)
			if got, want := ws.Subprotocol(), c.Codec().Subprotocol(); got != want {
				t.Fatalf("offered %q: handshake chose %q but the connection speaks %q", tc.offer, got, want)
			}
		})
	}
}

// readAll reads text frames until the connection closes and returns them
// with the close status.
func readAll(ctx context.Context, ws *websocket.Conn) ([]string, websocket.CloseError, error) {
	var frames []string
	for {
		_, b, err := ws.Read(ctx)
		if err != nil {
			var ce websocket.CloseError
			if errors.As(err, &ce) {
				return frames, ce, nil
			}
			return frames, ce, err
		}
		frames = append(frames, string(b))
	}
}

// TestCloseWhileSending closes a connection while its writer is busy with
// queued frames, as a session does when it logs a client out right after
// answering it. With the normal code the queue is written first; with 1013
// it may be dropped, but the close frame always arrives. Run with -race: the
// writer and Close meet here.
func TestCloseWhileSending(t *testing.T) {
	t.Parallel()
	const frames = 200
	for _, tc := range []struct {
		name      string
		code      int
		wantAll   bool
		wantFrame string
	}{
		{"normal close flushes", StatusNormal, true, "logged out"},
		{"too slow drops", StatusTryAgainLater, false, "outbound queue full"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// MaxBatch 1 and the legacy codec: one write per frame, so the
			// writer is mid-queue when Close lands.
			url, opened := startServer(t, Options{MaxBatch: 1, QueueSize: frames})
			ctx := testCtx(t)
			ws, _, err := websocket.Dial(ctx, url, nil)
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer ws.CloseNow()
			c := accepted(t, ctx, opened)
			for i := range frames {
				if !c.Send(fmt.Appendf(nil, `{"type":"system","content":"%d"}`, i)) {
					t.Fatalf("queue full at frame %d of %d", i, frames)
				}
			}
			c.Close(tc.code, tc.wantFrame)
			got, ce, err := readAll(ctx, ws)
			if err != nil {
				t.Fatalf("read: %v after %d frames", err, len(got))
			}
			if int(ce.Code) != tc.code || ce.Reason != tc.wantFrame {
				t.Fatalf("closed with %d %q, want %d %q", ce.Code, ce.Reason, tc.code, tc.wantFrame)
			}
			if tc.wantAll && len(got) != frames {
				t.Fatalf("got %d frames before the close, want all %d", len(got), frames)
			}
			for i, f := range got {
				if want := fmt.Sprintf(`{"type":"system","content":"%d"}`, i); f != want {
					t.Fatalf("frame %d = %s, want %s (order or loss)", i, f, want)
				}
			}
			// Frames after Close are dropped quietly, not reported as a
			// full queue (which would make the session close again).
			if !c.Send([]byte(`{}`)) {
				t.Fatal("Send after Close reported a full queue")
			}
		})
	}
}

// TestBatchOnTheWire checks that frames queued together reach a native
// client as one Batch frame holding them in order.
func TestBatchOnTheWire(t *testing.T) {
	t.Parallel()
	url, opened := startServer(t, Options{})
	ctx := testCtx(t)
	ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{codec.ProtoSubprotocol}})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer ws.CloseNow()
	c := accepted(t, ctx, opened)
	const n = 50
	for i := range n {
		f, err := codec.Proto.Encode(&parleypb.Envelope{Body: &parleypb.Envelope_Notice{Notice: &parleypb.Notice{Text: fmt.Sprint(i)}}})
		if err != nil {
			t.Fatal(err)
		}
		if !c.Send(f) {
			t.Fatalf("queue full at %d", i)
		}
	}
	c.Close(StatusNormal, "done")
	var texts []string
	for {
		typ, b, err := ws.Read(ctx)
		if err != nil {
			if websocket.CloseStatus(err) != StatusNormal {
				t.Fatalf("read: %v", err)
			}
			break
		}
		if typ != websocket.MessageBinary {
			t.Fatalf("got a %v frame on a binary connection", typ)
		}
		env, err := codec.Proto.Decode(b)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		items := []*parleypb.Envelope{env}
		if env.GetBatch() != nil {
			items = env.GetBatch().GetItems()
		}
		for _, it := range items {
			texts = append(texts, it.GetNotice().GetText())
		}
	}
	if len(texts) != n {
		t.Fatalf("got %d notices, want %d", len(texts), n)
	}
	for i, s := range texts {
		if s != fmt.Sprint(i) {
			t.Fatalf("notice %d = %q (order)", i, s)
		}
	}
}
