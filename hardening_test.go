package main_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parleychat/parley/client"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/proto/codec"
	"github.com/parleychat/parley/server"
	"github.com/parleychat/parley/store"
)

// What a crowd and a hostile client do to Parley: each test names the
// error or close code it expects.

// TestReplaysDoNotStarveLivePosts: members that keep asking for the whole
// history of a big room (join since 0, under the rate limit) are served
// from the store off the room's mailbox, so the room's live posts are
// acknowledged meanwhile; a member that asks again while its own replay
// runs, or when too many others catch up, gets RATE_LIMITED.
func TestReplaysDoNotStarveLivePosts(t *testing.T) {
	t.Parallel()
	const stored = 3000
	st := store.NewMemory()
	msgs := make([]store.Message, stored)
	for i := range msgs {
		msgs[i] = store.Message{Room: "busy", Seq: uint64(i + 1), Time: time.Now(), Sender: "old", Text: fmt.Sprintf("old message %d", i+1)}
	}
	if err := st.Append(t.Context(), msgs); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, func(c *server.Config) {
		c.Store = st
		c.Logger = quietLogger(t)
		c.Actors.Rate, c.Actors.Burst = 20, 40 // the defaults: the spammers stay under them
	})
	ctx := testCtx(t, 60*time.Second)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var joins, limited, replayed atomic.Int64
	for i := range 10 {
		// The spammers send a join every 55 ms without waiting for the
		// answer, as a client with a bug (or a grudge) would; the answers
		// come back as events.
		c, err := client.Dial(ctx, srv.URL(), codec.JSON, &client.Options{
			OnRoomEvent: func(client.RawEvent) { replayed.Add(1) }, // read cheaply, never fall behind
			OnEvent: func(env *parleypb.Envelope) {
				switch {
				case env.GetAck().GetRoom() == "busy":
					joins.Add(1)
				case env.GetError().GetCode() == parleypb.ErrorCode_ERROR_CODE_RATE_LIMITED:
					limited.Add(1)
				case env.GetError() != nil:
					t.Errorf("spammer join: %v, want an ack or RATE_LIMITED", env.GetError())
				}
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.CloseNow() })
		if err := c.Hello(ctx, fmt.Sprint("spammer", i), false); err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			zero := uint64(0)
			tick := time.NewTicker(55 * time.Millisecond) // 18 joins/s: under the rate limit
			defer tick.Stop()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				join := &parleypb.Envelope{Id: fmt.Sprint("j", n), Body: &parleypb.Envelope_Join{Join: &parleypb.Join{Room: "busy", Since: &zero}}}
				if c.Send(ctx, join) != nil {
					return
				}
			}
		}()
	}
	// The room's mailbox is sampled all along: replays must not pile up
	// in it (they did: 1,465 messages deep, every post timing out).
	var deepest atomic.Int64
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			for _, d := range srv.Node.Stats.BusiestRooms(1) {
				if d.Depth > deepest.Load() {
					deepest.Store(d.Depth)
				}
			}
		}
	}()
	// Let the replays start, then post as a member while they run.
	waitFor(t, 20*time.Second, func() error {
		if joins.Load() < 5 {
			return fmt.Errorf("%d replays served", joins.Load())
		}
		return nil
	})
	// Post for as long as it takes the spammers to be served 100 more
	// replays (at least 20 posts), so posts and replays overlap.
	poster := login(t, ctx, srv, codec.Proto, "poster", "busy")
	until := joins.Load() + 100
	posts := 0
	pace := time.NewTicker(60 * time.Millisecond) // under the rate limit too
	defer pace.Stop()
	for i := 0; i < 20 || joins.Load() < until; i++ {
		<-pace.C
		posts++
		pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		seq, err := poster.Post(pctx, "busy", "live", fmt.Sprint("live-", i))
		cancel()
		if err != nil {
			t.Fatalf("post %d while %d replays ran: %v (the room is starved)", i, joins.Load(), err)
		}
		if seq <= stored {
			t.Fatalf("post %d got seq %d", i, seq)
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("%d full replays served (%d events), %d joins refused with RATE_LIMITED, while %d posts were acknowledged; the room's mailbox was at most %d deep",
		joins.Load(), replayed.Load(), limited.Load(), posts, deepest.Load())
	if d := deepest.Load(); d > 200 {
		t.Fatalf("the room's mailbox grew to %d messages: replays are piling up in it", d)
	}
}
