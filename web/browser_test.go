package web_test

// Browser tests: a real Parley server on 127.0.0.1 and Debian's Chromium,
// headless, driven with chromedp. Each test starts its own browser; each user
// gets a browser context of their own (separate storage, as two people on two
// machines). Waiting is always polling the DOM against a deadline.

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/cdproto/target"
	"github.com/chromedp/chromedp"

	"github.com/parleychat/parley/client"
	"github.com/parleychat/parley/internal/testenv"
	"github.com/parleychat/parley/proto/codec"
	"github.com/parleychat/parley/server"
	"github.com/parleychat/parley/store"
)

const chromiumPath = "/usr/bin/chromium"

var screenshotDir = filepath.Join("testdata", "screenshots")

// ------------------------------------------------------------------ server

// startServer runs a server with a test-friendly rate limit; Cleanup shuts it
// down (again: Shutdown is idempotent).
func startServer(t *testing.T, addr string, st store.Store) *server.Server {
	t.Helper()
	cfg := server.Config{Addr: addr, Store: st, Logger: testLogger(t)}
	cfg.Actors.Rate = 1000
	cfg.Actors.Burst = 1000
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatalf("start server: %v", err)
	}
	srv.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return srv
}

// testLogger sends server logs at warn and above to t.Log while the test runs.
func testLogger(t *testing.T) *slog.Logger { return testenv.Logger(t, slog.LevelWarn) }

// keepOpen is a store that survives its server: Shutdown closes the store,
// and a restarted server must find the same history.
type keepOpen struct{ store.Store }

func (keepOpen) Close() error { return nil }

// goClient logs a native JSON client in and joins rooms.
func goClient(t *testing.T, ctx context.Context, srv *server.Server, name string, rooms ...string) *client.Client {
	t.Helper()
	c, err := client.Dial(ctx, srv.URL(), codec.JSON, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(c.CloseNow)
	if err := c.Hello(ctx, name, false); err != nil {
		t.Fatalf("%s hello: %v", name, err)
	}
	for _, r := range rooms {
		if _, err := c.Join(ctx, r, nil); err != nil {
			t.Fatalf("%s join %s: %v", name, r, err)
		}
	}
	return c
}

func post(t *testing.T, ctx context.Context, c *client.Client, room, text string) uint64 {
	t.Helper()
	seq, err := c.Post(ctx, room, text, fmt.Sprintf("go-%d", time.Now().UnixNano()))
	if err != nil {
		t.Fatalf("post %q: %v", text, err)
	}
	return seq
}

// ------------------------------------------------------------------ browser

// startBrowser launches headless Chromium with a fresh profile; the returned
// context lives until the test ends or timeout passes.
func startBrowser(t *testing.T, timeout time.Duration) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("Chromium is missing (%v). The browser tests drive Debian's Chromium at %s: run ./test.sh, which installs it (apt-get install -y chromium)", err, chromiumPath)
	}
	if err := os.MkdirAll(screenshotDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Chromium's helper processes may still be writing to the profile
	// for a moment after the browser exits: remove it patiently (this
	// cleanup runs after the browser's, which is registered later).
	profile, err := os.MkdirTemp("", "parley-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for range 50 {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("could not remove Chromium's profile %s", profile)
	})
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1280, 800),
	)
	t.Cleanup(cancelAlloc)
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx)
	t.Cleanup(cancelBrowser)
	if err := chromedp.Run(browserCtx); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return browserCtx
}

// tab is one user's page, in a browser context of its own.
type tab struct {
	t    *testing.T
	ctx  context.Context
	name string

	close func() // closes the tab and its browser context

	mu     sync.Mutex
	errors []string  // uncaught exceptions and console.error calls
	frames []wsFrame // WebSocket frames, as Chromium saw them
}

// wsFrame is one WebSocket text frame the page sent or received.
type wsFrame struct {
	socket string // one id per WebSocket the page opened
	sent   bool
	data   string
}

// openTab opens the page in a new tab and signs in with name.
func openTab(t *testing.T, browserCtx context.Context, url, name string) *tab {
	t.Helper()
	tb := newTab(t, browserCtx, name)
	tb.run("open the page", chromedp.EmulateViewport(1280, 800), chromedp.Navigate(url), chromedp.WaitVisible("#name-input", chromedp.ByID))
	tb.run("sign in",
		chromedp.SendKeys("#name-input", name, chromedp.ByID),
		chromedp.Click(`#login-form button[type="submit"]`, chromedp.ByQuery))
	tb.waitFor("connected", `document.querySelector('#conn').dataset.state === 'online'`)
	t.Cleanup(tb.checkErrors)
	return tb
}

// newTab opens a blank tab in a browser context of its own, recording
// its errors and WebSocket frames.
func newTab(t *testing.T, browserCtx context.Context, name string) *tab {
	t.Helper()
	// A browser context of its own, in a new window: this Chromium refuses
	// to open a tab in a new context without one ("no browser is open"),
	// which is what chromedp.WithNewBrowserContext asks for.
	var bcID cdp.BrowserContextID
	var targetID target.ID
	err := chromedp.Run(browserCtx, chromedp.ActionFunc(func(ctx context.Context) error {
		browser := cdp.WithExecutor(ctx, chromedp.FromContext(ctx).Browser)
		var err error
		if bcID, err = target.CreateBrowserContext().WithDisposeOnDetach(true).Do(browser); err != nil {
			return err
		}
		targetID, err = target.CreateTarget("about:blank").WithBrowserContextID(bcID).
			WithNewWindow(true).WithWidth(1280).WithHeight(800).Do(browser)
		return err
	}))
	if err != nil {
		t.Fatalf("open a tab for %s: %v", name, err)
	}
	ctx, cancel := chromedp.NewContext(browserCtx, chromedp.WithTargetID(targetID))
	closeTab := func() {
		cancel()
		chromedp.Run(browserCtx, chromedp.ActionFunc(func(ctx context.Context) error {
			return target.DisposeBrowserContext(bcID).Do(cdp.WithExecutor(ctx, chromedp.FromContext(ctx).Browser))
		}))
	}
	t.Cleanup(closeTab)
	tb := &tab{t: t, ctx: ctx, name: name, close: closeTab}
	chromedp.ListenTarget(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			tb.addError("exception: " + ev.ExceptionDetails.Error())
		case *network.EventWebSocketFrameSent:
			tb.addFrame(wsFrame{socket: string(ev.RequestID), sent: true, data: ev.Response.PayloadData})
		case *network.EventWebSocketFrameReceived:
			tb.addFrame(wsFrame{socket: string(ev.RequestID), data: ev.Response.PayloadData})
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.APITypeError {
				var parts []string
				for _, a := range ev.Args {
					parts = append(parts, string(a.Value))
				}
				tb.addError("console.error: " + strings.Join(parts, " "))
			}
		}
	})
	return tb
}

func (tb *tab) addFrame(f wsFrame) {
	tb.mu.Lock()
	tb.frames = append(tb.frames, f)
	tb.mu.Unlock()
}

// wsFrames returns the frames so far, by socket in the order the page opened them.
func (tb *tab) wsFrames() (sockets []string, frames map[string][]wsFrame) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	frames = make(map[string][]wsFrame)
	for _, f := range tb.frames {
		if _, ok := frames[f.socket]; !ok {
			sockets = append(sockets, f.socket)
		}
		frames[f.socket] = append(frames[f.socket], f)
	}
	return sockets, frames
}

func (tb *tab) addError(s string) {
	tb.mu.Lock()
	tb.errors = append(tb.errors, s)
	tb.mu.Unlock()
}

// checkErrors fails the test if the page threw or logged an error.
func (tb *tab) checkErrors() {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	for _, e := range tb.errors {
		tb.t.Errorf("%s's page: %s", tb.name, e)
	}
}

func (tb *tab) run(what string, actions ...chromedp.Action) {
	tb.t.Helper()
	if err := chromedp.Run(tb.ctx, actions...); err != nil {
		tb.fail("%s: %v", what, err)
	}
}

// fail saves a screenshot of the page for the post-mortem, then fails.
func (tb *tab) fail(format string, args ...any) {
	tb.t.Helper()
	msg := fmt.Sprintf(format, args...)
	var buf []byte
	sctx, cancel := context.WithTimeout(tb.ctx, 5*time.Second)
	defer cancel()
	file := filepath.Join(screenshotDir, strings.ReplaceAll(fmt.Sprintf("FAILED-%s-%s.png", tb.t.Name(), tb.name), "/", "_"))
	if err := chromedp.Run(sctx, chromedp.CaptureScreenshot(&buf)); err == nil {
		if os.WriteFile(file, buf, 0o644) == nil {
			msg += " (screenshot: " + file + ")"
		}
	}
	// The last frames on the wire usually tell whose bug it is.
	tb.mu.Lock()
	frames := tb.frames[max(0, len(tb.frames)-40):]
	tb.mu.Unlock()
	for _, f := range frames {
		dir := "<"
		if f.sent {
			dir = ">"
		}
		tb.t.Logf("%s's socket %s %s %.400s", tb.name, f.socket, dir, f.data)
	}
	tb.t.Fatalf("%s's page: %s", tb.name, msg)
}

// waitFor polls a JavaScript condition until it holds, for up to 20 s.
func (tb *tab) waitFor(what, cond string) {
	tb.t.Helper()
	ctx, cancel := context.WithTimeout(tb.ctx, 20*time.Second)
	defer cancel()
	var ok bool
	err := chromedp.Run(ctx, chromedp.Poll("!!("+cond+")", &ok,
		chromedp.WithPollingInterval(40*time.Millisecond), chromedp.WithPollingTimeout(20*time.Second)))
	if err != nil {
		tb.fail("waiting for %s: %v", what, err)
	}
}

func (tb *tab) eval(expr string, res any) {
	tb.t.Helper()
	tb.run("evaluate "+expr, chromedp.Evaluate(expr, res))
}

// screenshot saves the viewport as testdata/screenshots/name.png.
func (tb *tab) screenshot(name string) {
	tb.t.Helper()
	var buf []byte
	tb.run("screenshot", chromedp.CaptureScreenshot(&buf))
	if err := os.WriteFile(filepath.Join(screenshotDir, name+".png"), buf, 0o644); err != nil {
		tb.t.Fatal(err)
	}
}

// send types text into the composer and presses Enter, which sends.
func (tb *tab) send(text string) {
	tb.t.Helper()
	tb.run("send "+text, chromedp.SendKeys("#composer-input", text, chromedp.ByID), pressEnter())
}

// pressEnter presses Enter in the focused element as a person does: one
// keyDown carrying the text "\r", so that a page that cancels the keydown
// gets no newline. (chromedp's kb.Enter sends the text in a separate "char"
// event, which Chromium inserts even when the keydown was cancelled.)
func pressEnter(modifiers ...input.Modifier) chromedp.Action {
	return chromedp.ActionFunc(func(ctx context.Context) error {
		var mod input.Modifier
		for _, m := range modifiers {
			mod |= m
		}
		down := input.DispatchKeyEvent(input.KeyDown).WithKey("Enter").WithCode("Enter").
			WithWindowsVirtualKeyCode(13).WithNativeVirtualKeyCode(13).WithText("\r").WithUnmodifiedText("\r").WithModifiers(mod)
		if err := down.Do(ctx); err != nil {
			return err
		}
		return input.DispatchKeyEvent(input.KeyUp).WithKey("Enter").WithCode("Enter").
			WithWindowsVirtualKeyCode(13).WithNativeVirtualKeyCode(13).WithModifiers(mod).Do(ctx)
	})
}

// joinRoom uses the "Join or create a room" form and waits for the join's ack.
func (tb *tab) joinRoom(room string) {
	tb.t.Helper()
	tb.run("join "+room, chromedp.SendKeys("#join-input", room, chromedp.ByID), pressEnter())
	tb.waitFor("joined "+room, fmt.Sprintf(`%s?.dataset.joined === 'true'`, roomView(room)))
}

// showRoom clicks the room in the sidebar.
func (tb *tab) showRoom(room string) {
	tb.t.Helper()
	tb.run("show "+room, chromedp.Click(fmt.Sprintf(`#room-list li[data-room=%s] button`, jsString(room)), chromedp.ByQuery))
	tb.waitFor("room "+room+" on screen", fmt.Sprintf(`!%s.hidden`, roomView(room)))
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// roomView is a JavaScript expression for a room's message pane.
func roomView(room string) string {
	return fmt.Sprintf(`document.querySelector('.room-view[data-room=' + CSS.escape(%s) + ']')`, jsString(room))
}

type shownMsg struct {
	Seq    int    `json:"seq"`
	Sender string `json:"sender"`
	Text   string `json:"text"`
}

// messages reads a room's stored messages from the DOM, in page order.
func (tb *tab) messages(room string) []shownMsg {
	tb.t.Helper()
	var out []shownMsg
	tb.eval(fmt.Sprintf(`[...%s.querySelectorAll('ol.messages:not(.pending-list) > li.msg')].map((li) => ({
		seq: Number(li.dataset.seq), sender: li.dataset.sender, text: li.querySelector('.msg-text').textContent}))`, roomView(room)), &out)
	return out
}

// shownItem is one event of a room's log on the page: a message
// (li.msg) or a change to the room, shown as a quiet line (li.sys).
type shownItem struct {
	Seq    int    `json:"seq"`
	Change string `json:"change"` // the ChangeKind's name; "" for a message
	Text   string `json:"text"`
}

// items reads a room's log from the DOM, messages and changes, in page order.
func (tb *tab) items(room string) []shownItem {
	tb.t.Helper()
	var out []shownItem
	tb.eval(fmt.Sprintf(`[...%s.querySelectorAll('ol.messages:not(.pending-list) > li[data-seq]')].map((li) => ({
		seq: Number(li.dataset.seq), change: li.dataset.change ?? '', text: li.querySelector('.msg-text, .sys-text').textContent}))`, roomView(room)), &out)
	return out
}

// changes reads a room's change lines, as shown.
func (tb *tab) changes(room string) []string {
	tb.t.Helper()
	var out []string
	for _, it := range tb.items(room) {
		if it.Change != "" {
			out = append(out, it.Text)
		}
	}
	return out
}

// waitChange waits until the room shows a change line reading text.
func (tb *tab) waitChange(room, text string) {
	tb.t.Helper()
	tb.waitFor(fmt.Sprintf("%q in %s", text, room), fmt.Sprintf(`[...(%s?.querySelectorAll('li.sys .sys-text') ?? [])].some((e) => e.textContent === %s)`, roomView(room), jsString(text)))
}

// waitMessages waits until the room shows n messages.
func (tb *tab) waitMessages(room string, n int) []shownMsg {
	tb.t.Helper()
	tb.waitFor(fmt.Sprintf("%d messages in %s", n, room),
		fmt.Sprintf(`%s?.querySelectorAll('ol.messages:not(.pending-list) > li.msg').length >= %d`, roomView(room), n))
	return tb.messages(room)
}

func (tb *tab) waitNames(sel string, want ...string) {
	tb.t.Helper()
	tb.waitFor(fmt.Sprintf("%s to list %v", sel, want),
		fmt.Sprintf(`JSON.stringify([...document.querySelectorAll(%s)].map((li) => li.dataset.user)) === %s`,
			jsString(sel+" li.person"), jsString(mustJSON(want))))
}

// mustJSON is JSON.stringify's output for v (no HTML escaping of < and >).
func mustJSON(v any) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(err)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// checkInOrder fails unless a room's log on the page, messages and changes
// together, has the seqs 1..len(items), once each, ascending: a change
// takes a seq like a message, and every change shows as a line of its own.
func checkInOrder(t *testing.T, who string, items []shownItem) {
	t.Helper()
	for i, it := range items {
		if it.Seq != i+1 {
			t.Fatalf("%s shows seqs %v; want 1..%d, each once, in order", who, seqsOf(items), len(items))
		}
		if it.Change != "" && it.Text == "" {
			t.Fatalf("%s shows the change at seq %d as an empty line", who, it.Seq)
		}
	}
}

func seqsOf(items []shownItem) []int {
	s := make([]int, len(items))
	for i, it := range items {
		s[i] = it.Seq
	}
	return s
}
