package codec_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/proto/codec"
)

// sampleEnvelopes has one envelope per Envelope body kind, keyed by the
// oneof field's proto name, with every field set to something non-zero so a
// codec that drops a field fails the round trip. TestSamplesCoverEveryBody
// keeps it complete when the proto grows a kind.
func sampleEnvelopes() map[string]*parleypb.Envelope {
	since := uint64(7)
	event := &parleypb.RoomEvent{Room: "general", Seq: 42, TimeMs: 1764000000123, Sender: "alice", Text: "hi <b>bob</b> & ünïcödé 🎉", ClientMsgId: "a-42",
		SenderKind: parleypb.SenderKind_SENDER_KIND_USER, ReplyTo: 40, Mentions: []string{"bob", "carol"}, EditedMs: 1764000000999,
		Reactions: []*parleypb.Reaction{{Emoji: "👍🏽", Count: 3, Mine: true}}}
	members := []*parleypb.Member{{Name: "alice", Devices: 2}, {Name: "bob", Devices: 1}}
	return map[string]*parleypb.Envelope{
		"hello":          {Id: "r1", Body: &parleypb.Envelope_Hello{Hello: &parleypb.Hello{Name: "alice", WatchOnline: true, Token: "eyJhbGciOiJIUzI1NiJ9.e30.sig"}}},
		"join":           {Id: "r2", Body: &parleypb.Envelope_Join{Join: &parleypb.Join{Room: "general", Since: &since}}},
		"leave":          {Id: "r3", Body: &parleypb.Envelope_Leave{Leave: &parleypb.Leave{Room: "general"}}},
		"post":           {Id: "r4", Body: &parleypb.Envelope_Post{Post: &parleypb.Post{Room: "general", Text: "line one\nline\ttwo", ClientMsgId: "c-1", ReplyTo: 41, Mentions: []string{"bob"}}}},
		"edit":           {Id: "r4e", Body: &parleypb.Envelope_Edit{Edit: &parleypb.EditMessage{Room: "general", Seq: 41, Text: "fixed", ClientMsgId: "c-2"}}},
		"delete_message": {Id: "r4d", Body: &parleypb.Envelope_DeleteMessage{DeleteMessage: &parleypb.DeleteMessage{Room: "general", Seq: 41, ClientMsgId: "c-3", Reason: "spam"}}},
		"mark_read":      {Id: "r4m", Body: &parleypb.Envelope_MarkRead{MarkRead: &parleypb.MarkRead{Room: "general", Seq: 41}}},
		"react":          {Id: "r4r", Body: &parleypb.Envelope_React{React: &parleypb.React{Room: "general", Seq: 41, Emoji: "🎉", Remove: true, ClientMsgId: "c-4"}}},
		"typing":         {Id: "r5", Body: &parleypb.Envelope_Typing{Typing: &parleypb.Typing{Room: "general", User: "bob"}}},
		"history":        {Id: "r6", Body: &parleypb.Envelope_History{History: &parleypb.HistoryRequest{Room: "general", BeforeSeq: 100, Limit: 25}}},
		"ping":           {Id: "r7", Body: &parleypb.Envelope_Ping{Ping: &parleypb.Ping{}}},
		"who":            {Id: "r8", Body: &parleypb.Envelope_Who{Who: &parleypb.WhoRequest{}}},
		"rooms":          {Id: "r9", Body: &parleypb.Envelope_Rooms{Rooms: &parleypb.RoomsRequest{}}},
		"refresh":        {Id: "r10", Body: &parleypb.Envelope_Refresh{Refresh: &parleypb.Refresh{Token: "eyJhbGciOiJIUzI1NiJ9.e30.sig2"}}},
		"welcome": {Body: &parleypb.Envelope_Welcome{Welcome: &parleypb.Welcome{SessionId: "s1", Name: "alice", MaxMessageBytes: 65536, MaxRooms: 100, IdleTimeoutMs: 60000,
			MaxTextChars: 4000, Rate: 20.5, Burst: 40, TokenExpiresMs: 1764000060000}}},
		"ack":          {Body: &parleypb.Envelope_Ack{Ack: &parleypb.Ack{RequestId: "r2", Room: "general", Seq: 42, Members: members}}},
		"error":        {Body: &parleypb.Envelope_Error{Error: &parleypb.Error{RequestId: "r4", Code: parleypb.ErrorCode_ERROR_CODE_RATE_LIMITED, Text: "slow down", Room: "general"}}},
		"event":        {Body: &parleypb.Envelope_Event{Event: event}},
		"presence":     {Body: &parleypb.Envelope_Presence{Presence: &parleypb.PresenceEvent{Room: "general", Joined: []string{"carol"}, Left: []string{"dave"}, Members: members}}},
		"history_page": {Body: &parleypb.Envelope_HistoryPage{HistoryPage: &parleypb.HistoryPage{Room: "general", Events: []*parleypb.RoomEvent{event, {Room: "general", Seq: 43, Sender: "bob", Text: "yo"}}, HasMore: true}}},
		"batch": {Body: &parleypb.Envelope_Batch{Batch: &parleypb.Batch{Items: []*parleypb.Envelope{
			{Body: &parleypb.Envelope_Event{Event: event}},
			{Body: &parleypb.Envelope_Notice{Notice: &parleypb.Notice{Text: "nested"}}},
		}}}},
		"notice": {Body: &parleypb.Envelope_Notice{Notice: &parleypb.Notice{Text: "server restarting in 5 minutes"}}},
		"read_positions": {Body: &parleypb.Envelope_ReadPositions{ReadPositions: &parleypb.ReadPositions{Room: "team", Snapshot: true,
			Positions: []*parleypb.ReadPosition{{User: "alice", Seq: 41}, {User: "bob", Seq: 38}}}}},
		"room_list":   {Body: &parleypb.Envelope_RoomList{RoomList: &parleypb.RoomList{Rooms: []*parleypb.RoomInfo{{Name: "general", Members: 12}, {Name: "random", Members: 3}}}}},
		"reset_event": {Body: &parleypb.Envelope_ResetEvent{ResetEvent: &parleypb.Reset{Room: "general", Since: 3, OldestSeq: 40}}},
		"create_room": {Id: "r11", Body: &parleypb.Envelope_CreateRoom{CreateRoom: &parleypb.CreateRoom{Room: "team", Kind: parleypb.RoomKind_ROOM_KIND_PRIVATE, Title: "The team", Topic: "plans", Invite: []string{"bob"}}}},
		"direct":      {Id: "r12", Body: &parleypb.Envelope_Direct{Direct: &parleypb.DirectMessage{To: "bob", Text: "psst", ClientMsgId: "d-1"}}},
		"moderate": {Id: "r13", Body: &parleypb.Envelope_Moderate{Moderate: &parleypb.Moderate{Room: "team", User: "mallory", Action: parleypb.ModAction_MOD_ACTION_BAN,
			Role: parleypb.Role_ROLE_MODERATOR, Reason: "spam", UntilMs: 1764000000000}}},
		"update_room": {Id: "r14", Body: &parleypb.Envelope_UpdateRoom{UpdateRoom: &parleypb.UpdateRoom{Room: "team", Title: proto.String("New title"), Topic: proto.String("")}}},
		"delete_room": {Id: "r15", Body: &parleypb.Envelope_DeleteRoom{DeleteRoom: &parleypb.DeleteRoom{Room: "team", Reason: "done"}}},
		"members":     {Id: "r16", Body: &parleypb.Envelope_Members{Members: &parleypb.MembersRequest{Room: "team", After: "alice", Limit: 50}}},
		"room": {Body: &parleypb.Envelope_Room{Room: &parleypb.RoomInfo{Name: "team", Members: 3, Kind: parleypb.RoomKind_ROOM_KIND_PRIVATE, Title: "The team", Topic: "plans",
			LastSeq: 9, Role: parleypb.Role_ROLE_MODERATOR, Invited: true, BannedUntilMs: 1, MutedUntilMs: 2, CreatedBy: "alice", CreatedMs: 3, DirectWith: "bob", Deleted: true,
			ReadSeq: 7, Unread: 2, UnreadMentions: 1}}},
		"member_list": {Body: &parleypb.Envelope_MemberList{MemberList: &parleypb.MemberList{Room: "team", Next: "carol", Members: []*parleypb.MemberInfo{
			{User: "bob", Role: parleypb.Role_ROLE_MEMBER, Invited: true, InvitedBy: "alice", SinceMs: 4, BannedUntilMs: 5, MutedUntilMs: 6}}}}},
	}
}

// sortedKeys keeps subtest order stable, so -run patterns and failures read
// the same on every run.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func TestSamplesCoverEveryBody(t *testing.T) {
	t.Parallel()
	samples := sampleEnvelopes()
	fields := (&parleypb.Envelope{}).ProtoReflect().Descriptor().Oneofs().ByName("body").Fields()
	for i := range fields.Len() {
		name := string(fields.Get(i).Name())
		env, ok := samples[name]
		if !ok {
			t.Errorf("no sample for Envelope body %q: add one to sampleEnvelopes", name)
			continue
		}
		if got := env.ProtoReflect().WhichOneof(fields.Get(i).ContainingOneof()); got == nil || got.Name() != fields.Get(i).Name() {
			t.Errorf("sample %q sets body %v", name, got)
		}
	}
	if len(samples) != fields.Len() {
		t.Errorf("%d samples for %d body kinds", len(samples), fields.Len())
	}
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	samples := sampleEnvelopes()
	for _, cd := range []codec.Codec{codec.Proto, codec.JSON} {
		for _, name := range sortedKeys(samples) {
			env := samples[name]
			t.Run(cd.Subprotocol()+"/"+name, func(t *testing.T) {
				t.Parallel()
				frame, err := cd.Encode(env)
				if err != nil {
					t.Fatalf("Encode: %v", err)
				}
				got, err := cd.Decode(frame)
				if err != nil {
					t.Fatalf("Decode(%q): %v", frame, err)
				}
				if !proto.Equal(got, env) {
					t.Fatalf("round trip changed the envelope\n got: %v\nwant: %v", got, env)
				}
			})
		}
	}
}

func TestAppendBatch(t *testing.T) {
	t.Parallel()
	samples := sampleEnvelopes()
	var plain []*parleypb.Envelope // every kind but batch, whose frames AppendBatch treats specially
	for _, name := range sortedKeys(samples) {
		if name != "batch" {
			plain = append(plain, samples[name])
		}
	}
	a, b, c, d := samples["event"], samples["notice"], samples["presence"], samples["ack"]
	withID := &parleypb.Envelope{Id: "x", Body: &parleypb.Envelope_Batch{Batch: &parleypb.Batch{Items: []*parleypb.Envelope{a}}}}

	// A part is either an envelope, encoded on its own, or a batch frame
	// built by AppendBatch from envelopes, as a session builds a replay page.
	type part struct {
		env   *parleypb.Envelope
		batch []*parleypb.Envelope
		isBat bool
	}
	one := func(envs ...*parleypb.Envelope) []part {
		ps := make([]part, len(envs))
		for i, e := range envs {
			ps[i] = part{env: e}
		}
		return ps
	}
	cases := []struct {
		name  string
		parts []part
		want  []*parleypb.Envelope
	}{
		{"empty", nil, nil},
		{"one", one(a), []*parleypb.Envelope{a}},
		{"every kind", one(plain...), plain},
		// Identical frames must stay separate items, not be merged.
		{"repeated", one(a, a, a), []*parleypb.Envelope{a, a, a}},
		// A batch never holds a batch: a batch frame is spliced in flat.
		{"batch frame spliced", []part{{env: a}, {batch: []*parleypb.Envelope{b, c}, isBat: true}, {env: d}}, []*parleypb.Envelope{a, b, c, d}},
		{"empty batch frame vanishes", []part{{env: a}, {isBat: true}, {env: b}}, []*parleypb.Envelope{a, b}},
		{"only batch frames", []part{{batch: []*parleypb.Envelope{a}, isBat: true}, {batch: []*parleypb.Envelope{b, c}, isBat: true}}, []*parleypb.Envelope{a, b, c}},
		// An envelope that carries more than a batch is not AppendBatch's
		// output and stays one item.
		{"batch with an id stays whole", one(a, withID), []*parleypb.Envelope{a, withID}},
	}
	for _, cd := range []codec.Codec{codec.Proto, codec.JSON} {
		for _, tc := range cases {
			t.Run(cd.Subprotocol()+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				encode := func(env *parleypb.Envelope) []byte {
					f, err := cd.Encode(env)
					if err != nil {
						t.Fatalf("Encode %v: %v", env, err)
					}
					return f
				}
				frames := make([][]byte, len(tc.parts))
				for i, p := range tc.parts {
					if !p.isBat {
						frames[i] = encode(p.env)
						continue
					}
					var inner [][]byte
					for _, e := range p.batch {
						inner = append(inner, encode(e))
					}
					f, ok := cd.AppendBatch(nil, inner)
					if !ok {
						t.Fatal("AppendBatch reported it cannot batch")
					}
					frames[i] = f
				}
				// A non-empty dst checks that AppendBatch appends rather
				// than overwrites: transport reuses pooled buffers.
				prefix := []byte("prefix")
				out, ok := cd.AppendBatch(slices.Clone(prefix), frames)
				if !ok {
					t.Fatal("AppendBatch reported it cannot batch")
				}
				if !bytes.HasPrefix(out, prefix) {
					t.Fatalf("AppendBatch clobbered dst: %q", out[:min(len(out), len(prefix))])
				}
				got, err := cd.Decode(out[len(prefix):])
				if err != nil {
					t.Fatalf("Decode batch %q: %v", out[len(prefix):], err)
				}
				if got.GetBatch() == nil {
					t.Fatalf("decoded %v, want a batch", got)
				}
				items := got.GetBatch().GetItems()
				if len(items) != len(tc.want) {
					t.Fatalf("batch has %d items, want %d: %v", len(items), len(tc.want), items)
				}
				for i := range items {
					if !proto.Equal(items[i], tc.want[i]) {
						t.Errorf("item %d\n got: %v\nwant: %v", i, items[i], tc.want[i])
					}
				}
			})
		}
	}
}

func TestLegacyCannotBatch(t *testing.T) {
	t.Parallel()
	dst := []byte("keep")
	out, ok := codec.Legacy.AppendBatch(dst, [][]byte{[]byte(`{"type":"user"}`)})
	if ok {
		t.Fatal("legacy AppendBatch reported ok; the tutorial page reads one object per frame")
	}
	if string(out) != "keep" {
		t.Fatalf("legacy AppendBatch changed dst to %q", out)
	}
}

func TestFor(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		kind parleypb.Codec
		want codec.Codec
	}{
		{"proto", parleypb.Codec_CODEC_PROTO, codec.Proto},
		{"json", parleypb.Codec_CODEC_JSON, codec.JSON},
		{"legacy", parleypb.Codec_CODEC_LEGACY, codec.Legacy},
		{"unspecified", parleypb.Codec_CODEC_UNSPECIFIED, nil},
		{"out of range", parleypb.Codec(99), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := codec.For(tc.kind); got != tc.want {
				t.Fatalf("For(%v) = %v, want %v", tc.kind, got, tc.want)
			}
		})
	}
}

func TestBySubprotocol(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in string
		want     codec.Codec
		ok       bool
	}{
		{"proto", "parley.v1.proto", codec.Proto, true},
		{"json", "parley.v1.json", codec.JSON, true},
		{"none is legacy", "", codec.Legacy, true},
		{"unknown", "chat.v2", nil, false},
		{"other version", "parley.v2.proto", nil, false},
		{"padded", " parley.v1.json", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, ok := codec.BySubprotocol(tc.in)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("BySubprotocol(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}

// TestCodecIdentity checks that each codec's Kind, Subprotocol and Binary
// agree with the lookups, since transport and rooms reach codecs both ways.
func TestCodecIdentity(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		cd     codec.Codec
		kind   parleypb.Codec
		sub    string
		binary bool
	}{
		{"proto", codec.Proto, parleypb.Codec_CODEC_PROTO, codec.ProtoSubprotocol, true},
		{"json", codec.JSON, parleypb.Codec_CODEC_JSON, codec.JSONSubprotocol, false},
		{"legacy", codec.Legacy, parleypb.Codec_CODEC_LEGACY, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.cd.Kind() != tc.kind || tc.cd.Subprotocol() != tc.sub || tc.cd.Binary() != tc.binary {
				t.Fatalf("Kind, Subprotocol, Binary = %v, %q, %v; want %v, %q, %v",
					tc.cd.Kind(), tc.cd.Subprotocol(), tc.cd.Binary(), tc.kind, tc.sub, tc.binary)
			}
			if codec.For(tc.cd.Kind()) != tc.cd {
				t.Fatal("For(Kind()) is another codec")
			}
			if got, ok := codec.BySubprotocol(tc.cd.Subprotocol()); !ok || got != tc.cd {
				t.Fatal("BySubprotocol(Subprotocol()) is another codec")
			}
		})
	}
	if got, want := codec.Subprotocols(), []string{"parley.v1.proto", "parley.v1.json"}; !slices.Equal(got, want) {
		t.Fatalf("Subprotocols() = %q, want %q (binary preferred)", got, want)
	}
}

// TestJSONEncodeIsCompact: parley.v1.json frames are compact and the same
// in every build, as README's examples show them (protojson alone puts a
// space after each comma in some builds).
func TestJSONEncodeIsCompact(t *testing.T) {
	for _, tc := range []struct {
		env  *parleypb.Envelope
		want string
	}{
		{&parleypb.Envelope{Body: &parleypb.Envelope_Ack{Ack: &parleypb.Ack{RequestId: "2", Room: "general",
			Members: []*parleypb.Member{{Name: "bob", Devices: 1}, {Name: "alice", Devices: 1}}}}},
			`{"ack":{"requestId":"2","room":"general","members":[{"name":"bob","devices":1},{"name":"alice","devices":1}]}}`},
		{&parleypb.Envelope{Body: &parleypb.Envelope_Event{Event: &parleypb.RoomEvent{Room: "general", Seq: 1, TimeMs: 1795613617258,
			Sender: "alice", Text: `hi, bob "x", y\ `, ClientMsgId: "a-1"}}},
			`{"event":{"room":"general","seq":"1","timeMs":"1795613617258","sender":"alice","text":"hi, bob \"x\", y\\ ","clientMsgId":"a-1"}}`},
		{&parleypb.Envelope{Body: &parleypb.Envelope_Error{Error: &parleypb.Error{RequestId: "7", Code: parleypb.ErrorCode_ERROR_CODE_NOT_JOINED,
			Text: "join the room before posting to it", Room: "nowhere"}}},
			`{"error":{"requestId":"7","code":"ERROR_CODE_NOT_JOINED","text":"join the room before posting to it","room":"nowhere"}}`},
	} {
		got, err := codec.JSON.Encode(tc.env)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != tc.want {
			t.Errorf("JSON.Encode\n got %s\nwant %s", got, tc.want)
		}
		back, err := codec.JSON.Decode(got)
		if err != nil || !proto.Equal(back, tc.env) {
			t.Errorf("decode of %s: %v %v", got, back, err)
		}
	}
	// Batches built from compact frames are compact, and a batch is
	// spliced into another without nesting.
	a, _ := codec.JSON.Encode(&parleypb.Envelope{Body: &parleypb.Envelope_Ack{Ack: &parleypb.Ack{RequestId: "1"}}})
	n, _ := codec.JSON.Encode(&parleypb.Envelope{Body: &parleypb.Envelope_Notice{Notice: &parleypb.Notice{Text: "x, y"}}})
	inner, _ := codec.JSON.AppendBatch(nil, [][]byte{a, n})
	outer, _ := codec.JSON.AppendBatch(nil, [][]byte{inner, a})
	if want := `{"batch":{"items":[{"ack":{"requestId":"1"}},{"notice":{"text":"x, y"}},{"ack":{"requestId":"1"}}]}}`; string(outer) != want {
		t.Errorf("AppendBatch\n got %s\nwant %s", outer, want)
	}
}

// TestJSONEncodeSameInEveryBuild: protojson picks its whitespace from a
// hash of the running binary, so one test binary sees only one of its two
// forms. This builds a small program that encodes an envelope and runs it as
// binaries that differ in trailing bytes (which change the hash, not the
// code) until both forms were seen: every one must print the same compact
// frame.
func TestJSONEncodeSameInEveryBuild(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "jsonframes")
	if out, err := exec.Command("go", "build", "-o", bin, "./testdata/jsonframes").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	const want = `{"ack":{"requestId":"2","room":"general","members":[{"name":"bob","devices":1},{"name":"alice","devices":1}]}}`
	spaced, unspaced := 0, 0
	for i := 0; i < 32 && (spaced == 0 || unspaced == 0); i++ {
		if i > 0 {
			f, err := os.OpenFile(bin, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			_, err = f.Write([]byte{byte(i)})
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		out, err := exec.Command(bin).Output()
		if err != nil {
			t.Fatalf("run: %v", err)
		}
		raw, enc, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		if strings.Contains(raw, ", ") {
			spaced++
		} else {
			unspaced++
		}
		if enc != want {
			t.Fatalf("binary %d (protojson wrote %s):\n got %s\nwant %s", i, raw, enc, want)
		}
	}
	if spaced == 0 || unspaced == 0 {
		t.Fatalf("protojson wrote %d spaced and %d unspaced frames in 32 binaries; the test needs both forms", spaced, unspaced)
	}
}
