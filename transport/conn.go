package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/parleychat/parley/auth"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/proto/codec"
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
//
// An idle Conn holds one goroutine (its reader, parked in the kernel's
// poller) and no outbound buffer: Send starts a writer goroutine when it
// queues the first frame, and the writer exits when the queue is empty.
// Data frames are framed here and written to the socket in one write each
// (several queued frames become one Batch frame, or for the legacy codec
// several WebSocket frames in one write); coder/websocket reads, answers
// pings and writes control frames, through the same socket.
type Conn struct {
	srv    *Server
	ws     *websocket.Conn
	wire   *wire
	codec  codec.Codec
	opcode byte // the WebSocket opcode of data frames: text or binary
	id     string
	remote string
	claims *auth.Claims

	mu        sync.Mutex
	queue     [][]byte  // frames not yet taken by a writer; nil when idle
	qp        *[][]byte // the pooled slice queue's array came from
	writing   bool      // a writer goroutine runs (it stays set once the connection is closing)
	closing   bool      // set by the first close, which also fixes the two below
	closeWith parleypb.CloseError
	closeMode closeMode

	finished chan struct{} // closed when the last writer wrote the close frame and closed the socket

	pingMu    sync.Mutex
	pingTimer *time.Timer // nil once serve returned
}

func newConn(s *Server, ws *websocket.Conn, w *wire, cd codec.Codec, id, remote string) *Conn {
	c := &Conn{
		srv: s, ws: ws, wire: w, codec: cd, id: id, remote: remote,
		opcode:   opText,
		finished: make(chan struct{}),
	}
	if cd.Binary() {
		c.opcode = opBinary
	}
	return c
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
// the connection with 1013. Frames sent after Close are dropped. The frame
// must not be modified afterwards (rooms share one frame among members).
func (c *Conn) Send(frame []byte) bool {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return true
	}
	if len(c.queue) >= c.srv.opts.QueueSize {
		c.mu.Unlock()
		c.srv.Stats.QueueFull.Add(1)
		return false
	}
	if c.qp == nil {
		c.qp = queues.Get().(*[][]byte)
		c.queue = (*c.qp)[:0]
	}
	c.queue = append(c.queue, frame)
	start := !c.writing
	c.writing = true
	c.mu.Unlock()
	if start {
		go c.writeLoop()
	}
	return true
}

// Close closes the connection with a code and a reason, after writing what
// is already queued; with TRY_AGAIN_LATER (the client is too slow) the
// queue is dropped instead. It does not wait. Only the first call counts.
func (c *Conn) Close(how *parleypb.CloseError) {
	mode := closeFlush
	if how.Code == parleypb.CloseCode_CLOSE_CODE_TRY_AGAIN_LATER {
		mode = closeDrop
	}
	c.close(how.Code, how.Reason, mode)
}

// Abort drops the connection at once, with no close frame, as a network
// failure would. Fault injection uses it.
func (c *Conn) Abort() {
	c.close(parleypb.CloseCode_CLOSE_CODE_ABNORMAL, "connection aborted (injected fault)", closeNow)
}

// close records the first close and makes sure a writer runs to finish the
// connection: the running one sees closing on its next turn, or a new one
// is started.
func (c *Conn) close(code parleypb.CloseCode, reason string, mode closeMode) {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	c.closing = true
	c.closeWith, c.closeMode = parleypb.CloseError{Code: code, Reason: reason}, mode
	start := !c.writing
	c.writing = true
	c.mu.Unlock()
	if mode == closeNow {
		c.ws.CloseNow()
	}
	if start {
		go c.writeLoop()
	}
}

func (c *Conn) closedByServer() (parleypb.CloseError, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeWith, c.closing
}

func (c *Conn) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

var readBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// serve runs the read loop until the connection ends, waits for the writer
// to finish, and reports how the connection ended.
func (c *Conn) serve(peer Peer) *parleypb.CloseError {
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
	var err error
	for {
		var (
			typ websocket.MessageType
			r   io.Reader
		)
		typ, r, err = c.ws.Reader(ctx)
		if err == nil {
			buf := readBufs.Get().(*bytes.Buffer)
			buf.Reset()
			_, err = buf.ReadFrom(r)
			if err == nil && c.codec.Binary() {
				c.deliver(peer, typ, want, buf.Bytes())
			} else if err == nil {
				c.srv.dec.deliver(c, peer, typ, want, buf.Bytes()) // see decoders
			}
			if buf.Cap() <= 64<<10 {
				readBufs.Put(buf)
			}
		}
		if err != nil {
			break
		}
	}
	how := c.readEnded(err)
	peer.Closed(how)
	c.close(how.Code, how.Reason, closeNow)
	<-c.finished
	return how
}

func (c *Conn) deliver(peer Peer, typ, want websocket.MessageType, frame []byte) {
	c.srv.Stats.FramesIn.Add(1)
	if typ != want {
		c.srv.Stats.BadFrames.Add(1)
		peer.BadFrame(fmt.Sprintf("this connection speaks %s frames, got a %s frame", msgTypeName(want), msgTypeName(typ)))
		return
	}
	env, err := c.codec.Decode(frame)
	if err != nil {
		c.srv.Stats.BadFrames.Add(1)
		peer.BadFrame(err.Error())
		return
	}
	peer.Frame(env)
}

// readEnded names the close: the server's own code when it closed first,
// MESSAGE_TOO_BIG for a frame over the limit, else what the client sent.
func (c *Conn) readEnded(err error) *parleypb.CloseError {
	if errors.Is(err, websocket.ErrMessageTooBig) {
		reason := fmt.Sprintf("frame larger than %d bytes", c.srv.opts.MaxMessageBytes)
		c.close(parleypb.CloseCode_CLOSE_CODE_MESSAGE_TOO_BIG, reason, closeNow)
	}
	if how, ok := c.closedByServer(); ok {
		return &how
	}
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		return parleypb.Close(parleypb.CloseCode(ce.Code), ce.Reason)
	}
	return parleypb.Close(parleypb.CloseCode_CLOSE_CODE_ABNORMAL, err.Error())
}

func msgTypeName(t websocket.MessageType) string {
	if t == websocket.MessageBinary {
		return "binary"
	}
	return "text"
}

// writer is what a writer goroutine borrows for its lifetime: the frames
// it took and the buffer it frames them in.
type writer struct {
	frames [][]byte
	buf    []byte
}

var writers = sync.Pool{New: func() any { return &writer{buf: make([]byte, 0, 4096)} }}

// writeLoop takes up to MaxBatch queued frames at a time and writes them,
// as one Batch frame when the codec can batch, until the queue is empty;
// then it exits, so that an idle connection holds no writer goroutine and
// no buffer. Taking several frames per write is what keeps the cost per
// delivery falling as load rises. Once the connection is closing, it
// finishes it: writes what is queued (unless the mode drops it), the close
// frame, and closes the socket.
func (c *Conn) writeLoop() {
	w := writers.Get().(*writer)
	defer func() {
		clear(w.frames)
		w.frames = w.frames[:0]
		if cap(w.buf) <= 256<<10 {
			writers.Put(w)
		}
	}()
	for {
		c.mu.Lock()
		if c.closing {
			c.mu.Unlock()
			c.finish(w)
			return
		}
		if len(c.queue) == 0 {
			c.releaseQueueLocked()
			c.writing = false
			c.mu.Unlock()
			return
		}
		c.takeLocked(w)
		c.mu.Unlock()
		if err := c.write(w); err != nil {
			c.close(parleypb.CloseCode_CLOSE_CODE_ABNORMAL, "write failed: "+err.Error(), closeNow)
		}
	}
}

// queues recycles the backing arrays of outbound queues: a connection
// holds one only while something is queued, and a busy one does not
// allocate a new one per burst.
var queues = sync.Pool{New: func() any { q := make([][]byte, 0, 16); return &q }}

// takeLocked moves up to MaxBatch frames from the head of the queue into
// w.frames, keeping the queue's array.
func (c *Conn) takeLocked(w *writer) {
	n := min(len(c.queue), c.srv.opts.MaxBatch)
	w.frames = append(w.frames[:0], c.queue[:n]...)
	m := copy(c.queue, c.queue[n:])
	clear(c.queue[m:])
	c.queue = c.queue[:m]
}

// releaseQueueLocked gives the empty queue's array back to the pool.
func (c *Conn) releaseQueueLocked() {
	if c.qp != nil && cap(c.queue) <= 1024 {
		clear(c.queue[:cap(c.queue)])
		*c.qp = c.queue[:0]
		queues.Put(c.qp)
	}
	c.qp, c.queue = nil, nil
}

// Server-to-client frame headers (RFC 6455 §5.2): FIN set, no mask, no
// extension bits; at most 10 bytes.
const (
	opText      = 0x1
	opBinary    = 0x2
	maxFrameHdr = 10
)

// appendFrame appends one whole WebSocket frame carrying payload.
func appendFrame(dst []byte, op byte, payload []byte) []byte {
	dst = appendHeader(dst, op, len(payload))
	return append(dst, payload...)
}

func appendHeader(dst []byte, op byte, n int) []byte {
	switch {
	case n <= 125:
		return append(dst, 0x80|op, byte(n))
	case n <= 0xffff:
		return binary.BigEndian.AppendUint16(append(dst, 0x80|op, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(dst, 0x80|op, 127), uint64(n))
	}
}

// write sends w.frames with one write to the socket: one frame as it is,
// several as one Batch frame (framed in place behind room for its header),
// or, for a codec that cannot batch, as consecutive WebSocket frames.
func (c *Conn) write(w *writer) error {
	frames := w.frames
	c.srv.Stats.FramesOut.Add(1)
	var out []byte
	switch {
	case len(frames) == 1:
		w.buf = appendFrame(w.buf[:0], c.opcode, frames[0])
		out = w.buf
	default:
		b, ok := c.codec.AppendBatch(w.buf[:maxFrameHdr], frames)
		if ok {
			c.srv.Stats.BatchedOut.Add(int64(len(frames)))
			n := len(b) - maxFrameHdr
			hdr := appendHeader(make([]byte, 0, maxFrameHdr), c.opcode, n) // does not escape
			start := maxFrameHdr - len(hdr)
			copy(b[start:], hdr)
			w.buf, out = b, b[start:]
			break
		}
		c.srv.Stats.FramesOut.Add(int64(len(frames) - 1))
		b = w.buf[:0]
		for _, f := range frames {
			b = appendFrame(b, c.opcode, f)
		}
		w.buf, out = b, b
	}
	_, err := c.wire.Write(out)
	clear(frames)
	return err
}

// finish writes what is queued (unless the mode says not to) and the close
// frame, closes the socket, and tells serve. coder/websocket bounds the
// close handshake itself (5 s).
func (c *Conn) finish(w *writer) {
	defer close(c.finished)
	if c.closeMode == closeFlush { // closeMode is fixed once closing is set
		for {
			c.mu.Lock()
			c.takeLocked(w)
			c.mu.Unlock()
			if len(w.frames) == 0 || c.write(w) != nil {
				break
			}
		}
	}
	c.mu.Lock()
	c.releaseQueueLocked()
	c.mu.Unlock()
	if c.closeMode != closeNow {
		c.ws.Close(websocket.StatusCode(c.closeWith.Code), truncateReason(c.closeWith.Reason))
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

// wire is the hijacked socket as both writers see it: this package's
// writer goroutine (data frames) and coder/websocket (control frames,
// through a small bufio.Writer that flushes each whole frame in one Write).
// Each frame is one Write call, and the kernel socket's own write lock
// (held by net.Conn.Write until every byte is written) keeps frames whole
// when the two write at once.
//
// WriteTimeout is enforced with the socket's write deadline, renewed
// lazily: a write starts with between ¾ of WriteTimeout and all of it left,
// so that a busy connection does not pay for a deadline per frame.
type wire struct {
	nc       net.Conn
	timeout  time.Duration
	deadline atomic.Int64 // unix nanoseconds of the deadline set on nc
}

func (w *wire) Write(p []byte) (int, error) {
	now := time.Now().UnixNano()
	if w.deadline.Load()-now < int64(w.timeout)*3/4 {
		d := now + int64(w.timeout)
		if err := w.nc.SetWriteDeadline(time.Unix(0, d)); err != nil {
			return 0, err
		}
		w.deadline.Store(d)
	}
	return w.nc.Write(p)
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
		if !c.isClosing() {
			c.close(parleypb.CloseCode_CLOSE_CODE_PONG_TIMEOUT, fmt.Sprintf("no pong within %v", c.srv.opts.PongTimeout), closeNow)
		}
		return
	}
	c.pingMu.Lock()
	defer c.pingMu.Unlock()
	if c.pingTimer != nil {
		c.pingTimer.Reset(c.srv.opts.PingInterval)
	}
}
