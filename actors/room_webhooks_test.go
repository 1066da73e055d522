package actors

import (
	"context"
	"encoding/json"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/store"
)

func TestMentions(t *testing.T) {
	for text, want := range map[string][]string{
		"hi @bob":                   {"bob"},
		"@alice, @bob. and @carol!": {"alice", "bob", "carol"},
		"mail me at x@bob.org":      nil,
		"@ alone, @":                nil,
		"@zoë-1_x.y.":               {"zoë-1_x.y"},
	} {
		if got := mentions(text); !slices.Equal(got, want) {
			t.Errorf("mentions(%q) = %q, want %q", text, got, want)
		}
	}
}

// TestWebhookOutbox: with webhooks on, each event's entry is committed
// with it, in the room's order, and a post that mentions a member with no
// connection in the room is followed by a notify naming them; with them
// off, nothing is written.
func TestWebhookOutbox(t *testing.T) {
	ctx := context.Background()
	st := store.NewMemory()
	var woken atomic.Int32
	n := newTestNode(t, Config{Store: st, Webhooks: Webhooks{
		Want:      func(typ string) bool { return typ != "member.joined" },
		Committed: func() { woken.Add(1) },
	}})
	if _, err := n.CreateRoom(ctx, &parleypb.CreateRoom{Room: "team", Kind: parleypb.RoomKind_ROOM_KIND_PRIVATE}, "alice"); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Moderate(ctx, "team", "bob", parleypb.ModAction_MOD_ACTION_ADD, 0, "", time.Time{}); err != nil {
		t.Fatal(err)
	}
	seq, err := n.Publish(ctx, "team", Sender{Name: "alice"}, "hi @bob and @carol", "k1")
	if err != nil {
		t.Fatal(err)
	}
	entries, err := st.OutboxPending(ctx, 100, nil)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	var last uint64
	for _, e := range entries {
		var body webhookBody
		if err := json.Unmarshal(e.Payload, &body); err != nil {
			t.Fatalf("entry %s: %v in %s", e.ID, err, e.Payload)
		}
		if body.ID != e.ID || body.Type != e.Type || body.Room != "team" || body.Seq < last {
			t.Fatalf("entry %s out of order or inconsistent: %s", e.ID, e.Payload)
		}
		last = body.Seq
		types = append(types, e.Type)
		if e.Type == WebhookNotify {
			if body.Seq != seq || !slices.Equal(body.Recipients, []string{"bob"}) || body.Event.Text != "hi @bob and @carol" || body.Event.SenderKind != "user" {
				t.Fatalf("notify = %s, want bob (a member with no connection; carol is none) for seq %d", e.Payload, seq)
			}
		}
	}
	want := []string{"room.created", "member.added", WebhookMessageCreated, WebhookNotify}
	if !slices.Equal(types, want) {
		t.Fatalf("outbox types %v, want %v", types, want)
	}
	if woken.Load() == 0 {
		t.Fatal("Committed was never called")
	}

	off := store.NewMemory()
	n2 := newTestNode(t, Config{Store: off})
	if _, err := n2.CreateRoom(ctx, &parleypb.CreateRoom{Room: "lobby", Kind: parleypb.RoomKind_ROOM_KIND_PUBLIC}, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := n2.Publish(ctx, "lobby", System, "hello @bob", ""); err != nil {
		t.Fatal(err)
	}
	if got, _ := off.OutboxPending(ctx, 100, nil); len(got) != 0 {
		t.Fatalf("webhooks off wrote %d outbox entries", len(got))
	}
}
