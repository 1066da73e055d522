package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/parleychat/parley/client"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/proto/codec"
)

// A chat session that survives disconnects: log in, join, post, and read
// typed events. (Examples without an Output line compile but do not run:
// they need a server.)
func ExampleConnect() {
	ctx := context.Background()
	s, err := client.Connect(ctx, "ws://127.0.0.1:8080/ws", client.SessionOptions{Name: "ann"})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Join(ctx, "general"); err != nil {
		log.Fatal(err)
	}
	seq, err := s.Post(ctx, "general", "hello", "")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("stored as", seq)
	for {
		ev, err := s.Next(ctx)
		if err != nil {
			log.Fatal(err) // the Session ended: kicked, a refused token, Close
		}
		switch ev := ev.(type) {
		case *client.Message:
			fmt.Printf("#%s %d %s: %s\n", ev.Room, ev.Seq, ev.Sender, ev.Text)
		case *client.Change:
			// Who did what to whom: "alice BANNED bob (spam)".
			fmt.Printf("#%s %d %s %v %s (%s)\n", ev.Room, ev.Seq, ev.Sender, ev.Change.GetKind(), ev.Change.GetUser(), ev.Change.GetReason())
		case *client.RoomUpdate:
			fmt.Println("my standing in", ev.GetName(), "is now", ev.GetRole(), "invited:", ev.GetInvited())
		case *client.RoomClosed:
			fmt.Println("out of", ev.Room+":", ev.Text) // kicked, banned, deleted...
		case *client.Presence:
			fmt.Println(ev.Room, "joined:", ev.Joined, "left:", ev.Left)
		case *client.Typing:
			fmt.Println(ev.User, "is typing in", ev.Room)
		case *client.Disconnected:
			// 1013 (we read too slowly), 1001 (server restart), a dropped
			// connection: the Session reconnects and resumes every room.
			fmt.Println("disconnected:", ev.Code, "retrying in", ev.Retry)
		}
	}
}

// Rooms of one's own: a private room, an invitation, moderation. Refusals
// match the client's Err values.
func ExampleSession_Moderate() {
	var s *client.Session // from Connect
	ctx := context.Background()
	err := s.CreateRoom(ctx, client.NewRoom{Name: "team", Kind: parleypb.RoomKind_ROOM_KIND_PRIVATE, Invite: []string{"bob"}})
	if errors.Is(err, client.ErrRoomExists) {
		fmt.Println("taken")
	}
	_, err = s.Moderate(ctx, client.Moderation{Room: "team", User: "eve", Action: parleypb.ModAction_MOD_ACTION_BAN,
		Reason: "spam", Until: time.Now().Add(24 * time.Hour)})
	switch {
	case errors.Is(err, client.ErrForbidden):
		fmt.Println("only owners and moderators ban")
	case err != nil:
		fmt.Println("not banned:", err)
	}
	for _, r := range s.MyRooms() { // from the Welcome, kept current by RoomUpdate events
		fmt.Println(r.GetName(), r.GetRole(), r.GetLastSeq())
	}
}

// Logging in with a token: a fixed one, or a source the Session asks
// before every connection and before the token expires (it then sends
// refresh, so the server never closes with 4003).
func ExampleConnect_token() {
	ctx := context.Background()
	s, err := client.Connect(ctx, "wss://chat.example.com/ws", client.SessionOptions{
		TokenSource: func(ctx context.Context) (string, error) {
			return "eyJ...", nil // ask your identity provider
		},
		TokenIn: client.TokenInHeader, // a bad token is then refused with HTTP 401
	})
	var de *client.DialError
	if errors.As(err, &de) && de.StatusCode == 401 {
		log.Fatal("the server refused the token")
	}
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	fmt.Println("logged in as", s.Welcome().GetName())
}

// Post retries by itself, across reconnects, with the same clientMsgID: the
// server stores it once and Post returns its seq once. A deadline bounds it.
func ExampleSession_Post() {
	var s *client.Session // from Connect
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	seq, err := s.Post(ctx, "general", "shipping 2.4 today", "release-note-1")
	switch {
	case client.ErrorCode(err) == parleypb.ErrorCode_ERROR_CODE_TOO_LONG:
		fmt.Println("too long for this server")
	case err != nil:
		fmt.Println("not stored:", err)
	default:
		fmt.Println("stored as", seq)
	}
}

// Dial is one connection without reconnects: for tools that want every
// frame, such as load generators and tests.
func ExampleDial() {
	ctx := context.Background()
	c, err := client.Dial(ctx, "ws://127.0.0.1:8080/ws", codec.JSON, &client.Options{Token: "eyJ..."})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	w, err := c.Login(ctx, client.Login{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("logged in as", w.GetName())
	env, err := c.Next(ctx)
	if err != nil {
		log.Fatal(client.CloseCode(err))
	}
	fmt.Println(env)
}

// Full jitter: each wait is random below a ceiling that doubles per
// failed attempt, up to Cap.
func ExampleBackoff_Delay() {
	b := client.Backoff{Base: 100 * time.Millisecond, Cap: time.Second}
	for attempt := range 6 {
		ceiling := min(b.Cap, b.Base<<attempt)
		d := b.Delay(attempt)
		fmt.Println(attempt, ceiling, d >= 0 && d < ceiling)
	}
	// Output:
	// 0 100ms true
	// 1 200ms true
	// 2 400ms true
	// 3 800ms true
	// 4 1s true
	// 5 1s true
}

// How a connection ended is typed: the close codes of proto/parley.proto.
func ExampleCloseCode() {
	err := fmt.Errorf("reading: %w", parleypb.Close(parleypb.CloseCode_CLOSE_CODE_TRY_AGAIN_LATER, "outbound queue full"))
	fmt.Println(client.CloseCode(err), client.CloseReason(err))
	// Output: CLOSE_CODE_TRY_AGAIN_LATER outbound queue full
}
