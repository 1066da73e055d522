package web_test

import (
	"fmt"
	"testing"
	"time"
)

// TestReadReceipts: a room's owner turns read receipts on (members who are
// not moderators are not offered the switch); then a member's message shows
// "Seen by" the others once they have read it, on the sender's page, live;
// turned off, the marks go.
func TestReadReceipts(t *testing.T) {
	srv := startServer(t, "127.0.0.1:0", nil)
	browser := startBrowser(t, 120*time.Second)
	base := "http://" + srv.Addr() + "/"
	alice := openTab(t, browser, base, "alice")
	bob := openTab(t, browser, base, "bob")

	alice.createRoom("club", false, "")
	alice.waitFor("in #club", roomView("club")+`?.dataset.joined === 'true'`)
	bob.joinRoom("club")
	bob.waitFor("bob in #club", roomView("club")+`?.dataset.joined === 'true'`)
	bob.waitFor("no switch for a member", `document.querySelector('#receipts-toggle').hidden`)

	alice.waitFor("the owner's switch", `!document.querySelector('#receipts-toggle').hidden && document.querySelector('#receipts-toggle').getAttribute('aria-pressed') === 'false'`)
	alice.clickJS("turn read receipts on", "#receipts-toggle")
	alice.waitFor("the switch on", `document.querySelector('#receipts-toggle').getAttribute('aria-pressed') === 'true'`)
	bob.waitChange("club", "Read receipts are now on (set by alice)")

	bob.send("did you see this?")
	// alice has #club open: she reads it, and bob's page says so.
	seenBy := func(text, who string) string {
		return fmt.Sprintf(`[...(%s?.querySelectorAll('li.msg') ?? [])].some((li) => li.querySelector('.msg-text')?.textContent === %s && li.querySelector('.msg-seen')?.textContent === %s)`,
			roomView("club"), jsString(text), jsString("Seen by "+who))
	}
	bob.waitFor("seen by alice", seenBy("did you see this?", "alice"))
	bob.screenshot("read-receipts")

	alice.clickJS("turn read receipts off", "#receipts-toggle")
	bob.waitChange("club", "Read receipts are now off (set by alice)")
	bob.waitFor("the marks gone", `!document.querySelector('.msg-seen')`)
}
