package dice_test

import (
	"context"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/bots/dice"
	"github.com/parleychat/parley/codec"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/server"
	"github.com/parleychat/parley/transport/client"
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
		if ev.GetSender() != "dicebot" {
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

func hasMember(ms []*parleypb.Member, name string) bool {
	for _, m := range ms {
		if m.GetName() == name {
			return true
		}
	}
	return false
}
