package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/parleychat/parley/store"
)

// TestTwoUsersChat: two people in two tabs talk in two rooms and see each
// other's messages, typing, presence and unread counts; a third person is a Go
// client. Its screenshot of maya's page is the one in docs/screenshot.png.
func TestTwoUsersChat(t *testing.T) {
	srv := startServer(t, "127.0.0.1:0", nil)
	browser := startBrowser(t, 60*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base := "http://" + srv.Addr() + "/"

	// priya (a Go client) has been around for a while.
	priya := goClient(t, ctx, srv, "priya", "general", "design")
	post(t, ctx, priya, "general", "Morning all! The 2.4 release notes draft is in the shared doc.")
	post(t, ctx, priya, "general", "Biggest change: clients pick up where they left off after a server restart, no gaps and no duplicates.")
	post(t, ctx, priya, "design", "New palette is up for review: darker sidebar, bigger avatars.")

	maya := openTab(t, browser, base, "maya")
	jonas := openTab(t, browser, base, "jonas")

	// Both land in #general, the default room, with its history from its
	// start, and see each other in the room and online; joins are quiet
	// lines between the messages, never empty messages.
	for _, tb := range []*tab{maya, jonas} {
		if got := tb.waitMessages("general", 2); got[0].Sender != "priya" || !strings.HasPrefix(got[0].Text, "Morning all!") {
			t.Fatalf("%s's #general starts with %+v", tb.name, got)
		}
		tb.waitNames("#member-list", "jonas", "maya", "priya")
		tb.waitNames("#online-list", "jonas", "maya", "priya")
		tb.waitChange("general", "jonas joined")
		if got := tb.changes("general"); !slices.Equal(got[:3], []string{"This room was created", "priya joined", "maya joined"}) {
			t.Fatalf("%s's #general shows the changes %q", tb.name, got)
		}
		checkInOrder(t, tb.name, tb.items("general"))
	}

	maya.send("Thanks Priya! I left a few comments on the migration section.")
	if got := jonas.waitMessages("general", 3); got[2].Sender != "maya" || !strings.HasPrefix(got[2].Text, "Thanks Priya!") {
		t.Fatalf("jonas sees %+v", got)
	}

	// Typing shows on the other side, and goes away when the message comes.
	jonas.run("type", chromedp.SendKeys("#composer-input", "Looking now", chromedp.ByID))
	maya.waitFor("jonas typing", `document.querySelector('#typing').textContent === 'jonas is typing…'`)
	jonas.send(", the rollback plan reads well.")
	if got := maya.waitMessages("general", 4); got[3].Text != "Looking now, the rollback plan reads well." {
		t.Fatalf("maya sees %+v", got)
	}
	maya.waitFor("typing indicator cleared", `document.querySelector('#typing').textContent === ''`)

	// Shift+Enter is a new line; Enter sends.
	maya.run("multi-line message",
		chromedp.SendKeys("#composer-input", "Two things before we ship:", chromedp.ByID),
		pressEnter(input.ModifierShift),
		chromedp.SendKeys("#composer-input", "1. staging first", chromedp.ByID),
		pressEnter(input.ModifierShift),
		chromedp.SendKeys("#composer-input", "2. then a 5% canary", chromedp.ByID),
		pressEnter())
	want := "Two things before we ship:\n1. staging first\n2. then a 5% canary"
	if got := jonas.waitMessages("general", 5); got[4].Text != want {
		t.Fatalf("jonas sees %q, want %q", got[4].Text, want)
	}
	maya.waitMessages("general", 5)
	checkInOrder(t, "maya", maya.items("general"))
	checkInOrder(t, "jonas", jonas.items("general"))

	// A second room, which priya is in: listed among the active rooms, and
	// joined from that list (jonas) or by name (maya); its history comes along.
	browse := `document.querySelector('#browse-list li button')`
	jonas.waitFor("#design listed", browse+`?.querySelector('.room-name').textContent === 'design' && `+browse+`.querySelector('.count').textContent === '1 member'`)
	jonas.run("join from the list", chromedp.Click("#browse-list li button", chromedp.ByQuery))
	jonas.waitFor("joined design", roomView("design")+`?.dataset.joined === 'true'`)
	maya.joinRoom("design")
	if got := maya.waitMessages("design", 1); got[0].Sender != "priya" {
		t.Fatalf("maya's #design: %+v", got)
	}
	maya.waitNames("#member-list", "jonas", "maya", "priya")

	// A message in a room maya is not looking at counts as unread.
	maya.showRoom("general")
	jonas.send("Love the darker sidebar. Can we try it on the phone layout too?")
	badge := `document.querySelector('#room-list li[data-room="design"] .badge')`
	maya.waitFor("an unread badge on #design", badge+`.hidden === false && `+badge+`.dataset.count === '1'`)
	post(t, ctx, priya, "general", "Standup in 5 minutes, see you there.")
	maya.waitMessages("general", 6)
	jonas.showRoom("general")
	jonas.run("type", chromedp.SendKeys("#composer-input", "On my way", chromedp.ByID))
	maya.waitFor("jonas typing", `document.querySelector('#typing').textContent === 'jonas is typing…'`)
	maya.screenshot("chat-desktop")
	jonas.screenshot("chat-desktop-jonas")

	// Reading the room clears its count.
	maya.showRoom("design")
	maya.waitFor("#design read", badge+`.hidden`)
	if got := maya.messages("design"); len(got) != 2 || got[1].Sender != "jonas" {
		t.Fatalf("maya's #design: %+v", got)
	}

	// jonas leaves #design: it disappears from his list and he from its members.
	jonas.showRoom("design")
	jonas.run("leave", chromedp.Click("#leave-btn", chromedp.ByID))
	jonas.waitFor("#design gone", `!document.querySelector('#room-list li[data-room="design"]')`)
	maya.waitNames("#member-list", "maya", "priya")
	maya.waitChange("design", "jonas left")

	// jonas closes his tab: he goes offline for maya.
	jonas.close()
	maya.waitNames("#online-list", "maya", "priya")
	maya.showRoom("general")
	maya.waitNames("#member-list", "maya", "priya")
}

// TestMarkupShowsAsText: messages, names and room names that look like HTML
// are shown as the characters they are and run nothing; long ones wrap, on a
// desktop and at phone width.
func TestMarkupShowsAsText(t *testing.T) {
	srv := startServer(t, "127.0.0.1:0", nil)
	browser := startBrowser(t, 60*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	sam := openTab(t, browser, "http://"+srv.Addr()+"/", "sam")
	evil := goClient(t, ctx, srv, `<i>eve</i>`, "general")
	long := strings.Repeat("unbroken", 60)
	payloads := []string{
		`<img src=x onerror="window.__xss=1">`,
		`<b>bold</b>`,
		`<script>window.__xss=2</script>`,
		`&lt;b&gt; entities stay as typed &amp;`,
		long,
	}
	sam.send(payloads[0])
	sam.send(payloads[1])
	// The page's frames cross the browser's network process; the Go
	// client's do not and could overtake them: the order is the test's.
	sam.waitMessages("general", 2)
	post(t, ctx, evil, "general", payloads[2])
	post(t, ctx, evil, "general", payloads[3])
	sam.send(payloads[4])
	got := sam.waitMessages("general", len(payloads))
	for i, m := range got {
		if m.Text != payloads[i] {
			t.Errorf("message %d shows %q, want %q", i+1, m.Text, payloads[i])
		}
	}
	var children []int
	sam.eval(`[...document.querySelectorAll('.room-view[data-room="general"] .msg-text')].map((e) => e.childElementCount)`, &children)
	if slices.ContainsFunc(children, func(n int) bool { return n != 0 }) {
		t.Errorf("message texts have child elements: %v", children)
	}
	sam.waitNames("#member-list", "<i>eve</i>", "sam")
	sam.waitChange("general", "<i>eve</i> joined") // a name in a change line is text too

	// A room whose name is markup.
	sam.joinRoom("<u>x</u>")
	var title string
	sam.eval(`document.querySelector('#room-title').textContent`, &title)
	if title != "# <u>x</u>" {
		t.Errorf("room title %q", title)
	}

	var xss string
	sam.eval(`typeof window.__xss`, &xss)
	if xss != "undefined" {
		t.Errorf("window.__xss is %s: the payload ran", xss)
	}
	var injected int
	sam.eval(`document.querySelectorAll('#app img, #app b, #app script, #app i, #app u').length`, &injected)
	if injected != 0 {
		t.Errorf("%d elements came from user text", injected)
	}

	// Long text wraps: nothing is wider than its pane.
	sam.showRoom("general")
	overflow := `(() => {
		const v = document.querySelector('.room-view[data-room="general"]');
		const wide = [...v.querySelectorAll('.msg-text, .msg-sender')].filter((e) => e.clientWidth > 1 && e.scrollWidth > e.clientWidth + 1); // (1 px: hidden for screen readers)
		return v.scrollWidth > v.clientWidth + 1 || wide.length > 0 || document.documentElement.scrollWidth > window.innerWidth;
	})()`
	var tooWide bool
	sam.eval(overflow, &tooWide)
	if tooWide {
		t.Error("a long message overflows its pane at desktop width")
	}
	sam.screenshot("markup-desktop")

	// Too long for the server (4000 characters): refused with TOO_LONG,
	// shown on the message, and the page stays connected. Too big for a
	// frame (64 KiB): refused by the page before it could cost the socket.
	for _, tc := range []struct{ n int }{{4001}, {70000}} {
		sam.run("paste a long text", chromedp.SetValue("#composer-input", strings.Repeat("x", tc.n), chromedp.ByID),
			chromedp.Focus("#composer-input", chromedp.ByID), pressEnter())
		sam.waitFor(fmt.Sprintf("%d characters refused", tc.n),
			`[...document.querySelectorAll('.pending-list li.failed .msg-status')].some((e) => e.textContent.startsWith('Not sent: That message is too long'))`)
		sam.run("dismiss", chromedp.Click(".pending-list li.failed .link-btn", chromedp.ByQuery))
		sam.waitFor("dismissed", `document.querySelectorAll('.pending-list li').length === 0`)
	}
	sam.waitFor("still connected", `document.querySelector('#conn').dataset.state === 'online'`)
	if got := sam.messages("general"); len(got) != len(payloads) {
		t.Errorf("%d messages after the refused ones, want %d", len(got), len(payloads))
	}

	// Phone width: the sidebar collapses behind the menu button.
	sam.run("phone viewport", chromedp.EmulateViewport(390, 844))
	sam.waitFor("menu button shown", `getComputedStyle(document.querySelector('#menu-toggle')).display !== 'none'`)
	sam.waitFor("sidebar collapsed", `getComputedStyle(document.querySelector('#sidebar')).visibility === 'hidden'`)
	sam.eval(overflow, &tooWide)
	if tooWide {
		t.Error("a long message overflows its pane at phone width")
	}
	sam.screenshot("phone")
	sam.run("open menu", chromedp.Click("#menu-toggle", chromedp.ByID))
	sam.waitFor("sidebar open", `(() => { const r = document.querySelector('#sidebar').getBoundingClientRect();
		return getComputedStyle(document.querySelector('#sidebar')).visibility === 'visible' && r.left >= 0 && r.right <= window.innerWidth; })()`)
	sam.waitFor("menu expanded", `document.querySelector('#menu-toggle').getAttribute('aria-expanded') === 'true'`)
	sam.screenshot("phone-menu")
	sam.run("close menu", chromedp.KeyEvent(kb.Escape))
	sam.waitFor("sidebar closed", `getComputedStyle(document.querySelector('#sidebar')).visibility === 'hidden'`)
}

// TestResumeAfterServerRestart: the server goes away under an open tab;
// meanwhile another client posts (on a second node over the same store),
// and the tab itself sends a message while offline. The server comes back on
// the same address and store; the tab reconnects by itself and shows every
// message exactly once, in seq order, its own offline message included.
func TestResumeAfterServerRestart(t *testing.T) {
	mem := store.NewMemory()
	t.Cleanup(func() { mem.Close() })
	shared := keepOpen{mem}
	first := startServer(t, "127.0.0.1:0", shared)
	addr := first.Addr()
	browser := startBrowser(t, 60*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	alice := openTab(t, browser, "http://"+addr+"/", "alice")
	alice.waitFor("joined #general", roomView("general")+`?.dataset.joined === 'true'`)
	bob := goClient(t, ctx, first, "bob", "general")
	var seen uint64 // the last seq alice saw before the restart
	for i := 1; i <= 3; i++ {
		seen = post(t, ctx, bob, "general", fmt.Sprintf("before the restart %d", i))
	}
	alice.waitMessages("general", 3)

	// The server goes down; the tab notices and starts backing off.
	if err := first.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	alice.waitFor("reconnecting", `document.querySelector('#conn').dataset.state !== 'online'`)
	alice.waitFor("a failed attempt", `Number(document.querySelector('#conn').dataset.attempt) >= 2`)
	alice.send("written while offline")
	alice.waitFor("queued", `document.querySelector('.pending-list li .msg-status')?.textContent === 'Will send when reconnected'`)
	alice.screenshot("restart-offline")

	// bob posts during the outage, through another node on the same store.
	other := startServer(t, "127.0.0.1:0", shared)
	bob2 := goClient(t, ctx, other, "bob", "general")
	for i := 1; i <= 3; i++ {
		post(t, ctx, bob2, "general", fmt.Sprintf("during the outage %d", i))
	}
	if err := other.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}

	// The server is back on the same address; bob posts at once, racing the
	// tab's reconnection, and once more after it.
	second := startServer(t, addr, shared)
	bob3 := goClient(t, ctx, second, "bob", "general")
	post(t, ctx, bob3, "general", "right after the restart")
	alice.waitFor("reconnected", `document.querySelector('#conn').dataset.state === 'online'`)
	alice.waitFor("own message stored", `document.querySelectorAll('.pending-list li').length === 0`)
	alice.waitMessages("general", 8)
	post(t, ctx, bob3, "general", "after the tab is back")
	got := alice.waitMessages("general", 9)
	alice.screenshot("restart-resumed")

	checkInOrder(t, "alice", alice.items("general"))
	var texts []string
	for _, m := range got {
		texts = append(texts, m.Text)
	}
	wantBob := []string{"before the restart 1", "before the restart 2", "before the restart 3",
		"during the outage 1", "during the outage 2", "during the outage 3", "right after the restart", "after the tab is back"}
	var bobs []string
	mine := 0
	for _, m := range got {
		switch m.Sender {
		case "bob":
			bobs = append(bobs, m.Text)
		case "alice":
			mine++
			if m.Text != "written while offline" {
				t.Errorf("alice's message reads %q", m.Text)
			}
		}
	}
	if !slices.Equal(bobs, wantBob) || mine != 1 {
		t.Fatalf("alice's page shows %q; want bob's %q in order and her own message once", texts, wantBob)
	}
	// On the wire: the tab resumed with since = the last seq it had seen,
	// and the new connection carried no event it already had, nor any twice.
	sockets, frames := alice.wsFrames()
	if len(sockets) < 2 {
		t.Fatalf("the page used %d WebSockets, want at least 2", len(sockets))
	}
	var joins []string
	delivered := map[string]int{}
	for _, sock := range sockets[1:] {
		for _, f := range frames[sock] {
			var env struct {
				Join *struct {
					Room  string  `json:"room"`
					Since *string `json:"since"`
				} `json:"join"`
				Event *struct {
					Seq string `json:"seq"`
				} `json:"event"`
				Batch *struct {
					Items []json.RawMessage `json:"items"`
				} `json:"batch"`
			}
			items := []string{f.data}
			if err := json.Unmarshal([]byte(f.data), &env); err == nil && env.Batch != nil {
				items = items[:0]
				for _, it := range env.Batch.Items {
					items = append(items, string(it))
				}
			}
			for _, it := range items {
				env.Join, env.Event = nil, nil
				if err := json.Unmarshal([]byte(it), &env); err != nil {
					t.Fatalf("frame %s: %v", it, err)
				}
				if f.sent && env.Join != nil {
					since := "none"
					if env.Join.Since != nil {
						since = *env.Join.Since
					}
					joins = append(joins, env.Join.Room+" since "+since)
				}
				if !f.sent && env.Event != nil {
					delivered[env.Event.Seq]++
				}
			}
		}
	}
	if want := fmt.Sprintf("general since %d", seen); !slices.Equal(joins, []string{want}) {
		t.Errorf("after the restart the page sent joins %q, want [%s]", joins, want)
	}
	for seq, n := range delivered {
		if s, _ := strconv.ParseUint(seq, 10, 64); s <= seen || n > 1 {
			t.Errorf("after the restart event seq %s came %d times", seq, n)
		}
	}

	stored, err := mem.After(ctx, "general", 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	posts := 0
	for _, m := range stored {
		if len(m.Body) == 0 {
			posts++
		}
	}
	if posts != 9 {
		t.Fatalf("the store holds %d posts, want 9 (the offline post stored once)", posts)
	}
}

// TestHistoryLostOnRestart: the server comes back without its history (an
// in-memory store), so the room's seqs start over below what the tab saw.
// The tab notices, drops what it showed and follows the new history instead
// of waiting for seqs it already had.
func TestHistoryLostOnRestart(t *testing.T) {
	first := startServer(t, "127.0.0.1:0", nil)
	addr := first.Addr()
	browser := startBrowser(t, 60*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	kim := openTab(t, browser, "http://"+addr+"/", "kim")
	bob := goClient(t, ctx, first, "bob", "general")
	for i := 1; i <= 3; i++ {
		post(t, ctx, bob, "general", fmt.Sprintf("old %d", i))
	}
	kim.waitMessages("general", 3)
	if err := first.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	kim.waitFor("reconnecting", `document.querySelector('#conn').dataset.state !== 'online'`)

	second := startServer(t, addr, nil) // a fresh, empty store
	bob2 := goClient(t, ctx, second, "bob", "general")
	post(t, ctx, bob2, "general", "new 1")
	kim.waitFor("reconnected", `document.querySelector('#conn').dataset.state === 'online'`)
	kim.waitFor("old history dropped", roomView("general")+`.querySelector('li.msg .msg-text')?.textContent === 'new 1'`)
	post(t, ctx, bob2, "general", "new 2")
	kim.waitFor("new message shown", roomView("general")+`.querySelectorAll('ol.messages > li.msg').length === 2`)
	got := kim.messages("general")
	checkInOrder(t, "kim", kim.items("general"))
	if got[0].Text != "new 1" || got[1].Text != "new 2" {
		t.Fatalf("kim sees %+v", got)
	}
}

// TestScrollback: scrolling to the top of a long room loads older messages
// until the first one, without duplicates or holes.
func TestScrollback(t *testing.T) {
	srv := startServer(t, "127.0.0.1:0", nil)
	browser := startBrowser(t, 60*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	const total = 160 // more than the 100 events a join replays
	bot := goClient(t, ctx, srv, "archivist", "archive")
	for i := 1; i <= total; i++ {
		post(t, ctx, bot, "archive", fmt.Sprintf("entry %d", i))
	}
	lee := openTab(t, browser, "http://"+srv.Addr()+"/", "lee")
	lee.joinRoom("archive")
	// The log: the room's creation, archivist's join, the entries, lee's join.
	last := total + 3
	lee.waitChange("archive", "lee joined")
	first := lee.items("archive")
	if len(first) != 100 || first[0].Seq != last-99 || first[len(first)-1].Seq != last {
		t.Fatalf("after joining: %d events, seqs %d..%d, want 100, %d..%d", len(first), first[0].Seq, first[len(first)-1].Seq, last-99, last)
	}
	// Scroll up until the room's start shows; each scroll to the top asks for
	// the 50 before the oldest shown.
	view := roomView("archive")
	count := view + `.querySelectorAll('ol.messages > li[data-seq]').length`
	for range last/50 + 2 {
		var n int
		var done bool
		lee.eval(fmt.Sprintf(`(() => { const v = %s; v.scrollTop = 0; return !!v.querySelector('.room-start'); })()`, view), &done)
		if done {
			break
		}
		lee.eval(count, &n)
		lee.waitFor("older messages", fmt.Sprintf(`%s > %d || !!%s.querySelector('.room-start')`, count, n, view))
	}
	got := lee.messages("archive")
	if len(got) != total {
		t.Fatalf("%d messages after scrolling back, want %d", len(got), total)
	}
	checkInOrder(t, "lee", lee.items("archive"))
	for i, m := range got {
		if m.Text != fmt.Sprintf("entry %d", i+1) {
			t.Fatalf("message %d reads %q", i+1, m.Text)
		}
	}
	lee.screenshot("scrollback")
}
