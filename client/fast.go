package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/coder/websocket"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/parleychat/parley/client/jsonwalk"
	parleypb "github.com/parleychat/parley/proto"
)

// RawEvent is a room event as it arrived, not decoded into a RoomEvent.
// Its slices point into the frame being read: they are valid only during
// the Options.OnRoomEvent call that receives it.
type RawEvent struct {
	Room, Sender, Text, ClientMsgID []byte
	Seq                             uint64
	TimeMs                          int64
	SenderKind                      parleypb.SenderKind
	// Change is the event's RoomChange in the connection's codec (binary
	// or protojson), left encoded because most readers only need to tell
	// a change from a post; nil for a post.
	Change []byte
}

// IsChange reports whether the event is a change to the room (a join, a
// kick, a new topic...) rather than a post: it has no text to read.
func (e RawEvent) IsChange() bool { return e.Change != nil }

// readLoopFast is readLoop for a client with Options.OnRoomEvent: frames are
// read into one reused buffer, and room events (alone or inside a batch)
// are picked out of the wire bytes without building an Envelope. Every
// other envelope is decoded and dispatched as readLoop does, in order.
func (c *Client) readLoopFast() {
	defer close(c.events)
	var buf bytes.Buffer
	for {
		_, r, err := c.ws.Reader(context.Background())
		if err == nil {
			buf.Reset()
			_, err = buf.ReadFrom(r)
		}
		if err != nil {
			c.readErr = readEnded(err)
			close(c.done)
			return
		}
		if c.codec.Binary() {
			err = c.fastProto(buf.Bytes(), 0)
		} else {
			err = c.fastJSON(buf.Bytes(), 0)
		}
		if err != nil {
			c.readErr = fmt.Errorf("parley: undecodable frame from server: %w", err)
			close(c.done)
			c.ws.Close(websocket.StatusProtocolError, "undecodable frame")
			return
		}
		if buf.Cap() > 1<<20 {
			buf = bytes.Buffer{} // do not keep a rare huge frame's buffer
		}
	}
}

// Envelope field numbers (proto/parley.proto) the fast path looks at.
const (
	envEventField = 33
	envBatchField = 36
	batchItems    = 1
	maxBatchDepth = 2
)

var errNested = errors.New("batch nested too deeply")

// decodeAndDispatch is the slow path: one envelope, decoded and dispatched.
func (c *Client) decodeAndDispatch(frame []byte) error {
	env, err := c.codec.Decode(frame)
	if err != nil {
		return err
	}
	if batch := env.GetBatch(); batch != nil {
		for _, item := range batch.GetItems() {
			c.dispatch(item)
		}
		return nil
	}
	c.dispatch(env)
	return nil
}

// fastProto handles one binary Envelope: a room event goes to OnRoomEvent,
// a batch is walked item by item, anything else takes the slow path.
func (c *Client) fastProto(frame []byte, depth int) error {
	var event, batch []byte
	other := false
	for b := frame; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ == protowire.BytesType && (num == envEventField || num == envBatchField) {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			if num == envEventField {
				event = v
			} else {
				batch = v
			}
			b = b[n:]
			continue
		}
		if num != 1 { // 1 is the request id; any other field is another body
			other = true
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
	}
	switch {
	case other || (event == nil && batch == nil) || (event != nil && batch != nil):
		return c.decodeAndDispatch(frame)
	case event != nil:
		ev, err := protoEvent(event)
		if err != nil {
			return err
		}
		c.onRoomEvent(ev)
		return nil
	}
	if depth >= maxBatchDepth {
		return errNested
	}
	for b := batch; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if num == batchItems && typ == protowire.BytesType {
			item, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			if err := c.fastProto(item, depth+1); err != nil {
				return err
			}
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
	}
	return nil
}

// protoEvent reads the fields of a binary RoomEvent.
func protoEvent(b []byte) (RawEvent, error) {
	var ev RawEvent
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return ev, protowire.ParseError(n)
		}
		b = b[n:]
		switch typ {
		case protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return ev, protowire.ParseError(n)
			}
			switch num {
			case 1:
				ev.Room = v
			case 4:
				ev.Sender = v
			case 5:
				ev.Text = v
			case 6:
				ev.ClientMsgID = v
			case 8:
				// Not nil even for an empty change: v is a slice of b.
				ev.Change = v
			}
			b = b[n:]
		case protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return ev, protowire.ParseError(n)
			}
			switch num {
			case 2:
				ev.Seq = v
			case 3:
				ev.TimeMs = int64(v)
			case 7:
				ev.SenderKind = parleypb.SenderKind(v)
			}
			b = b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return ev, protowire.ParseError(n)
			}
			b = b[n:]
		}
	}
	return ev, nil
}

// fastJSON is fastProto for parley.v1.json (protojson) frames.
func (c *Client) fastJSON(frame []byte, depth int) error {
	var event, batch []byte
	other := false
	err := jsonwalk.Object(frame, func(key, value []byte) bool {
		switch string(key) {
		case "event":
			event = value
		case "batch":
			batch = value
		case "id":
		default:
			other = true
		}
		return true
	})
	if err != nil {
		return err
	}
	switch {
	case other || (event == nil && batch == nil) || (event != nil && batch != nil):
		return c.decodeAndDispatch(frame)
	case event != nil:
		ev, err := jsonEvent(event)
		if err != nil {
			return err
		}
		c.onRoomEvent(ev)
		return nil
	}
	if depth >= maxBatchDepth {
		return errNested
	}
	var items []byte
	if err := jsonwalk.Object(batch, func(key, value []byte) bool {
		if string(key) == "items" {
			items = value
		}
		return true
	}); err != nil {
		return err
	}
	if items == nil || string(items) == "null" {
		return nil
	}
	var itemErr error
	if err := jsonwalk.Array(items, func(item []byte) bool {
		itemErr = c.fastJSON(item, depth+1)
		return itemErr == nil
	}); err != nil {
		return err
	}
	return itemErr
}

// jsonEvent reads the fields of a protojson RoomEvent.
func jsonEvent(b []byte) (RawEvent, error) {
	var ev RawEvent
	var ferr error
	err := jsonwalk.Object(b, func(key, value []byte) bool {
		var err error
		switch string(key) {
		case "room":
			ev.Room, err = jsonwalk.String(value)
		case "seq":
			ev.Seq, err = jsonwalk.Uint(value)
		case "timeMs", "time_ms":
			ev.TimeMs, err = jsonwalk.Int(value)
		case "sender":
			ev.Sender, err = jsonwalk.String(value)
		case "text":
			ev.Text, err = jsonwalk.String(value)
		case "clientMsgId", "client_msg_id":
			ev.ClientMsgID, err = jsonwalk.String(value)
		case "senderKind", "sender_kind":
			var k int32
			k, err = jsonEnum(value, parleypb.SenderKind_value)
			ev.SenderKind = parleypb.SenderKind(k)
		case "change":
			if string(value) != "null" { // protojson reads null as no change
				ev.Change = value
			}
		}
		ferr = err
		return err == nil
	})
	if err == nil {
		err = ferr
	}
	return ev, err
}

// jsonEnum reads a protojson enum value: its name, or its number. An
// unknown name reads as the zero value, as an old client reads a kind
// added after it was built.
func jsonEnum(v []byte, values map[string]int32) (int32, error) {
	if len(v) > 0 && v[0] == '"' {
		name, err := jsonwalk.String(v)
		return values[string(name)], err
	}
	n, err := jsonwalk.Int(v)
	return int32(n), err
}
