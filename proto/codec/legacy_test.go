package codec_test

import (
	"encoding/json"
	"errors"
	"html"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/proto/codec"
)

func TestLegacyDecode(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		frame   string
		want    *parleypb.Envelope
		wantErr string // substring of the error; "" means success
	}{
		{
			name:  "login",
			frame: `{"type":"login","content":"alice"}`,
			want:  &parleypb.Envelope{Body: &parleypb.Envelope_Hello{Hello: &parleypb.Hello{Name: "alice"}}},
		},
		{
			// The page sends the raw name; validation is the session's job.
			name:  "login keeps markup as typed",
			frame: `{"type":"login","content":"<b>al</b>"}`,
			want:  &parleypb.Envelope{Body: &parleypb.Envelope_Hello{Hello: &parleypb.Hello{Name: "<b>al</b>"}}},
		},
		{
			name:  "user is a post to lobby",
			frame: `{"type":"user","content":"hello <world> & you"}`,
			want:  &parleypb.Envelope{Body: &parleypb.Envelope_Post{Post: &parleypb.Post{Room: codec.LegacyRoom, Text: "hello <world> & you"}}},
		},
		{
			// The tutorial server sent every field; a page echoing them back
			// must still decode.
			name:  "user with every field",
			frame: `{"type":"user","content":"hi","user":"mallory","from":"mallory","ip":"1.2.3.4","user_list":["a"]}`,
			want:  &parleypb.Envelope{Body: &parleypb.Envelope_Post{Post: &parleypb.Post{Room: codec.LegacyRoom, Text: "hi"}}},
		},
		{
			name:  "logout leaves lobby",
			frame: `{"type":"logout"}`,
			want:  &parleypb.Envelope{Body: &parleypb.Envelope_Leave{Leave: &parleypb.Leave{Room: codec.LegacyRoom}}},
		},
		{name: "unknown type", frame: `{"type":"system","content":"x"}`, wantErr: `unknown legacy message type "system"`},
		{name: "handshake is server-only", frame: `{"type":"handshake"}`, wantErr: "unknown legacy message type"},
		{name: "type case matters", frame: `{"type":"LOGIN","content":"a"}`, wantErr: "unknown legacy message type"},
		{name: "no type", frame: `{"content":"x"}`, wantErr: `unknown legacy message type ""`},
		{name: "null", frame: `null`, wantErr: "unknown legacy message type"},
		{name: "bad JSON", frame: `{"type":"user",`, wantErr: "bad legacy JSON"},
		{name: "not an object", frame: `["user","hi"]`, wantErr: "bad legacy JSON"},
		{name: "type not a string", frame: `{"type":1}`, wantErr: "bad legacy JSON"},
		{name: "empty frame", frame: ``, wantErr: "bad legacy JSON"},
		{name: "trailing garbage", frame: `{"type":"logout"} x`, wantErr: "bad legacy JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := codec.Legacy.Decode([]byte(tc.frame))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Decode(%s) = %v, %v; want an error containing %q", tc.frame, got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode(%s): %v", tc.frame, err)
			}
			if !proto.Equal(got, tc.want) {
				t.Fatalf("Decode(%s)\n got: %v\nwant: %v", tc.frame, got, tc.want)
			}
		})
	}
}

// nasty is a string with every character html.EscapeString rewrites, shaped
// like the attack LEGACY-PROTOCOL.md warns about.
const nasty = `<img src=x onerror="alert('1')">&amp;`

// legacyFields decodes a legacy frame strictly: every field the tutorial's
// server sent must be present, and user_list must be an array, never null.
func legacyFields(t *testing.T, frame []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(frame, &m); err != nil {
		t.Fatalf("frame %s is not a JSON object: %v", frame, err)
	}
	for _, k := range []string{"type", "content", "user", "from", "ip", "user_list"} {
		if _, ok := m[k]; !ok {
			t.Errorf("frame %s lacks field %q", frame, k)
		}
	}
	if _, ok := m["user_list"].([]any); !ok {
		t.Errorf("frame %s: user_list is %T, want an array", frame, m["user_list"])
	}
	return m
}

func userList(m map[string]any) []string {
	var out []string
	list, _ := m["user_list"].([]any)
	for _, v := range list {
		s, _ := v.(string)
		out = append(out, s)
	}
	return out
}

func TestLegacyEncode(t *testing.T) {
	t.Parallel()
	esc := html.EscapeString(nasty)
	members := []*parleypb.Member{{Name: "alice"}, {Name: nasty}, {Name: "b&b"}}
	escList := []string{"alice", esc, "b&amp;b"}
	for _, tc := range []struct {
		name string
		env  *parleypb.Envelope
		want map[string]any // expected string fields
		list []string       // expected user_list
	}{
		{
			name: "event",
			env:  &parleypb.Envelope{Body: &parleypb.Envelope_Event{Event: &parleypb.RoomEvent{Room: "lobby", Seq: 3, Sender: nasty, Text: nasty + " says hi"}}},
			want: map[string]any{"type": "user", "content": esc + " says hi", "user": esc, "from": esc, "ip": ""},
			list: []string{},
		},
		{
			name: "presence join",
			env:  &parleypb.Envelope{Body: &parleypb.Envelope_Presence{Presence: &parleypb.PresenceEvent{Room: "lobby", Joined: []string{nasty}, Members: members}}},
			want: map[string]any{"type": "login", "content": esc, "user": esc, "from": esc, "ip": ""},
			list: escList,
		},
		{
			name: "presence leave",
			env:  &parleypb.Envelope{Body: &parleypb.Envelope_Presence{Presence: &parleypb.PresenceEvent{Room: "lobby", Left: []string{nasty}, Members: members[:1]}}},
			want: map[string]any{"type": "logout", "content": esc, "ip": ""},
			list: escList[:1],
		},
		{
			name: "presence leave of the last user",
			env:  &parleypb.Envelope{Body: &parleypb.Envelope_Presence{Presence: &parleypb.PresenceEvent{Room: "lobby", Left: []string{"alice"}}}},
			want: map[string]any{"type": "logout", "content": "alice"},
			list: []string{},
		},
		{
			name: "error",
			env:  &parleypb.Envelope{Body: &parleypb.Envelope_Error{Error: &parleypb.Error{Code: parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST, Text: "name " + nasty}}},
			want: map[string]any{"type": "system", "content": "name " + esc, "user": "", "from": ""},
			list: []string{},
		},
		{
			name: "notice",
			env:  &parleypb.Envelope{Body: &parleypb.Envelope_Notice{Notice: &parleypb.Notice{Text: nasty}}},
			want: map[string]any{"type": "system", "content": esc},
			list: []string{},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			frame, err := codec.Legacy.Encode(tc.env)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if strings.ContainsAny(string(frame), "<>'") {
				t.Errorf("frame %s carries unescaped markup", frame)
			}
			if strings.HasSuffix(string(frame), "\n") {
				t.Errorf("frame %q ends in a newline", frame)
			}
			m := legacyFields(t, frame)
			for k, v := range tc.want {
				if m[k] != v {
					t.Errorf("%s = %q, want %q", k, m[k], v)
				}
			}
			if got := userList(m); !slices.Equal(got, tc.list) {
				t.Errorf("user_list = %q, want %q", got, tc.list)
			}
		})
	}
}

func TestLegacyEncodeNoFrame(t *testing.T) {
	t.Parallel()
	samples := sampleEnvelopes()
	for _, name := range []string{"ack", "welcome", "history_page", "batch", "room_list", "hello", "post", "typing", "reset_event"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			frame, err := codec.Legacy.Encode(samples[name])
			if !errors.Is(err, codec.ErrNoFrame) {
				t.Fatalf("Encode(%s) = %s, %v; want ErrNoFrame", name, frame, err)
			}
		})
	}
	t.Run("nil body", func(t *testing.T) {
		t.Parallel()
		if _, err := codec.Legacy.Encode(&parleypb.Envelope{}); !errors.Is(err, codec.ErrNoFrame) {
			t.Fatalf("err = %v, want ErrNoFrame", err)
		}
	})
}

// A legacy presence frame names one user; a batched delta has no legacy
// form, and must be an error rather than a frame naming only one of them.
func TestLegacyEncodePresenceNotOneUser(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		p    *parleypb.PresenceEvent
	}{
		{"snapshot", &parleypb.PresenceEvent{Members: []*parleypb.Member{{Name: "a"}}}},
		{"two joined", &parleypb.PresenceEvent{Joined: []string{"a", "b"}}},
		{"joined and left", &parleypb.PresenceEvent{Joined: []string{"a"}, Left: []string{"b"}}},
		{"two left", &parleypb.PresenceEvent{Left: []string{"a", "b"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			frame, err := codec.Legacy.Encode(&parleypb.Envelope{Body: &parleypb.Envelope_Presence{Presence: tc.p}})
			if err == nil || errors.Is(err, codec.ErrNoFrame) {
				t.Fatalf("Encode = %s, %v; want an error naming the counts", frame, err)
			}
		})
	}
}

func TestLegacyHandshake(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		ip      string
		members []*parleypb.Member
		wantIP  string
		list    []string
	}{
		{"empty lobby", "192.0.2.7:51234", nil, "192.0.2.7:51234", []string{}},
		{"ipv6", "[2001:db8::1]:443", []*parleypb.Member{{Name: "alice", Devices: 2}}, "[2001:db8::1]:443", []string{"alice"}},
		// The address comes from the connection (a proxy header, say);
		// it is rendered with innerHTML like everything else.
		{"escaped", "<script>x</script>", []*parleypb.Member{{Name: nasty}, {Name: "bob"}}, "&lt;script&gt;x&lt;/script&gt;", []string{html.EscapeString(nasty), "bob"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			frame := codec.LegacyHandshake(tc.ip, tc.members)
			m := legacyFields(t, frame)
			if m["type"] != "handshake" || m["ip"] != tc.wantIP || m["content"] != "" {
				t.Errorf("type, ip, content = %q, %q, %q; want handshake, %q, empty", m["type"], m["ip"], m["content"], tc.wantIP)
			}
			if got := userList(m); !slices.Equal(got, tc.list) {
				t.Errorf("user_list = %q, want %q", got, tc.list)
			}
		})
	}
}

func TestLegacyUserListKeepsOrder(t *testing.T) {
	t.Parallel()
	got := codec.LegacyUserList([]*parleypb.Member{{Name: "zed"}, {Name: "<a>"}, {Name: "amy"}})
	if want := []string{"zed", "&lt;a&gt;", "amy"}; !slices.Equal(got, want) {
		t.Fatalf("LegacyUserList = %q, want %q (login order, escaped)", got, want)
	}
	if got := codec.LegacyUserList(nil); got == nil || len(got) != 0 {
		t.Fatalf("LegacyUserList(nil) = %#v, want an empty non-nil list", got)
	}
}
