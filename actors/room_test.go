package actors

import (
	"fmt"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/actors/actorpb"
	parleypb "github.com/parleychat/parley/proto"
)

func TestRoomFanOut(t *testing.T) {
	t.Parallel()
	n := newTestNode(t, Config{})
	users := []string{"alice", "bob", "carol"}
	provision(t, n.cfg.Store, "general", users...)
	members := make([]*probe, len(users))
	for i, u := range users {
		members[i] = newProbe(t, n)
		joinRoom(n, members[i], "general", u, "join", nil)
		if ack := members[i].ackFor(t, "join"); ack.GetSeq() != 0 || len(ack.GetMembers()) != i+1 {
			t.Fatalf("%s's join ack = %v", u, ack)
		}
	}

	const posts = 30
	text := func(i int) string { return fmt.Sprintf("message %d from %s", i, users[i%len(users)]) }
	// One sender (the root context) and one room: posts are sequenced in
	// the order sent, so post i must get seq i+1.
	for i := range posts {
		postTo(n, members[i%len(users)], "general", users[i%len(users)], text(i), fmt.Sprint("c", i), fmt.Sprint("p", i))
	}

	for i, m := range members {
		m.waitFor(t, users[i]+"'s deliveries", func(msgs []proto.Message) bool {
			return len(events(t, msgs)) >= posts
		})
		m.sync(t, n, "general") // anything extra would have arrived by now
		msgs := m.snapshot()
		evs := events(t, msgs)
		if got, want := seqs(evs), seqRange(1, posts); !slices.Equal(got, want) {
			t.Fatalf("%s got seqs %v, want each of 1..%d once, in order", users[i], got, posts)
		}
		for _, ev := range evs {
			j := int(ev.GetSeq()) - 1
			if ev.GetText() != text(j) || ev.GetSender() != users[j%len(users)] || ev.GetClientMsgId() != fmt.Sprint("c", j) ||
				ev.GetRoom() != "general" || ev.GetTimeMs() == 0 {
				t.Fatalf("%s: event %d = %v", users[i], ev.GetSeq(), ev)
			}
		}
		// Acks: exactly one per own post, with its seq.
		acks := map[string][]uint64{}
		for _, m := range msgs {
			if a, ok := m.(*parleypb.Ack); ok && a.GetRequestId() != "join" {
				acks[a.GetRequestId()] = append(acks[a.GetRequestId()], a.GetSeq())
			}
		}
		for j := i; j < posts; j += len(users) {
			if got := acks[fmt.Sprint("p", j)]; !slices.Equal(got, []uint64{uint64(j + 1)}) {
				t.Errorf("%s: acks for p%d carry seqs %v, want [%d]", users[i], j, got, j+1)
			}
			delete(acks, fmt.Sprint("p", j))
		}
		if len(acks) > 0 {
			t.Errorf("%s got acks for others' posts: %v", users[i], acks)
		}
	}
}

func TestRoomDedup(t *testing.T) {
	t.Parallel()
	t.Run("retry after commit", func(t *testing.T) {
		t.Parallel()
		n := newTestNode(t, Config{})
		provision(t, n.cfg.Store, "r", "alice", "bob")
		alice, bob := newProbe(t, n), newProbe(t, n)
		joinRoom(n, alice, "r", "alice", "j", nil)
		joinRoom(n, bob, "r", "bob", "j", nil)
		alice.ackFor(t, "j")
		bob.ackFor(t, "j")

		postTo(n, alice, "r", "alice", "hello", "m1", "first")
		if a := alice.ackFor(t, "first"); a.GetSeq() != 1 {
			t.Fatalf("first post seq %d", a.GetSeq())
		}
		// The client lost the ack and retries; the text may even differ
		// (a client bug), the id decides.
		postTo(n, alice, "r", "alice", "hello again", "m1", "retry")
		if a := alice.ackFor(t, "retry"); a.GetSeq() != 1 {
			t.Fatalf("retry acked with seq %d, want the original 1", a.GetSeq())
		}
		// Ids are per user: bob's m1 is another message.
		postTo(n, bob, "r", "bob", "mine", "m1", "bob's")
		if a := bob.ackFor(t, "bob's"); a.GetSeq() != 2 {
			t.Fatalf("bob's m1 got seq %d, want 2", a.GetSeq())
		}
		// A post without an id is never deduplicated.
		postTo(n, alice, "r", "alice", "hello", "", "no-id-1")
		postTo(n, alice, "r", "alice", "hello", "", "no-id-2")
		if a, b := alice.ackFor(t, "no-id-1"), alice.ackFor(t, "no-id-2"); a.GetSeq() != 3 || b.GetSeq() != 4 {
			t.Fatalf("posts without id got seqs %d, %d; want 3, 4", a.GetSeq(), b.GetSeq())
		}
		for _, p := range []*probe{alice, bob} {
			p.sync(t, n, "r")
			evs := events(t, p.snapshot())
			if got := seqs(evs); !slices.Equal(got, []uint64{1, 2, 3, 4}) {
				t.Fatalf("delivered seqs %v, want [1 2 3 4]", got)
			}
			if evs[0].GetText() != "hello" {
				t.Fatalf("seq 1 is %q; the retry's text replaced the original", evs[0].GetText())
			}
		}
	})

	t.Run("retry in the same batch", func(t *testing.T) {
		t.Parallel()
		st := newGatedStore()
		n := newTestNode(t, Config{Store: st})
		provision(t, st, "r", "alice")
		alice := newProbe(t, n)
		joinRoom(n, alice, "r", "alice", "j", nil)
		alice.ackFor(t, "j")

		// Hold the room inside the write of post 0, queue the post and its
		// retry behind it, and make sure the router has passed both on (it
		// answers a room list only after forwarding what came before).
		release := st.holdNext()
		t.Cleanup(release)
		postTo(n, alice, "r", "alice", "zero", "m0", "p0")
		<-st.entered
		postTo(n, alice, "r", "alice", "one", "m1", "p1")
		postTo(n, alice, "r", "alice", "one", "m1", "p1-retry")
		n.Directory().ListRooms(n.System.Root, &actorpb.RoomsQuery{RequestId: "barrier", Session: alice.pid})
		alice.ackFor(t, "barrier")
		release()

		if a := alice.ackFor(t, "p0"); a.GetSeq() != 1 {
			t.Fatalf("p0 seq %d", a.GetSeq())
		}
		a, b := alice.ackFor(t, "p1"), alice.ackFor(t, "p1-retry")
		if a.GetSeq() != 2 || b.GetSeq() != 2 {
			t.Fatalf("post and retry acked with seqs %d and %d, want 2 and 2", a.GetSeq(), b.GetSeq())
		}
		alice.sync(t, n, "r")
		if got := seqs(events(t, alice.snapshot())); !slices.Equal(got, []uint64{1, 2}) {
			t.Fatalf("delivered seqs %v, want [1 2]", got)
		}
	})
}

func TestRoomPresenceIsUserLevel(t *testing.T) {
	t.Parallel()
	n := newTestNode(t, Config{})
	provision(t, n.cfg.Store, "r", "olga", "alice")
	olga := newProbe(t, n)
	joinRoom(n, olga, "r", "olga", "j", nil)
	olga.ackFor(t, "j")
	// A join is announced to everyone, the newcomer included, after its ack.
	olga.sync(t, n, "r")
	if got := presenceDeltas(t, olga.snapshot()); !slices.Equal(got, []string{"+olga"}) {
		t.Fatalf("olga was told %q about her own join, want [+olga]", got)
	}

	// step performs one change and checks what olga was told, and the
	// room's member list afterwards.
	step := func(what string, do func(), wantDeltas []string, wantMembers string) {
		t.Helper()
		before := len(olga.snapshot())
		do()
		olga.sync(t, n, "r")
		msgs := olga.snapshot()[before:]
		if got := presenceDeltas(t, msgs); !slices.Equal(got, wantDeltas) {
			t.Fatalf("%s: olga was told %q, want %q", what, got, wantDeltas)
		}
		var who *parleypb.PresenceEvent
		for _, m := range msgs {
			if pe, ok := m.(*parleypb.PresenceEvent); ok {
				who = pe
			}
		}
		got := ""
		for _, m := range who.GetMembers() {
			got += fmt.Sprintf("%s:%d ", m.GetName(), m.GetDevices())
		}
		if got != wantMembers {
			t.Fatalf("%s: members %q, want %q", what, got, wantMembers)
		}
	}

	phone, laptop := newProbe(t, n), newProbe(t, n)
	step("alice's first device joins", func() {
		joinRoom(n, phone, "r", "alice", "j", nil)
		phone.ackFor(t, "j")
	}, []string{"+alice"}, "olga:1 alice:1 ")
	step("alice's second device joins", func() {
		joinRoom(n, laptop, "r", "alice", "j", nil)
		if ack := laptop.ackFor(t, "j"); len(ack.GetMembers()) != 2 || ack.GetMembers()[1].GetDevices() != 2 {
			t.Fatalf("join ack members %v", ack.GetMembers())
		}
	}, nil, "olga:1 alice:2 ")
	step("the same device joins again", func() {
		joinRoom(n, laptop, "r", "alice", "j2", nil)
		laptop.ackFor(t, "j2")
	}, nil, "olga:1 alice:2 ")
	step("one device leaves", func() {
		n.Directory().Tell(n.System.Root, &actorpb.RoomLeave{Room: "r", Session: phone.pid, RequestId: "bye"})
		phone.ackFor(t, "bye")
	}, nil, "olga:1 alice:1 ")
	step("the last device dies", func() {
		// No leave: the room watches its members. Termination reaches it
		// on its own path, so wait for its effect before syncing.
		before := len(olga.snapshot())
		n.System.Root.Stop(laptop.pid)
		olga.waitFor(t, "alice's departure", func(msgs []proto.Message) bool {
			return len(presenceDeltas(t, msgs[before:])) > 0
		})
	}, []string{"-alice"}, "olga:1 ")
	step("alice comes back", func() {
		joinRoom(n, phone, "r", "alice", "j3", nil)
		phone.ackFor(t, "j3")
	}, []string{"+alice"}, "olga:1 alice:1 ")
}

func TestRoomJoinReplaysTheGap(t *testing.T) {
	t.Parallel()
	const latest = 10
	u := func(v uint64) *uint64 { return &v }
	for _, tc := range []struct {
		name      string
		history   int // the room's in-memory window
		maxReplay int
		since     *uint64
		want      []uint64
		reset     *parleypb.Reset // announced before the replay, if any
	}{
		{name: "inside the window", history: 100, since: u(6), want: seqRange(7, latest)},
		{name: "from the start", history: 100, since: u(0), want: seqRange(1, latest)},
		{name: "up to date", history: 100, since: u(latest)},
		{name: "no resume point gets the window", history: 100, want: seqRange(1, latest)},
		{name: "no resume point, small window", history: 4, want: seqRange(7, latest)},
		// Older than the window: the store fills the gap before the window.
		{name: "from the store", history: 4, since: u(2), want: seqRange(3, latest)},
		{name: "store from the start", history: 4, since: u(0), want: seqRange(1, latest)},
		{name: "just before the window", history: 4, since: u(6), want: seqRange(7, latest)},
		{name: "one before the window", history: 4, since: u(5), want: seqRange(6, latest)},
		// The client saw more than the room ever stored (its history was
		// lost): it is told, and starts over from the window.
		{name: "ahead of the room", history: 4, since: u(50), want: seqRange(7, latest),
			reset: &parleypb.Reset{Room: "r", Since: 50, OldestSeq: 7}},
		// A gap longer than MaxReplay replays only its newest part, visibly.
		{name: "gap over the replay limit", history: 100, maxReplay: 3, since: u(2), want: seqRange(8, latest),
			reset: &parleypb.Reset{Room: "r", Since: 2, OldestSeq: 8}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := newTestNode(t, Config{History: tc.history, MaxReplay: tc.maxReplay})
			provision(t, n.cfg.Store, "r", "alice", "bob")
			poster := newProbe(t, n)
			for i := range latest {
				postTo(n, poster, "r", "alice", fmt.Sprint("m", i+1), "", fmt.Sprint("p", i))
			}
			poster.ackFor(t, fmt.Sprint("p", latest-1))

			late := newProbe(t, n)
			joinRoom(n, late, "r", "bob", "join", tc.since)
			ack := late.ackFor(t, "join")
			if ack.GetSeq() != latest {
				t.Fatalf("join ack seq %d, want %d", ack.GetSeq(), latest)
			}
			// Everything replayed precedes the ack: the session relies on it
			// to know when it is in sync.
			msgs := late.snapshot()
			i := slices.IndexFunc(msgs, func(m proto.Message) bool { _, ok := m.(*parleypb.Ack); return ok })
			evs := events(t, msgs[:i])
			if got := seqs(evs); !slices.Equal(got, tc.want) {
				t.Fatalf("replayed %v, want %v", got, tc.want)
			}
			var resets []*parleypb.Reset
			for j, m := range msgs[:i] {
				if r, ok := m.(*parleypb.Reset); ok {
					resets = append(resets, r)
					if len(events(t, msgs[:j])) > 0 {
						t.Fatal("a Reset came after replayed events; it must announce them")
					}
				}
			}
			switch {
			case tc.reset == nil && len(resets) > 0:
				t.Fatalf("unexpected Reset %v", resets)
			case tc.reset != nil && (len(resets) != 1 || !proto.Equal(resets[0], tc.reset)):
				t.Fatalf("resets %v, want [%v]", resets, tc.reset)
			}
			for _, ev := range evs {
				if ev.GetText() != fmt.Sprint("m", ev.GetSeq()) {
					t.Fatalf("seq %d carries %q", ev.GetSeq(), ev.GetText())
				}
			}
			late.sync(t, n, "r")
			if after := events(t, late.snapshot()[i:]); len(after) > 0 {
				t.Fatalf("events after the ack: %v", seqs(after))
			}
		})
	}
}

func TestRoomHistoryPaging(t *testing.T) {
	t.Parallel()
	const latest = 12
	// A window of 5 makes some pages come from memory (seqs 8..12), some
	// from the store, and some from both sides of the boundary.
	n := newTestNode(t, Config{History: 5})
	provision(t, n.cfg.Store, "r", "alice")
	p := newProbe(t, n)
	for i := range latest {
		postTo(n, p, "r", "alice", fmt.Sprint("m", i+1), fmt.Sprint("c", i+1), fmt.Sprint("p", i))
	}
	p.ackFor(t, fmt.Sprint("p", latest-1))

	for i, tc := range []struct {
		name          string
		before, limit uint64
		want          []uint64
		hasMore       bool
	}{
		{"newest page", 0, 4, seqRange(9, 12), true},
		{"next page", 9, 4, seqRange(5, 8), true},
		{"oldest page", 5, 4, seqRange(1, 4), false},
		{"before the first", 1, 4, nil, false},
		{"window only", 11, 3, seqRange(8, 10), true},
		{"across the window edge", 10, 4, seqRange(6, 9), true},
		{"short last page", 3, 4, seqRange(1, 2), false},
		{"exactly everything", 13, 12, seqRange(1, 12), false},
		{"default limit", 0, 0, seqRange(1, 12), false},
		{"before beyond latest", 1000, 2, seqRange(11, 12), true},
		{"huge limit is capped, still all", 0, 100000, seqRange(1, 12), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprint("h", i)
			before := len(p.snapshot())
			n.Directory().Tell(n.System.Root, &actorpb.RoomHistory{Room: "r", BeforeSeq: tc.before, Limit: uint32(tc.limit), RequestId: id, Session: p.pid})
			if ack := p.ackFor(t, id); ack.GetSeq() != latest {
				t.Fatalf("ack seq %d, want %d", ack.GetSeq(), latest)
			}
			var pages []*parleypb.HistoryPage
			for _, m := range p.snapshot()[before:] {
				if hp, ok := m.(*parleypb.HistoryPage); ok {
					pages = append(pages, hp)
				}
			}
			if len(pages) != 1 {
				t.Fatalf("%d history pages, want 1", len(pages))
			}
			page := pages[0]
			if got := seqs(page.GetEvents()); !slices.Equal(got, tc.want) {
				t.Fatalf("page seqs %v, want %v (ascending)", got, tc.want)
			}
			if page.GetHasMore() != tc.hasMore || page.GetRoom() != "r" {
				t.Fatalf("has_more %v room %q, want %v r", page.GetHasMore(), page.GetRoom(), tc.hasMore)
			}
			for _, ev := range page.GetEvents() {
				if ev.GetText() != fmt.Sprint("m", ev.GetSeq()) || ev.GetSender() != "alice" || ev.GetClientMsgId() != fmt.Sprint("c", ev.GetSeq()) {
					t.Fatalf("event %v", ev)
				}
			}
		})
	}
}

// TestRoomCoalescesPresence: joins and departures that reach a room
// together are announced together, one event per member instead of one per
// user, and a join undone before it was announced is not announced at all.
func TestRoomCoalescesPresence(t *testing.T) {
	t.Parallel()
	gs := newGatedStore()
	n := newTestNode(t, Config{Store: gs})
	provision(t, gs, "r", "olga", "ann", "bob", "cid")
	olga := newProbe(t, n)
	joinRoom(n, olga, "r", "olga", "j", nil)
	olga.ackFor(t, "j")
	olga.sync(t, n, "r")
	// Her own join is announced to her too, coalesced like any other: wait
	// for it, so it is not counted among the announcements below (it came
	// late once under load).
	waitForCond(t, "olga's own join announced", func() bool {
		for _, env := range delivered(t, olga.snapshot()) {
			if slices.Contains(env.GetPresence().GetJoined(), "olga") {
				return true
			}
		}
		return false
	})
	before := len(olga.snapshot())

	// Hold the room inside a store write, so the joins below queue up in
	// its mailbox and reach it together.
	release := gs.holdNext()
	postTo(n, olga, "r", "olga", "hi", "c1", "p1")
	<-gs.entered
	others := map[string]*probe{}
	for _, u := range []string{"ann", "bob", "cid"} {
		others[u] = newProbe(t, n)
		joinRoom(n, others[u], "r", u, "j-"+u, nil)
	}
	n.Directory().Tell(n.System.Root, &actorpb.RoomLeave{Room: "r", Session: others["bob"].pid, RequestId: "bye"})
	// The router passes them on by itself: release only once all four
	// wait in the room's mailbox (else they may come apart, a flake seen
	// in CI).
	waitForCond(t, "the joins and the leave to queue in the room", func() bool {
		d := n.Stats.BusiestRooms(1)
		return len(d) == 1 && d[0].Depth >= 4
	})
	release()
	others["bob"].ackFor(t, "bye")
	olga.sync(t, n, "r")

	var announcements [][]string
	for _, env := range delivered(t, olga.snapshot()[before:]) {
		if p := env.GetPresence(); p != nil {
			announcements = append(announcements, deltas(p))
		}
	}
	if len(announcements) != 1 || !slices.Equal(announcements[0], []string{"+ann", "+cid"}) {
		t.Fatalf("olga was told %q; want one announcement [+ann +cid] (bob came and went unannounced)", announcements)
	}
}

// TestRoomCrowdIsNotAnnounced: past Config.PresenceMaxUsers connected
// users a room announces no joins and leaves (each would go to every
// member), and a join's ack lists the first members only; under it,
// announcements are as before.
func TestRoomCrowdIsNotAnnounced(t *testing.T) {
	t.Parallel()
	st := newGatedStore() // (never held: a memory store)
	n := newTestNode(t, Config{Store: st, PresenceMaxUsers: 2})
	provision(t, st, "r", "olga", "ann", "bob")
	olga := newProbe(t, n)
	joinRoom(n, olga, "r", "olga", "j", nil)
	olga.ackFor(t, "j")
	ann := newProbe(t, n)
	joinRoom(n, ann, "r", "ann", "j", nil)
	ann.ackFor(t, "j")
	waitForCond(t, "ann's join announced to olga (two users: under the limit)", func() bool {
		for _, env := range delivered(t, olga.snapshot()) {
			if slices.Contains(env.GetPresence().GetJoined(), "ann") {
				return true
			}
		}
		return false
	})

	bob := newProbe(t, n)
	joinRoom(n, bob, "r", "bob", "j", nil)
	if got := len(bob.ackFor(t, "j").GetMembers()); got != 3 {
		t.Fatalf("bob's ack lists %d members; want 3", got)
	}
	n.Directory().Tell(n.System.Root, &actorpb.RoomLeave{Room: "r", Session: ann.pid, RequestId: "bye"})
	ann.ackFor(t, "bye")
	olga.sync(t, n, "r") // everything the room sent olga before the who answer has arrived
	for _, env := range delivered(t, olga.snapshot()) {
		if p := env.GetPresence(); p != nil && (slices.Contains(p.GetJoined(), "bob") || slices.Contains(p.GetLeft(), "ann")) {
			t.Fatalf("olga was told %q with three users in the room; want no announcement past the limit of 2", deltas(p))
		}
	}
}
