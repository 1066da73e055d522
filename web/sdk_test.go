package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/parleychat/parley/auth"
	"github.com/parleychat/parley/client"
	"github.com/parleychat/parley/proto/codec"
	"github.com/parleychat/parley/server"
)

// The page speaks through @parley/client (clients/ts), bundled into
// static/parley-client.js. These tests show it: a token login, which only
// the SDK knows, and the SDK itself driven in Chromium with both codecs.

const testSecret = "web-test-secret-0123456789abcdefghij"

// startTokenServer runs a server that requires tokens signed with testSecret.
func startTokenServer(t *testing.T) *server.Server {
	t.Helper()
	v, err := auth.NewVerifier(auth.Options{HMACSecret: []byte(testSecret)})
	if err != nil {
		t.Fatal(err)
	}
	cfg := server.Config{Addr: "127.0.0.1:0", Logger: testLogger(t), Auth: v}
	cfg.Actors.Rate, cfg.Actors.Burst = 1000, 1000
	cfg.Actors.RequireToken = true
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	return srv
}

// TestTokenLogin: opened as /?token=…, the page signs in as the token's
// subject without asking for a name, sends the token in hello (not in the
// socket's URL), drops it from the address bar, and chats with a Go client
// that logged in with a token of its own.
func TestTokenLogin(t *testing.T) {
	srv := startTokenServer(t)
	browser := startBrowser(t, 60*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	tok, err := auth.Issue([]byte(testSecret), "nadia", time.Hour, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	goTok, err := auth.Issue([]byte(testSecret), "omar", time.Hour, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	omar, err := client.Dial(ctx, srv.URL(), codec.Proto, &client.Options{Token: goTok})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(omar.CloseNow)
	if _, err := omar.Login(ctx, client.Login{}); err != nil {
		t.Fatalf("omar's login: %v", err)
	}
	if _, err := omar.Join(ctx, "general", nil); err != nil {
		t.Fatal(err)
	}
	post(t, ctx, omar, "general", "welcome, token holders")

	nadia := openTokenTab(t, browser, "http://"+srv.Addr()+"/?token="+tok, "nadia")
	nadia.waitFor("signed in as the token's subject", `document.querySelector('#me-name').textContent === 'nadia'`)
	if got := nadia.waitMessages("general", 1); got[0].Sender != "omar" {
		t.Fatalf("nadia's #general: %+v", got)
	}
	var loc string
	nadia.eval(`location.href`, &loc)
	if strings.Contains(loc, "token") {
		t.Errorf("the token is still in the address bar: %s", loc)
	}
	nadia.send("hello from a token")
	for {
		env, err := omar.Next(ctx)
		if err != nil {
			t.Fatalf("omar waiting for nadia's message: %v", err)
		}
		if ev := env.GetEvent(); ev != nil && ev.GetSender() == "nadia" && ev.GetChange() == nil { // (her join is a change)
			if ev.GetText() != "hello from a token" {
				t.Fatalf("omar got %q", ev.GetText())
			}
			break
		}
	}
	// On the wire: hello carried the token and no name.
	_, frames := nadia.wsFrames()
	found := false
	for _, fs := range frames {
		for _, f := range fs {
			var env struct {
				Hello *struct {
					Name  string `json:"name"`
					Token string `json:"token"`
				} `json:"hello"`
			}
			if f.sent && json.Unmarshal([]byte(f.data), &env) == nil && env.Hello != nil {
				found = true
				if env.Hello.Token != tok || env.Hello.Name != "" {
					t.Errorf("hello sent %+v", env.Hello)
				}
			}
		}
	}
	if !found {
		t.Error("the page sent no hello")
	}
}

// TestTokenRefused: a bad token puts the page back on its sign-in form
// with the server's reason, and the page stops trying.
func TestTokenRefused(t *testing.T) {
	srv := startTokenServer(t)
	browser := startBrowser(t, 60*time.Second)
	bad := openTokenTab(t, browser, "http://"+srv.Addr()+"/?token=not.a.token", "mallory")
	bad.waitFor("the sign-in form with the reason", `!document.querySelector('#login').hidden && document.querySelector('#login-error').textContent.startsWith('You are not allowed to do that')`)
}

// openTokenTab opens the page in a fresh browser context, without signing in.
func openTokenTab(t *testing.T, browser context.Context, url, name string) *tab {
	t.Helper()
	tb := newTab(t, browser, name)
	tb.run("open the page", chromedp.EmulateViewport(1280, 800), chromedp.Navigate(url))
	t.Cleanup(tb.checkErrors)
	return tb
}

// TestSDKInBrowser drives @parley/client itself in Chromium, from the
// page's own origin, in both codecs: two clients chat, requests resolve
// with their acks, a refusal rejects with its typed code, and a retried
// post (same clientMsgId) is stored once.
func TestSDKInBrowser(t *testing.T) {
	srv := startServer(t, "127.0.0.1:0", nil)
	browser := startBrowser(t, 60*time.Second)
	tb := newTab(t, browser, "sdk")
	tb.run("open the page", chromedp.Navigate("http://"+srv.Addr()+"/"), chromedp.WaitReady("body", chromedp.ByQuery))
	t.Cleanup(tb.checkErrors)
	for _, cd := range []string{"proto", "json"} {
		script := fmt.Sprintf(`(async () => {
			const { ParleyClient, ErrorCode, ParleyError } = await import('/parley-client.js');
			const url = 'ws://' + location.host + '/ws';
			const a = new ParleyClient({ url, name: 'a-%[1]s', codec: '%[1]s' });
			const b = new ParleyClient({ url, name: 'b-%[1]s', codec: '%[1]s' });
			const got = [];
			b.on('message', (m) => got.push(m.seq + ':' + m.sender + ':' + m.text));
			await a.connect(); await b.connect();
			await a.join('web-%[1]s');
			const joined = await b.join('web-%[1]s');
			const first = await a.post('web-%[1]s', 'one', { clientMsgId: 'same-%[1]s' });
			const again = await a.request({ case: 'post', value: { room: 'web-%[1]s', text: 'one', clientMsgId: 'same-%[1]s' } });
			await a.post('web-%[1]s', 'two');
			let code = '';
			try { await a.request({ case: 'leave', value: { room: 'nowhere' } }); } catch (e) { code = e instanceof ParleyError && e.code === ErrorCode.NOT_JOINED ? e.codeName : String(e); }
			const deadline = Date.now() + 20000;
			while (got.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
			const page = await b.history('web-%[1]s', { limit: 10 });
			a.close(); b.close();
			return { joinSeq: joined.seq, firstSeq: first.seq, againSeq: Number(again.seq), got, code, stored: page.messages.length, changes: page.changes.length, subprotocol: a.codec.subprotocol };
		})()`, cd)
		var res struct {
			JoinSeq     int      `json:"joinSeq"`
			FirstSeq    int      `json:"firstSeq"`
			AgainSeq    int      `json:"againSeq"`
			Got         []string `json:"got"`
			Code        string   `json:"code"`
			Stored      int      `json:"stored"`
			Changes     int      `json:"changes"`
			Subprotocol string   `json:"subprotocol"`
		}
		tb.run("the SDK with "+cd, chromedp.Evaluate(script, &res, func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) }))
		// The joins are in the room's log (the first created the room): the
		// posts' seqs follow the last join's.
		one := res.JoinSeq + 1
		want := []string{fmt.Sprintf("%d:a-%s:one", one, cd), fmt.Sprintf("%d:a-%s:two", one+1, cd)}
		if res.JoinSeq != 3 || res.FirstSeq != one || res.AgainSeq != one || fmt.Sprint(res.Got) != fmt.Sprint(want) || res.Code != "ERROR_CODE_NOT_JOINED" || res.Stored != 2 || res.Changes != 3 || res.Subprotocol != "parley.v1."+cd {
			t.Errorf("%s: %+v; want the retry acked with seq %d, b to get %v, NOT_JOINED, 2 posts and 3 changes stored", cd, res, one, want)
		}
	}
}
