package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleychat/parley/hooks"
	"github.com/parleychat/parley/internal/testenv"
	"github.com/parleychat/parley/store"
)

func TestMain(m *testing.M) { testenv.VerifyNoLeaks(m) }

var secret = []byte("0123456789abcdef0123456789abcdef")

// receiver records what it accepted, checking every request's headers
// and signature; answer decides each request's fate.
type receiver struct {
	t      *testing.T
	mu     sync.Mutex
	got    map[string][]string // room -> ids accepted, in order
	tries  map[string][]time.Time
	answer func(id string, try int) (status int, delay time.Duration)
	srv    *httptest.Server
}

func newReceiver(t *testing.T, answer func(id string, try int) (int, time.Duration)) *receiver {
	rc := &receiver{t: t, got: map[string][]string{}, tries: map[string][]time.Time{}, answer: answer}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if err := hooks.Verify(secret, r.Header.Get(hooks.SignatureHeader), body, time.Now(), time.Minute); err != nil {
		rc.t.Errorf("request %s: %v", r.Header.Get(EventIDHeader), err)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var ev struct{ ID, Room, Type string }
	if err := json.Unmarshal(body, &ev); err != nil || ev.ID != r.Header.Get(EventIDHeader) || ev.Type != r.Header.Get(EventTypeHeader) ||
		r.Header.Get("Content-Type") != "application/json" {
		rc.t.Errorf("request headers %v do not match body %s", r.Header, body)
	}
	rc.mu.Lock()
	rc.tries[ev.ID] = append(rc.tries[ev.ID], time.Now())
	try := len(rc.tries[ev.ID])
	rc.mu.Unlock()
	status, delay := http.StatusNoContent, time.Duration(0)
	if rc.answer != nil {
		status, delay = rc.answer(ev.ID, try)
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	if status/100 == 2 {
		rc.mu.Lock()
		rc.got[ev.Room] = append(rc.got[ev.Room], ev.ID)
		rc.mu.Unlock()
	}
	w.WriteHeader(status)
}

func (rc *receiver) accepted(room string) []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.got[room])
}

func (rc *receiver) triesOf(id string) []time.Time {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.tries[id])
}

// fill commits n entries to each room, interleaving rooms.
func fill(t *testing.T, st store.Store, rooms []string, n int) map[string][]string {
	want := map[string][]string{}
	for i := range n {
		for _, room := range rooms {
			id := fmt.Sprintf("%s/%d/0", room, i+1)
			payload := fmt.Appendf(nil, `{"id":%q,"type":"message.created","room":%q,"seq":%d}`, id, room, i+1)
			err := st.Commit(context.Background(), store.Batch{Room: room, Outbox: []store.OutboxEntry{{ID: id, Room: room, Type: "message.created", Payload: payload, Created: time.Now()}}})
			if err != nil {
				t.Fatal(err)
			}
			want[room] = append(want[room], id)
		}
	}
	return want
}

type observed struct {
	mu       sync.Mutex
	outcomes map[string]int
}

func (o *observed) observe(outcome string, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.outcomes[outcome]++
}

func (o *observed) count(outcome string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.outcomes[outcome]
}

func start(t *testing.T, st store.Outbox, url string, timeout time.Duration, o Options) *Deliverer {
	t.Helper()
	if o.MinBackoff == 0 {
		o.MinBackoff, o.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
	}
	o.Poll = 50 * time.Millisecond
	o.Logger = testenv.Logger(t, 0)
	d, err := New(Config{URL: url, Secret: secret, Timeout: timeout}, st, o)
	if err != nil {
		t.Fatal(err)
	}
	d.Start()
	t.Cleanup(d.Close)
	return d
}

func waitEmpty(t *testing.T, st store.Outbox) {
	t.Helper()
	testenv.WaitFor(t, 20*time.Second, func() error {
		if got, err := st.OutboxPending(context.Background(), 10, nil); err != nil || len(got) > 0 {
			return fmt.Errorf("outbox still holds %d entries (%v)", len(got), err)
		}
		return nil
	})
}

// TestDeliverInOrderPerRoom: with a receiver failing a third of first
// tries (5xx) and timing out some, every entry arrives, each room's in
// order, and the outbox empties; every failure is retried.
func TestDeliverInOrderPerRoom(t *testing.T) {
	st := store.NewMemory()
	rooms := []string{"a", "b", "c", "d"}
	want := fill(t, st, rooms, 30)
	obs := &observed{outcomes: map[string]int{}}
	rc := newReceiver(t, func(id string, try int) (int, time.Duration) {
		switch {
		case try == 1 && strings.HasSuffix(id, "3/0"):
			return http.StatusServiceUnavailable, 0
		case try == 1 && strings.HasSuffix(id, "7/0"):
			return http.StatusNoContent, 500 * time.Millisecond // past the timeout: not taken
		}
		return http.StatusOK, 0
	})
	d := start(t, st, rc.srv.URL, 200*time.Millisecond, Options{Observe: obs.observe})
	d.Wake()
	waitEmpty(t, st)
	for _, room := range rooms {
		got := rc.accepted(room)
		// An entry the receiver took but Parley saw time out is sent again:
		// only a repeat of the id just taken is allowed.
		got = slices.Compact(got)
		if !slices.Equal(got, want[room]) {
			t.Errorf("room %s got %v\nwant %v", room, got, want[room])
		}
	}
	if obs.count("status") == 0 || obs.count("timeout") == 0 || obs.count("ok") < 4*30 {
		t.Errorf("outcomes %v: want status, timeout and ok", obs.outcomes)
	}
}

// TestFailingRoomBlocksOnlyItself: a room whose entries the receiver
// refuses keeps them, in order, with growing waits between tries, while
// other rooms' entries are delivered.
func TestFailingRoomBlocksOnlyItself(t *testing.T) {
	st := store.NewMemory()
	want := fill(t, st, []string{"bad", "good"}, 20)
	rc := newReceiver(t, func(id string, _ int) (int, time.Duration) {
		if strings.HasPrefix(id, "bad/") {
			return http.StatusInternalServerError, 0
		}
		return http.StatusNoContent, 0
	})
	start(t, st, rc.srv.URL, time.Second, Options{MinBackoff: 20 * time.Millisecond, MaxBackoff: 400 * time.Millisecond, Batch: 5})
	testenv.WaitFor(t, 20*time.Second, func() error {
		if got := rc.accepted("good"); !slices.Equal(got, want["good"]) {
			return fmt.Errorf("good got %d of %d", len(got), len(want["good"]))
		}
		if n := len(rc.triesOf("bad/1/0")); n < 5 {
			return fmt.Errorf("bad/1/0 tried %d times", n)
		}
		return nil
	})
	if got := rc.triesOf("bad/2/0"); len(got) != 0 {
		t.Fatalf("bad/2/0 was sent while bad/1/0 failed")
	}
	tries := rc.triesOf("bad/1/0")
	first, later := tries[1].Sub(tries[0]), tries[len(tries)-1].Sub(tries[len(tries)-2])
	if later <= first {
		t.Errorf("waits between tries did not grow: first %v, last %v", first, later)
	}
	left, _ := st.OutboxPending(context.Background(), 100, nil)
	if len(left) != 20 || left[0].ID != "bad/1/0" {
		t.Fatalf("outbox keeps %d entries starting %v, want bad's 20", len(left), left)
	}
}

// TestReceiverDownThenUp: nothing is lost while the receiver is down.
func TestReceiverDownThenUp(t *testing.T) {
	st := store.NewMemory()
	want := fill(t, st, []string{"r"}, 10)
	var mu sync.Mutex
	up := false
	rc := newReceiver(t, func(string, int) (int, time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		if !up {
			return http.StatusBadGateway, 0
		}
		return http.StatusNoContent, 0
	})
	start(t, st, rc.srv.URL, time.Second, Options{})
	testenv.WaitFor(t, 10*time.Second, func() error {
		if n := len(rc.triesOf("r/1/0")); n < 3 {
			return fmt.Errorf("tried %d times", n)
		}
		return nil
	})
	mu.Lock()
	up = true
	mu.Unlock()
	waitEmpty(t, st)
	if got := rc.accepted("r"); !slices.Equal(got, want["r"]) {
		t.Fatalf("got %v, want %v", got, want["r"])
	}
}

// noLease is a store whose lease another node holds; asked counts the
// deliverer's requests for it.
type noLease struct {
	store.Store
	asked chan struct{}
}

func (n noLease) OutboxLease(context.Context, string, time.Duration) (bool, error) {
	select {
	case n.asked <- struct{}{}:
	default:
	}
	return false, nil
}

// TestNoLeaseNoDelivery: a node without the lease sends nothing.
func TestNoLeaseNoDelivery(t *testing.T) {
	st := store.NewMemory()
	fill(t, st, []string{"r"}, 3)
	rc := newReceiver(t, nil)
	nl := noLease{Store: st, asked: make(chan struct{})}
	d := start(t, nl, rc.srv.URL, time.Second, Options{})
	for range 3 { // refused three times, polling in between
		select {
		case <-nl.asked:
		case <-time.After(10 * time.Second):
			t.Fatal("the deliverer never asked for the lease")
		}
	}
	d.Close()
	if got := rc.accepted("r"); len(got) != 0 {
		t.Fatalf("a node without the lease delivered %v", got)
	}
	if got, _ := st.OutboxPending(context.Background(), 10, nil); len(got) != 3 {
		t.Fatalf("outbox holds %d entries, want 3", len(got))
	}
}

func TestConfigCheck(t *testing.T) {
	known := []string{"message.created", "notify"}
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{URL: "ftp://x", Secret: secret}, "not an http"},
		{Config{URL: "http://x/h", Secret: []byte("short")}, "at least 32"},
		{Config{URL: "http://x/h", Secret: secret, Events: []string{"message.created", "nope"}}, `unknown event type "nope"`},
		{Config{URL: "http://x/h", Secret: secret, Events: []string{"notify"}}, ""},
	} {
		err := c.cfg.Check(known)
		if (err == nil) != (c.want == "") || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("Check(%+v) = %v, want %q", c.cfg, err, c.want)
		}
	}
	want := Config{Events: []string{"notify"}}.Want()
	if want("message.created") || !want("notify") || !(Config{}).Want()("anything") {
		t.Error("Want does not follow Events")
	}
}

// TestLeaseOutlastsRequests: the lease leaves time to send however long
// a request may take.
func TestLeaseOutlastsRequests(t *testing.T) {
	d, err := New(Config{URL: "http://127.0.0.1:9/h", Secret: secret, Timeout: 30 * time.Second}, store.NewMemory(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.o.LeaseTTL != time.Minute {
		t.Fatalf("lease %v with 30s requests, want 1m", d.o.LeaseTTL)
	}
}

// TestLeaseOnSharedPostgres: two nodes' deliverers on one PostgreSQL
// outbox, each sending to a receiver of its own: only the lease holder
// sends; when it stops, the other takes over once the lease lapses, and
// each room's entries, taken across both receivers, are complete and in
// order.
func TestLeaseOnSharedPostgres(t *testing.T) {
	dsn := testenv.PostgresSchema(t)
	open := func() store.Store {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s, err := store.OpenPostgres(ctx, dsn, store.PostgresOptions{MaxConns: 4})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	st1, st2 := open(), open()
	want := fill(t, st1, []string{"a", "b"}, 20)
	// The first receiver takes the first 5 entries of each room, then
	// stalls the rest until its deliverer is closed.
	first := newReceiver(t, func(id string, _ int) (int, time.Duration) {
		if n, _ := strconv.Atoi(strings.Split(id, "/")[1]); n > 5 {
			return http.StatusServiceUnavailable, 0
		}
		return http.StatusNoContent, 0
	})
	second := newReceiver(t, nil)
	o := Options{LeaseTTL: 400 * time.Millisecond}
	d1 := start(t, st1, first.srv.URL, 100*time.Millisecond, o)
	testenv.WaitFor(t, 10*time.Second, func() error {
		if len(first.accepted("a")) < 5 || len(first.accepted("b")) < 5 {
			return fmt.Errorf("first node delivered %d and %d", len(first.accepted("a")), len(first.accepted("b")))
		}
		return nil
	})
	d2 := start(t, st2, second.srv.URL, 100*time.Millisecond, o)
	// While the first holds the lease (it retries its failing entries),
	// the second sends nothing.
	testenv.WaitFor(t, 10*time.Second, func() error {
		if n := len(first.triesOf("a/6/0")); n < 3 {
			return fmt.Errorf("a/6/0 tried %d times", n)
		}
		return nil
	})
	if got := second.accepted("a"); len(got) != 0 {
		t.Fatalf("the second node sent %v while the first held the lease", got)
	}
	d1.Close()
	waitEmpty(t, st2)
	d2.Close()
	for _, room := range []string{"a", "b"} {
		got := slices.Compact(append(first.accepted(room), second.accepted(room)...))
		if !slices.Equal(got, want[room]) {
			t.Errorf("room %s across both nodes: %v\nwant %v", room, got, want[room])
		}
	}
}

// TestSlowRoomHoldsUpNobody: while one room's receiver takes its time
// over each entry, another room's entries, committed later, go through.
func TestSlowRoomHoldsUpNobody(t *testing.T) {
	st := store.NewMemory()
	fill(t, st, []string{"slow"}, 20)
	release := make(chan struct{})
	rc := newReceiver(t, func(id string, _ int) (int, time.Duration) {
		if strings.HasPrefix(id, "slow/") {
			<-release
		}
		return http.StatusNoContent, 0
	})
	var once sync.Once
	open := func() { once.Do(func() { close(release) }) }
	t.Cleanup(open) // before the receiver closes, even when the test fails
	d := start(t, st, rc.srv.URL, 10*time.Second, Options{})
	testenv.WaitFor(t, 10*time.Second, func() error {
		if len(rc.triesOf("slow/1/0")) == 0 {
			return errors.New("slow/1/0 not sent yet")
		}
		return nil
	})
	want := fill(t, st, []string{"fast"}, 10)
	d.Wake()
	testenv.WaitFor(t, 10*time.Second, func() error {
		if got := rc.accepted("fast"); !slices.Equal(got, want["fast"]) {
			return fmt.Errorf("fast got %v while slow's first entry is still being answered", got)
		}
		return nil
	})
	open()
	waitEmpty(t, st)
}
