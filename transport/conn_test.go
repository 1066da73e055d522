package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/parleychat/parley/internal/testenv"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/proto/codec"
)

// discardPeer stands in for a session: these tests drive the Conn directly.
type discardPeer struct{}

func (discardPeer) Frame(*parleypb.Envelope)    {}
func (discardPeer) BadFrame(string)             {}
func (discardPeer) Closed(*parleypb.CloseError) {}

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

// dial connects a client offering subprotocols (none: the legacy codec)
// and returns it with the server's side of the connection.
func dial(t *testing.T, ctx context.Context, url string, opened <-chan *Conn, subprotocols ...string) (*websocket.Conn, *Conn) {
	t.Helper()
	ws, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: subprotocols})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	return ws, accepted(t, ctx, opened)
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
			ws, c := dial(t, ctx, url, opened, tc.offer...)
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
		code      parleypb.CloseCode
		wantAll   bool
		wantFrame string
	}{
		{"normal close flushes", parleypb.CloseCode_CLOSE_CODE_NORMAL, true, "logged out"},
		{"too slow drops", parleypb.CloseCode_CLOSE_CODE_TRY_AGAIN_LATER, false, "outbound queue full"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// MaxBatch 1 and the legacy codec: one write per frame, so the
			// writer is mid-queue when Close lands.
			url, opened := startServer(t, Options{MaxBatch: 1, QueueSize: frames})
			ctx := testCtx(t)
			ws, c := dial(t, ctx, url, opened)
			for i := range frames {
				if !c.Send(fmt.Appendf(nil, `{"type":"system","content":"%d"}`, i)) {
					t.Fatalf("queue full at frame %d of %d", i, frames)
				}
			}
			c.Close(parleypb.Close(tc.code, tc.wantFrame))
			got, ce, err := readAll(ctx, ws)
			if err != nil {
				t.Fatalf("read: %v after %d frames", err, len(got))
			}
			if parleypb.CloseCode(ce.Code) != tc.code || ce.Reason != tc.wantFrame {
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
	ws, c := dial(t, ctx, url, opened, codec.ProtoSubprotocol)
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
	c.Close(parleypb.Close(parleypb.CloseCode_CLOSE_CODE_NORMAL, "done"))
	var texts []string
	for {
		typ, b, err := ws.Read(ctx)
		if err != nil {
			if websocket.CloseStatus(err) != websocket.StatusNormalClosure {
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

// recordingPeer hands the test what the connection reads: each frame's
// Envelope, each bad frame's reason, and how the connection closed.
type recordingPeer chan any

func (p recordingPeer) Frame(env *parleypb.Envelope)    { p <- env }
func (p recordingPeer) BadFrame(reason string)          { p <- reason }
func (p recordingPeer) Closed(how *parleypb.CloseError) { p <- how }

// waitFor polls try until it returns nil or d passes.
var waitFor = testenv.WaitFor

// TestIdleConnHoldsNoWriter: the writer goroutine and the queue exist only
// while frames are queued; a connection that has written everything holds
// neither, and the next Send starts a writer again.
func TestIdleConnHoldsNoWriter(t *testing.T) {
	t.Parallel()
	url, opened := startServer(t, Options{})
	ctx := testCtx(t)
	ws, c := dial(t, ctx, url, opened)
	idle := func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.writing || c.queue != nil || c.qp != nil {
			return fmt.Errorf("writer running %v, queue %d frames (array held: %v)", c.writing, len(c.queue), c.qp != nil)
		}
		return nil
	}
	for round := range 3 {
		for i := range 10 {
			if !c.Send(fmt.Appendf(nil, `{"type":"system","content":"%d-%d"}`, round, i)) {
				t.Fatal("queue full")
			}
		}
		for i := range 10 {
			_, b, err := ws.Read(ctx)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if want := fmt.Sprintf(`{"type":"system","content":"%d-%d"}`, round, i); string(b) != want {
				t.Fatalf("frame %s, want %s", b, want)
			}
		}
		waitFor(t, 5*time.Second, idle)
	}
}

// TestFramesBeforeHandshakeAnswer: a client may send its first frames right
// behind the upgrade request, before it reads the 101; they are read, not
// lost with net/http's buffer.
func TestFramesBeforeHandshakeAnswer(t *testing.T) {
	t.Parallel()
	got := make(recordingPeer, 4)
	s := NewServer(HandlerFunc(func(*Conn) (Peer, error) { return got, nil }), Options{})
	ts := httptest.NewServer(s)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx, "test over")
		ts.Close()
	})
	nc, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	frame, err := codec.JSON.Encode(&parleypb.Envelope{Id: "early", Body: &parleypb.Envelope_Ping{Ping: &parleypb.Ping{}}})
	if err != nil {
		t.Fatal(err)
	}
	req := "GET /ws HTTP/1.1\r\nHost: " + ts.Listener.Addr().String() + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: " + codec.JSONSubprotocol + "\r\n\r\n"
	// One masked text frame (mask key 0: the payload is unchanged).
	wire := append([]byte(req), 0x81, 0x80|byte(len(frame)), 0, 0, 0, 0)
	wire = append(wire, frame...)
	if _, err := nc.Write(wire); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		env, ok := m.(*parleypb.Envelope)
		if !ok || env.GetId() != "early" {
			t.Fatalf("peer got %v, want the early ping", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the frame sent with the handshake never arrived")
	}
}

// TestWriteTimeout: a client that stops reading while the server writes is
// closed once a write has been blocked for WriteTimeout, with no help from
// the queue limit.
func TestWriteTimeout(t *testing.T) {
	t.Parallel()
	url, opened := startServer(t, Options{WriteTimeout: 200 * time.Millisecond, QueueSize: 100000})
	ctx := testCtx(t)
	_, c := dial(t, ctx, url, opened) // the client never reads
	big := []byte(`{"type":"system","content":"` + strings.Repeat("x", 60<<10) + `"}`)
	// The socket buffers take a few MB; the client never reads.
	waitFor(t, 20*time.Second, func() error {
		select {
		case <-c.finished:
			return nil
		default:
		}
		for range 16 {
			if !c.Send(big) {
				return errors.New("queue full")
			}
		}
		return errors.New("connection still open")
	})
	how, _ := c.closedByServer()
	if how.Code != parleypb.CloseCode_CLOSE_CODE_ABNORMAL || !strings.Contains(how.Reason, "write failed") {
		t.Fatalf("closed with %v, want ABNORMAL (1006) after a failed write", &how)
	}
}

// TestTextFramesDecodedInOrder: frames of a text codec are decoded by the
// shared decoder workers, yet reach the peer in the order they were sent,
// and the workers are gone after Shutdown.
func TestTextFramesDecodedInOrder(t *testing.T) {
	t.Parallel()
	got := make(recordingPeer, 1000)
	s := NewServer(HandlerFunc(func(*Conn) (Peer, error) { return got, nil }), Options{})
	ts := httptest.NewServer(s)
	defer ts.Close()
	ctx := testCtx(t)
	const n = 300
	var clients []*websocket.Conn
	for range 3 {
		ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(ts.URL, "http")+"/ws", &websocket.DialOptions{Subprotocols: []string{codec.JSONSubprotocol}})
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer ws.CloseNow()
		clients = append(clients, ws)
	}
	for i := range n {
		for k, ws := range clients {
			f, err := codec.JSON.Encode(&parleypb.Envelope{Id: fmt.Sprintf("%d-%d", k, i), Body: &parleypb.Envelope_Ping{Ping: &parleypb.Ping{}}})
			if err != nil {
				t.Fatal(err)
			}
			if err := ws.Write(ctx, websocket.MessageText, f); err != nil {
				t.Fatalf("write: %v", err)
			}
		}
	}
	next := make([]int, len(clients))
	for range n * len(clients) {
		var m any
		select {
		case m = <-got:
		case <-ctx.Done():
			t.Fatalf("frames missing: next per client %v", next)
		}
		var k, i int
		if _, err := fmt.Sscanf(m.(*parleypb.Envelope).GetId(), "%d-%d", &k, &i); err != nil {
			t.Fatalf("peer got %v: %v", m, err)
		}
		if i != next[k] {
			t.Fatalf("client %d: frame %d arrived when %d was next", k, i, next[k])
		}
		next[k]++
	}
	for _, ws := range clients {
		ws.Close(websocket.StatusNormalClosure, "done")
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.Shutdown(sctx, "test over"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() error {
		if w := s.dec.workers.Load(); w != 0 {
			return fmt.Errorf("%d decoder workers still running", w)
		}
		return nil
	})
}
