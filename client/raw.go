package client

import (
	"context"
	"encoding/json"

	"github.com/coder/websocket"
)

// Raw is a connection without a subprotocol: the tutorial's legacy JSON
// protocol, one object per text frame. It does no reading of its own, so a
// Raw that is not read answers no pings, as a stuck client would.
type Raw struct{ ws *websocket.Conn }

// DialRaw connects with no subprotocol (or with those given, to test
// refusals).
func DialRaw(ctx context.Context, url string, opts *Options, subprotocols ...string) (*Raw, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	ws, err := dial(ctx, url, o, subprotocols)
	if err != nil {
		return nil, err
	}
	return &Raw{ws: ws}, nil
}

// Subprotocol is what the server chose.
func (r *Raw) Subprotocol() string { return r.ws.Subprotocol() }

// WriteJSON sends v as one text frame.
func (r *Raw) WriteJSON(ctx context.Context, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return r.ws.Write(ctx, websocket.MessageText, b)
}

// Write sends one frame, binary or text.
func (r *Raw) Write(ctx context.Context, binary bool, b []byte) error {
	typ := websocket.MessageText
	if binary {
		typ = websocket.MessageBinary
	}
	return r.ws.Write(ctx, typ, b)
}

// Read returns the next frame's bytes; once the server closed the
// connection, a *parleypb.CloseError (see CloseCode).
func (r *Raw) Read(ctx context.Context) ([]byte, error) {
	_, b, err := r.ws.Read(ctx)
	if err != nil {
		return nil, readEnded(err)
	}
	return b, nil
}

// ReadJSON decodes the next frame into v.
func (r *Raw) ReadJSON(ctx context.Context, v any) error {
	b, err := r.Read(ctx)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// Close closes normally.
func (r *Raw) Close() error { return r.ws.Close(websocket.StatusNormalClosure, "bye") }

// CloseNow drops the connection.
func (r *Raw) CloseNow() error { return r.ws.CloseNow() }
