package main_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/parleychat/parley/actors"
	"github.com/parleychat/parley/api"
	parleypb "github.com/parleychat/parley/proto"
	apiv1 "github.com/parleychat/parley/proto/api"
	"github.com/parleychat/parley/proto/api/apiv1connect"
	"github.com/parleychat/parley/proto/codec"
	"github.com/parleychat/parley/server"
)

// The server API, end to end: a real node with its API listener on
// 127.0.0.1, called as an application's backend would, over Connect (the
// generated client), gRPC and plain HTTP/JSON. Each refusal is checked for
// its Connect code and Parley's own code in the error's detail.

const testAPIKey = "test-key-0123456789abcdef0123456789abcdef"

func startAPIServer(t *testing.T, edit func(*server.Config)) *server.Server {
	t.Helper()
	keys, err := api.LoadKeys("", testAPIKey)
	if err != nil {
		t.Fatal(err)
	}
	return startServer(t, func(c *server.Config) {
		c.APIAddr, c.APIKeys = "127.0.0.1:0", keys
		if edit != nil {
			edit(c)
		}
	})
}

// apiClient calls srv's API with key ("" for none), over Connect's
// protocol (binary protobuf), or gRPC when grpc is set.
func apiClient(srv *server.Server, key string, grpc bool) apiv1connect.ParleyServiceClient {
	auth := connect.UnaryInterceptorFunc(func(next connect.UnaryFunc) connect.UnaryFunc {
		return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
			if key != "" {
				req.Header().Set("Authorization", "Bearer "+key)
			}
			return next(ctx, req)
		}
	})
	opts := []connect.ClientOption{connect.WithInterceptors(auth)}
	hc := http.DefaultClient
	if grpc {
		opts = append(opts, connect.WithGRPC())
		// gRPC needs HTTP/2; the listener speaks it in the clear.
		tr := &http.Transport{Protocols: new(http.Protocols)}
		tr.Protocols.SetUnencryptedHTTP2(true)
		hc = &http.Client{Transport: tr}
	}
	return apiv1connect.NewParleyServiceClient(hc, "http://"+srv.APIAddr(), opts...)
}

// wantAPIError checks a call's Connect code and, when want is set, the
// parley.v1.Error detail's code.
func wantAPIError(t *testing.T, what string, err error, code connect.Code, want parleypb.ErrorCode) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: succeeded, want %v", what, code)
	}
	if got := connect.CodeOf(err); got != code {
		t.Fatalf("%s: %v, want code %v", what, err, code)
	}
	if want == parleypb.ErrorCode_ERROR_CODE_UNSPECIFIED {
		return
	}
	var ce *connect.Error
	if !errors.As(err, &ce) {
		t.Fatalf("%s: %T is not a connect error", what, err)
	}
	for _, d := range ce.Details() {
		v, derr := d.Value()
		if e, ok := v.(*parleypb.Error); derr == nil && ok {
			if e.GetCode() != want {
				t.Fatalf("%s: detail %v, want %v", what, e.GetCode(), want)
			}
			return
		}
	}
	t.Fatalf("%s: %v has no parley.v1.Error detail (want %v)", what, err, want)
}

func TestServerAPI(t *testing.T) {
	t.Parallel()
	srv := startAPIServer(t, nil)
	ctx := testCtx(t, 30*time.Second)
	c := apiClient(srv, testAPIKey, false)
	req := connect.NewRequest[apiv1.GetRoomRequest]

	// Keys: none, a wrong one, a right one.
	_, err := apiClient(srv, "", false).GetRoom(ctx, req(&apiv1.GetRoomRequest{Room: "team"}))
	wantAPIError(t, "no key", err, connect.CodeUnauthenticated, 0)
	_, err = apiClient(srv, strings.ToUpper(testAPIKey), false).GetRoom(ctx, req(&apiv1.GetRoomRequest{Room: "team"}))
	wantAPIError(t, "a wrong key", err, connect.CodeUnauthenticated, 0)
	_, err = c.GetRoom(ctx, req(&apiv1.GetRoomRequest{Room: "team"}))
	wantAPIError(t, "an unknown room", err, connect.CodeNotFound, parleypb.ErrorCode_ERROR_CODE_NO_SUCH_ROOM)
	_, err = c.GetRoom(ctx, req(&apiv1.GetRoomRequest{Room: ""}))
	wantAPIError(t, "a bad room name", err, connect.CodeInvalidArgument, parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST)

	// Rooms: create one owned by alice, inviting bob.
	created, err := c.CreateRoom(ctx, connect.NewRequest(&apiv1.CreateRoomRequest{Room: "team", Kind: parleypb.RoomKind_ROOM_KIND_PRIVATE, Title: "The team", Owner: "alice", Invite: []string{"bob"}}))
	if err != nil {
		t.Fatal(err)
	}
	if r := created.Msg.GetRoom(); r.GetKind() != parleypb.RoomKind_ROOM_KIND_PRIVATE || r.GetCreatedBy() != "alice" || r.GetRole() != parleypb.Role_ROLE_OWNER || r.GetMembers() != 1 || r.GetLastSeq() != 2 {
		t.Fatalf("created %v", r)
	}
	_, err = c.CreateRoom(ctx, connect.NewRequest(&apiv1.CreateRoomRequest{Room: "team"}))
	wantAPIError(t, "creating it again", err, connect.CodeAlreadyExists, parleypb.ErrorCode_ERROR_CODE_ROOM_EXISTS)
	_, err = c.CreateRoom(ctx, connect.NewRequest(&apiv1.CreateRoomRequest{Room: "lobby", Invite: []string{"bob"}}))
	wantAPIError(t, "invitations to a public room", err, connect.CodeInvalidArgument, parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST)
	if _, err := c.CreateRoom(ctx, connect.NewRequest(&apiv1.CreateRoomRequest{Room: "lobby"})); err != nil {
		t.Fatalf("a public room nobody owns: %v", err)
	}

	// Publish: as the system into a room alice follows.
	alice := login(t, ctx, srv, codec.JSON, "alice", "team")
	pub := func(room, sender string, kind parleypb.SenderKind, text, key string) (uint64, error) {
		r, err := c.Publish(ctx, connect.NewRequest(&apiv1.PublishRequest{Room: room, Sender: sender, SenderKind: kind, Text: text, IdempotencyKey: key}))
		if err != nil {
			return 0, err
		}
		return r.Msg.GetSeq(), nil
	}
	seq, err := pub("team", "", parleypb.SenderKind_SENDER_KIND_SYSTEM, "welcome, all", "w1")
	if err != nil {
		t.Fatal(err)
	}
	ev := roomEvent(t, ctx, alice, "team")
	if ev.GetSeq() != seq || ev.GetSenderKind() != parleypb.SenderKind_SENDER_KIND_SYSTEM || ev.GetSender() != "system" || ev.GetText() != "welcome, all" {
		t.Fatalf("alice got %v, want the system's post at %d", ev, seq)
	}
	if again, err := pub("team", "", parleypb.SenderKind_SENDER_KIND_SYSTEM, "welcome, all", "w1"); err != nil || again != seq {
		t.Fatalf("a retried publish: seq %d (%v), want the first one's %d", again, err, seq)
	}
	_, err = pub("nowhere", "", parleypb.SenderKind_SENDER_KIND_SYSTEM, "hello?", "")
	wantAPIError(t, "publishing to no room", err, connect.CodeNotFound, parleypb.ErrorCode_ERROR_CODE_NO_SUCH_ROOM)
	_, err = pub("team", "carol", parleypb.SenderKind_SENDER_KIND_USER, "let me in", "")
	wantAPIError(t, "a non-member posting in a private room", err, connect.CodePermissionDenied, parleypb.ErrorCode_ERROR_CODE_FORBIDDEN)
	_, err = pub("team", "System", parleypb.SenderKind_SENDER_KIND_USER, "I am the system", "")
	wantAPIError(t, "a user with the system's name", err, connect.CodePermissionDenied, parleypb.ErrorCode_ERROR_CODE_FORBIDDEN)
	_, err = pub("team", "", parleypb.SenderKind_SENDER_KIND_SYSTEM, strings.Repeat("x", 4001), "")
	wantAPIError(t, "a text too long", err, connect.CodeInvalidArgument, parleypb.ErrorCode_ERROR_CODE_TOO_LONG)
	_, err = pub("team", "", parleypb.SenderKind_SENDER_KIND_SYSTEM, "", "")
	wantAPIError(t, "an empty text", err, connect.CodeInvalidArgument, parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST)

	// Members: add carol, who may then post (as a bot may in a public room).
	mod := func(what string, call func() (*connect.Response[apiv1.ModerateResponse], error)) uint64 {
		t.Helper()
		r, err := call()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return r.Msg.GetSeq()
	}
	mod("add carol", func() (*connect.Response[apiv1.ModerateResponse], error) {
		return c.AddMember(ctx, connect.NewRequest(&apiv1.AddMemberRequest{Room: "team", User: "carol"}))
	})
	_, err = c.AddMember(ctx, connect.NewRequest(&apiv1.AddMemberRequest{Room: "team", User: "carol"}))
	wantAPIError(t, "adding a member", err, connect.CodeInvalidArgument, parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST)
	_, err = c.AddMember(ctx, connect.NewRequest(&apiv1.AddMemberRequest{Room: "nowhere", User: "carol"}))
	wantAPIError(t, "adding to no room", err, connect.CodeNotFound, parleypb.ErrorCode_ERROR_CODE_NO_SUCH_ROOM)
	if _, err := pub("team", "carol", parleypb.SenderKind_SENDER_KIND_USER, "thanks", ""); err != nil {
		t.Fatalf("carol, added, posting: %v", err)
	}
	if _, err := pub("lobby", "dicebot", parleypb.SenderKind_SENDER_KIND_BOT, "I roll", ""); err != nil {
		t.Fatalf("a bot posting in a public room: %v", err)
	}
	members, err := c.ListMembers(ctx, connect.NewRequest(&apiv1.ListMembersRequest{Room: "team", Limit: 2}))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range members.Msg.GetMembers() {
		got = append(got, m.GetUser()+":"+strings.TrimPrefix(m.GetRole().String(), "ROLE_"))
	}
	if strings.Join(got, " ") != "alice:OWNER bob:NONE" || members.Msg.GetNext() != "bob" {
		t.Fatalf("first page of members: %v next %q", got, members.Msg.GetNext())
	}
	rest, err := c.ListMembers(ctx, connect.NewRequest(&apiv1.ListMembersRequest{Room: "team", After: "bob"}))
	if err != nil || len(rest.Msg.GetMembers()) != 1 || rest.Msg.GetMembers()[0].GetUser() != "carol" || rest.Msg.GetNext() != "" {
		t.Fatalf("second page of members: %v, %v", rest.Msg, err)
	}

	// Roles, mutes, bans, each with what it refuses.
	mod("carol a moderator", func() (*connect.Response[apiv1.ModerateResponse], error) {
		return c.SetRole(ctx, connect.NewRequest(&apiv1.SetRoleRequest{Room: "team", User: "carol", Role: parleypb.Role_ROLE_MODERATOR}))
	})
	_, err = c.SetRole(ctx, connect.NewRequest(&apiv1.SetRoleRequest{Room: "team", User: "bob", Role: parleypb.Role_ROLE_MODERATOR}))
	wantAPIError(t, "a role for an invited non-member", err, connect.CodeNotFound, parleypb.ErrorCode_ERROR_CODE_NOT_MEMBER)
	mod("mute carol", func() (*connect.Response[apiv1.ModerateResponse], error) {
		return c.Mute(ctx, connect.NewRequest(&apiv1.MuteRequest{Room: "team", User: "carol", Reason: "cool down", UntilMs: time.Now().Add(time.Hour).UnixMilli()}))
	})
	_, err = pub("team", "carol", parleypb.SenderKind_SENDER_KIND_USER, "but", "")
	wantAPIError(t, "a muted member posting", err, connect.CodeFailedPrecondition, parleypb.ErrorCode_ERROR_CODE_MUTED)
	mod("unmute carol", func() (*connect.Response[apiv1.ModerateResponse], error) {
		return c.Unmute(ctx, connect.NewRequest(&apiv1.UnmuteRequest{Room: "team", User: "carol"}))
	})
	_, err = c.Unmute(ctx, connect.NewRequest(&apiv1.UnmuteRequest{Room: "team", User: "carol"}))
	wantAPIError(t, "unmuting who is not muted", err, connect.CodeNotFound, parleypb.ErrorCode_ERROR_CODE_NOT_MEMBER)
	_, err = c.Mute(ctx, connect.NewRequest(&apiv1.MuteRequest{Room: "team", User: "carol", UntilMs: 1000}))
	wantAPIError(t, "a mute that ended in 1970", err, connect.CodeInvalidArgument, parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST)
	mod("ban carol", func() (*connect.Response[apiv1.ModerateResponse], error) {
		return c.Ban(ctx, connect.NewRequest(&apiv1.BanRequest{Room: "team", User: "carol", Reason: "spam"}))
	})
	_, err = pub("team", "carol", parleypb.SenderKind_SENDER_KIND_USER, "hey", "")
	wantAPIError(t, "a banned user posting", err, connect.CodeFailedPrecondition, parleypb.ErrorCode_ERROR_CODE_BANNED)
	_, err = login(t, ctx, srv, codec.Proto, "carol").Join(ctx, "team", nil)
	wantCode(t, "carol joining after the API's ban", err, parleypb.ErrorCode_ERROR_CODE_BANNED)
	mod("unban carol", func() (*connect.Response[apiv1.ModerateResponse], error) {
		return c.Unban(ctx, connect.NewRequest(&apiv1.UnbanRequest{Room: "team", User: "carol"}))
	})
	_, err = c.Unban(ctx, connect.NewRequest(&apiv1.UnbanRequest{Room: "team", User: "carol"}))
	wantAPIError(t, "unbanning who is not banned", err, connect.CodeNotFound, parleypb.ErrorCode_ERROR_CODE_NOT_MEMBER)
	mod("add carol again (a ban ended her membership)", func() (*connect.Response[apiv1.ModerateResponse], error) {
		return c.AddMember(ctx, connect.NewRequest(&apiv1.AddMemberRequest{Room: "team", User: "carol"}))
	})
	_, err = c.RemoveMember(ctx, connect.NewRequest(&apiv1.RemoveMemberRequest{Room: "team", User: "bob"}))
	wantAPIError(t, "removing an invited non-member", err, connect.CodeNotFound, parleypb.ErrorCode_ERROR_CODE_NOT_MEMBER)
	mod("add dave", func() (*connect.Response[apiv1.ModerateResponse], error) {
		return c.AddMember(ctx, connect.NewRequest(&apiv1.AddMemberRequest{Room: "team", User: "dave"}))
	})
	kicked := mod("remove dave", func() (*connect.Response[apiv1.ModerateResponse], error) {
		return c.RemoveMember(ctx, connect.NewRequest(&apiv1.RemoveMemberRequest{Room: "team", User: "dave", Reason: "left the company"}))
	})
	if ev := change(t, ctx, alice, "team", parleypb.ChangeKind_CHANGE_KIND_KICKED); ev.GetSeq() != kicked || ev.GetChange().GetUser() != "dave" || ev.GetSenderKind() != parleypb.SenderKind_SENDER_KIND_SYSTEM {
		t.Fatalf("alice saw %v, want dave removed by the system at %d", ev, kicked)
	}
	mod("carol the owner", func() (*connect.Response[apiv1.ModerateResponse], error) {
		return c.SetRole(ctx, connect.NewRequest(&apiv1.SetRoleRequest{Room: "team", User: "carol", Role: parleypb.Role_ROLE_OWNER}))
	})

	// History and one message, from the store.
	page, err := c.GetHistory(ctx, connect.NewRequest(&apiv1.GetHistoryRequest{Room: "team", Limit: 3}))
	if err != nil {
		t.Fatal(err)
	}
	evs := page.Msg.GetEvents()
	if len(evs) != 3 || !page.Msg.GetHasMore() || evs[2].GetSeq() < kicked || evs[0].GetSeq()+2 != evs[2].GetSeq() {
		t.Fatalf("the newest 3 events: %v (more %v)", evs, page.Msg.GetHasMore())
	}
	first, err := c.GetHistory(ctx, connect.NewRequest(&apiv1.GetHistoryRequest{Room: "team", BeforeSeq: 3}))
	if err != nil || len(first.Msg.GetEvents()) != 2 || first.Msg.GetHasMore() || first.Msg.GetEvents()[0].GetChange().GetKind() != parleypb.ChangeKind_CHANGE_KIND_CREATED {
		t.Fatalf("the events before 3: %v (%v)", first.Msg, err)
	}
	msg, err := c.GetMessage(ctx, connect.NewRequest(&apiv1.GetMessageRequest{Room: "team", Seq: seq}))
	if err != nil || msg.Msg.GetEvent().GetText() != "welcome, all" {
		t.Fatalf("message %d: %v (%v)", seq, msg.Msg, err)
	}
	_, err = c.GetMessage(ctx, connect.NewRequest(&apiv1.GetMessageRequest{Room: "team", Seq: 9999}))
	wantAPIError(t, "a message never posted", err, connect.CodeNotFound, parleypb.ErrorCode_ERROR_CODE_NO_SUCH_MESSAGE)

	// The application deletes a post: erased, once however often asked.
	del, err := c.DeleteMessage(ctx, connect.NewRequest(&apiv1.DeleteMessageRequest{Room: "team", Seq: seq, Reason: "abuse", IdempotencyKey: "del-1"}))
	if err != nil || del.Msg.GetSeq() == 0 {
		t.Fatalf("deleting message %d: %v (%v)", seq, del, err)
	}
	again, err := c.DeleteMessage(ctx, connect.NewRequest(&apiv1.DeleteMessageRequest{Room: "team", Seq: seq, IdempotencyKey: "del-1"}))
	if err != nil || again.Msg.GetSeq() != del.Msg.GetSeq() {
		t.Fatalf("the retried delete: %v (%v); want seq %d", again, err, del.Msg.GetSeq())
	}
	msg, err = c.GetMessage(ctx, connect.NewRequest(&apiv1.GetMessageRequest{Room: "team", Seq: seq}))
	if err != nil || !msg.Msg.GetEvent().GetDeleted() || msg.Msg.GetEvent().GetText() != "" {
		t.Fatalf("message %d after the delete: %v (%v)", seq, msg.Msg, err)
	}
	_, err = c.DeleteMessage(ctx, connect.NewRequest(&apiv1.DeleteMessageRequest{Room: "team", Seq: seq}))
	wantAPIError(t, "deleting a deleted post", err, connect.CodeFailedPrecondition, parleypb.ErrorCode_ERROR_CODE_ALREADY_DELETED)
	_, err = c.DeleteMessage(ctx, connect.NewRequest(&apiv1.DeleteMessageRequest{Room: "team", Seq: 9999}))
	wantAPIError(t, "deleting a message never posted", err, connect.CodeNotFound, parleypb.ErrorCode_ERROR_CODE_NO_SUCH_MESSAGE)
	_, err = c.DeleteMessage(ctx, connect.NewRequest(&apiv1.DeleteMessageRequest{Room: "team", Seq: 1}))
	wantAPIError(t, "deleting a change", err, connect.CodePermissionDenied, parleypb.ErrorCode_ERROR_CODE_NOT_ALLOWED)
	_, err = c.GetHistory(ctx, connect.NewRequest(&apiv1.GetHistoryRequest{Room: "nowhere"}))
	wantAPIError(t, "history of no room", err, connect.CodeNotFound, parleypb.ErrorCode_ERROR_CODE_NO_SUCH_ROOM)

	// A user's rooms, presence, and a disconnect.
	rooms, err := c.ListUserRooms(ctx, connect.NewRequest(&apiv1.ListUserRoomsRequest{User: "carol"}))
	if err != nil || len(rooms.Msg.GetRooms()) != 1 || rooms.Msg.GetRooms()[0].GetRole() != parleypb.Role_ROLE_OWNER {
		t.Fatalf("carol's rooms: %v (%v)", rooms.Msg, err)
	}
	_, err = c.ListUserRooms(ctx, connect.NewRequest(&apiv1.ListUserRoomsRequest{User: ""}))
	wantAPIError(t, "no user's rooms", err, connect.CodeInvalidArgument, parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST)
	pres, err := c.GetPresence(ctx, connect.NewRequest(&apiv1.GetPresenceRequest{Users: []string{"alice", "nobody"}}))
	if err != nil || len(pres.Msg.GetUsers()) != 1 || pres.Msg.GetUsers()[0].GetName() != "alice" || pres.Msg.GetUsers()[0].GetDevices() != 1 {
		t.Fatalf("presence of alice and nobody: %v (%v)", pres.Msg, err)
	}
	_, err = c.GetPresence(ctx, connect.NewRequest(&apiv1.GetPresenceRequest{}))
	wantAPIError(t, "presence of nobody named", err, connect.CodeInvalidArgument, parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST)
	dc, err := c.Disconnect(ctx, connect.NewRequest(&apiv1.DisconnectRequest{User: "alice", Reason: "account closed"}))
	if err != nil || dc.Msg.GetConnectionsClosed() != 1 {
		t.Fatalf("disconnecting alice: %v (%v)", dc.Msg, err)
	}
	if code, reason := closeCode(t, ctx, alice); code != parleypb.CloseCode_CLOSE_CODE_KICKED || !strings.Contains(reason, "account closed") {
		t.Fatalf("alice closed with %v %q, want KICKED", code, reason)
	}
	_, err = c.Disconnect(ctx, connect.NewRequest(&apiv1.DisconnectRequest{User: ""}))
	wantAPIError(t, "disconnecting a bad name", err, connect.CodeInvalidArgument, parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST)

	// Update, then delete.
	title := "The A team"
	if _, err := c.UpdateRoom(ctx, connect.NewRequest(&apiv1.UpdateRoomRequest{Room: "team", Title: &title})); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("t", actors.MaxTopicRunes+1)
	_, err = c.UpdateRoom(ctx, connect.NewRequest(&apiv1.UpdateRoomRequest{Room: "team", Topic: &long}))
	wantAPIError(t, "a topic too long", err, connect.CodeInvalidArgument, parleypb.ErrorCode_ERROR_CODE_TOO_LONG)
	if _, err := c.DeleteRoom(ctx, connect.NewRequest(&apiv1.DeleteRoomRequest{Room: "team", Reason: "done"})); err != nil {
		t.Fatal(err)
	}
	info, err := c.GetRoom(ctx, req(&apiv1.GetRoomRequest{Room: "team"}))
	if err != nil || !info.Msg.GetRoom().GetDeleted() || info.Msg.GetRoom().GetTitle() != title {
		t.Fatalf("the deleted room: %v (%v)", info.Msg, err)
	}
	_, err = pub("team", "", parleypb.SenderKind_SENDER_KIND_SYSTEM, "anyone?", "")
	wantAPIError(t, "publishing to a deleted room", err, connect.CodeNotFound, parleypb.ErrorCode_ERROR_CODE_NO_SUCH_ROOM)
	_, err = c.DeleteRoom(ctx, connect.NewRequest(&apiv1.DeleteRoomRequest{Room: "team"}))
	wantAPIError(t, "deleting it again", err, connect.CodeNotFound, parleypb.ErrorCode_ERROR_CODE_NO_SUCH_ROOM)
}

// TestServerAPIProtocols: the same handler answers gRPC (HTTP/2 in the
// clear) and plain HTTP/JSON, as curl would send it, with HTTP statuses and
// JSON errors that name the code.
func TestServerAPIProtocols(t *testing.T) {
	t.Parallel()
	srv := startAPIServer(t, nil)
	ctx := testCtx(t, 20*time.Second)
	g := apiClient(srv, testAPIKey, true)
	if _, err := g.CreateRoom(ctx, connect.NewRequest(&apiv1.CreateRoomRequest{Room: "lobby", Title: "Lobby"})); err != nil {
		t.Fatalf("over gRPC: %v", err)
	}
	_, err := apiClient(srv, "", true).GetRoom(ctx, connect.NewRequest(&apiv1.GetRoomRequest{Room: "lobby"}))
	wantAPIError(t, "over gRPC without a key", err, connect.CodeUnauthenticated, 0)
	_, err = g.GetRoom(ctx, connect.NewRequest(&apiv1.GetRoomRequest{Room: "nowhere"}))
	wantAPIError(t, "over gRPC, no room", err, connect.CodeNotFound, parleypb.ErrorCode_ERROR_CODE_NO_SUCH_ROOM)

	curl := func(method, body, key string) (int, map[string]any) {
		t.Helper()
		r, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+srv.APIAddr()+"/parley.api.v1.ParleyService/"+method, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		r.Header.Set("Content-Type", "application/json")
		if key != "" {
			r.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var out map[string]any
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%s: %d %q is not JSON: %v", method, resp.StatusCode, b, err)
		}
		return resp.StatusCode, out
	}
	status, out := curl("Publish", `{"room":"lobby","senderKind":"SENDER_KIND_SYSTEM","text":"hello from curl","idempotencyKey":"c1"}`, testAPIKey)
	if status != http.StatusOK || out["seq"] != "2" { // uint64 is a JSON string
		t.Fatalf("publish as JSON: %d %v", status, out)
	}
	status, out = curl("Publish", `{"room":"nowhere","senderKind":"SENDER_KIND_SYSTEM","text":"x"}`, testAPIKey)
	if status != http.StatusNotFound || out["code"] != "not_found" || !strings.Contains(out["message"].(string), "no such room") {
		t.Fatalf("publish to no room as JSON: %d %v", status, out)
	}
	if d, _ := out["details"].([]any); len(d) != 1 {
		t.Fatalf("the JSON error's details: %v, want the parley.v1.Error", out["details"])
	}
	status, out = curl("GetRoom", `{"room":"lobby"}`, "")
	if status != http.StatusUnauthorized || out["code"] != "unauthenticated" {
		t.Fatalf("no key as JSON: %d %v", status, out)
	}
	status, out = curl("GetRoom", `{"room":`, testAPIKey)
	if status != http.StatusBadRequest || out["code"] != "invalid_argument" {
		t.Fatalf("broken JSON: %d %v", status, out)
	}
}

// TestServerAPIListener: the API needs keys, and speaks TLS with the
// server's certificate.
func TestServerAPIListener(t *testing.T) {
	t.Parallel()
	_, err := server.New(server.Config{Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0", Logger: testLogger(t)})
	if err == nil || !strings.Contains(err.Error(), "API keys") {
		t.Fatalf("an API without keys: %v", err)
	}
	cert, key, _ := selfSigned(t, t.TempDir())
	srv := startAPIServer(t, func(c *server.Config) { c.TLSCert, c.TLSKey = cert, key })
	ctx := testCtx(t, 20*time.Second)
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true} //nolint:gosec // the test's own self-signed certificate
	hc := &http.Client{Transport: tr}
	c := apiv1connect.NewParleyServiceClient(hc, "https://"+srv.APIAddr(), connect.WithGRPC())
	r := connect.NewRequest(&apiv1.CreateRoomRequest{Room: "secure"})
	r.Header().Set("Authorization", "Bearer "+testAPIKey)
	if _, err := c.CreateRoom(ctx, r); err != nil {
		t.Fatalf("gRPC over TLS: %v", err)
	}
}

// TestServerAPIUserRoomsUnread: ListUserRooms gives each of the user's
// rooms its read cursor, unread count and unread mentions, as a login
// would, and they follow a MarkRead, the client's or the API's own (its
// refusals named); UpdateRoom turns read positions on.
func TestServerAPIUserRoomsUnread(t *testing.T) {
	t.Parallel()
	srv := startAPIServer(t, nil)
	ctx := testCtx(t, 30*time.Second)
	c := apiClient(srv, testAPIKey, false)
	if _, err := c.CreateRoom(ctx, connect.NewRequest(&apiv1.CreateRoomRequest{Room: "news", Kind: parleypb.RoomKind_ROOM_KIND_PUBLIC, Owner: "alice"})); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddMember(ctx, connect.NewRequest(&apiv1.AddMemberRequest{Room: "news", User: "bob"})); err != nil {
		t.Fatal(err)
	}
	alice := login(t, ctx, srv, codec.JSON, "alice", "news")
	post(t, ctx, alice, "news", "one")
	ping, err := alice.Request(ctx, &parleypb.Envelope{Body: &parleypb.Envelope_Post{Post: &parleypb.Post{Room: "news", Text: "bob?", Mentions: []string{"bob"}}}})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := c.Publish(ctx, connect.NewRequest(&apiv1.PublishRequest{Room: "news", SenderKind: parleypb.SenderKind_SENDER_KIND_SYSTEM, Text: "news at ten"}))
	if err != nil {
		t.Fatal(err)
	}
	last := pub.Msg.GetSeq()
	bobsNews := func() *parleypb.RoomInfo {
		t.Helper()
		rooms, err := c.ListUserRooms(ctx, connect.NewRequest(&apiv1.ListUserRoomsRequest{User: "bob"}))
		if err != nil || len(rooms.Msg.GetRooms()) != 1 || rooms.Msg.GetRooms()[0].GetName() != "news" {
			t.Fatalf("bob's rooms: %v (%v)", rooms, err)
		}
		return rooms.Msg.GetRooms()[0]
	}
	if r := bobsNews(); r.GetReadSeq() >= ping.GetSeq()-1 || r.GetUnread() != last-r.GetReadSeq() || r.GetUnreadMentions() != 1 || r.GetLastSeq() != last {
		t.Fatalf("bob's news before reading: %v; want the unread posts and one mention", r)
	}
	bob := login(t, ctx, srv, codec.Proto, "bob")
	if _, err := markRead(t, bob, "news", ping.GetSeq()); err != nil {
		t.Fatal(err)
	}
	if r := bobsNews(); r.GetReadSeq() != ping.GetSeq() || r.GetUnread() != last-ping.GetSeq() || r.GetUnreadMentions() != 0 {
		t.Fatalf("bob's news after marking %d read: %v; want unread %d, no mention", ping.GetSeq(), r, last-ping.GetSeq())
	}

	// MarkRead through the API: bob's connection hears of it; refusals named.
	marked, err := c.MarkRead(ctx, connect.NewRequest(&apiv1.MarkReadRequest{Room: "news", User: "bob", Seq: last}))
	if err != nil || marked.Msg.GetReadSeq() != last {
		t.Fatalf("marking bob's news read through the API: %v (%v)", marked, err)
	}
	nextEvent(t, ctx, bob, "bob's cursor from the API", func(e *parleypb.Envelope) bool {
		return e.GetRoom().GetName() == "news" && e.GetRoom().GetReadSeq() == last && e.GetRoom().GetUnread() == 0
	})
	if r := bobsNews(); r.GetReadSeq() != last || r.GetUnread() != 0 {
		t.Fatalf("bob's news after the API's MarkRead: %v", r)
	}
	_, err = c.MarkRead(ctx, connect.NewRequest(&apiv1.MarkReadRequest{Room: "news", User: "bob", Seq: last + 1}))
	wantAPIError(t, "a cursor past the last seq", err, connect.CodeNotFound, parleypb.ErrorCode_ERROR_CODE_NO_SUCH_MESSAGE)
	_, err = c.MarkRead(ctx, connect.NewRequest(&apiv1.MarkReadRequest{Room: "news", User: "carol", Seq: last}))
	wantAPIError(t, "a non-member's cursor", err, connect.CodeNotFound, parleypb.ErrorCode_ERROR_CODE_NOT_MEMBER)
	_, err = apiClient(srv, "", false).MarkRead(ctx, connect.NewRequest(&apiv1.MarkReadRequest{Room: "news", User: "bob", Seq: last}))
	wantAPIError(t, "MarkRead without a key", err, connect.CodeUnauthenticated, 0)
	_, err = c.MarkRead(ctx, connect.NewRequest(&apiv1.MarkReadRequest{Room: "news", User: "", Seq: last}))
	wantAPIError(t, "no user's cursor", err, connect.CodeInvalidArgument, parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST)

	on := true
	if _, err := c.UpdateRoom(ctx, connect.NewRequest(&apiv1.UpdateRoomRequest{Room: "news", ReadPositions: &on})); err != nil {
		t.Fatal(err)
	}
	info, err := c.GetRoom(ctx, connect.NewRequest(&apiv1.GetRoomRequest{Room: "news"}))
	if err != nil || !info.Msg.GetRoom().GetReadPositions() {
		t.Fatalf("news after turning read positions on: %v (%v)", info, err)
	}
}
