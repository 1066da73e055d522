package main_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/client"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/proto/codec"
	"github.com/parleychat/parley/server"
	"github.com/parleychat/parley/store"
)

// A message's life after it is posted: edits, deletes, reactions, replies
// and mentions. Each refusal names its error code and changes nothing;
// each change is a room event naming its target post.

func post(t *testing.T, ctx context.Context, c *client.Client, room, text string) uint64 {
	t.Helper()
	seq, err := c.Post(ctx, room, text, "")
	if err != nil {
		t.Fatalf("post %q: %v", text, err)
	}
	return seq
}

func editMsg(ctx context.Context, c *client.Client, room string, seq uint64, text, id string) (*parleypb.Ack, error) {
	return c.Request(ctx, &parleypb.Envelope{Body: &parleypb.Envelope_Edit{Edit: &parleypb.EditMessage{Room: room, Seq: seq, Text: text, ClientMsgId: id}}})
}

func deleteMsg(ctx context.Context, c *client.Client, room string, seq uint64, id string) (*parleypb.Ack, error) {
	return c.Request(ctx, &parleypb.Envelope{Body: &parleypb.Envelope_DeleteMessage{DeleteMessage: &parleypb.DeleteMessage{Room: room, Seq: seq, ClientMsgId: id, Reason: "spam"}}})
}

func react(ctx context.Context, c *client.Client, room string, seq uint64, emoji string, remove bool, id string) (*parleypb.Ack, error) {
	return c.Request(ctx, &parleypb.Envelope{Body: &parleypb.Envelope_React{React: &parleypb.React{Room: room, Seq: seq, Emoji: emoji, Remove: remove, ClientMsgId: id}}})
}

// historyOf reads up to 256 events of room before its end (a page at
// most), by seq.
func historyOf(t *testing.T, ctx context.Context, c *client.Client, room string) map[uint64]*parleypb.RoomEvent {
	t.Helper()
	if err := c.History(ctx, room, 0, 256); err != nil {
		t.Fatal(err)
	}
	page := nextEvent(t, ctx, c, "a history page", func(e *parleypb.Envelope) bool { return e.GetHistoryPage() != nil }).GetHistoryPage()
	out := map[uint64]*parleypb.RoomEvent{}
	for _, ev := range page.GetEvents() {
		out[ev.GetSeq()] = ev
	}
	return out
}

// TestEditAndDeleteRules: authors edit and delete their own posts,
// moderators and owners delete anyone's; every other attempt is refused
// with its code and leaves the post as it was. History shows the edited
// text with its mark, and a deleted post as a tombstone.
func TestEditAndDeleteRules(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	ctx := testCtx(t, 20*time.Second)
	alice := login(t, ctx, srv, codec.JSON, "alice")
	if _, err := createRoom(ctx, alice, "hall", parleypb.RoomKind_ROOM_KIND_PUBLIC); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Join(ctx, "hall", nil); err != nil {
		t.Fatal(err)
	}
	bob, joined := loginAt(t, ctx, srv, codec.Proto, "bob", "hall")
	carol := login(t, ctx, srv, codec.JSON, "carol", "hall")

	hello := post(t, ctx, alice, "hall", "helo world")
	bobs := post(t, ctx, bob, "hall", "bob was here")

	_, err := editMsg(ctx, bob, "hall", hello, "hacked", "")
	wantCode(t, "editing another's post", err, parleypb.ErrorCode_ERROR_CODE_NOT_YOURS)
	_, err = deleteMsg(ctx, carol, "hall", hello, "")
	wantCode(t, "a member deleting another's post", err, parleypb.ErrorCode_ERROR_CODE_NOT_YOURS)
	_, err = editMsg(ctx, alice, "hall", 9999, "x", "")
	wantCode(t, "editing a message that does not exist", err, parleypb.ErrorCode_ERROR_CODE_NO_SUCH_MESSAGE)
	_, err = editMsg(ctx, bob, "hall", joined, "x", "")
	wantCode(t, "editing a join", err, parleypb.ErrorCode_ERROR_CODE_NOT_ALLOWED)
	_, err = deleteMsg(ctx, alice, "hall", joined, "")
	wantCode(t, "deleting a join", err, parleypb.ErrorCode_ERROR_CODE_NOT_ALLOWED)
	_, err = editMsg(ctx, alice, "hall", hello, strings.Repeat("x", 5000), "")
	wantCode(t, "an edit past the text limit", err, parleypb.ErrorCode_ERROR_CODE_TOO_LONG)
	_, err = editMsg(ctx, alice, "lobby", hello, "x", "")
	wantCode(t, "editing in a room not joined", err, parleypb.ErrorCode_ERROR_CODE_NOT_JOINED)
	if h := historyOf(t, ctx, carol, "hall")[hello]; h.GetText() != "helo world" || h.GetEditedMs() != 0 {
		t.Fatalf("after the refusals the post is %v", h)
	}

	ack, err := editMsg(ctx, alice, "hall", hello, "hello world", "")
	if err != nil {
		t.Fatal(err)
	}
	ev := change(t, ctx, carol, "hall", parleypb.ChangeKind_CHANGE_KIND_EDITED)
	if ev.GetSeq() != ack.GetSeq() || ev.GetChange().GetTargetSeq() != hello || ev.GetText() != "hello world" || ev.GetSender() != "alice" {
		t.Fatalf("the edit event: %v (ack %v)", ev, ack)
	}
	// The owner deletes bob's post; bob deletes his own edit of nothing:
	// he may delete his own post, which he does after.
	if _, err := deleteMsg(ctx, alice, "hall", bobs, ""); err != nil {
		t.Fatalf("the owner deleting a member's post: %v", err)
	}
	del := change(t, ctx, carol, "hall", parleypb.ChangeKind_CHANGE_KIND_MESSAGE_DELETED)
	if del.GetChange().GetTargetSeq() != bobs || del.GetChange().GetReason() != "spam" || del.GetSender() != "alice" {
		t.Fatalf("the delete event: %v", del)
	}
	_, err = deleteMsg(ctx, bob, "hall", bobs, "")
	wantCode(t, "deleting a deleted post", err, parleypb.ErrorCode_ERROR_CODE_ALREADY_DELETED)
	_, err = editMsg(ctx, bob, "hall", bobs, "again", "")
	wantCode(t, "editing a deleted post", err, parleypb.ErrorCode_ERROR_CODE_ALREADY_DELETED)
	_, err = react(ctx, carol, "hall", bobs, "👍", false, "")
	wantCode(t, "reacting to a deleted post", err, parleypb.ErrorCode_ERROR_CODE_ALREADY_DELETED)

	// A moderator deletes anyone's post too; an author their own.
	if err := setRole(ctx, alice, "hall", "carol", parleypb.Role_ROLE_MODERATOR); err != nil {
		t.Fatal(err)
	}
	bob2 := post(t, ctx, bob, "hall", "second")
	bob3 := post(t, ctx, bob, "hall", "third")
	if _, err := deleteMsg(ctx, carol, "hall", bob2, ""); err != nil {
		t.Fatalf("a moderator deleting a post: %v", err)
	}
	if _, err := deleteMsg(ctx, bob, "hall", bob3, ""); err != nil {
		t.Fatalf("an author deleting their post: %v", err)
	}

	h := historyOf(t, ctx, bob, "hall")
	if e := h[hello]; e.GetText() != "hello world" || e.GetEditedMs() == 0 || e.GetDeleted() {
		t.Fatalf("history of the edited post: %v", e)
	}
	for _, seq := range []uint64{bobs, bob2, bob3} {
		if e := h[seq]; !e.GetDeleted() || e.GetText() != "" || e.GetSender() != "bob" {
			t.Fatalf("history of deleted post %d: %v", seq, e)
		}
	}
	// The edit event in history still says what the edit said; the post
	// was not deleted.
	if e := h[ack.GetSeq()]; e.GetText() != "hello world" {
		t.Fatalf("history of the edit event: %v", e)
	}
}

// TestDeleteErasesEditsAndTheFile: deleting an edited post erases the texts of
// its edit events as well, in history and (bolt) in the file.
func TestDeleteErasesEditsAndTheFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	st, err := store.OpenBolt(dir, store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, func(c *server.Config) { c.Store = st }) // the server closes it
	ctx := testCtx(t, 20*time.Second)
	alice := login(t, ctx, srv, codec.JSON, "alice", "hall")
	const secret1, secret2 = "my password is hunter2-ABCDEF", "no wait, it is hunter3-GHIJKL"
	seq := post(t, ctx, alice, "hall", secret1)
	edit, err := editMsg(ctx, alice, "hall", seq, secret2, "")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, store.BoltFile))
	if !bytes.Contains(raw, []byte(secret2)) {
		t.Fatal("the texts are not in the file before the delete: the test proves nothing")
	}
	if _, err := deleteMsg(ctx, alice, "hall", seq, ""); err != nil {
		t.Fatal(err)
	}
	h := historyOf(t, ctx, alice, "hall")
	if h[seq].GetText() != "" || h[edit.GetSeq()].GetText() != "" || h[edit.GetSeq()].GetChange().GetKind() != parleypb.ChangeKind_CHANGE_KIND_EDITED {
		t.Fatalf("history after the delete: post %v, edit %v", h[seq], h[edit.GetSeq()])
	}
	raw, _ = os.ReadFile(filepath.Join(dir, store.BoltFile))
	for _, s := range []string{secret1, secret2} {
		if bytes.Contains(raw, []byte(s)) {
			t.Fatalf("%q is still in the bolt file after the delete", s)
		}
	}
}

// TestRetriedEditAppliesOnce: an edit, delete or reaction sent again with
// the same client_msg_id is acknowledged with the first one's seq and
// makes no second event.
func TestRetriedEditAppliesOnce(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	ctx := testCtx(t, 20*time.Second)
	alice := login(t, ctx, srv, codec.Proto, "alice", "hall")
	seq := post(t, ctx, alice, "hall", "one")
	first, err := editMsg(ctx, alice, "hall", seq, "two", "e-1")
	if err != nil {
		t.Fatal(err)
	}
	again, err := editMsg(ctx, alice, "hall", seq, "two", "e-1")
	if err != nil || again.GetSeq() != first.GetSeq() {
		t.Fatalf("the retried edit: %v, %v; want seq %d", again, err, first.GetSeq())
	}
	r1, err := react(ctx, alice, "hall", seq, "🎉", false, "r-1")
	if err != nil {
		t.Fatal(err)
	}
	// Retried after a removal, a reaction would come back if it applied again.
	if _, err := react(ctx, alice, "hall", seq, "🎉", true, "r-2"); err != nil {
		t.Fatal(err)
	}
	if r2, err := react(ctx, alice, "hall", seq, "🎉", false, "r-1"); err != nil || r2.GetSeq() != r1.GetSeq() {
		t.Fatalf("the retried reaction: %v, %v; want seq %d", r2, err, r1.GetSeq())
	}
	d1, err := deleteMsg(ctx, alice, "hall", seq, "d-1")
	if err != nil {
		t.Fatal(err)
	}
	if d2, err := deleteMsg(ctx, alice, "hall", seq, "d-1"); err != nil || d2.GetSeq() != d1.GetSeq() {
		t.Fatalf("the retried delete: %v, %v; want seq %d", d2, err, d1.GetSeq())
	}
	edits := 0
	for _, ev := range historyOf(t, ctx, alice, "hall") {
		if ev.GetChange().GetKind() == parleypb.ChangeKind_CHANGE_KIND_EDITED {
			edits++
		}
		if ev.GetSeq() == seq && len(ev.GetReactions()) != 0 {
			t.Fatalf("a deleted post keeps reactions: %v", ev)
		}
	}
	if edits != 1 {
		t.Fatalf("%d edit events, want 1", edits)
	}
}

// TestReactions: one emoji per user per post, counted in history with the
// reader's own marked; bad emoji are refused; adding a reaction twice or
// removing one not there changes nothing.
func TestReactions(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	ctx := testCtx(t, 20*time.Second)
	alice := login(t, ctx, srv, codec.JSON, "alice", "hall")
	bob, joined := loginAt(t, ctx, srv, codec.Proto, "bob", "hall")
	carol := login(t, ctx, srv, codec.Proto, "carol", "hall")
	seq := post(t, ctx, alice, "hall", "lunch?")

	_, err := react(ctx, bob, "hall", seq, "yes", false, "")
	wantCode(t, "a word for an emoji", err, parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST)
	_, err = react(ctx, bob, "hall", seq, strings.Repeat("👍", 9), false, "")
	wantCode(t, "an emoji past 32 bytes", err, parleypb.ErrorCode_ERROR_CODE_TOO_LONG)
	_, err = react(ctx, bob, "hall", 9999, "👍", false, "")
	wantCode(t, "reacting to a message that does not exist", err, parleypb.ErrorCode_ERROR_CODE_NO_SUCH_MESSAGE)
	_, err = react(ctx, bob, "hall", joined, "👍", false, "")
	wantCode(t, "reacting to a join", err, parleypb.ErrorCode_ERROR_CODE_NOT_ALLOWED)

	for _, c := range []*client.Client{bob, carol} {
		if _, err := react(ctx, c, "hall", seq, "👍", false, ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := react(ctx, bob, "hall", seq, "👍🏽", false, ""); err != nil {
		t.Fatal(err)
	}
	if ack, err := react(ctx, bob, "hall", seq, "👍", false, ""); err != nil || ack.GetSeq() != 0 {
		t.Fatalf("a reaction bob has already: %v, %v; want an ack with seq 0", ack, err)
	}
	ev := nextEvent(t, ctx, alice, "carol's reaction", func(e *parleypb.Envelope) bool {
		return e.GetEvent().GetChange().GetKind() == parleypb.ChangeKind_CHANGE_KIND_REACTED && e.GetEvent().GetSender() == "carol"
	}).GetEvent()
	if ev.GetChange().GetTargetSeq() != seq || ev.GetChange().GetEmoji() != "👍" || ev.GetChange().GetCount() != 2 {
		t.Fatalf("carol's reaction event: %v", ev)
	}
	want := func(c *client.Client, who string, counts map[string]uint32, mine map[string]bool) {
		t.Helper()
		got := historyOf(t, ctx, c, "hall")[seq].GetReactions()
		if len(got) != len(counts) {
			t.Fatalf("%s reads reactions %v, want %v", who, got, counts)
		}
		for _, r := range got {
			if r.GetCount() != counts[r.GetEmoji()] || r.GetMine() != mine[r.GetEmoji()] {
				t.Fatalf("%s reads reactions %v, want %v, mine %v", who, got, counts, mine)
			}
		}
	}
	want(bob, "bob", map[string]uint32{"👍": 2, "👍🏽": 1}, map[string]bool{"👍": true, "👍🏽": true})
	want(alice, "alice", map[string]uint32{"👍": 2, "👍🏽": 1}, nil)
	if _, err := react(ctx, bob, "hall", seq, "👍🏽", true, ""); err != nil {
		t.Fatal(err)
	}
	if ack, err := react(ctx, bob, "hall", seq, "👍🏽", true, ""); err != nil || ack.GetSeq() != 0 {
		t.Fatalf("removing a reaction that is gone: %v, %v; want an ack with seq 0", ack, err)
	}
	want(carol, "carol", map[string]uint32{"👍": 2}, map[string]bool{"👍": true})
	// A reader joining afresh gets the post's current reactions, its own marked.
	late := login(t, ctx, srv, codec.JSON, "carol")
	if _, err := late.Join(ctx, "hall", nil); err != nil {
		t.Fatal(err)
	}
	got := nextEvent(t, ctx, late, "the post in the replay", func(e *parleypb.Envelope) bool { return e.GetEvent().GetSeq() == seq }).GetEvent()
	if len(got.GetReactions()) != 1 || !got.GetReactions()[0].GetMine() || got.GetReactions()[0].GetCount() != 2 {
		t.Fatalf("the replayed post: %v", got)
	}
}

// TestRepliesAndMentions: a reply names a post of the same room that is
// there; mentions name members; both travel live and in history.
func TestRepliesAndMentions(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	ctx := testCtx(t, 20*time.Second)
	alice := login(t, ctx, srv, codec.JSON, "alice", "hall", "other")
	bob, joined := loginAt(t, ctx, srv, codec.Proto, "bob", "hall")
	login(t, ctx, srv, codec.Proto, "dave") // online, not a member
	q := post(t, ctx, bob, "hall", "who is in?")
	gone := post(t, ctx, bob, "hall", "oops")
	if _, err := deleteMsg(ctx, bob, "hall", gone, ""); err != nil {
		t.Fatal(err)
	}
	elsewhere := post(t, ctx, alice, "other", "a post of another room")
	send := func(p *parleypb.Post) (*parleypb.Ack, error) {
		p.Room = "hall"
		return alice.Request(ctx, &parleypb.Envelope{Body: &parleypb.Envelope_Post{Post: p}})
	}
	_, err := send(&parleypb.Post{Text: "x", ReplyTo: elsewhere + 1000})
	wantCode(t, "a reply to a message that does not exist", err, parleypb.ErrorCode_ERROR_CODE_NO_SUCH_MESSAGE)
	_, err = send(&parleypb.Post{Text: "x", ReplyTo: joined})
	wantCode(t, "a reply to a join", err, parleypb.ErrorCode_ERROR_CODE_NOT_ALLOWED)
	_, err = send(&parleypb.Post{Text: "x", ReplyTo: gone})
	wantCode(t, "a reply to a deleted post", err, parleypb.ErrorCode_ERROR_CODE_ALREADY_DELETED)
	_, err = send(&parleypb.Post{Text: "x", Mentions: []string{"bob", "dave"}})
	wantCode(t, "mentioning a non-member", err, parleypb.ErrorCode_ERROR_CODE_NOT_MEMBER)
	_, err = send(&parleypb.Post{Text: "x", Mentions: []string{""}})
	wantCode(t, "mentioning a bad name", err, parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST)

	ack, err := send(&parleypb.Post{Text: "me, @bob", ReplyTo: q, Mentions: []string{"bob", "bob", "alice"}})
	if err != nil {
		t.Fatal(err)
	}
	live := nextEvent(t, ctx, bob, "alice's reply", func(e *parleypb.Envelope) bool { return e.GetEvent().GetSeq() == ack.GetSeq() }).GetEvent()
	if live.GetReplyTo() != q || strings.Join(live.GetMentions(), ",") != "bob,alice" {
		t.Fatalf("the reply, live: %v", live)
	}
	if h := historyOf(t, ctx, bob, "hall")[ack.GetSeq()]; h.GetReplyTo() != q || strings.Join(h.GetMentions(), ",") != "bob,alice" || h.GetText() != "me, @bob" {
		t.Fatalf("the reply in history: %v", h)
	}
	// The refusals stored nothing: the reply is the next seq after the delete.
	if ack.GetSeq() != gone+2 {
		t.Fatalf("the reply has seq %d, want %d (refused posts took seqs)", ack.GetSeq(), gone+2)
	}
}

// TestResumeGetsEditsDeletesReactions: a client resuming from a seq gets
// the edit, delete and reaction events themselves, in order.
func TestResumeGetsEditsDeletesReactions(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	ctx := testCtx(t, 20*time.Second)
	alice := login(t, ctx, srv, codec.JSON, "alice", "hall")
	bob, _ := loginAt(t, ctx, srv, codec.Proto, "bob", "hall")
	a := post(t, ctx, alice, "hall", "first")
	b := post(t, ctx, alice, "hall", "second")
	seen := b
	bob.CloseNow()

	if _, err := editMsg(ctx, alice, "hall", a, "first, edited", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := deleteMsg(ctx, alice, "hall", b, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := react(ctx, alice, "hall", a, "❤️", false, ""); err != nil {
		t.Fatal(err)
	}
	back := login(t, ctx, srv, codec.Proto, "bob")
	ack, err := back.Join(ctx, "hall", &seen)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []parleypb.ChangeKind
	for len(kinds) < 3 {
		ev := nextEvent(t, ctx, back, "the events bob missed", func(e *parleypb.Envelope) bool { return e.GetEvent() != nil }).GetEvent()
		if ev.GetSeq() <= seen {
			t.Fatalf("replayed %v, already seen", ev)
		}
		if ev.GetChange().GetKind() == parleypb.ChangeKind_CHANGE_KIND_JOINED {
			continue
		}
		kinds = append(kinds, ev.GetChange().GetKind())
		switch ev.GetChange().GetKind() {
		case parleypb.ChangeKind_CHANGE_KIND_EDITED:
			if ev.GetChange().GetTargetSeq() != a || ev.GetText() != "first, edited" {
				t.Fatalf("replayed edit: %v", ev)
			}
		case parleypb.ChangeKind_CHANGE_KIND_MESSAGE_DELETED, parleypb.ChangeKind_CHANGE_KIND_REACTED:
		default:
			t.Fatalf("replayed %v", ev)
		}
	}
	want := []parleypb.ChangeKind{parleypb.ChangeKind_CHANGE_KIND_EDITED, parleypb.ChangeKind_CHANGE_KIND_MESSAGE_DELETED, parleypb.ChangeKind_CHANGE_KIND_REACTED}
	for i := range want {
		if kinds[i] != want[i] {
			t.Fatalf("replayed %v, want %v", kinds, want)
		}
	}
	_ = ack
}

// TestLegacySeesPlainPosts: a tutorial client sees posts as they were
// posted, nothing of edits, deletes and reactions; one connecting later
// is replayed each post as it stands, without the deleted ones
// (docs/LEGACY-PROTOCOL.md).
func TestLegacySeesPlainPosts(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	ctx := testCtx(t, 20*time.Second)
	ann := dialLegacy(t, ctx, srv)
	readLegacy(t, ctx, ann) // handshake
	if err := ann.WriteJSON(ctx, map[string]string{"type": "login", "content": "ann"}); err != nil {
		t.Fatal(err)
	}
	readLegacy(t, ctx, ann) // ann's login
	alice := login(t, ctx, srv, codec.JSON, "alice", "lobby")
	for f := readLegacy(t, ctx, ann); f.Type != "login"; f = readLegacy(t, ctx, ann) {
	}
	keep := post(t, ctx, alice, "lobby", "typo here")
	drop := post(t, ctx, alice, "lobby", "regrettable")
	if _, err := editMsg(ctx, alice, "lobby", keep, "no typo here", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := react(ctx, alice, "lobby", keep, "👍", false, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := deleteMsg(ctx, alice, "lobby", drop, ""); err != nil {
		t.Fatal(err)
	}
	post(t, ctx, alice, "lobby", "the end")
	var got []string
	for len(got) < 3 {
		if f := readLegacy(t, ctx, ann); f.Type == "user" {
			got = append(got, f.Content)
		}
	}
	if strings.Join(got, "|") != "typo here|regrettable|the end" {
		t.Fatalf("the legacy client saw %q live", got)
	}

	ben := dialLegacy(t, ctx, srv)
	readLegacy(t, ctx, ben)
	if err := ben.WriteJSON(ctx, map[string]string{"type": "login", "content": "ben"}); err != nil {
		t.Fatal(err)
	}
	got = nil
	for len(got) < 2 {
		if f := readLegacy(t, ctx, ben); f.Type == "user" {
			got = append(got, f.Content)
		}
	}
	if strings.Join(got, "|") != "no typo here|the end" {
		t.Fatalf("a legacy client joining later was replayed %q", got)
	}
}

// TestCrashKeepsEditsAndDeletes runs the real binary, kills it with
// SIGKILL during a burst of edits and deletes, and restarts it on the same
// store: every edit and delete that was acknowledged is there.
func TestCrashKeepsEditsAndDeletes(t *testing.T) {
	for _, backend := range []string{"bolt", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			addr := freeAddr(t)
			args := []string{"-rate", "100000", "-burst", "100000"}
			args = append(args, durableStore(t, backend)...)
			url := "ws://" + addr + "/ws"
			p := startProc(t, addr, args...)
			ctx := testCtx(t, 60*time.Second)
			c, err := client.Dial(ctx, url, codec.Proto, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.CloseNow()
			if err := c.Hello(ctx, "alice", false); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Join(ctx, "hall", nil); err != nil {
				t.Fatal(err)
			}
			var posts []uint64
			for i := range 60 {
				seq, err := c.Post(ctx, "hall", fmt.Sprint("post ", i), fmt.Sprint("p", i))
				if err != nil {
					t.Fatal(err)
				}
				posts = append(posts, seq)
			}
			var mu sync.Mutex
			edited, deleted := map[uint64]string{}, map[uint64]bool{}
			acked := func() int {
				mu.Lock()
				defer mu.Unlock()
				return len(edited) + len(deleted)
			}
			go func() {
				for i, seq := range posts {
					text := fmt.Sprint("post ", i, ", edited")
					if _, err := editMsg(ctx, c, "hall", seq, text, fmt.Sprint("e", i)); err != nil {
						return
					}
					mu.Lock()
					edited[seq] = text
					mu.Unlock()
					if i%2 == 0 {
						if _, err := deleteMsg(ctx, c, "hall", seq, fmt.Sprint("d", i)); err != nil {
							return
						}
						mu.Lock()
						deleted[seq] = true
						mu.Unlock()
					}
				}
			}()
			waitFor(t, 20*time.Second, func() error {
				if n := acked(); n < 30 {
					return fmt.Errorf("%d edits and deletes acked", n)
				}
				return nil
			})
			p.kill()
			c.CloseNow()
			mu.Lock()
			defer mu.Unlock()
			t.Logf("killed with %d edits and %d deletes acked", len(edited), len(deleted))

			startProc(t, addr, args...)
			r := dialURL(t, ctx, url)
			if err := r.Hello(ctx, "bob", false); err != nil {
				t.Fatal(err)
			}
			if _, err := r.Join(ctx, "hall", nil); err != nil {
				t.Fatal(err)
			}
			h := historyOf(t, ctx, r, "hall")
			for seq, text := range edited {
				ev := h[seq]
				switch {
				case deleted[seq]:
					if !ev.GetDeleted() || ev.GetText() != "" {
						t.Fatalf("an acknowledged delete of %d was lost: %v", seq, ev)
					}
				case ev.GetDeleted():
					// deleted, but the ack was lost with the process: fine
				case ev.GetText() != text || ev.GetEditedMs() == 0:
					t.Fatalf("an acknowledged edit of %d was lost: %v", seq, ev)
				}
			}
		})
	}
}

func dialURL(t *testing.T, ctx context.Context, url string) *client.Client {
	t.Helper()
	c, err := client.Dial(ctx, url, codec.JSON, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}
