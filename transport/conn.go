package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/parleychat/parley/auth"
	"github.com/parleychat/parley/codec"
	parleypb "github.com/parleychat/parley/proto"
)

// closeMode says what happens to queued frames when a connection closes.
type closeMode int

const (
	closeFlush closeMode = iota // write what is queued, then the close frame
	closeDrop                   // drop the queue (the client is not reading), then the close frame
	closeNow                    // no close frame: the peer is gone
)

// Conn is one accepted WebSocket. Send and Close may be called from any
// goroutine; the session actor is their only caller in Parley.
type Conn struct {
	srv    *Server
	ws     *websocket.Conn
	codec  codec.Codec
	id     string
	remote string
	claims *auth.Claims
	out    chan []byte

	closeOnce   sync.Once
	closing     chan struct{} // closed by the first Close
	closeCode   int           // written before closing is closed
	closeReason string
	closeMode   closeMode

	pingMu    sync.Mutex
	pingTimer *time.Timer // nil once serve returned
}

func newConn(s *Server, ws *websocket.Conn, cd codec.Codec, id, remote string) *Conn {
	return &Conn{
		srv: s, ws: ws, codec: cd, id: id, remote: remote,
		out:     make(chan []byte, s.opts.QueueSize),
		closing: make(chan struct{}),
	}
}

// ID is the connection's id, unique within the process, used in logs.
func (c *Conn) ID() string { return c.id }

// RemoteAddr is the peer's address as the server saw it.
func (c *Conn) RemoteAddr() string { return c.remote }

// Claims is what the token brought with the handshake says; nil when the
// client brought none.
func (c *Conn) Claims() *auth.Claims { return c.claims }

// Codec is the wire format the client chose.
func (c *Conn) Codec() codec.Codec { return c.codec }

// Send queues one encoded frame without blocking. It reports false when the
// queue is full: the client is not draining it, and the caller should close
// the connection with 1013. Frames sent after Close are dropped.
func (c *Conn) Send(frame []byte) bool {
	select {
	case <-c.closing:
		return true
	default:
	}
	select {
	case c.out <- frame:
		return true
	default:
		c.srv.Stats.QueueFull.Add(1)
		return false
	}
}

// Close closes the connection with a code and a reason, after writing what
// is already queued; with 1013 (the client is too slow) the queue is
// dropped instead. It does not wait. Only the first call counts.
func (c *Conn) Close(code int, reason string) {
	mode := closeFlush
	if code == int(websocket.StatusTryAgainLater) {
		mode = closeDrop
	}
	c.close(code, reason, mode)
}

// Abort drops the connection at once, with no close frame, as a network
// failure would. Fault injection uses it.
func (c *Conn) Abort() {
	c.close(int(websocket.StatusAbnormalClosure), "connection aborted (injected fault)", closeNow)
}

func (c *Conn) close(code int, reason string, mode closeMode) {
	c.closeOnce.Do(func() {
		c.closeCode, c.closeReason, c.closeMode = code, reason, mode
		close(c.closing)
		if mode == closeNow {
			c.ws.CloseNow()
		}
	})
}

func (c *Conn) closedByServer() (int, string, bool) {
	select {
	case <-c.closing:
		return c.closeCode, c.closeReason, true
	default:
		return 0, "", false
	}
}

var readBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// serve runs the read loop until the connection ends and reports how it
// ended.
func (c *Conn) serve(peer Peer) (code int, reason string) {
	writerDone := make(chan struct{})
	go c.writeLoop(writerDone)
	c.armPing()
	defer func() {
		c.pingMu.Lock()
		c.pingTimer.Stop()
		c.pingTimer = nil
		c.pingMu.Unlock()
	}()

	want := websocket.MessageText
	if c.codec.Binary() {
		want = websocket.MessageBinary
	}
	ctx := context.Background()
	for {
		typ, r, err := c.ws.Reader(ctx)
		if err == nil {
			buf := readBufs.Get().(*bytes.Buffer)
			buf.Reset()
			_, err = buf.ReadFrom(r)
			if err == nil {
				c.deliver(peer, typ, want, buf.Bytes())
			}
			if buf.Cap() <= 64<<10 {
				readBufs.Put(buf)
			}
		}
		if err != nil {
			code, reason = c.readEnded(err)
			break
		}
	}
	peer.Tell(&parleypb.ConnClosed{Code: int32(code), Reason: reason})
	c.close(code, reason, closeNow)
	<-writerDone
	return code, reason
}

func (c *Conn) deliver(peer Peer, typ, want websocket.MessageType, frame []byte) {
	c.srv.Stats.FramesIn.Add(1)
	if typ != want {
		c.srv.Stats.BadFrames.Add(1)
		peer.Tell(&parleypb.BadFrame{Reason: fmt.Sprintf("this connection speaks %s frames, got a %s frame", msgTypeName(want), msgTypeName(typ))})
		return
	}
	env, err := c.codec.Decode(frame)
	if err != nil {
		c.srv.Stats.BadFrames.Add(1)
		peer.Tell(&parleypb.BadFrame{Reason: err.Error()})
		return
	}
	peer.Tell(env)
}

// readEnded names the close: the server's own code when it closed first,
// 1009 for a frame over the limit, else what the client sent.
func (c *Conn) readEnded(err error) (int, string) {
	if errors.Is(err, websocket.ErrMessageTooBig) {
		reason := fmt.Sprintf("frame larger than %d bytes", c.srv.opts.MaxMessageBytes)
		c.close(int(websocket.StatusMessageTooBig), reason, closeNow)
	}
	if code, reason, ok := c.closedByServer(); ok {
		return code, reason
	}
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		return int(ce.Code), ce.Reason
	}
	return int(websocket.StatusAbnormalClosure), err.Error()
}

func msgTypeName(t websocket.MessageType) string {
	if t == websocket.MessageBinary {
		return "binary"
	}
	return "text"
}

var batchBufs = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// writeLoop is the only writer of the socket. When more than one frame is
// queued it sends them as one Batch frame (if the codec can), which is what
// keeps the cost per delivery falling as load rises.
func (c *Conn) writeLoop(done chan<- struct{}) {
	defer close(done)
	typ := websocket.MessageText
	if c.codec.Binary() {
		typ = websocket.MessageBinary
	}
	frames := make([][]byte, 0, 1)
	for {
		select {
		case <-c.closing:
			c.finish(typ)
			return
		case f := <-c.out:
			if isClosed(c.closing) && c.closeMode == closeDrop { // closeMode is safe to read once closing is closed
				c.finish(typ)
				return
			}
			frames = append(frames[:0], f)
		drain:
			for len(frames) < c.srv.opts.MaxBatch {
				select {
				case g := <-c.out:
					frames = append(frames, g)
				default:
					break drain
				}
			}
			if err := c.write(typ, frames); err != nil {
				c.close(int(websocket.StatusAbnormalClosure), "write failed: "+err.Error(), closeNow)
				return
			}
			clear(frames)
		}
	}
}

func (c *Conn) write(typ websocket.MessageType, frames [][]byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), c.srv.opts.WriteTimeout)
	defer cancel()
	c.srv.Stats.FramesOut.Add(1)
	if len(frames) == 1 {
		return c.ws.Write(ctx, typ, frames[0])
	}
	bp := batchBufs.Get().(*[]byte)
	b, ok := c.codec.AppendBatch((*bp)[:0], frames)
	var err error
	if ok {
		c.srv.Stats.BatchedOut.Add(int64(len(frames)))
		err = c.ws.Write(ctx, typ, b)
	} else {
		c.srv.Stats.FramesOut.Add(int64(len(frames) - 1))
		for _, f := range frames {
			if err = c.ws.Write(ctx, typ, f); err != nil {
				break
			}
		}
	}
	if cap(b) <= 256<<10 {
		*bp = b
		batchBufs.Put(bp)
	}
	return err
}

// finish writes what is queued (unless the mode says not to) and the close
// frame. coder/websocket bounds the close handshake itself (5 s).
func (c *Conn) finish(typ websocket.MessageType) {
	if c.closeMode == closeFlush {
		for len(c.out) > 0 {
			if c.write(typ, [][]byte{<-c.out}) != nil {
				break
			}
		}
	}
	if c.closeMode != closeNow {
		c.ws.Close(websocket.StatusCode(c.closeCode), truncateReason(c.closeReason))
	}
	c.ws.CloseNow()
}

// truncateReason keeps a close reason within the 123 bytes a close frame
// allows, on a rune boundary.
func truncateReason(s string) string {
	const max = 123
	if len(s) <= max {
		return s
	}
	s = s[:max]
	for !utf8.ValidString(s) { // at most three bytes of a cut rune
		s = s[:len(s)-1]
	}
	return s
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// armPing schedules the next heartbeat. A ping runs on the timer's own
// goroutine, so an idle connection holds no goroutine for it.
func (c *Conn) armPing() {
	c.pingMu.Lock()
	defer c.pingMu.Unlock()
	if c.pingTimer == nil {
		c.pingTimer = time.AfterFunc(c.srv.opts.PingInterval, c.ping)
		return
	}
	c.pingTimer.Reset(c.srv.opts.PingInterval)
}

func (c *Conn) ping() {
	ctx, cancel := context.WithTimeout(context.Background(), c.srv.opts.PongTimeout)
	defer cancel()
	if err := c.ws.Ping(ctx); err != nil {
		if !isClosed(c.closing) {
			c.close(StatusPongTimeout, fmt.Sprintf("no pong within %v", c.srv.opts.PongTimeout), closeNow)
		}
		return
	}
	c.pingMu.Lock()
	defer c.pingMu.Unlock()
	if c.pingTimer != nil {
		c.pingTimer.Reset(c.srv.opts.PingInterval)
	}
}
