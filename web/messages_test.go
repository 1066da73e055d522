package web_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"

	"github.com/parleychat/parley/client"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/store"
)

// A message's life on the page: replies with a quote, reactions, edits and
// deletes (by the author, and by a moderator or owner of anyone's), and
// mentions chosen from a completion list. Each person is a tab of their
// own against a real server on 127.0.0.1.

// msgSel is a CSS selector for the message seq in room's pane, followed by sub.
func msgSel(room string, seq int, sub string) string {
	return strings.TrimSpace(fmt.Sprintf(`.room-view[data-room=%s] li.msg[data-seq="%d"] %s`, jsString(room), seq, sub))
}

// msgJS is a JavaScript expression for the element msgSel names (or null).
func msgJS(room string, seq int, sub string) string {
	return fmt.Sprintf(`document.querySelector(%s)`, jsString(msgSel(room, seq, sub)))
}

// msgAction clicks one of the actions on a message (shown on hover and focus).
func (tb *tab) msgAction(room string, seq int, action string) {
	tb.t.Helper()
	btn := msgSel(room, seq, fmt.Sprintf(`.msg-actions button[data-action=%s]`, jsString(action)))
	tb.waitFor(action+" offered", `!!document.querySelector(`+jsString(btn)+`)`)
	tb.run(fmt.Sprintf("%s message %d", action, seq), chromedp.Click(btn, chromedp.ByQuery))
}

// react clicks a quick reaction on a message.
func (tb *tab) react(room string, seq int, emoji string) {
	tb.t.Helper()
	btn := msgSel(room, seq, fmt.Sprintf(`.msg-actions button[data-action="react"][data-emoji=%s]`, jsString(emoji)))
	tb.run(fmt.Sprintf("react to %d with %s", seq, emoji), chromedp.Click(btn, chromedp.ByQuery))
}

// waitReaction waits until a message shows count reactions with emoji
// (0: none), highlighted or not as ours.
func (tb *tab) waitReaction(room string, seq int, emoji string, count int, mine bool) {
	tb.t.Helper()
	chip := msgJS(room, seq, fmt.Sprintf(`.msg-reactions .reaction[data-emoji=%s]`, jsString(emoji)))
	cond := fmt.Sprintf(`!%s`, chip)
	if count > 0 {
		cond = fmt.Sprintf(`%[1]s?.querySelector('.reaction-count').textContent === '%[2]d' && %[1]s.classList.contains('mine') === %[3]t && %[1]s.getAttribute('aria-pressed') === '%[3]t'`, chip, count, mine)
	}
	tb.waitFor(fmt.Sprintf("%d× %s on %d (mine: %t)", count, emoji, seq, mine), cond)
}

// waitText waits until a message's text reads text.
func (tb *tab) waitText(room string, seq int, text string) {
	tb.t.Helper()
	tb.waitFor(fmt.Sprintf("message %d to read %q", seq, text), fmt.Sprintf(`%s?.textContent === %s`, msgJS(room, seq, ".msg-text"), jsString(text)))
}

// waitTombstone waits until a message shows as deleted: no text, no reactions, no actions.
func (tb *tab) waitTombstone(room string, seq int) {
	tb.t.Helper()
	li := msgJS(room, seq, "")
	tb.waitFor(fmt.Sprintf("message %d deleted", seq), fmt.Sprintf(`%[1]s?.classList.contains('deleted') && %[1]s.querySelector('.msg-text').textContent === 'message deleted' && %[1]s.querySelectorAll('.reaction, .msg-actions button').length === 0`, li))
}

// waitQuote waits until the reply seq quotes sender and text ("" sender: a deleted message).
func (tb *tab) waitQuote(room string, seq int, sender, text string) {
	tb.t.Helper()
	q := msgJS(room, seq, ".msg-quote")
	cond := fmt.Sprintf(`%[1]s && !%[1]s.hidden && %[1]s.querySelector('.quote-sender')?.textContent === %[2]s && %[1]s.querySelector('.quote-text').textContent === %[3]s`, q, jsString(sender), jsString(text))
	if sender == "" {
		cond = fmt.Sprintf(`%[1]s && !%[1]s.hidden && !%[1]s.querySelector('.quote-sender') && %[1]s.querySelector('.quote-text').textContent === %[2]s`, q, jsString(text))
	}
	tb.waitFor(fmt.Sprintf("message %d to quote %s %q", seq, sender, text), cond)
}

// hasAction says whether a message offers an action.
func (tb *tab) hasAction(room string, seq int, action string) bool {
	tb.t.Helper()
	var ok bool
	tb.eval(fmt.Sprintf(`!!%s`, msgJS(room, seq, fmt.Sprintf(`.msg-actions button[data-action=%s]`, jsString(action)))), &ok)
	return ok
}

// pressKey presses a key in the focused element (no text: Tab, arrows, Escape).
func pressKey(key string, vk int64) chromedp.Action {
	return chromedp.ActionFunc(func(ctx context.Context) error {
		if err := input.DispatchKeyEvent(input.KeyDown).WithKey(key).WithCode(key).
			WithWindowsVirtualKeyCode(vk).WithNativeVirtualKeyCode(vk).Do(ctx); err != nil {
			return err
		}
		return input.DispatchKeyEvent(input.KeyUp).WithKey(key).WithCode(key).
			WithWindowsVirtualKeyCode(vk).WithNativeVirtualKeyCode(vk).Do(ctx)
	})
}

// lastSeq waits for n messages in room and returns the seq of the last.
func (tb *tab) lastSeq(room string, n int, sender, text string) int {
	tb.t.Helper()
	msgs := tb.waitMessages(room, n)
	last := msgs[len(msgs)-1]
	if last.Sender != sender || last.Text != text {
		tb.t.Fatalf("%s's last message in %s: %+v, want %s: %q", tb.name, room, last, sender, text)
	}
	return last.Seq
}

// TestMessageReplyReactEditDelete: alice posts; bob replies to it (the
// reply quotes her), reacts, and alice sees the count; alice reacts too and
// takes it back; alice edits her message, and bob sees the new text marked
// "(edited)", his quote too; alice deletes it, and for bob it becomes a
// tombstone, and his reply quotes a deleted message. Nobody is offered
// editing another's message.
func TestMessageReplyReactEditDelete(t *testing.T) {
	srv := startServer(t, "127.0.0.1:0", nil)
	browser := startBrowser(t, 120*time.Second)
	base := "http://" + srv.Addr() + "/"
	alice := openTab(t, browser, base, "alice")
	bob := openTab(t, browser, base, "bob")
	alice.createRoom("lunch", false, "")
	alice.waitFor("in #lunch", roomView("lunch")+`?.dataset.joined === 'true'`)
	bob.joinRoom("lunch")
	alice.waitNames("#member-list", "alice", "bob")

	const first = "Lunch at noon? <b>Bring</b> snacks & a good mood, please — the place is booked for twelve people"
	alice.send(first)
	seq := bob.lastSeq("lunch", 1, "alice", first)
	alice.waitText("lunch", seq, first)
	if bob.hasAction("lunch", seq, "edit") || bob.hasAction("lunch", seq, "delete") {
		t.Error("bob, a member, is offered editing or deleting alice's message")
	}
	if !alice.hasAction("lunch", seq, "edit") || !alice.hasAction("lunch", seq, "delete") {
		t.Error("alice is not offered editing and deleting her own message")
	}

	// bob replies: the target shows above the composer, then as a quote.
	bob.msgAction("lunch", seq, "reply")
	quote := []rune(first)[:80]
	wantQuote := string(quote) + "…"
	bob.waitFor("the reply bar", fmt.Sprintf(`!document.querySelector('#reply-bar').hidden && document.querySelector('#reply-to .quote-sender').textContent === 'alice' && document.querySelector('#reply-to .quote-text').textContent === %s`, jsString(wantQuote)))
	bob.screenshot("reply-bar")
	bob.send("Count me in!")
	reply := bob.lastSeq("lunch", 2, "bob", "Count me in!")
	bob.waitFor("the reply bar gone", `document.querySelector('#reply-bar').hidden`)
	for _, tb := range []*tab{alice, bob} {
		tb.waitQuote("lunch", reply, "alice", wantQuote)
	}

	// Reactions: counts for everyone, ours highlighted; a click on ours takes it back.
	bob.react("lunch", seq, "👍")
	alice.waitReaction("lunch", seq, "👍", 1, false)
	bob.waitReaction("lunch", seq, "👍", 1, true)
	alice.react("lunch", seq, "👍")
	alice.react("lunch", seq, "🎉")
	alice.waitReaction("lunch", seq, "👍", 2, true)
	bob.waitReaction("lunch", seq, "👍", 2, true)
	bob.waitReaction("lunch", seq, "🎉", 1, false)
	alice.screenshot("reactions")
	alice.run("take back 👍", chromedp.Click(msgSel("lunch", seq, `.msg-reactions .reaction[data-emoji="👍"]`), chromedp.ByQuery))
	alice.waitReaction("lunch", seq, "👍", 1, false)
	bob.waitReaction("lunch", seq, "👍", 1, true)

	// alice edits her message in place.
	const edited = "Lunch at 12:30 instead"
	alice.msgAction("lunch", seq, "edit")
	editor := msgSel("lunch", seq, ".msg-editor textarea")
	alice.waitFor("the editor", `!!document.querySelector(`+jsString(editor)+`)`)
	alice.run("clear", chromedp.Evaluate(`document.querySelector(`+jsString(editor)+`).select()`, nil))
	alice.run("edit", chromedp.SendKeys(editor, edited, chromedp.ByQuery), pressEnter())
	for _, tb := range []*tab{alice, bob} {
		tb.waitText("lunch", seq, edited)
		tb.waitFor("(edited)", fmt.Sprintf(`%[1]s && !%[1]s.hidden && %[1]s.textContent === '(edited)'`, msgJS("lunch", seq, ".msg-edited")))
		tb.waitQuote("lunch", reply, "alice", edited)
		tb.waitReaction("lunch", seq, "🎉", 1, tb == alice) // reactions stay
	}
	alice.waitFor("the editor closed", `!document.querySelector(`+jsString(editor)+`)`)
	bob.screenshot("edited")

	// alice deletes it: a tombstone for both, and the quote says so.
	alice.msgAction("lunch", seq, "delete")
	alice.run("confirm", chromedp.Click(msgSel("lunch", seq, `.msg-confirm button[data-action="confirm-delete"]`), chromedp.ByQuery))
	for _, tb := range []*tab{alice, bob} {
		tb.waitTombstone("lunch", seq)
		tb.waitQuote("lunch", reply, "", "deleted message")
	}
	// bob's reply itself is untouched.
	bob.waitText("lunch", reply, "Count me in!")
	bob.screenshot("deleted")

	// None of it shows as a line of its own: the edits, reactions and the
	// delete changed the messages they name.
	for _, tb := range []*tab{alice, bob} {
		var lines []string
		for _, c := range tb.changes("lunch") {
			if strings.Contains(c, "changed") {
				lines = append(lines, c)
			}
		}
		if len(lines) > 0 {
			t.Errorf("%s's page shows message changes as lines: %q", tb.name, lines)
		}
		if got := tb.messages("lunch"); len(got) != 2 {
			t.Errorf("%s's page shows %d messages, want 2: %+v", tb.name, len(got), got)
		}
	}
}

// TestModeratorDeletesMessage: in alice's room, carol's message is deleted
// by alice (the owner): it is a tombstone for everyone, and after bob
// reloads his page too. bob, a member, is offered no delete of others'
// messages, only of his own; a reply to a message deleted meanwhile is
// refused, and the page says why on the message.
func TestModeratorDeletesMessage(t *testing.T) {
	srv := startServer(t, "127.0.0.1:0", nil)
	browser := startBrowser(t, 120*time.Second)
	base := "http://" + srv.Addr() + "/"
	alice := openTab(t, browser, base, "alice")
	bob := openTab(t, browser, base, "bob")
	carol := openTab(t, browser, base, "carol")
	alice.createRoom("club", false, "")
	alice.waitFor("in #club", roomView("club")+`?.dataset.joined === 'true'`)
	bob.joinRoom("club")
	carol.joinRoom("club")
	alice.waitNames("#member-list", "alice", "bob", "carol")

	carol.send("BUY CHEAP WATCHES")
	spam := carol.lastSeq("club", 1, "carol", "BUY CHEAP WATCHES")
	bob.send("hello all")
	hello := bob.lastSeq("club", 2, "bob", "hello all")
	alice.lastSeq("club", 2, "bob", "hello all")

	if bob.hasAction("club", spam, "delete") {
		t.Error("bob, a member, is offered deleting carol's message")
	}
	if !bob.hasAction("club", hello, "delete") {
		t.Error("bob is not offered deleting his own message")
	}
	alice.waitFor("the owner offered deleting carol's message", `!!`+msgJS("club", spam, `.msg-actions button[data-action="delete"]`))
	if alice.hasAction("club", spam, "edit") {
		t.Error("the owner is offered editing carol's message")
	}

	alice.msgAction("club", spam, "delete")
	alice.waitFor("asked first", fmt.Sprintf(`%s?.textContent.startsWith("Delete carol's message for everyone?")`, msgJS("club", spam, ".msg-confirm")))
	alice.screenshot("moderator-delete")
	alice.run("confirm", chromedp.Click(msgSel("club", spam, `.msg-confirm button[data-action="confirm-delete"]`), chromedp.ByQuery))
	for _, tb := range []*tab{alice, bob, carol} {
		tb.waitTombstone("club", spam)
		tb.waitText("club", hello, "hello all")
	}
	carol.screenshot("deleted-by-moderator")

	// After a reload bob's page has the room's current version from the server.
	bob.run("reload", chromedp.Reload())
	bob.waitFor("connected again", `document.querySelector('#conn').dataset.state === 'online'`)
	bob.waitFor("in #club again", roomView("club")+`?.dataset.joined === 'true'`)
	bob.showRoom("club")
	bob.waitTombstone("club", spam)
	bob.waitText("club", hello, "hello all")
	var shown string
	bob.eval(roomView("club")+`.textContent`, &shown)
	if strings.Contains(shown, "WATCHES") {
		t.Error("the deleted text is still on bob's page after a reload")
	}
	bob.screenshot("tombstone-after-reload")

	// carol replies to bob's message, which bob deletes meanwhile: her
	// reply bar says so, and sending anyway is refused, on the message.
	carol.msgAction("club", hello, "reply")
	carol.waitFor("the reply bar", `document.querySelector('#reply-to .quote-text')?.textContent === 'hello all'`)
	bob.msgAction("club", hello, "delete")
	bob.run("confirm", chromedp.Click(msgSel("club", hello, `.msg-confirm button[data-action="confirm-delete"]`), chromedp.ByQuery))
	bob.waitTombstone("club", hello)
	carol.waitFor("the reply bar says deleted", `!document.querySelector('#reply-bar').hidden && document.querySelector('#reply-to .quote-text').textContent === 'deleted message'`)
	carol.send("hi bob")
	carol.waitFor("the refusal on the message", `[...document.querySelectorAll('.pending-list li.failed .msg-status')].some((e) => e.textContent.startsWith('Not sent: That message was deleted'))`)
	carol.screenshot("reply-refused")
}

// TestMentionCompletion: typing "@" in the composer offers the room's
// members (not oneself); Tab, the arrow keys with Enter, and a click choose
// one, which goes into the post's mentions; the mentioned see the post
// highlighted, the others see the names marked only.
func TestMentionCompletion(t *testing.T) {
	srv := startServer(t, "127.0.0.1:0", nil)
	browser := startBrowser(t, 120*time.Second)
	base := "http://" + srv.Addr() + "/"
	alice := openTab(t, browser, base, "alice")
	bob := openTab(t, browser, base, "bob")
	carol := openTab(t, browser, base, "carol")
	alice.createRoom("team", false, "")
	alice.waitFor("in #team", roomView("team")+`?.dataset.joined === 'true'`)
	bob.joinRoom("team")
	carol.joinRoom("team")
	alice.waitNames("#member-list", "alice", "bob", "carol")

	offered := func(want ...string) {
		t.Helper()
		alice.waitFor(fmt.Sprintf("completion of %v", want), fmt.Sprintf(`!document.querySelector('#mention-list').hidden && JSON.stringify([...document.querySelectorAll('#mention-list li')].map((li) => li.dataset.user)) === %s`, jsString(mustJSON(want))))
	}
	value := func(want string) {
		t.Helper()
		alice.waitFor(fmt.Sprintf("the composer to read %q", want), fmt.Sprintf(`document.querySelector('#composer-input').value === %s`, jsString(want)))
	}

	// "@b" and Tab.
	alice.run("type @b", chromedp.SendKeys("#composer-input", "lunch @b", chromedp.ByID))
	offered("bob")
	alice.screenshot("mention-completion")
	alice.run("Tab", pressKey("Tab", 9))
	value("lunch @bob ")
	alice.waitFor("the list closed", `document.querySelector('#mention-list').hidden`)
	alice.run("finish", chromedp.SendKeys("#composer-input", "at noon?", chromedp.ByID), pressEnter())
	seq := bob.lastSeq("team", 1, "alice", "lunch @bob at noon?")
	bob.waitFor("highlighted for bob", fmt.Sprintf(`%[1]s?.classList.contains('mentions-me') && %[1]s.querySelector('.mention.mention-me')?.textContent === '@bob'`, msgJS("team", seq, "")))
	carol.waitFor("marked for carol", fmt.Sprintf(`%[1]s && !%[1]s.classList.contains('mentions-me') && %[1]s.querySelector('.mention')?.textContent === '@bob' && !%[1]s.querySelector('.mention-me')`, msgJS("team", seq, "")))
	bob.screenshot("mentioned")

	// carol looks at another room: the next post mentioning her marks
	// #team's unread badge.
	carol.showRoom("general")

	// "@", the arrow keys and Enter; then "@" and a click.
	alice.run("type @", chromedp.SendKeys("#composer-input", "@", chromedp.ByID))
	offered("bob", "carol")
	alice.run("down", pressKey("ArrowDown", 40))
	alice.waitFor("carol active", `document.querySelector('#mention-list li.active')?.dataset.user === 'carol'`)
	alice.run("choose", pressEnter())
	value("@carol ")
	alice.run("type and @", chromedp.SendKeys("#composer-input", "and @", chromedp.ByID))
	offered("bob", "carol")
	alice.run("click bob", chromedp.Click(`#mention-list li[data-user="bob"]`, chromedp.ByQuery))
	value("@carol and @bob ")
	alice.run("send", pressEnter())
	second := carol.lastSeq("team", 2, "alice", "@carol and @bob")
	badge := `document.querySelector('#room-list li[data-room="team"] .badge')`
	carol.waitFor("a mention badge on #team", badge+`.hidden === false && `+badge+`.classList.contains('mentioned') && `+badge+`.dataset.mentions === '1' && `+badge+`.textContent === '@1 unread, 1 mentioning you'`)
	carol.screenshot("mention-badge")
	carol.showRoom("team")
	carol.waitFor("#team read", badge+`.hidden && !`+badge+`.classList.contains('mentioned')`)
	carol.waitFor("highlighted for carol", fmt.Sprintf(`%s?.classList.contains('mentions-me')`, msgJS("team", second, "")))
	bob.waitFor("highlighted for bob", fmt.Sprintf(`%s?.classList.contains('mentions-me')`, msgJS("team", second, "")))

	// The posts carried the mentions as a field, not only as text.
	_, frames := alice.wsFrames()
	var mentions []string
	for _, fs := range frames {
		for _, f := range fs {
			if f.sent && strings.Contains(f.data, `"post"`) && strings.Contains(f.data, `"mentions"`) {
				mentions = append(mentions, f.data)
			}
		}
	}
	if len(mentions) != 2 || !strings.Contains(mentions[0], `"mentions":["bob"]`) || !strings.Contains(mentions[1], `"mentions":["carol","bob"]`) {
		t.Errorf("alice's posts with mentions: %q", mentions)
	}
	// Names typed without choosing them are plain text.
	alice.send("@dave is not here")
	alice.lastSeq("team", 3, "alice", "@dave is not here")
	var plain bool
	alice.eval(`!document.querySelector('.room-view[data-room="team"] li.msg:last-child .mention')`, &plain)
	if !plain {
		t.Error("an unchosen @name is shown as a mention")
	}
}

// request sends one request from a Go client and returns its ack's seq.
func request(t *testing.T, ctx context.Context, c *client.Client, what string, env *parleypb.Envelope) int {
	t.Helper()
	ack, err := c.Request(ctx, env)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return int(ack.GetSeq())
}

func editReq(room string, seq int, text string) *parleypb.Envelope {
	return &parleypb.Envelope{Body: &parleypb.Envelope_Edit{Edit: &parleypb.EditMessage{Room: room, Seq: uint64(seq), Text: text, ClientMsgId: client.NewClientMsgID()}}}
}

func deleteReq(room string, seq int) *parleypb.Envelope {
	return &parleypb.Envelope{Body: &parleypb.Envelope_DeleteMessage{DeleteMessage: &parleypb.DeleteMessage{Room: room, Seq: uint64(seq), ClientMsgId: client.NewClientMsgID()}}}
}

func reactReq(room string, seq int, emoji string) *parleypb.Envelope {
	return &parleypb.Envelope{Body: &parleypb.Envelope_React{React: &parleypb.React{Room: room, Seq: uint64(seq), Emoji: emoji, ClientMsgId: client.NewClientMsgID()}}}
}

// TestMessageChangesResumeAndScrollback: messages changed before lee
// joined, older than the events a join replays, show their current
// version when she scrolls back (edited, a tombstone, a reaction), and a
// reply to one of them quotes it as it is now; while her page is cut off
// (the server restarts on the same store), messages she sees are edited,
// deleted and reacted to, and her page applies all of it on resuming.
func TestMessageChangesResumeAndScrollback(t *testing.T) {
	mem := store.NewMemory()
	t.Cleanup(func() { mem.Close() })
	shared := keepOpen{mem}
	first := startServer(t, "127.0.0.1:0", shared)
	addr := first.Addr()
	browser := startBrowser(t, 120*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()

	const total = 120 // more than the 100 events a join replays
	bot := goClient(t, ctx, first, "archivist", "archive")
	seqs := make([]int, total+1)
	for i := 1; i <= total; i++ {
		seqs[i] = int(post(t, ctx, bot, "archive", fmt.Sprintf("entry %d", i)))
		if i == 3 {
			// Early changes, in the part of the log lee reads by scrolling
			// back: the messages there are current, and these changes are
			// not applied again over them.
			request(t, ctx, bot, "draft entry 1", editReq("archive", seqs[1], "entry 1, draft"))
			request(t, ctx, bot, "react to entry 3", reactReq("archive", seqs[3], "🎉"))
		}
	}
	request(t, ctx, bot, "edit entry 1", editReq("archive", seqs[1], "entry 1, corrected"))
	request(t, ctx, bot, "delete entry 2", deleteReq("archive", seqs[2]))
	reply := request(t, ctx, bot, "reply to entry 1", &parleypb.Envelope{Body: &parleypb.Envelope_Post{Post: &parleypb.Post{
		Room: "archive", Text: "see entry 1", ReplyTo: uint64(seqs[1]), ClientMsgId: client.NewClientMsgID()}}})

	lee := openTab(t, browser, "http://"+addr+"/", "lee")
	lee.joinRoom("archive")
	lee.waitChange("archive", "lee joined")
	// The quoted message is older than the replay: the page asks for it.
	lee.waitQuote("archive", reply, "archivist", "entry 1, corrected")

	// Scroll back to the room's start.
	view := roomView("archive")
	count := view + `.querySelectorAll('ol.messages > li[data-seq]').length`
	for range 8 {
		var n int
		var done bool
		lee.eval(fmt.Sprintf(`(() => { const v = %s; v.scrollTop = 0; return !!v.querySelector('.room-start'); })()`, view), &done)
		if done {
			break
		}
		lee.eval(count, &n)
		lee.waitFor("older messages", fmt.Sprintf(`%s > %d || !!%s.querySelector('.room-start')`, count, n, view))
	}
	lee.waitText("archive", seqs[1], "entry 1, corrected")
	lee.waitFor("entry 1 (edited)", fmt.Sprintf(`!%s.hidden`, msgJS("archive", seqs[1], ".msg-edited")))
	lee.waitTombstone("archive", seqs[2])
	lee.waitReaction("archive", seqs[3], "🎉", 1, false)
	lee.waitText("archive", seqs[4], "entry 4")
	if got := lee.messages("archive"); len(got) != total+1 {
		t.Fatalf("lee's page shows %d messages, want %d", len(got), total+1)
	}

	// lee reacts to entry 118, then loses the server.
	lee.react("archive", seqs[118], "👍")
	lee.waitReaction("archive", seqs[118], "👍", 1, true)
	if err := first.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	lee.waitFor("reconnecting", `document.querySelector('#conn').dataset.state !== 'online'`)

	// Meanwhile, on another node of the same store.
	other := startServer(t, "127.0.0.1:0", shared)
	bot = goClient(t, ctx, other, "archivist", "archive")
	request(t, ctx, bot, "edit entry 120", editReq("archive", seqs[120], "entry 120, corrected"))
	request(t, ctx, bot, "delete entry 119", deleteReq("archive", seqs[119]))
	request(t, ctx, bot, "react to entry 118", reactReq("archive", seqs[118], "👍"))
	bot.CloseNow()
	if err := other.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	startServer(t, addr, shared)
	lee.waitFor("reconnected", `document.querySelector('#conn').dataset.state === 'online'`)
	lee.waitText("archive", seqs[120], "entry 120, corrected")
	lee.waitFor("entry 120 (edited)", fmt.Sprintf(`!%s.hidden`, msgJS("archive", seqs[120], ".msg-edited")))
	lee.waitTombstone("archive", seqs[119])
	lee.waitReaction("archive", seqs[118], "👍", 2, true)
	lee.waitText("archive", seqs[117], "entry 117")
	lee.screenshot("resumed-changes")
}
