package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/parleychat/parley/client"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/proto/codec"
)

// Target is a server the load tool can drive: Parley or a peer such as
// Centrifugo, behind the same few verbs so that every scenario measures
// each of them with the same client-side code.
type Target interface {
	Name() string
	// Dial opens one connection and logs it in (Parley: hello; Centrifugo:
	// connect). Every message published to a room the connection has
	// joined is handed to onMsg on the connection's read goroutine, with
	// the room and the payload as published; both slices are valid only
	// during the call.
	Dial(ctx context.Context, user string, onMsg func(room, payload []byte)) (Conn, error)
}

// Conn is one logged-in connection.
type Conn interface {
	// Join subscribes to a room and returns once the server acknowledged it.
	Join(ctx context.Context, room string) error
	// Leave unsubscribes.
	Leave(ctx context.Context, room string) error
	// Publish posts payload to a joined room and returns once the server
	// acknowledged it.
	Publish(ctx context.Context, room string, payload []byte) error
	// Close closes normally; CloseNow drops the socket.
	Close()
	CloseNow()
	// Done is closed when the connection ends; then CloseCode tells why
	// (-1 for no close frame).
	Done() <-chan struct{}
	CloseCode() int
	Err() error
}

// ---------------------------------------------------------------- Parley

type parleyTarget struct {
	urls  []string // connections go to each in turn (a cluster's nodes)
	next  atomic.Uint64
	codec codec.Codec
}

func newParleyTarget(url, codecName string) (*parleyTarget, error) {
	cd, err := codecNamed(codecName)
	if err != nil {
		return nil, err
	}
	return &parleyTarget{urls: strings.Split(url, ","), codec: cd}, nil
}

// codecNamed is the Parley codec -codec names.
func codecNamed(name string) (codec.Codec, error) {
	switch name {
	case "proto":
		return codec.Proto, nil
	case "json":
		return codec.JSON, nil
	}
	return nil, fmt.Errorf("-codec %q: want proto or json", name)
}

func (t *parleyTarget) Name() string {
	return "parley/" + strings.TrimPrefix(t.codec.Subprotocol(), "parley.v1.")
}

func (t *parleyTarget) Dial(ctx context.Context, user string, onMsg func(room, payload []byte)) (Conn, error) {
	url := t.urls[(t.next.Add(1)-1)%uint64(len(t.urls))]
	c, err := client.Dial(ctx, url, t.codec, &client.Options{
		OnRoomEvent: func(ev client.RawEvent) {
			// Members joining and leaving (churn) are events too, but
			// nothing was published: only posts are measured.
			if !ev.IsChange() {
				onMsg(ev.Room, ev.Text)
			}
		},
		// Presence and the like are not measured; taking them here keeps
		// them from piling up in the client's event buffer.
		OnEvent: func(*parleypb.Envelope) {},
	})
	if err != nil {
		return nil, explainDial(url, err)
	}
	if err := c.Hello(ctx, user, false); err != nil {
		c.CloseNow()
		return nil, fmt.Errorf("hello: %w", err)
	}
	return &parleyConn{c: c}, nil
}

type parleyConn struct{ c *client.Client }

func (p *parleyConn) Join(ctx context.Context, room string) error {
	_, err := p.c.Join(ctx, room, nil)
	return err
}

func (p *parleyConn) Leave(ctx context.Context, room string) error { return p.c.Leave(ctx, room) }

func (p *parleyConn) Publish(ctx context.Context, room string, payload []byte) error {
	_, err := p.c.Post(ctx, room, string(payload), "")
	return err
}

func (p *parleyConn) Close()                { p.c.Close() }
func (p *parleyConn) CloseNow()             { p.c.CloseNow() }
func (p *parleyConn) Done() <-chan struct{} { return p.c.Done() }
func (p *parleyConn) CloseCode() int        { return int(client.CloseCode(p.c.Err())) }
func (p *parleyConn) Err() error            { return p.c.Err() }

// explainDial turns the usual ways a dial fails into a sentence that says
// what to do.
func explainDial(url string, err error) error {
	var de *client.DialError
	if errors.As(err, &de) {
		return fmt.Errorf("server at %s refused the WebSocket handshake with HTTP %d (%s)", url, de.StatusCode, strings.TrimSpace(de.Body))
	}
	var oe *net.OpError
	if errors.Is(err, syscall.ECONNREFUSED) || (errors.As(err, &oe) && oe.Op == "dial") {
		return fmt.Errorf("no server at %s (%v): start it first, or point -url at it", url, err)
	}
	if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
		return fmt.Errorf("out of file descriptors dialing %s (%v): raise ulimit -n", url, err)
	}
	return err
}
