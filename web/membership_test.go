package web_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/store"
)

// Rooms of one's own in the page: a private room and its invitations,
// direct conversations started from the member list, the moderation panel
// of owners and moderators, and refusals shown where they happen. Each
// person is a tab of their own; the servers are real, on 127.0.0.1.

// createRoom uses the sidebar's "Create a room" form.
func (tb *tab) createRoom(room string, private bool, invite string) {
	tb.t.Helper()
	tb.run("fill in the new room "+room, chromedp.SendKeys("#create-input", room, chromedp.ByID))
	if private {
		tb.run("make it private", chromedp.Click("#create-private", chromedp.ByID))
	}
	if invite != "" {
		tb.run("invite "+invite, chromedp.SendKeys("#create-invite", invite, chromedp.ByID))
	}
	tb.run("create "+room, chromedp.Click(`#create-form button[type="submit"]`, chromedp.ByQuery))
}

// openPerson clicks a person in the member list, which opens their panel.
func (tb *tab) openPerson(user string) {
	tb.t.Helper()
	tb.clickJS("open "+user, fmt.Sprintf(`#members li.person[data-user=%s] .person-btn`, jsString(user)))
	tb.waitFor(user+"'s panel", fmt.Sprintf(`!document.querySelector('#person-panel').hidden && document.querySelector('#person-name').textContent === %s`, jsString(user)))
}

// moderateFromPanel presses an action in the open person's panel.
func (tb *tab) moderateFromPanel(action, reason string) {
	tb.t.Helper()
	if reason != "" {
		tb.run("give a reason", chromedp.SendKeys("#mod-reason", reason, chromedp.ByID))
	}
	btn := fmt.Sprintf(`#mod-actions button[data-action=%s]`, jsString(action))
	tb.clickJS(action, btn)
}

// clickJS clicks the element sel selects as soon as there is one, in one
// step in the page: the lists re-render as members and roles change, and
// chromedp.Click, which finds a node and then clicks it, failed with
// "Could not find node" when a re-render came in between.
func (tb *tab) clickJS(what, sel string) {
	tb.t.Helper()
	tb.waitFor(what, fmt.Sprintf(`(() => { const e = document.querySelector(%s); if (!e) return false; e.click(); return true; })()`, jsString(sel)))
}

// roomListed says whether the sidebar's list (your rooms, or other rooms) has room.
func roomListed(list, room string) string {
	return fmt.Sprintf(`!!document.querySelector('#%s li[data-room=' + CSS.escape(%s) + ']')`, list, jsString(room))
}

// toastSays is a condition: a toast on screen contains text.
func toastSays(text string) string {
	return fmt.Sprintf(`[...document.querySelectorAll('#toasts .toast')].some((t) => t.textContent.includes(%s))`, jsString(text))
}

// TestPrivateRoomInvitationAndDirect: alice creates a private room, which
// carol cannot see in her list nor join (the refusal shows under the join
// form); alice invites bob from the member list, bob hears of it, finds
// the room in his list and joins; bob then writes to alice directly from
// the member list, and the conversation shows up on alice's page on its
// own, as "@ bob".
func TestPrivateRoomInvitationAndDirect(t *testing.T) {
	srv := startServer(t, "127.0.0.1:0", nil)
	browser := startBrowser(t, 90*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := "http://" + srv.Addr() + "/"
	alice := openTab(t, browser, base, "alice")
	bob := openTab(t, browser, base, "bob")
	carol := openTab(t, browser, base, "carol")

	alice.createRoom("team", true, "")
	alice.waitFor("in #team", roomView("team")+`?.dataset.joined === 'true' && !`+roomView("team")+`.hidden`)
	alice.waitChange("team", "alice created this private room")
	alice.waitFor("the header says private", `document.querySelector('#room-title').textContent === '# team' && !document.querySelector('#room-kind').hidden`)
	// Taking a name that is taken is refused, in the form.
	bob.createRoom("team", false, "")
	bob.waitFor("the refusal", `document.querySelector('#create-error').textContent === 'Could not create #team: That room name is taken: the room "team" exists'`)

	// carol's list, asked after team exists, does not have it; joining it
	// by name is refused, and says why.
	other := goClient(t, ctx, srv, "dora", "open")
	post(t, ctx, other, "open", "anyone may come in")
	carol.joinRoom("plaza")
	carol.waitFor("the public room listed", roomListed("browse-list", "open"))
	var listed bool
	carol.eval(roomListed("browse-list", "team"), &listed)
	if listed {
		t.Fatal("a private room is listed to a non-member")
	}
	carol.run("join team by name", chromedp.SendKeys("#join-input", "team", chromedp.ByID), pressEnter())
	carol.waitFor("the refusal under the form", `document.querySelector('#join-error').textContent.startsWith('Could not join #team: You are not allowed to do that: this room is private')`)
	carol.waitFor("team not joined", `!`+roomListed("room-list", "team"))

	// alice invites bob from the member list of team.
	alice.waitFor("the invite form", `!document.querySelector('#invite-form').hidden`)
	alice.run("invite bob", chromedp.SendKeys("#invite-input", "bob", chromedp.ByID), chromedp.Click(`#invite-form button[type="submit"]`, chromedp.ByQuery))
	alice.waitFor("bob invited", `document.querySelector('#invite-status').textContent === 'Invited bob.'`)
	alice.waitNames("#member-invited", "bob")
	alice.waitChange("team", "alice invited bob")
	bob.waitFor("told of the invitation", toastSays("You were invited to #team"))
	bob.waitFor("team listed as an invitation", roomListed("browse-list", "team")+` && document.querySelector('#browse-list li[data-room="team"] .tag').textContent === 'invited'`)
	bob.screenshot("invited")
	bob.run("join from the list", chromedp.Click(`#browse-list li[data-room="team"] button`, chromedp.ByQuery))
	bob.waitFor("in #team", roomView("team")+`?.dataset.joined === 'true'`)
	alice.waitChange("team", "bob joined")
	alice.waitNames("#member-list", "alice", "bob")
	bob.send("Thanks for the invite!")
	if got := alice.waitMessages("team", 1); got[0].Sender != "bob" {
		t.Fatalf("alice's #team: %+v", got)
	}
	checkInOrder(t, "alice", alice.items("team"))
	alice.screenshot("private-room")

	// bob writes to alice directly, from the member list.
	bob.openPerson("alice")
	var tools bool
	bob.eval(`!document.querySelector('#mod-tools').hidden`, &tools)
	if tools {
		t.Error("a member is offered moderation of the owner")
	}
	bob.run("write to alice", chromedp.SendKeys("#dm-input", "Got a minute?", chromedp.ByID), pressEnter())
	bob.waitFor("the conversation on screen", `document.querySelector('#room-title').textContent === '@ alice'`)
	dm := `document.querySelector('#room-list li[data-kind="direct"]')`
	var room string
	bob.eval(dm+`.dataset.room`, &room)
	if !strings.HasPrefix(room, "@") {
		t.Fatalf("the direct room is %q", room)
	}
	bob.waitMessages(room, 1)
	// The badge is the server's unread count, events after alice's cursor:
	// the conversation's start and bob's message.
	alice.waitFor("the conversation in alice's list, unread", dm+`?.querySelector('.room-name').textContent === 'bob' && `+dm+`.querySelector('.badge').dataset.count === '2'`)
	alice.run("open it", chromedp.Click(`#room-list li[data-kind="direct"] button`, chromedp.ByQuery))
	if got := alice.waitMessages(room, 1); got[0].Sender != "bob" || got[0].Text != "Got a minute?" {
		t.Fatalf("alice's conversation: %+v", got)
	}
	alice.waitChange(room, "bob started this conversation")
	alice.send("Sure.")
	bob.waitMessages(room, 2)
	alice.screenshot("direct")
}

// TestModerationPanel: the owner of a public room makes carol a
// moderator; a member is offered no moderation, a moderator none over the
// owner; carol mutes bob, whose message is refused on screen; alice bans
// bob with a reason, which everyone reads as a quiet line and bob as the
// reason he is out; after reconnecting (a reload) bob cannot join again,
// and the page says why.
func TestModerationPanel(t *testing.T) {
	srv := startServer(t, "127.0.0.1:0", nil)
	browser := startBrowser(t, 90*time.Second)
	base := "http://" + srv.Addr() + "/"
	alice := openTab(t, browser, base, "alice")
	bob := openTab(t, browser, base, "bob")
	carol := openTab(t, browser, base, "carol")

	alice.createRoom("club", false, "")
	alice.waitFor("in #club", roomView("club")+`?.dataset.joined === 'true'`)
	bob.joinRoom("club")
	carol.joinRoom("club")
	alice.waitNames("#member-list", "alice", "bob", "carol")

	alice.openPerson("carol")
	alice.moderateFromPanel("SET_ROLE", "")
	for _, tb := range []*tab{alice, bob, carol} {
		tb.waitChange("club", "alice made carol a moderator")
	}
	carol.waitFor("carol's role shown", `document.querySelector('#member-list li[data-user="carol"] .role')?.textContent === 'moderator'`)

	// What each may do, as the panel offers it.
	noTools := func(tb *tab, user string) {
		t.Helper()
		tb.openPerson(user)
		var shown bool
		tb.eval(`!document.querySelector('#mod-tools').hidden`, &shown)
		if shown {
			t.Errorf("%s is offered moderation of %s", tb.name, user)
		}
	}
	noTools(bob, "alice")
	noTools(bob, "carol")
	noTools(carol, "alice")

	// A moderator mutes bob: his message is refused, on the message.
	carol.openPerson("bob")
	carol.moderateFromPanel("MUTE", "calm down")
	for _, tb := range []*tab{alice, bob, carol} {
		tb.waitChange("club", "bob was muted by carol: calm down")
	}
	bob.send("WHY")
	bob.waitFor("the refusal on the message", `[...document.querySelectorAll('.pending-list li.failed .msg-status')].some((e) => e.textContent.startsWith('Not sent: You are muted in that room'))`)
	bob.screenshot("muted")

	// The owner bans bob, with a reason.
	alice.openPerson("bob")
	alice.moderateFromPanel("BAN", "spam")
	for _, tb := range []*tab{alice, carol} {
		tb.waitChange("club", "bob was banned by alice: spam")
	}
	bob.waitFor("bob told why", toastSays("You are no longer in #club: you were banned by alice: spam"))
	bob.waitFor("#club gone", `!`+roomListed("room-list", "club"))
	bob.screenshot("banned")
	alice.waitNames("#member-banned", "bob")
	var offered []string
	alice.eval(`[...document.querySelectorAll('#mod-actions button')].map((b) => b.dataset.action)`, &offered)
	if fmt.Sprint(offered) != "[UNBAN]" {
		t.Errorf("for a banned user the owner is offered %v, want [UNBAN]", offered)
	}
	carol.waitNames("#member-list", "alice", "carol")
	alice.screenshot("moderation")

	// bob reconnects (a reload) and tries to come back.
	bob.run("reload", chromedp.Reload())
	bob.waitFor("connected again", `document.querySelector('#conn').dataset.state === 'online'`)
	bob.run("join club", chromedp.SendKeys("#join-input", "club", chromedp.ByID), pressEnter())
	bob.waitFor("the refusal under the form", `document.querySelector('#join-error').textContent.startsWith('Could not join #club: You are banned from that room: you are banned from this room for good')`)
	bob.waitFor("#club not joined", `!`+roomListed("room-list", "club"))
	bob.screenshot("banned-rejoin")
}

// TestBannedWhileAway: bob's tab is in #club when the server goes down;
// while it is down the owner bans him through another node on the same
// store. When the server is back, bob's tab reconnects and resumes
// #general, but #club refuses him: it leaves his list with the reason,
// and stays out of it.
func TestBannedWhileAway(t *testing.T) {
	mem := store.NewMemory()
	t.Cleanup(func() { mem.Close() })
	shared := keepOpen{mem}
	first := startServer(t, "127.0.0.1:0", shared)
	addr := first.Addr()
	browser := startBrowser(t, 90*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	olga := goClient(t, ctx, first, "olga")
	if _, err := olga.Request(ctx, &parleypb.Envelope{Body: &parleypb.Envelope_CreateRoom{CreateRoom: &parleypb.CreateRoom{Room: "club", Kind: parleypb.RoomKind_ROOM_KIND_PUBLIC}}}); err != nil {
		t.Fatal(err)
	}
	bob := openTab(t, browser, "http://"+addr+"/", "bob")
	bob.joinRoom("club")
	if err := first.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	bob.waitFor("reconnecting", `document.querySelector('#conn').dataset.state !== 'online'`)

	other := startServer(t, "127.0.0.1:0", shared)
	olga = goClient(t, ctx, other, "olga")
	if _, err := olga.Request(ctx, &parleypb.Envelope{Body: &parleypb.Envelope_Moderate{Moderate: &parleypb.Moderate{
		Room: "club", User: "bob", Action: parleypb.ModAction_MOD_ACTION_BAN, Reason: "rude"}}}); err != nil {
		t.Fatal(err)
	}
	olga.CloseNow()
	if err := other.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	second := startServer(t, addr, shared)
	bob.waitFor("reconnected", `document.querySelector('#conn').dataset.state === 'online'`)
	bob.waitFor("the refusal", toastSays("Could not join #club: You are banned from that room"))
	bob.waitFor("#club gone", `!`+roomListed("room-list", "club"))
	bob.waitFor("#general resumed", roomView("general")+`?.dataset.joined === 'true'`)
	// Nor does a second look get him in: the list does not offer it.
	dora := goClient(t, ctx, second, "dora", "general")
	post(t, ctx, dora, "general", "where is bob?")
	bob.waitMessages("general", 1)
	var listed bool
	bob.eval(roomListed("browse-list", "club"), &listed)
	if listed {
		t.Error("a room bob is banned from is offered to him")
	}
}
