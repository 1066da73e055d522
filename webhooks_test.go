package main_test

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/actors"
	"github.com/parleychat/parley/hooks"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/proto/codec"
	"github.com/parleychat/parley/server"
	"github.com/parleychat/parley/store"
	"github.com/parleychat/parley/webhooks"
)

var webhookSecret = []byte("webhook-secret-of-the-tests-0123456789")

// webhookEvent is what the receiver reads of a webhook's body.
type webhookEvent struct {
	ID    string `json:"id"`
	Type  string `json:"type"`
	Room  string `json:"room"`
	Seq   uint64 `json:"seq"`
	Event struct {
		Sender      string   `json:"sender"`
		SenderKind  string   `json:"senderKind"`
		Text        string   `json:"text"`
		ClientMsgID string   `json:"clientMsgId"`
		Mentions    []string `json:"mentions"`
		Change      *struct {
			Kind      string `json:"kind"`
			User      string `json:"user"`
			TargetSeq uint64 `json:"targetSeq"`
			Emoji     string `json:"emoji"`
			Count     uint32 `json:"count"`
		} `json:"change"`
	} `json:"event"`
	Recipients []string `json:"recipients"`
}

// webhookReceiver is the application: it checks each request's signature
// and headers, and records what it accepted, per room in arrival order.
// fail decides whether to refuse a request (a 5xx) or stall it past
// Parley's timeout; down refuses everything.
type webhookReceiver struct {
	t    *testing.T
	srv  *httptest.Server
	mu   sync.Mutex
	down bool
	fail func(id string, try int) (status int, stall bool)
	// got is every accepted event per room, redeliveries included.
	got   map[string][]webhookEvent
	tries map[string]int
}

func newWebhookReceiver(t *testing.T) *webhookReceiver {
	w := &webhookReceiver{t: t, got: map[string][]webhookEvent{}, tries: map[string]int{}}
	w.srv = httptest.NewServer(http.HandlerFunc(w.serve))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *webhookReceiver) url() string { return w.srv.URL + "/webhooks" }

func (w *webhookReceiver) serve(rw http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	if err := hooks.Verify(webhookSecret, r.Header.Get(hooks.SignatureHeader), body, time.Now(), time.Minute); err != nil {
		w.t.Errorf("webhook %s: %v", r.Header.Get(webhooks.EventIDHeader), err)
		http.Error(rw, "bad signature", http.StatusUnauthorized)
		return
	}
	var ev webhookEvent
	if err := json.Unmarshal(body, &ev); err != nil || ev.ID == "" || ev.ID != r.Header.Get(webhooks.EventIDHeader) || ev.Type != r.Header.Get(webhooks.EventTypeHeader) {
		w.t.Errorf("webhook body %s does not match its headers %v (%v)", body, r.Header, err)
		http.Error(rw, "bad event", http.StatusBadRequest)
		return
	}
	w.mu.Lock()
	w.tries[ev.ID]++
	try, down, fail := w.tries[ev.ID], w.down, w.fail
	w.mu.Unlock()
	status, stall := http.StatusNoContent, false
	if down {
		status = http.StatusServiceUnavailable
	} else if fail != nil {
		status, stall = fail(ev.ID, try)
	}
	if stall {
		<-r.Context().Done() // Parley gave up: its timeout
		return
	}
	if status/100 == 2 {
		w.mu.Lock()
		w.got[ev.Room] = append(w.got[ev.Room], ev)
		w.mu.Unlock()
	}
	rw.WriteHeader(status)
}

func (w *webhookReceiver) setDown(down bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.down = down
}

func (w *webhookReceiver) events(room string) []webhookEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.got[room])
}

func (w *webhookReceiver) triesOf(id string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.tries[id]
}

// checkWebhookOrder checks a room's accepted events: taken once each
// (first arrivals), they run in the room's order; anything else is a
// redelivery of an id already taken. It returns the message.created
// events by client message id.
func checkWebhookOrder(t *testing.T, room string, got []webhookEvent) map[string]webhookEvent {
	t.Helper()
	seen := map[string]bool{}
	posts := map[string]webhookEvent{}
	var lastSeq uint64
	lastN := -1
	for _, ev := range got {
		if seen[ev.ID] {
			continue
		}
		seen[ev.ID] = true
		parts := strings.Split(ev.ID, "/")
		n, err := strconv.Atoi(parts[len(parts)-1])
		if len(parts) < 3 || err != nil || strings.Join(parts[:len(parts)-2], "/") != room || parts[len(parts)-2] != strconv.FormatUint(ev.Seq, 10) {
			t.Fatalf("%s: event id %q is not room/seq/n of seq %d", room, ev.ID, ev.Seq)
		}
		if ev.Seq < lastSeq || (ev.Seq == lastSeq && n <= lastN) {
			t.Fatalf("%s: %s (seq %d) arrived after seq %d: reordered", room, ev.ID, ev.Seq, lastSeq)
		}
		lastSeq, lastN = ev.Seq, n
		if ev.Type == "message.created" {
			posts[ev.Event.ClientMsgID] = ev
		}
	}
	return posts
}

// postsDelivered reports an error until every acknowledged post of the
// clients has its message.created, with the seq it was acknowledged with.
func postsDelivered(t *testing.T, w *webhookReceiver, rooms []string, clients []*resumingClient) error {
	byRoom := map[string]map[string]webhookEvent{}
	for _, r := range rooms {
		byRoom[r] = checkWebhookOrder(t, r, w.events(r))
	}
	missing, total := 0, 0
	for _, c := range clients {
		c.mu.Lock()
		for id, seq := range c.acked {
			total++
			found := false
			for _, r := range c.rooms {
				if ev, ok := byRoom[r][id]; ok {
					found = true
					if ev.Seq != seq {
						t.Errorf("%s acknowledged as seq %d, its webhook says %d", id, seq, ev.Seq)
					}
				}
			}
			if !found {
				missing++
			}
		}
		c.mu.Unlock()
	}
	if missing > 0 {
		return fmt.Errorf("%d of %d acknowledged posts have no message.created yet", missing, total)
	}
	return nil
}

func totalAcked(clients []*resumingClient) int {
	n := 0
	for _, c := range clients {
		c.mu.Lock()
		n += len(c.acked)
		c.mu.Unlock()
	}
	return n
}

// TestWebhooksAcrossReceiverOutage: the application is down while clients
// post; everything is delivered once it is back, each room in order.
func TestWebhooksAcrossReceiverOutage(t *testing.T) {
	t.Parallel()
	w := newWebhookReceiver(t)
	w.setDown(true)
	st, err := store.OpenBolt(t.TempDir(), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, func(c *server.Config) {
		c.Store = st
		c.Logger = quietLogger(t)
		c.Webhooks = webhooks.Config{URL: w.url(), Secret: webhookSecret, Timeout: time.Second}
		c.WebhookOptions = webhooks.Options{MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Poll: 50 * time.Millisecond}
	})
	rooms := []string{"o1", "o2", "o3"}
	var clients []*resumingClient
	for i := range 3 {
		clients = append(clients, newResumingClient(fmt.Sprint("w", i), srv.URL, rooms[i], rooms[(i+1)%3]))
	}
	stop := make(chan struct{})
	done := make(chan error, len(clients))
	for _, c := range clients {
		go c.run(stop, done)
	}
	waitFor(t, 20*time.Second, func() error {
		if n := totalAcked(clients); n < 60 {
			return fmt.Errorf("%d posts acknowledged", n)
		}
		if w.triesOf("o1/1/0") < 3 {
			return fmt.Errorf("the first event was tried %d times", w.triesOf("o1/1/0"))
		}
		return nil
	})
	ctx := testCtx(t, 10*time.Second)
	if s, err := st.OutboxStats(ctx); err != nil || s.Depth < 60 {
		t.Fatalf("outbox during the outage: %+v, %v; want the events waiting", s, err)
	}
	rec := httptest.NewRecorder()
	srv.Metrics.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{`parley_webhook_seconds_count{outcome="status"}`, "parley_webhook_outbox_depth ", "parley_webhook_outbox_oldest_seconds "} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("/metrics during the outage has no %s", want)
		}
	}
	w.setDown(false)
	close(stop)
	for range clients {
		<-done
	}
	waitFor(t, 30*time.Second, func() error { return postsDelivered(t, w, rooms, clients) })
	for _, r := range rooms {
		got := w.events(r)
		if got[0].Type != "room.created" || got[1].Type != "member.joined" {
			t.Errorf("%s's first events: %s, %s; want room.created and member.joined", r, got[0].Type, got[1].Type)
		}
	}
	waitFor(t, 10*time.Second, func() error {
		if s, err := st.OutboxStats(ctx); err != nil || s.Depth != 0 {
			return fmt.Errorf("outbox after delivery: %+v, %v", s, err)
		}
		return nil
	})
}

// TestWebhooksSurviveSIGKILL runs the real binary on each durable store,
// with a receiver that refuses or stalls some first tries, kills it with
// SIGKILL while clients post, and restarts it: every acknowledged post's
// message.created arrives, none out of order within its room; an event
// seen twice is a redelivery with the same id.
func TestWebhooksSurviveSIGKILL(t *testing.T) {
	for _, backend := range []string{"bolt", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			w := newWebhookReceiver(t)
			w.fail = func(id string, try int) (int, bool) {
				h := 0
				for _, c := range id {
					h = h*31 + int(c)
				}
				switch {
				case try == 1 && h%11 == 0:
					return http.StatusInternalServerError, false
				case try == 1 && h%17 == 0:
					return 0, true
				}
				return http.StatusOK, false
			}
			secretFile := filepath.Join(t.TempDir(), "secret")
			if err := os.WriteFile(secretFile, webhookSecret, 0o600); err != nil {
				t.Fatal(err)
			}
			addr := freeAddr(t)
			args := []string{"-rate", "100000", "-burst", "100000", "-webhook-url", w.url(), "-webhook-secret-file", secretFile, "-webhook-timeout", "500ms"}
			args = append(args, durableStore(t, backend)...)
			run := fmt.Sprintf("%x", rand.Uint32())
			rooms := []string{"k1-" + run, "k2-" + run, "k3-" + run}
			url := func() string { return "ws://" + addr + "/ws" }
			var clients []*resumingClient
			for i := range 6 {
				clients = append(clients, newResumingClient(fmt.Sprint("k", i), url, rooms[i%3], rooms[(i+1)%3]))
			}
			p := startProc(t, addr, args...)
			stop := make(chan struct{})
			done := make(chan error, len(clients))
			for _, c := range clients {
				go c.run(stop, done)
			}
			waitFor(t, 30*time.Second, func() error {
				if n := totalAcked(clients); n < 150 {
					return fmt.Errorf("%d posts acknowledged before the kill", n)
				}
				return nil
			})
			p.kill()
			before := totalAcked(clients)
			startProc(t, addr, args...)
			waitFor(t, 30*time.Second, func() error {
				if n := totalAcked(clients); n < before+100 {
					return fmt.Errorf("%d posts acknowledged after the restart (had %d)", n, before)
				}
				return nil
			})
			close(stop)
			for range clients {
				<-done
			}
			waitFor(t, 60*time.Second, func() error { return postsDelivered(t, w, rooms, clients) })
			redelivered := 0
			for _, r := range rooms {
				got := w.events(r)
				ids := map[string]bool{}
				for _, ev := range got {
					if ids[ev.ID] {
						redelivered++
					}
					ids[ev.ID] = true
				}
			}
			t.Logf("%d posts acknowledged (%d before the kill); every message.created delivered in room order, %d redeliveries", totalAcked(clients), before, redelivered)
		})
	}
}

// TestWebhookNotify: a post that mentions a member with no connection in
// the room, and a direct message to a user who is offline, each bring a
// notify event naming them; members who are connected are not named.
func TestWebhookNotify(t *testing.T) {
	t.Parallel()
	w := newWebhookReceiver(t)
	srv := startServer(t, func(c *server.Config) {
		c.Webhooks = webhooks.Config{URL: w.url(), Secret: webhookSecret, Events: []string{"notify"}}
		c.WebhookOptions = webhooks.Options{Poll: 50 * time.Millisecond}
	})
	ctx := testCtx(t, 20*time.Second)
	bob := login(t, ctx, srv, codec.JSON, "bob", "team")
	bob.Close()
	waitFor(t, 10*time.Second, func() error { // bob's connection has left the room
		members, err := srv.Node.RoomMembers(ctx, "team")
		for _, m := range members {
			if m.GetName() == "bob" {
				return fmt.Errorf("bob is still connected to team")
			}
		}
		return err
	})
	alice := login(t, ctx, srv, codec.JSON, "alice", "team")
	login(t, ctx, srv, codec.JSON, "carol", "team")
	seq, err := alice.Post(ctx, "team", "@bob @carol @nobody look", "n1")
	if err != nil {
		t.Fatal(err)
	}
	ack, err := direct(ctx, alice, "dave", "psst", "d1")
	if err != nil {
		t.Fatal(err)
	}
	var team, dm []webhookEvent
	waitFor(t, 10*time.Second, func() error {
		team, dm = w.events("team"), w.events(ack.GetRoom())
		if len(team) == 0 || len(dm) == 0 {
			return fmt.Errorf("notify events: %d in team, %d in the direct room", len(team), len(dm))
		}
		return nil
	})
	if ev := team[0]; ev.Type != "notify" || ev.Seq != seq || !slices.Equal(ev.Recipients, []string{"bob"}) || ev.Event.Sender != "alice" || ev.Event.Text != "@bob @carol @nobody look" {
		t.Errorf("team's notify = %+v; want bob only (carol is connected, nobody is no member)", ev)
	}
	if ev := dm[0]; ev.Type != "notify" || ev.Seq != ack.GetSeq() || !slices.Equal(ev.Recipients, []string{"dave"}) {
		t.Errorf("direct room's notify = %+v; want dave", ev)
	}
	if got := w.events("team"); len(got) != 1 {
		t.Errorf("with -webhook-events notify, team got %d events, want the notify only", len(got))
	}
}

// TestWebhooksForMessageChanges: an edit, a reaction and a delete reach
// the application as message.edited (with the new text), reaction.added
// and message.deleted (with no text) naming their post, in the room's
// order; a structured mention of a member who is away is notified.
func TestWebhooksForMessageChanges(t *testing.T) {
	t.Parallel()
	w := newWebhookReceiver(t)
	srv := startServer(t, func(c *server.Config) {
		c.Webhooks = webhooks.Config{URL: w.url(), Secret: webhookSecret}
		c.WebhookOptions = webhooks.Options{Poll: 50 * time.Millisecond}
	})
	ctx := testCtx(t, 20*time.Second)
	bob := login(t, ctx, srv, codec.JSON, "bob", "desk")
	bob.Close()
	waitFor(t, 10*time.Second, func() error {
		members, err := srv.Node.RoomMembers(ctx, "desk")
		for _, m := range members {
			if m.GetName() == "bob" {
				return fmt.Errorf("bob is still connected to desk")
			}
		}
		return err
	})
	alice := login(t, ctx, srv, codec.Proto, "alice", "desk")
	ack, err := alice.Request(ctx, &parleypb.Envelope{Body: &parleypb.Envelope_Post{Post: &parleypb.Post{Room: "desk", Text: "see this, bob", ClientMsgId: "p1", Mentions: []string{"bob"}}}})
	if err != nil {
		t.Fatal(err)
	}
	seq := ack.GetSeq()
	if _, err := editMsg(ctx, alice, "desk", seq, "see this now, bob", "e1"); err != nil {
		t.Fatal(err)
	}
	if _, err := react(ctx, alice, "desk", seq, "👍", false, "r1"); err != nil {
		t.Fatal(err)
	}
	if _, err := deleteMsg(ctx, alice, "desk", seq, "x1"); err != nil {
		t.Fatal(err)
	}
	var got []webhookEvent
	waitFor(t, 10*time.Second, func() error {
		got = nil
		for _, ev := range w.events("desk") {
			if !strings.HasPrefix(ev.Type, "member.") && ev.Type != "room.created" {
				got = append(got, ev)
			}
		}
		if len(got) < 5 {
			return fmt.Errorf("%d of 5 message events so far: %+v", len(got), got)
		}
		return nil
	})
	types := []string{}
	for _, ev := range got {
		types = append(types, ev.Type)
	}
	if want := []string{"message.created", "notify", "message.edited", "reaction.added", "message.deleted"}; !slices.Equal(types, want) {
		t.Fatalf("webhook types %v, want %v", types, want)
	}
	if ev := got[1]; !slices.Equal(ev.Recipients, []string{"bob"}) || !slices.Equal(ev.Event.Mentions, []string{"bob"}) {
		t.Errorf("notify of a structured mention = %+v, want bob", ev)
	}
	for _, ev := range got[2:] {
		if ev.Event.Change == nil || ev.Event.Change.TargetSeq != seq || ev.Event.Sender != "alice" {
			t.Errorf("%s = %+v, want alice's change to post %d", ev.Type, ev, seq)
		}
	}
	if ev := got[2]; ev.Event.Text != "see this now, bob" {
		t.Errorf("message.edited carries %q, want the new text", ev.Event.Text)
	}
	if ev := got[3]; ev.Event.Change.Emoji != "👍" || ev.Event.Change.Count != 1 {
		t.Errorf("reaction.added = %+v", ev.Event.Change)
	}
	if ev := got[4]; ev.Event.Text != "" {
		t.Errorf("message.deleted carries the text %q", ev.Event.Text)
	}
}

// TestWebhookDocsCoverTheTypes: docs/API.md describes every webhook type.
func TestWebhookDocsCoverTheTypes(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("docs/API.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range actors.WebhookTypes() {
		if !strings.Contains(string(b), "`"+typ+"`") {
			t.Errorf("docs/API.md does not describe the webhook type %s", typ)
		}
	}
}
