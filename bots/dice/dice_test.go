package dice_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/parleychat/parley/actors"
	"github.com/parleychat/parley/actors/actorpb"
	"github.com/parleychat/parley/bots/dice"
	"github.com/parleychat/parley/client"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/proto/codec"
	"github.com/parleychat/parley/server"
	"github.com/parleychat/parley/store"
)

func TestRoll(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name, in string
		ok       bool
		want     *regexp.Regexp
	}{
		{"two dice", "/roll 2d6", true, regexp.MustCompile(`^rolled 2d6: [1-6] \+ [1-6] = \d+$`)},
		{"one die", "/roll 1d20", true, regexp.MustCompile(`^rolled 1d20: \d+$`)},
		{"too many", "/roll 101d6", true, regexp.MustCompile(`^asked for 101d6; I roll 1 to 100 dice`)},
		{"one face", "/roll 1d1", true, regexp.MustCompile(`^asked for 1d1`)},
		{"garbage", "/roll lots", true, regexp.MustCompile(`try /roll 2d6`)},
		{"not a command", "hello /roll 2d6", false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := dice.Roll(tc.in, r)
			if ok != tc.ok || (ok && !tc.want.MatchString(got)) {
				t.Fatalf("Roll(%q) = %q, %v", tc.in, got, ok)
			}
		})
	}
}

// TestBotAnswersInRoom runs the bot on a real server: it answers rolls
// posted by a WebSocket client, and nothing else.
func TestBotAnswersInRoom(t *testing.T) {
	t.Parallel()
	cfg := server.Config{Addr: "127.0.0.1:0"}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	if _, err := dice.Spawn(srv.Node, dice.Options{Rooms: []string{"games"}, Rand: rand.New(rand.NewPCG(7, 7))}); err != nil {
		t.Fatal(err)
	}
	// Spawn returns before the bot's own join reaches the room; alice's
	// could get there first and miss it in her member list.
	waitFor(t, "the bot to join", func() error {
		ms, err := srv.Node.RoomMembers(t.Context(), "games")
		if err != nil || len(ms) != 1 {
			return fmt.Errorf("members %v, %v", ms, err)
		}
		return nil
	})

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, srv.URL(), codec.JSON, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if err := c.Hello(ctx, "alice", false); err != nil {
		t.Fatal(err)
	}
	ack, err := c.Join(ctx, "games", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !hasMember(ack.GetMembers(), "dicebot") {
		t.Fatalf("members %v lack dicebot", ack.GetMembers())
	}
	for _, text := range []string{"hello there", "/roll 3d6"} {
		if _, err := c.Post(ctx, "games", text, text); err != nil {
			t.Fatal(err)
		}
	}
	for {
		env, err := c.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for the bot's answer: %v", err)
		}
		ev := env.GetEvent()
		// The bot's own JOINED (it is a member) is not something it said.
		if ev.GetSender() != "dicebot" || ev.GetChange() != nil {
			continue
		}
		m := regexp.MustCompile(`^alice rolled 3d6: ([1-6]) \+ ([1-6]) \+ ([1-6]) = (\d+)$`).FindStringSubmatch(ev.GetText())
		if m == nil {
			t.Fatalf("bot said %q, want alice's 3d6 roll (and nothing about 'hello there')", ev.GetText())
		}
		sum := 0
		for _, d := range m[1:4] {
			v, _ := strconv.Atoi(d)
			sum += v
		}
		if strconv.Itoa(sum) != m[4] {
			t.Fatalf("bot cannot add: %q", ev.GetText())
		}
		if !strings.HasPrefix(ev.GetClientMsgId(), "roll-") {
			t.Fatalf("reply client_msg_id = %q", ev.GetClientMsgId())
		}
		return
	}
}

// rollStore stores like the memory store, and can be told to hold the
// next append (so posts pile up and commit together) or to store the next
// one and still report a failure (an ambiguous commit: the room fails the
// posts, and its members never get those events live).
type rollStore struct {
	*store.Memory
	mu     sync.Mutex
	hold   chan struct{}
	held   chan struct{}
	liesTo int
	// rollWrites counts the appends that held any of alice's rolls.
	rollWrites int
}

func (s *rollStore) Commit(ctx context.Context, b store.Batch) error {
	msgs := b.Messages
	s.mu.Lock()
	hold, lie := s.hold, s.liesTo > 0
	s.hold = nil
	if lie {
		s.liesTo--
	}
	for _, m := range msgs {
		if m.Sender == "alice" && strings.HasPrefix(m.Text, "/roll") {
			s.rollWrites++
			break
		}
	}
	s.mu.Unlock()
	if hold != nil {
		s.held <- struct{}{}
		<-hold
	}
	if err := s.Memory.Commit(ctx, b); err != nil || !lie {
		return err
	}
	return errors.New("connection reset after commit")
}

// rollNode runs a node with the bot in room "r" and a poster actor that
// posts there and collects the answers.
type rollNode struct {
	n      *actors.Node
	st     *rollStore
	poster *actor.PID
	mu     sync.Mutex
	answer map[string]string // request id -> "ack" or the error code
}

func newRollNode(t *testing.T) *rollNode {
	t.Helper()
	st := &rollStore{Memory: store.NewMemory(), held: make(chan struct{}, 1)}
	n, err := actors.NewNode(actors.Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.Shutdown(ctx)
	})
	rn := &rollNode{n: n, st: st, answer: make(map[string]string)}
	rn.poster = n.System.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		rn.mu.Lock()
		defer rn.mu.Unlock()
		switch m := c.Message().(type) {
		case *parleypb.Ack:
			rn.answer[m.GetRequestId()] = "ack"
		case *parleypb.Error:
			rn.answer[m.GetRequestId()] = m.GetCode().String()
		}
	}))
	if _, err := dice.Spawn(n, dice.Options{Rooms: []string{"r"}, Rand: rand.New(rand.NewPCG(3, 4))}); err != nil {
		t.Fatal(err)
	}
	// The bot is in once the room lists it.
	waitFor(t, "the bot to join", func() error {
		ms, err := n.RoomMembers(t.Context(), "r")
		if err != nil || len(ms) != 1 {
			return fmt.Errorf("members %v, %v", ms, err)
		}
		return nil
	})
	return rn
}

func (rn *rollNode) rollWrites() int {
	rn.st.mu.Lock()
	defer rn.st.mu.Unlock()
	return rn.st.rollWrites
}

func (rn *rollNode) post(id, text string) {
	rn.n.Directory().Tell(rn.n.System.Root, &actorpb.RoomPost{Room: "r", User: "alice", Text: text, ClientMsgId: id, RequestId: id, Session: rn.poster})
}

// answered waits for the answer to request id and checks it.
func (rn *rollNode) answered(t *testing.T, id, want string) {
	t.Helper()
	waitFor(t, "the answer to "+id, func() error {
		rn.mu.Lock()
		defer rn.mu.Unlock()
		switch got := rn.answer[id]; got {
		case "":
			return errors.New("no answer yet")
		case want:
			return nil
		default:
			t.Fatalf("%s answered %s, want %s", id, got, want)
			return nil
		}
	})
}

// answers checks that the store holds exactly one answer from the bot to
// each of alice's rolls, and nothing else from it.
func (rn *rollNode) answers(t *testing.T, rolls int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d answers", rolls), func() error {
		msgs, err := rn.st.After(t.Context(), "r", 0, 10000)
		if err != nil {
			return err
		}
		rollSeqs := map[string]bool{}
		answered := map[string]int{}
		for _, m := range msgs {
			switch {
			case m.Sender == "alice" && strings.HasPrefix(m.Text, "/roll"):
				rollSeqs["roll-"+strconv.FormatUint(m.Seq, 10)] = true
			case len(m.Body) != 0:
				// A change to the room (the bot's JOINED): not an answer.
			case m.Sender == "dicebot":
				answered[m.ClientMsgID]++
			}
		}
		if len(rollSeqs) != rolls {
			return fmt.Errorf("%d rolls stored, want %d", len(rollSeqs), rolls)
		}
		for id, n := range answered {
			if !rollSeqs[id] || n != 1 {
				return fmt.Errorf("answer %s stored %d times (a roll: %v)", id, n, rollSeqs[id])
			}
		}
		if len(answered) != rolls {
			return fmt.Errorf("%d of %d rolls answered", len(answered), rolls)
		}
		return nil
	})
}

// TestBotAnswersABurstCommittedTogether: rolls that pile up behind a slow
// store write reach the bot as one DeliverBatch; it answers each once.
func TestBotAnswersABurstCommittedTogether(t *testing.T) {
	t.Parallel()
	rn := newRollNode(t)
	release := make(chan struct{})
	rn.st.mu.Lock()
	rn.st.hold = release
	rn.st.mu.Unlock()
	rn.post("warm-up", "the store is slow today")
	<-rn.st.held // the room is inside the warm-up's write
	const rolls = 50
	for i := range rolls {
		rn.post(fmt.Sprint("roll", i), "/roll 2d6")
	}
	waitFor(t, "the rolls to queue in the room", func() error {
		if d := rn.n.Stats.BusiestRooms(1); len(d) == 0 || d[0].Depth < rolls {
			return fmt.Errorf("room mailbox %v", d)
		}
		return nil
	})
	close(release)
	for i := range rolls {
		rn.answered(t, fmt.Sprint("roll", i), "ack")
	}
	// The fifty rolls in one write: one DeliverBatch.
	if got := rn.rollWrites(); got != 1 {
		t.Fatalf("the rolls took %d writes; the test wants them committed together", got)
	}
	rn.answers(t, rolls)
}

// TestBotAnswersRollsItGetsInAReplay: rolls the bot never got live (a
// commit the store reported as failed although it had stored it) reach it
// through the replay that the member contract asks for when it sees the
// gap; it answers each once.
func TestBotAnswersRollsItGetsInAReplay(t *testing.T) {
	t.Parallel()
	rn := newRollNode(t)
	rn.st.mu.Lock()
	rn.st.liesTo = 1
	rn.st.mu.Unlock()
	rn.post("lost", "/roll 1d6") // stored, reported failed, delivered to nobody
	rn.answered(t, "lost", "ERROR_CODE_UNAVAILABLE")
	// The next post reuses its seq: a conflict, and the room reloads.
	rn.post("conflict", "/roll 1d4")
	rn.answered(t, "conflict", "ERROR_CODE_UNAVAILABLE")
	// This one lands behind the lost roll; the bot sees the gap.
	rn.post("after", "/roll 1d8")
	rn.answered(t, "after", "ack")
	rn.answers(t, 2)
}

func hasMember(ms []*parleypb.Member, name string) bool {
	for _, m := range ms {
		if m.GetName() == name {
			return true
		}
	}
	return false
}

// waitFor polls try until it returns nil, or fails the test after 10 s.
func waitFor(t *testing.T, what string, try func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for err := try(); err != nil; err = try() {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
}
