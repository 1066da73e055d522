package web_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/parleychat/parley/client"
	parleypb "github.com/parleychat/parley/proto"
)

// Unread and mention badges from the server's read cursors: one user on
// two browser contexts (two devices) sees the same badges, reading on one
// clears the other's, and a reload shows the server's state.

// badgeJS is a JavaScript expression for a room's unread badge in the sidebar.
func badgeJS(room string) string {
	return fmt.Sprintf(`document.querySelector('#room-list li[data-room=' + CSS.escape(%s) + '] .badge')`, jsString(room))
}

// waitBadge waits until room's badge shows unread events, mentions of
// them mentioning us (0 unread: no badge at all).
func (tb *tab) waitBadge(room string, unread, mentions int) {
	tb.t.Helper()
	b := badgeJS(room)
	cond := fmt.Sprintf(`%[1]s?.hidden === true && %[1]s.dataset.count === '0' && !%[1]s.classList.contains('mentioned')`, b)
	if unread > 0 {
		cond = fmt.Sprintf(`%[1]s?.hidden === false && %[1]s.dataset.count === '%[2]d' && %[1]s.dataset.mentions === '%[3]d' && %[1]s.classList.contains('mentioned') === %[4]t`,
			b, unread, mentions, mentions > 0)
	}
	tb.waitFor(fmt.Sprintf("%s's badge: %d unread, %d mentions", room, unread, mentions), cond)
}

// waitReadSeq waits until the page knows the server's read cursor in room to be seq.
func (tb *tab) waitReadSeq(room string, seq int) {
	tb.t.Helper()
	tb.waitFor(fmt.Sprintf("the read cursor in %s at %d", room, seq),
		fmt.Sprintf(`document.querySelector('#room-list li[data-room=' + CSS.escape(%s) + ']')?.dataset.readSeq === '%d'`, jsString(room), seq))
}

// markReads counts the markRead requests the page sent for room.
func (tb *tab) markReads(room string) int {
	_, frames := tb.wsFrames()
	n := 0
	for _, fs := range frames {
		for _, f := range fs {
			if f.sent && strings.Contains(f.data, `"markRead"`) && strings.Contains(f.data, fmt.Sprintf(`"room":%s`, jsString(room))) {
				n++
			}
		}
	}
	return n
}

// TestUnreadBadgesAcrossDevices: alice has the page open on two devices
// (browser contexts), both looking at #general. bob posts in #news, once
// mentioning her (a structured mention): both pages show #news's badge
// with the count and "@". She opens #news on one: the other's badge clears
// without a reload. A burst of posts while she reads costs a few markRead
// requests, not one per message. After a reload the badge is the server's:
// an unread room shows it, a read one does not.
func TestUnreadBadgesAcrossDevices(t *testing.T) {
	srv := startServer(t, "127.0.0.1:0", nil)
	browser := startBrowser(t, 150*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	base := "http://" + srv.Addr() + "/"
	bob := goClient(t, ctx, srv, "bob", "news")
	post(t, ctx, bob, "news", "first news")

	laptop := openTab(t, browser, base, "alice")
	laptop.joinRoom("news")
	laptop.waitMessages("news", 1)
	// The phone is a new device: it lists #news because alice is a member
	// (the server's word at hello), not because this browser joined it.
	phone := openTab(t, browser, base, "alice")
	phone.waitFor("#news among alice's rooms on a new device", roomListed("room-list", "news"))
	phone.showRoom("news")
	phone.waitMessages("news", 1)
	for _, tb := range []*tab{laptop, phone} {
		tb.showRoom("general")
		tb.waitBadge("news", 0, 0)
		var state string
		tb.eval(`document.visibilityState`, &state)
		if state != "visible" {
			t.Fatalf("%s's page is %s: the test needs both pages visible", tb.name, state)
		}
	}
	// Reading #news on both marked it read up to its last seq.
	for _, tb := range []*tab{laptop, phone} {
		tb.waitFor("#news read", `(() => { const li = document.querySelector('#room-list li[data-room="news"]'); return li.dataset.readSeq !== '0' && li.dataset.readSeq === li.dataset.lastSeq; })()`)
	}

	// bob posts twice, mentioning alice the second time.
	post(t, ctx, bob, "news", "plain news")
	request(t, ctx, bob, "mention alice", &parleypb.Envelope{Body: &parleypb.Envelope_Post{Post: &parleypb.Post{
		Room: "news", Text: "@alice look at this", Mentions: []string{"alice"}, ClientMsgId: client.NewClientMsgID()}}})
	for _, tb := range []*tab{laptop, phone} {
		tb.waitBadge("news", 2, 1)
		tb.waitFor("the '@' on the badge", badgeJS("news")+`.textContent === '@2 unread, 1 mentioning you'`)
		tb.waitFor("the title counts it", `document.title.startsWith('(2) ')`)
	}
	phone.screenshot("unread-badges")
	phone.eval(`window.notReloaded = true`, nil)

	// alice reads #news on her laptop: the phone's badge clears.
	laptop.showRoom("news")
	laptop.waitMessages("news", 3)
	laptop.waitBadge("news", 0, 0)
	phone.waitBadge("news", 0, 0)
	phone.waitFor("the phone not reloaded", `window.notReloaded === true`)
	last := laptop.lastSeq("news", 3, "bob", "@alice look at this")
	phone.waitReadSeq("news", last)

	// A burst while she reads: a few markReads, not one per message.
	before := laptop.markReads("news")
	const burst = 30
	for i := range burst {
		post(t, ctx, bob, "news", fmt.Sprintf("burst %d", i))
	}
	last = laptop.lastSeq("news", 3+burst, "bob", fmt.Sprintf("burst %d", burst-1))
	phone.waitReadSeq("news", last)
	phone.waitBadge("news", 0, 0)
	if n := laptop.markReads("news") - before; n < 1 || n > burst/3 {
		t.Errorf("the laptop sent %d markRead requests for %d messages read as they came; want a few", n, burst)
	} else {
		t.Logf("%d markRead requests for %d messages", n, burst)
	}

	// An unread room after a reload: the server's count.
	laptop.showRoom("general")
	post(t, ctx, bob, "news", "while you were away")
	phone.waitBadge("news", 1, 0)
	laptop.waitBadge("news", 1, 0)
	phone.run("reload", chromedp.Reload())
	phone.waitFor("connected again", `document.querySelector('#conn').dataset.state === 'online' && `+roomView("news")+`?.dataset.joined === 'true'`)
	phone.waitReadSeq("news", last)
	phone.waitBadge("news", 1, 0)
	phone.waitBadge("general", 0, 0)

	// Read on the phone this time; the laptop clears, and after a reload
	// the laptop shows #news read.
	phone.showRoom("news")
	phone.waitBadge("news", 0, 0)
	laptop.waitBadge("news", 0, 0)
	laptop.waitReadSeq("news", last+1)
	laptop.run("reload", chromedp.Reload())
	laptop.waitFor("connected again", `document.querySelector('#conn').dataset.state === 'online' && `+roomView("news")+`?.dataset.joined === 'true'`)
	laptop.waitReadSeq("news", last+1)
	laptop.waitBadge("news", 0, 0)
	laptop.screenshot("unread-after-reload")
}
