package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/parleychat/parley/client/jsonwalk"
)

// centrifugoTarget speaks Centrifugo v6's bidirectional client protocol in
// its JSON form over /connection/websocket: one command per line
// ({"id":1,"connect":{}}), replies carrying the command's id, and pushes
// ({"push":{"channel":..,"pub":{"data":..}}}). The server may put several
// replies and pushes in one frame, separated by newlines. Rooms are
// channels in namespace "room" (room "r1" is channel "room:r1"), which the
// bench script's config opens to anonymous subscribe and publish.
type centrifugoTarget struct{ url string }

// centrifugoNamespace prefixes every room.
const centrifugoNamespace = "room:"

func (t *centrifugoTarget) Name() string { return "centrifugo/json" }

func (t *centrifugoTarget) Dial(ctx context.Context, user string, onMsg func(room, payload []byte)) (Conn, error) {
	ws, resp, err := websocket.Dial(ctx, t.url, &websocket.DialOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			body := ""
			if resp.Body != nil {
				b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
				body = string(b)
			}
			return nil, fmt.Errorf("server at %s refused the WebSocket handshake with HTTP %d (%s)", t.url, resp.StatusCode, bytes.TrimSpace([]byte(body)))
		}
		return nil, explainDial(t.url, err)
	}
	ws.SetReadLimit(16 << 20)
	c := &cfConn{ws: ws, onMsg: onMsg, pending: make(map[uint64]chan error), done: make(chan struct{})}
	go c.readLoop()
	// The connect command names the client; anonymous (no token).
	if err := c.request(ctx, "connect", []byte(`{"name":"parley-load"}`)); err != nil {
		ws.CloseNow()
		return nil, fmt.Errorf("connect: %w", err)
	}
	return c, nil
}

type cfConn struct {
	ws    *websocket.Conn
	onMsg func(room, payload []byte)

	nextID  atomic.Uint64
	mu      sync.Mutex
	pending map[uint64]chan error

	done    chan struct{}
	readErr error
}

// cfError is an error reply.
type cfError struct {
	Code    uint64
	Message string
}

func (e *cfError) Error() string { return fmt.Sprintf("centrifugo error %d: %s", e.Code, e.Message) }

func (c *cfConn) request(ctx context.Context, method string, body []byte) error {
	id := c.nextID.Add(1)
	cmd := make([]byte, 0, 32+len(method)+len(body))
	cmd = append(cmd, `{"id":`...)
	cmd = strconv.AppendUint(cmd, id, 10)
	cmd = append(cmd, `,"`...)
	cmd = append(cmd, method...)
	cmd = append(cmd, `":`...)
	cmd = append(cmd, body...)
	cmd = append(cmd, '}')
	ch := make(chan error, 1)
	c.mu.Lock()
	c.pending[id] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}()
	if err := c.ws.Write(ctx, websocket.MessageText, cmd); err != nil {
		return err
	}
	select {
	case err := <-ch:
		return err
	case <-c.done:
		return fmt.Errorf("connection ended before the reply: %w", c.readErr)
	case <-ctx.Done():
		return ctx.Err()
	}
}

func channelJSON(dst []byte, room string) []byte {
	dst = append(dst, `{"channel":"`...)
	dst = append(dst, centrifugoNamespace...)
	dst = append(dst, room...)
	return append(dst, '"')
}

func (c *cfConn) Join(ctx context.Context, room string) error {
	return c.request(ctx, "subscribe", append(channelJSON(nil, room), '}'))
}

func (c *cfConn) Leave(ctx context.Context, room string) error {
	return c.request(ctx, "unsubscribe", append(channelJSON(nil, room), '}'))
}

// Publish sends {"channel":"room:<room>","data":{"text":"<payload>"}}. The
// payloads the scenarios make need no JSON escaping.
func (c *cfConn) Publish(ctx context.Context, room string, payload []byte) error {
	b := channelJSON(make([]byte, 0, 64+len(room)+len(payload)), room)
	b = append(b, `,"data":{"text":"`...)
	b = append(b, payload...)
	b = append(b, `"}}`...)
	return c.request(ctx, "publish", b)
}

func (c *cfConn) Close() {
	c.ws.Close(websocket.StatusNormalClosure, "bye")
	<-c.done
}

func (c *cfConn) CloseNow()             { c.ws.CloseNow() }
func (c *cfConn) Done() <-chan struct{} { return c.done }
func (c *cfConn) CloseCode() int        { return int(websocket.CloseStatus(c.Err())) }

func (c *cfConn) Err() error {
	select {
	case <-c.done:
		return c.readErr
	default:
		return nil
	}
}

func (c *cfConn) readLoop() {
	var buf bytes.Buffer
	for {
		_, r, err := c.ws.Reader(context.Background())
		if err == nil {
			buf.Reset()
			_, err = buf.ReadFrom(r)
		}
		if err == nil {
			err = c.frame(buf.Bytes())
		}
		if err != nil {
			c.readErr = err
			close(c.done)
			c.ws.CloseNow()
			return
		}
		if buf.Cap() > 1<<20 {
			buf = bytes.Buffer{}
		}
	}
}

// frame handles one WebSocket frame: one or more replies or pushes, one per
// line.
func (c *cfConn) frame(b []byte) error {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if err := c.reply(line); err != nil {
			return fmt.Errorf("centrifugo: bad reply %q: %w", truncate(line, 200), err)
		}
	}
	return nil
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

func (c *cfConn) reply(line []byte) error {
	if string(line) == "{}" {
		// A server ping: answer with a pong (an empty command), off the
		// read goroutine so a slow write never stalls reading.
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c.ws.Write(ctx, websocket.MessageText, []byte("{}"))
		}()
		return nil
	}
	if channel, text, ok := fastPush(line); ok {
		c.onMsg(bytes.TrimPrefix(channel, []byte(centrifugoNamespace)), text)
		return nil
	}
	return c.walk(line)
}

// walk reads any reply or push line with the general JSON walk.
func (c *cfConn) walk(line []byte) error {
	var id uint64
	var errRaw, push []byte
	var perr error
	err := jsonwalk.Object(line, func(key, value []byte) bool {
		switch string(key) {
		case "id":
			id, perr = jsonwalk.Uint(value)
		case "error":
			errRaw = value
		case "push":
			push = value
		}
		return perr == nil
	})
	if err == nil {
		err = perr
	}
	if err != nil {
		return err
	}
	if push != nil {
		return c.push(push)
	}
	if id == 0 {
		return nil
	}
	var replyErr error
	if errRaw != nil {
		ce := &cfError{}
		jsonwalk.Object(errRaw, func(key, value []byte) bool {
			switch string(key) {
			case "code":
				ce.Code, _ = jsonwalk.Uint(value)
			case "message":
				m, _ := jsonwalk.String(value)
				ce.Message = string(m)
			}
			return true
		})
		replyErr = ce
	}
	c.mu.Lock()
	ch, ok := c.pending[id]
	delete(c.pending, id)
	c.mu.Unlock()
	if ok {
		ch <- replyErr
	}
	return nil
}

var errNoData = errors.New("publication without data.text")

// How Centrifugo v6 writes a publication push in JSON: its encoder puts
// the fields in a fixed order, and the tool publishes data {"text":...}
// only, so every post a member receives starts
//
//	{"push":{"channel":"room:<room>","pub":{"data":{"text":"<payload>"},
//
// followed by "info", "offset" and the like, which the tool does not read.
const (
	fastPushPrefix = `{"push":{"channel":"`
	fastPushData   = `","pub":{"data":{"text":"`
)

// fastPush picks the channel and data.text out of a publication push
// written as above, in one pass over their bytes (two IndexByte calls),
// where the general walk (reply, then push) scans each byte once per
// level of nesting: the line, push, pub and data, four times in all. It
// reports ok=false for anything else (a reply, a join, fields in another
// order, an escape in the channel or text, data with more than text), for
// which the general walk decides. The rest of the line, past the text, is
// not looked at.
func fastPush(line []byte) (channel, text []byte, ok bool) {
	rest, ok := bytes.CutPrefix(line, []byte(fastPushPrefix))
	if !ok {
		return nil, nil, false
	}
	i := bytes.IndexByte(rest, '"')
	if i < 0 {
		return nil, nil, false
	}
	channel = rest[:i]
	if rest, ok = bytes.CutPrefix(rest[i:], []byte(fastPushData)); !ok {
		return nil, nil, false
	}
	j := bytes.IndexByte(rest, '"')
	// data must be exactly {"text":"..."}: the string is followed by the
	// object's end.
	if j < 0 || j+1 >= len(rest) || rest[j+1] != '}' {
		return nil, nil, false
	}
	text = rest[:j]
	// A quote after a backslash does not end a string; and an escaped
	// string needs decoding. Both are the general walk's business.
	if bytes.IndexByte(channel, '\\') >= 0 || bytes.IndexByte(text, '\\') >= 0 {
		return nil, nil, false
	}
	return channel, text, true
}

func (c *cfConn) push(push []byte) error {
	var channel, pub []byte
	var perr error
	err := jsonwalk.Object(push, func(key, value []byte) bool {
		switch string(key) {
		case "channel":
			channel, perr = jsonwalk.String(value)
		case "pub":
			pub = value
		}
		return perr == nil
	})
	if err == nil {
		err = perr
	}
	if err != nil || pub == nil {
		return err // joins, leaves and the like are not measured
	}
	var data []byte
	if err := jsonwalk.Object(pub, func(key, value []byte) bool {
		if string(key) == "data" {
			data = value
			return false
		}
		return true
	}); err != nil {
		return err
	}
	var text []byte
	if data != nil {
		if err := jsonwalk.Object(data, func(key, value []byte) bool {
			if string(key) == "text" {
				text, perr = jsonwalk.String(value)
				return false
			}
			return true
		}); err != nil {
			return err
		}
	}
	if perr != nil {
		return perr
	}
	if text == nil {
		return errNoData
	}
	c.onMsg(bytes.TrimPrefix(channel, []byte(centrifugoNamespace)), text)
	return nil
}
