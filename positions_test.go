package main_test

import (
	"fmt"
	"maps"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/client"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/proto/codec"
)

// Read positions: a room setting (owners and moderators) that shows the
// members each other's read cursors, a few frames for a burst of moves.

func setReadPositions(t *testing.T, c *client.Client, room string, on bool) (*parleypb.Ack, error) {
	t.Helper()
	return c.Request(testCtx(t, 10*time.Second), &parleypb.Envelope{Body: &parleypb.Envelope_UpdateRoom{UpdateRoom: &parleypb.UpdateRoom{Room: room, ReadPositions: proto.Bool(on)}}})
}

// TestReadPositions: a plain member may not turn the setting on
// (FORBIDDEN); the owner's setting is an UPDATED event and a snapshot;
// then a hundred quick moves of three members reach a fourth in a few
// ReadPositions frames ending at the right cursors, on both native
// codecs, and the rooms list says the room shows them.
func TestReadPositions(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	ctx := testCtx(t, 30*time.Second)
	alice := login(t, ctx, srv, codec.JSON, "alice")
	if _, err := createRoom(ctx, alice, "hall", parleypb.RoomKind_ROOM_KIND_PUBLIC); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Join(ctx, "hall", nil); err != nil {
		t.Fatal(err)
	}
	readers := []*client.Client{
		login(t, ctx, srv, codec.Proto, "bob", "hall"),
		login(t, ctx, srv, codec.JSON, "carol", "hall"),
		login(t, ctx, srv, codec.Proto, "dave", "hall"),
	}
	names := []string{"bob", "carol", "dave"}
	eve := login(t, ctx, srv, codec.Proto, "eve", "hall")
	frank := login(t, ctx, srv, codec.JSON, "frank", "hall")
	var last uint64
	for i := range 100 {
		last = post(t, ctx, alice, "hall", fmt.Sprint("message ", i))
	}
	first := last - 99
	if _, err := markRead(t, readers[0], "hall", first); err != nil { // while off
		t.Fatal(err)
	}

	_, err := setReadPositions(t, eve, "hall", true)
	wantCode(t, "a member turning read positions on", err, parleypb.ErrorCode_ERROR_CODE_FORBIDDEN)
	ack, err := setReadPositions(t, alice, "hall", true)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client.Client{eve, frank} {
		nextEvent(t, ctx, c, "the setting's event", func(e *parleypb.Envelope) bool {
			if rp := e.GetReadPositions(); rp != nil {
				t.Fatalf("a ReadPositions frame %v before the setting's event", rp)
			}
			ch := e.GetEvent().GetChange()
			return e.GetEvent().GetSeq() == ack.GetSeq() && ch.GetKind() == parleypb.ChangeKind_CHANGE_KIND_UPDATED && ch.GetReadPositions()
		})
		snap := nextEvent(t, ctx, c, "the snapshot", func(e *parleypb.Envelope) bool { return e.GetReadPositions() != nil }).GetReadPositions()
		// Members joined with their cursor at their JOINED event; bob's is
		// the furthest, first.
		if !snap.GetSnapshot() || len(snap.GetPositions()) != 5 || snap.GetPositions()[0].GetUser() != "bob" || snap.GetPositions()[0].GetSeq() != first {
			t.Fatalf("the snapshot %v; want bob at %d first, and the four others", snap, first)
		}
	}

	want := make(map[string]uint64)
	for i := range uint64(100) {
		k := int(i % 3)
		if err := readers[k].Send(ctx, &parleypb.Envelope{Id: fmt.Sprint("m", i), Body: &parleypb.Envelope_MarkRead{MarkRead: &parleypb.MarkRead{Room: "hall", Seq: first + i}}}); err != nil {
			t.Fatal(err)
		}
		want[names[k]] = first + i
	}
	for _, c := range []*client.Client{eve, frank} {
		seen, frames := make(map[string]uint64), 0
		nextEvent(t, ctx, c, "the final positions", func(e *parleypb.Envelope) bool {
			rp := e.GetReadPositions()
			if rp == nil {
				return false
			}
			if rp.GetSnapshot() || rp.GetRoom() != "hall" {
				t.Fatalf("a move's frame %v", rp)
			}
			frames++
			for _, p := range rp.GetPositions() {
				seen[p.GetUser()] = p.GetSeq()
			}
			return maps.Equal(seen, want)
		})
		if frames > 3 {
			t.Fatalf("100 moves told in %d frames, want at most 3", frames)
		}
		t.Logf("100 cursor moves of 3 members: %d ReadPositions frames", frames)
	}
	if r := roomList(t, ctx, eve, true)["hall"]; !r.GetReadPositions() {
		t.Fatalf("eve's rooms list: %v; want read_positions", r)
	}
}
