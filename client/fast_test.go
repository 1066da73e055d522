package client_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/actors"
	"github.com/parleychat/parley/client"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/proto/codec"
	"github.com/parleychat/parley/server"
)

// TestOnRoomEvent checks the fast path against the ordinary one: a client
// with OnRoomEvent sees the same room events, in the same order, as one
// reading Next, alone or inside batches, in both codecs; other events go to
// OnEvent, and requests still get their answers.
func TestOnRoomEvent(t *testing.T) {
	srv, err := server.New(server.Config{Addr: "127.0.0.1:0", Actors: actors.Config{Rate: 10000, Burst: 10000}})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	for _, cd := range []codec.Codec{codec.Proto, codec.JSON} {
		t.Run(cd.Subprotocol(), func(t *testing.T) {
			room := "fast-" + cd.Subprotocol()
			var mu sync.Mutex
			var fast []*parleypb.RoomEvent
			var others []*parleypb.Envelope
			var changeErr error
			fc, err := client.Dial(ctx, srv.URL(), cd, &client.Options{
				OnRoomEvent: func(ev client.RawEvent) {
					mu.Lock()
					defer mu.Unlock()
					e := &parleypb.RoomEvent{Room: string(ev.Room), Seq: ev.Seq, TimeMs: ev.TimeMs,
						Sender: string(ev.Sender), Text: string(ev.Text), ClientMsgId: string(ev.ClientMsgID), SenderKind: ev.SenderKind}
					if ev.IsChange() {
						e.Change = &parleypb.RoomChange{}
						var err error
						if cd.Binary() {
							err = proto.Unmarshal(ev.Change, e.Change)
						} else {
							err = protojson.Unmarshal(ev.Change, e.Change)
						}
						if err != nil && changeErr == nil {
							changeErr = fmt.Errorf("event %d: change %q: %w", ev.Seq, ev.Change, err)
						}
					}
					fast = append(fast, e)
				},
				OnEvent: func(env *parleypb.Envelope) {
					mu.Lock()
					defer mu.Unlock()
					others = append(others, env)
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			defer fc.Close()
			if err := fc.Hello(ctx, "fast", false); err != nil {
				t.Fatal(err)
			}
			if _, err := fc.Join(ctx, room, nil); err != nil {
				t.Fatal(err)
			}
			slow, err := client.Dial(ctx, srv.URL(), cd, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer slow.Close()
			if err := slow.Hello(ctx, "slow", false); err != nil {
				t.Fatal(err)
			}
			if _, err := slow.Join(ctx, room, nil); err != nil {
				t.Fatal(err)
			}
			// Posts sent without waiting, so the server batches some of them.
			const n = 200
			for i := range n {
				text := fmt.Sprintf("line %d \"quoted\" \\ é", i)
				if err := slow.Send(ctx, &parleypb.Envelope{Id: fmt.Sprint("p", i), Body: &parleypb.Envelope_Post{Post: &parleypb.Post{Room: room, Text: text, ClientMsgId: fmt.Sprint("c", i)}}}); err != nil {
					t.Fatal(err)
				}
			}
			// Slow's replay holds the room's changes too (its creation, and
			// both users joining it): fast must read those as well.
			var want []*parleypb.RoomEvent
			changes := 0
			for posts := 0; posts < n; {
				env, err := slow.Next(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if ev := env.GetEvent(); ev != nil {
					want = append(want, ev)
					if ev.GetChange() != nil {
						changes++
					} else {
						posts++
					}
				}
			}
			if changes == 0 {
				t.Fatalf("slow saw no change events among %d: the fast path's reading of them goes untested", len(want))
			}
			// Requests still work on the fast client; its ack comes after the
			// events (one connection, in order), so the events are in by then.
			if err := fc.Ping(ctx); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				mu.Lock()
				got := len(fast)
				mu.Unlock()
				if got >= len(want) || time.Now().After(deadline) {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			mu.Lock()
			defer mu.Unlock()
			if changeErr != nil {
				t.Fatal(changeErr)
			}
			if len(fast) != len(want) {
				t.Fatalf("fast path saw %d events, want %d", len(fast), len(want))
			}
			for i := range want {
				if fast[i].String() != want[i].String() {
					t.Fatalf("event %d: fast %v, slow %v", i, fast[i], want[i])
				}
			}
			sawPresence := false
			for _, env := range others {
				if env.GetPresence() != nil {
					sawPresence = true
				}
				if env.GetEvent() != nil {
					t.Errorf("a room event went to OnEvent: %v", env)
				}
			}
			if !sawPresence {
				t.Errorf("OnEvent saw no presence (slow's join): %v", others)
			}
		})
	}
}
