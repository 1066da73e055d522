package codec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html"

	parleypb "github.com/parleychat/parley/proto"
)

// LegacyRoom is the one room every legacy (tutorial) client lives in.
const LegacyRoom = "lobby"

// Legacy is the tutorial's JSON protocol (see docs/LEGACY-PROTOCOL.md),
// spoken when a client asks for no subprotocol. Its frames map onto the
// native Envelope (login is Hello, user is a Post to lobby, logout is a
// Leave of lobby), so the server handles them as native requests; what the
// conversation needs beyond that (the handshake frame, lobby joined at
// login, one login or logout frame per user) is the session's and the
// room's, in actors/session_legacy.go and actors/room_legacy.go.
//
// The tutorial's page renders every string with innerHTML, so every
// user-supplied string this codec sends is HTML-escaped.
var Legacy Codec = legacyCodec{}

// legacyFrame is the tutorial's one message shape. Every field is always
// present, as the tutorial's server sent them.
type legacyFrame struct {
	Type     string   `json:"type"`
	Content  string   `json:"content"`
	User     string   `json:"user"`
	From     string   `json:"from"`
	IP       string   `json:"ip"`
	UserList []string `json:"user_list"`
}

type legacyCodec struct{}

func (legacyCodec) Kind() parleypb.Codec { return parleypb.Codec_CODEC_LEGACY }
func (legacyCodec) Subprotocol() string  { return "" }
func (legacyCodec) Binary() bool         { return false }

func (legacyCodec) Decode(frame []byte) (*parleypb.Envelope, error) {
	var f struct {
		Type    string `json:"type"`
		Content string `json:"content"`
	}
	if err := json.Unmarshal(frame, &f); err != nil {
		return nil, fmt.Errorf("codec: bad legacy JSON: %w", err)
	}
	switch f.Type {
	case "login":
		return &parleypb.Envelope{Body: &parleypb.Envelope_Hello{Hello: &parleypb.Hello{Name: f.Content}}}, nil
	case "user":
		return &parleypb.Envelope{Body: &parleypb.Envelope_Post{Post: &parleypb.Post{Room: LegacyRoom, Text: f.Content}}}, nil
	case "logout":
		return &parleypb.Envelope{Body: &parleypb.Envelope_Leave{Leave: &parleypb.Leave{Room: LegacyRoom}}}, nil
	}
	return nil, fmt.Errorf("codec: unknown legacy message type %q (want login, user or logout)", f.Type)
}

// Encode renders what the tutorial's page understands: posts as "user"
// (other room events, such as membership changes, have no legacy form), presence deltas as "login"/"logout" (one name per frame; members
// must hold the room's full list after the change, for user_list), errors and
// notices as "system". Everything else has no legacy form: ErrNoFrame.
func (legacyCodec) Encode(env *parleypb.Envelope) ([]byte, error) {
	switch b := env.GetBody().(type) {
	case *parleypb.Envelope_Event:
		if b.Event.GetChange() != nil || b.Event.GetText() == "" {
			return nil, ErrNoFrame // the tutorial knows posts only, not changes to a room
		}
		from := html.EscapeString(b.Event.GetSender())
		return encodeLegacy(legacyFrame{Type: "user", Content: html.EscapeString(b.Event.GetText()), User: from, From: from})
	case *parleypb.Envelope_Presence:
		p := b.Presence
		list := LegacyUserList(p.GetMembers())
		switch {
		case len(p.GetJoined()) == 1 && len(p.GetLeft()) == 0:
			name := html.EscapeString(p.GetJoined()[0])
			return encodeLegacy(legacyFrame{Type: "login", Content: name, User: name, From: name, UserList: list})
		case len(p.GetLeft()) == 1 && len(p.GetJoined()) == 0:
			return encodeLegacy(legacyFrame{Type: "logout", Content: html.EscapeString(p.GetLeft()[0]), UserList: list})
		}
		return nil, fmt.Errorf("codec: a legacy presence frame names exactly one user, got %d joined and %d left", len(p.GetJoined()), len(p.GetLeft()))
	case *parleypb.Envelope_Error:
		return encodeLegacy(legacyFrame{Type: "system", Content: html.EscapeString(b.Error.GetText())})
	case *parleypb.Envelope_Notice:
		return encodeLegacy(legacyFrame{Type: "system", Content: html.EscapeString(b.Notice.GetText())})
	}
	return nil, ErrNoFrame
}

// AppendBatch reports false: the tutorial's page reads one object per frame.
func (legacyCodec) AppendBatch(dst []byte, _ [][]byte) ([]byte, bool) { return dst, false }

// LegacyHandshake is the first frame a legacy client gets: its address and
// who is in lobby.
func LegacyHandshake(ip string, members []*parleypb.Member) []byte {
	b, err := encodeLegacy(legacyFrame{Type: "handshake", IP: html.EscapeString(ip), UserList: LegacyUserList(members)})
	if err != nil {
		panic(err) // strings and a string slice always encode
	}
	return b
}

// LegacyUserList is user_list: escaped names, in the order given.
func LegacyUserList(members []*parleypb.Member) []string {
	list := make([]string, len(members))
	for i, m := range members {
		list[i] = html.EscapeString(m.GetName())
	}
	return list
}

func encodeLegacy(f legacyFrame) ([]byte, error) {
	if f.UserList == nil {
		f.UserList = []string{}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // already HTML-escaped; keep the JSON readable
	if err := enc.Encode(f); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
