package main_test

import (
	"testing"
	"time"

	"github.com/parleychat/parley/client"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/proto/codec"
)

// Read cursors: stored per user and room, only forward, on every device
// of the user at once, and the unread counts at hello.

func markRead(t *testing.T, c *client.Client, room string, seq uint64) (*parleypb.Ack, error) {
	t.Helper()
	return c.Request(testCtx(t, 10*time.Second), &parleypb.Envelope{Body: &parleypb.Envelope_MarkRead{MarkRead: &parleypb.MarkRead{Room: room, Seq: seq}}})
}

// TestReadCursors: marking read reaches the user's other device, moves
// only forward, is refused past the room's last seq and to non-members;
// a new login learns the cursor, the unread count and the unread
// mentions, which a delete of a mentioning post takes back.
func TestReadCursors(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	ctx := testCtx(t, 20*time.Second)
	alice := login(t, ctx, srv, codec.JSON, "alice", "hall")
	laptop, joined := loginAt(t, ctx, srv, codec.Proto, "bob", "hall")
	phone := login(t, ctx, srv, codec.JSON, "bob")
	carol := login(t, ctx, srv, codec.JSON, "carol")

	post(t, ctx, alice, "hall", "one")
	ping, err := alice.Request(ctx, &parleypb.Envelope{Body: &parleypb.Envelope_Post{Post: &parleypb.Post{Room: "hall", Text: "bob?", Mentions: []string{"bob"}}}})
	if err != nil {
		t.Fatal(err)
	}
	gone, err := alice.Request(ctx, &parleypb.Envelope{Body: &parleypb.Envelope_Post{Post: &parleypb.Post{Room: "hall", Text: "bob!!", Mentions: []string{"bob"}}}})
	if err != nil {
		t.Fatal(err)
	}
	last := post(t, ctx, alice, "hall", "three")

	_, err = markRead(t, laptop, "hall", last+1)
	wantCode(t, "a cursor past the room's last seq", err, parleypb.ErrorCode_ERROR_CODE_NO_SUCH_MESSAGE)
	_, err = markRead(t, carol, "hall", last)
	wantCode(t, "a non-member's cursor", err, parleypb.ErrorCode_ERROR_CODE_NOT_MEMBER)

	// A new login of bob's: unread since his join, two mentions.
	tablet := dial(t, ctx, srv, codec.JSON)
	w, err := tablet.Login(ctx, client.Login{Name: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	var hall *parleypb.RoomInfo
	for _, r := range w.GetRooms() {
		if r.GetName() == "hall" {
			hall = r
		}
	}
	if hall.GetReadSeq() != joined || hall.GetUnread() != last-joined || hall.GetUnreadMentions() != 2 {
		t.Fatalf("bob's hall at hello: %v; want read %d, unread %d, 2 mentions", hall, joined, last-joined)
	}

	// Deleting a mentioning post takes its mention back.
	if _, err := deleteMsg(ctx, alice, "hall", gone.GetSeq(), ""); err != nil {
		t.Fatal(err)
	}
	ack, err := markRead(t, laptop, "hall", ping.GetSeq())
	if err != nil || ack.GetSeq() != ping.GetSeq() {
		t.Fatalf("marking read: %v, %v", ack, err)
	}
	ri := nextEvent(t, ctx, phone, "bob's cursor on his phone", func(e *parleypb.Envelope) bool {
		return e.GetRoom().GetName() == "hall" && e.GetRoom().GetReadSeq() == ping.GetSeq()
	}).GetRoom()
	if ri.GetUnreadMentions() != 0 || ri.GetUnread() == 0 {
		t.Fatalf("bob's phone was told %v; want no unread mention, some unread", ri)
	}
	// Only forward: an older seq changes nothing.
	if ack, err := markRead(t, phone, "hall", joined); err != nil || ack.GetSeq() != ping.GetSeq() {
		t.Fatalf("marking an older seq read: %v, %v; want the cursor %d", ack, err, ping.GetSeq())
	}
	rooms := roomList(t, ctx, phone, true)
	if r := rooms["hall"]; r.GetReadSeq() != ping.GetSeq() || r.GetUnreadMentions() != 0 {
		t.Fatalf("bob's rooms list: %v", r)
	}
}

// TestReadCursorBurst: a hundred cursor moves sent at once are acked one
// by one and stored and told as a few, not a hundred.
func TestReadCursorBurst(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	ctx := testCtx(t, 20*time.Second)
	alice := login(t, ctx, srv, codec.JSON, "alice", "hall")
	bob := login(t, ctx, srv, codec.Proto, "bob", "hall")
	phone := login(t, ctx, srv, codec.Proto, "bob")
	var last uint64
	for i := range 100 {
		last = post(t, ctx, alice, "hall", "message "+string(rune('a'+i%26)))
	}
	first := last - 99
	for i := range uint64(100) {
		if err := bob.Send(ctx, &parleypb.Envelope{Id: "m" + string(rune('0'+i%10)) + string(rune('a'+i/10)), Body: &parleypb.Envelope_MarkRead{MarkRead: &parleypb.MarkRead{Room: "hall", Seq: first + i}}}); err != nil {
			t.Fatal(err)
		}
	}
	acks := 0
	nextEvent(t, ctx, bob, "the hundred acks", func(e *parleypb.Envelope) bool {
		if e.GetAck() != nil && e.GetAck().GetRoom() == "hall" {
			acks++
		}
		return acks == 100
	})
	told := 0
	nextEvent(t, ctx, phone, "the last cursor", func(e *parleypb.Envelope) bool {
		if e.GetRoom().GetName() == "hall" {
			told++
			return e.GetRoom().GetReadSeq() == last
		}
		return false
	})
	if told > 20 {
		t.Fatalf("the phone was told of bob's cursor %d times for 100 moves", told)
	}
	t.Logf("100 cursor moves: the phone told %d times", told)
}
