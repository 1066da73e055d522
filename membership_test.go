package main_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parleychat/parley/auth"
	"github.com/parleychat/parley/client"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/proto/codec"
	"github.com/parleychat/parley/server"
	"github.com/parleychat/parley/store"
)

// Rooms that people own: kinds, membership, moderation. Each refusal names
// its error code; each change is a room event in the log.

func createRoom(ctx context.Context, c *client.Client, room string, kind parleypb.RoomKind, invite ...string) (*parleypb.Ack, error) {
	return c.Request(ctx, &parleypb.Envelope{Body: &parleypb.Envelope_CreateRoom{CreateRoom: &parleypb.CreateRoom{Room: room, Kind: kind, Title: "The " + room, Invite: invite}}})
}

func moderate(ctx context.Context, c *client.Client, room, user string, action parleypb.ModAction) (*parleypb.Ack, error) {
	return c.Request(ctx, &parleypb.Envelope{Body: &parleypb.Envelope_Moderate{Moderate: &parleypb.Moderate{Room: room, User: user, Action: action, Reason: "because"}}})
}

func setRole(ctx context.Context, c *client.Client, room, user string, role parleypb.Role) error {
	_, err := c.Request(ctx, &parleypb.Envelope{Body: &parleypb.Envelope_Moderate{Moderate: &parleypb.Moderate{Room: room, User: user, Action: parleypb.ModAction_MOD_ACTION_SET_ROLE, Role: role}}})
	return err
}

func direct(ctx context.Context, c *client.Client, to, text, id string) (*parleypb.Ack, error) {
	return c.Request(ctx, &parleypb.Envelope{Body: &parleypb.Envelope_Direct{Direct: &parleypb.DirectMessage{To: to, Text: text, ClientMsgId: id}}})
}

// roomList asks for the rooms listed to c (mine: its own only).
func roomList(t *testing.T, ctx context.Context, c *client.Client, mine bool) map[string]*parleypb.RoomInfo {
	t.Helper()
	if _, err := c.Request(ctx, &parleypb.Envelope{Body: &parleypb.Envelope_Rooms{Rooms: &parleypb.RoomsRequest{Mine: mine}}}); err != nil {
		t.Fatal(err)
	}
	env := nextEvent(t, ctx, c, "the room list", func(e *parleypb.Envelope) bool { return e.GetRoomList() != nil })
	out := map[string]*parleypb.RoomInfo{}
	for _, r := range env.GetRoomList().GetRooms() {
		out[r.GetName()] = r
	}
	return out
}

// roomInfo waits for the next news of c's standing in room.
func roomInfo(t *testing.T, ctx context.Context, c *client.Client, room string) *parleypb.RoomInfo {
	t.Helper()
	return nextEvent(t, ctx, c, "news of "+room, func(e *parleypb.Envelope) bool { return e.GetRoom().GetName() == room }).GetRoom()
}

// change waits for the next change of kind to room.
func change(t *testing.T, ctx context.Context, c *client.Client, room string, kind parleypb.ChangeKind) *parleypb.RoomEvent {
	t.Helper()
	return nextEvent(t, ctx, c, fmt.Sprintf("%v in %s", kind, room), func(e *parleypb.Envelope) bool {
		return e.GetEvent().GetRoom() == room && e.GetEvent().GetChange().GetKind() == kind
	}).GetEvent()
}

func wantCode(t *testing.T, what string, err error, code parleypb.ErrorCode) {
	t.Helper()
	if got := client.ErrorCode(err); got != code {
		t.Fatalf("%s: %v, want %v", what, err, code)
	}
}

// TestPrivateRoomsAndInvitations: a private room is its members' and its
// invited users' only, and listed to them only; an owner invites, an
// invitation shows on every connection of the invited user, and revoking
// it shuts the door again.
func TestPrivateRoomsAndInvitations(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	ctx := testCtx(t, 20*time.Second)
	alice := login(t, ctx, srv, codec.JSON, "alice")
	bob := login(t, ctx, srv, codec.Proto, "bob")
	bobPhone := login(t, ctx, srv, codec.JSON, "bob")
	carol := login(t, ctx, srv, codec.JSON, "carol")

	if _, err := createRoom(ctx, alice, "team", parleypb.RoomKind_ROOM_KIND_PRIVATE); err != nil {
		t.Fatal(err)
	}
	_, err := createRoom(ctx, carol, "team", parleypb.RoomKind_ROOM_KIND_PUBLIC)
	wantCode(t, "creating a room that exists", err, parleypb.ErrorCode_ERROR_CODE_ROOM_EXISTS)
	_, err = createRoom(ctx, carol, "dm", parleypb.RoomKind_ROOM_KIND_DIRECT)
	wantCode(t, "creating a direct room by hand", err, parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST)
	_, err = bob.Join(ctx, "team", nil)
	wantCode(t, "joining a private room uninvited", err, parleypb.ErrorCode_ERROR_CODE_FORBIDDEN)
	if _, listed := roomList(t, ctx, bob, false)["team"]; listed {
		t.Fatal("a private room is listed to a non-member")
	}
	if r := roomList(t, ctx, alice, false)["team"]; r.GetRole() != parleypb.Role_ROLE_OWNER || r.GetKind() != parleypb.RoomKind_ROOM_KIND_PRIVATE || r.GetTitle() != "The team" {
		t.Fatalf("the owner's listing of team: %v", r)
	}

	_, err = moderate(ctx, alice, "team", "alice", parleypb.ModAction_MOD_ACTION_INVITE)
	wantCode(t, "inviting oneself", err, parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST)
	_, err = moderate(ctx, carol, "team", "carol", parleypb.ModAction_MOD_ACTION_KICK)
	wantCode(t, "a non-member acting on itself", err, parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST)
	_, err = moderate(ctx, carol, "team", "bob", parleypb.ModAction_MOD_ACTION_INVITE)
	wantCode(t, "a non-member inviting", err, parleypb.ErrorCode_ERROR_CODE_FORBIDDEN)
	if _, err := moderate(ctx, alice, "team", "bob", parleypb.ModAction_MOD_ACTION_INVITE); err != nil {
		t.Fatal(err)
	}
	// Both of bob's connections hear of the invitation.
	for _, c := range []*client.Client{bob, bobPhone} {
		if ri := roomInfo(t, ctx, c, "team"); !ri.GetInvited() || ri.GetRole() != parleypb.Role_ROLE_NONE {
			t.Fatalf("bob was told %v, want invited", ri)
		}
	}
	if r := roomList(t, ctx, bob, true)["team"]; !r.GetInvited() {
		t.Fatalf("bob's own rooms: team = %v, want invited", r)
	}
	if _, err := alice.Join(ctx, "team", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Join(ctx, "team", nil); err != nil {
		t.Fatalf("joining with an invitation: %v", err)
	}
	if ev := change(t, ctx, alice, "team", parleypb.ChangeKind_CHANGE_KIND_JOINED); ev.GetChange().GetUser() != "bob" {
		t.Fatalf("alice saw %v", ev)
	}
	if ri := roomInfo(t, ctx, bobPhone, "team"); ri.GetRole() != parleypb.Role_ROLE_MEMBER {
		t.Fatalf("bob's phone was told %v, want member", ri)
	}
	_, err = carol.Join(ctx, "team", nil)
	wantCode(t, "carol, uninvited", err, parleypb.ErrorCode_ERROR_CODE_FORBIDDEN)

	// Revoke: an invitation taken back before it is used.
	if _, err := moderate(ctx, alice, "team", "carol", parleypb.ModAction_MOD_ACTION_INVITE); err != nil {
		t.Fatal(err)
	}
	if _, err := moderate(ctx, alice, "team", "carol", parleypb.ModAction_MOD_ACTION_REVOKE); err != nil {
		t.Fatal(err)
	}
	_, err = carol.Join(ctx, "team", nil)
	wantCode(t, "carol, invitation revoked", err, parleypb.ErrorCode_ERROR_CODE_FORBIDDEN)
	_, err = moderate(ctx, alice, "team", "carol", parleypb.ModAction_MOD_ACTION_REVOKE)
	wantCode(t, "revoking what is not there", err, parleypb.ErrorCode_ERROR_CODE_NOT_MEMBER)

	// Add: a member at once, no invitation to accept; carol hears of it
	// before she joins, and may join.
	_, err = moderate(ctx, bob, "team", "carol", parleypb.ModAction_MOD_ACTION_ADD)
	wantCode(t, "a member adding", err, parleypb.ErrorCode_ERROR_CODE_FORBIDDEN)
	if _, err := moderate(ctx, alice, "team", "carol", parleypb.ModAction_MOD_ACTION_ADD); err != nil {
		t.Fatal(err)
	}
	// (The news of her invitation and its revocation come first.)
	for _, want := range []string{"invited", "not invited", "member"} {
		ri := roomInfo(t, ctx, carol, "team")
		got := "not invited"
		if ri.GetInvited() {
			got = "invited"
		} else if ri.GetRole() == parleypb.Role_ROLE_MEMBER {
			got = "member"
		}
		if got != want {
			t.Fatalf("carol was told %v, want %s", ri, want)
		}
	}
	_, err = moderate(ctx, alice, "team", "carol", parleypb.ModAction_MOD_ACTION_ADD)
	wantCode(t, "adding a member", err, parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST)
	if _, err := carol.Join(ctx, "team", nil); err != nil {
		t.Fatalf("joining once added: %v", err)
	}

	// The log tells who did what to whom.
	if err := alice.History(ctx, "team", 0, 50); err != nil {
		t.Fatal(err)
	}
	page := nextEvent(t, ctx, alice, "the history", func(e *parleypb.Envelope) bool { return e.GetHistoryPage() != nil }).GetHistoryPage()
	var log []string
	for _, ev := range page.GetEvents() {
		c := ev.GetChange()
		log = append(log, fmt.Sprintf("%s %s %s", ev.GetSender(), strings.TrimPrefix(c.GetKind().String(), "CHANGE_KIND_"), c.GetUser()))
	}
	want := "[alice CREATED alice alice INVITED bob bob JOINED bob alice INVITED carol alice INVITE_REVOKED carol alice ADDED carol]"
	if fmt.Sprint(log) != want {
		t.Fatalf("team's log: %v\nwant %s", log, want)
	}
}

// TestDirectMessages: a direct room is made by the first message from one
// user to another, keyed by the pair, and is theirs alone.
func TestDirectMessages(t *testing.T) {
	t.Parallel()
	srv := startServer(t, nil)
	ctx := testCtx(t, 20*time.Second)
	alice := login(t, ctx, srv, codec.JSON, "alice")
	bob := login(t, ctx, srv, codec.Proto, "bob")
	carol := login(t, ctx, srv, codec.JSON, "carol")

	ack, err := direct(ctx, alice, "bob", "psst", "d1")
	if err != nil {
		t.Fatal(err)
	}
	room := ack.GetRoom()
	if !strings.HasPrefix(room, "@") {
		t.Fatalf("direct room %q", room)
	}
	// bob learns of the conversation without having joined anything.
	if ri := roomInfo(t, ctx, bob, room); ri.GetKind() != parleypb.RoomKind_ROOM_KIND_DIRECT || ri.GetDirectWith() != "alice" || ri.GetRole() != parleypb.Role_ROLE_MEMBER {
		t.Fatalf("bob was told %v", ri)
	}
	// His answer goes to the same room, whoever writes.
	back, err := direct(ctx, bob, "alice", "hi!", "d2")
	if err != nil || back.GetRoom() != room {
		t.Fatalf("bob's answer: %v %v, want room %s", back, err, room)
	}
	if _, err := bob.Join(ctx, room, u64(0)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"psst", "hi!"} {
		if ev := roomEvent(t, ctx, bob, room); ev.GetText() != want {
			t.Fatalf("bob read %v, want %q", ev, want)
		}
	}
	_, err = carol.Join(ctx, room, nil)
	wantCode(t, "a third user joining a direct room", err, parleypb.ErrorCode_ERROR_CODE_FORBIDDEN)
	_, err = moderate(ctx, alice, room, "carol", parleypb.ModAction_MOD_ACTION_INVITE)
	wantCode(t, "inviting a third user to a direct room", err, parleypb.ErrorCode_ERROR_CODE_FORBIDDEN)
	_, err = direct(ctx, alice, "alice", "me", "d3")
	wantCode(t, "a direct message to oneself", err, parleypb.ErrorCode_ERROR_CODE_BAD_REQUEST)
	_, err = carol.Join(ctx, "@dm-0000000000000000000", nil)
	wantCode(t, "a direct room nobody made", err, parleypb.ErrorCode_ERROR_CODE_NO_SUCH_ROOM)
	if _, listed := roomList(t, ctx, carol, false)[room]; listed {
		t.Fatal("a direct room is listed to a third user")
	}
	if r := roomList(t, ctx, alice, true)[room]; r.GetDirectWith() != "bob" {
		t.Fatalf("alice's direct conversations: %v", r)
	}
	// The list comes back at hello, with where the conversation stands.
	again := dial(t, ctx, srv, codec.JSON)
	if err := again.Hello(ctx, "alice", false); err != nil {
		t.Fatal(err)
	}
	welcome := nextEvent(t, ctx, again, "the welcome", func(e *parleypb.Envelope) bool { return e.GetWelcome() != nil }).GetWelcome()
	if len(welcome.GetRooms()) != 1 || welcome.GetRooms()[0].GetName() != room || welcome.GetRooms()[0].GetLastSeq() == 0 {
		t.Fatalf("alice's rooms at hello: %v", welcome.GetRooms())
	}
}

// TestModerationThatLasts: roles, kicks, bans, mutes, ownership, deletion;
// every refusal names its code and changes nothing.
func TestModerationThatLasts(t *testing.T) {
	t.Parallel()
	st := store.NewMemory()
	srv := startServer(t, func(c *server.Config) { c.Store = st })
	ctx := testCtx(t, 30*time.Second)
	owner := login(t, ctx, srv, codec.JSON, "olive")
	mod := login(t, ctx, srv, codec.JSON, "mona")
	mem := login(t, ctx, srv, codec.JSON, "mike")
	troll := login(t, ctx, srv, codec.JSON, "trent")
	if _, err := createRoom(ctx, owner, "club", parleypb.RoomKind_ROOM_KIND_PUBLIC); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client.Client{owner, mod, mem, troll} {
		if _, err := c.Join(ctx, "club", nil); err != nil {
			t.Fatal(err)
		}
	}
	wantCode(t, "a member promoting", setRole(ctx, mem, "club", "mona", parleypb.Role_ROLE_MODERATOR), parleypb.ErrorCode_ERROR_CODE_FORBIDDEN)
	if err := setRole(ctx, owner, "club", "mona", parleypb.Role_ROLE_MODERATOR); err != nil {
		t.Fatal(err)
	}
	// A moderator acts on members, not on the owner or other moderators.
	_, err := moderate(ctx, mod, "club", "olive", parleypb.ModAction_MOD_ACTION_BAN)
	wantCode(t, "banning the owner", err, parleypb.ErrorCode_ERROR_CODE_FORBIDDEN)
	_, err = moderate(ctx, mem, "club", "trent", parleypb.ModAction_MOD_ACTION_KICK)
	wantCode(t, "a member kicking", err, parleypb.ErrorCode_ERROR_CODE_FORBIDDEN)

	// Mute: trent reads but does not post.
	if _, err := moderate(ctx, mod, "club", "trent", parleypb.ModAction_MOD_ACTION_MUTE); err != nil {
		t.Fatal(err)
	}
	_, err = troll.Post(ctx, "club", "spam", "s1")
	wantCode(t, "posting while muted", err, parleypb.ErrorCode_ERROR_CODE_MUTED)
	if _, err := moderate(ctx, mod, "club", "trent", parleypb.ModAction_MOD_ACTION_UNMUTE); err != nil {
		t.Fatal(err)
	}
	if _, err := troll.Post(ctx, "club", "sorry", "s2"); err != nil {
		t.Fatalf("posting after the unmute: %v", err)
	}

	// Kick: out of the room at once, on every connection; a public room
	// may be joined again.
	if _, err := moderate(ctx, mod, "club", "trent", parleypb.ModAction_MOD_ACTION_KICK); err != nil {
		t.Fatal(err)
	}
	notice := nextEvent(t, ctx, troll, "the kick", func(e *parleypb.Envelope) bool { return e.GetNotice().GetRoom() == "club" })
	if text := notice.GetNotice().GetText(); !strings.Contains(text, "kicked by mona") || strings.Contains(text, "operator") {
		t.Fatalf("trent was told %v", notice)
	}
	_, err = troll.Post(ctx, "club", "still here?", "s3")
	wantCode(t, "posting after a kick", err, parleypb.ErrorCode_ERROR_CODE_NOT_JOINED)
	if _, err := troll.Join(ctx, "club", nil); err != nil {
		t.Fatalf("joining a public room again after a kick: %v", err)
	}

	// Ban: out, and kept out, even after reconnecting.
	if _, err := moderate(ctx, mod, "club", "trent", parleypb.ModAction_MOD_ACTION_BAN); err != nil {
		t.Fatal(err)
	}
	change(t, ctx, owner, "club", parleypb.ChangeKind_CHANGE_KIND_BANNED)
	troll.CloseNow()
	troll = login(t, ctx, srv, codec.Proto, "trent")
	_, err = troll.Join(ctx, "club", nil)
	wantCode(t, "joining while banned", err, parleypb.ErrorCode_ERROR_CODE_BANNED)
	// A server restarted over the same store still keeps trent out.
	srv2 := startServer(t, func(c *server.Config) { c.Store = st })
	troll2 := login(t, ctx, srv2, codec.JSON, "trent")
	_, err = troll2.Join(ctx, "club", nil)
	wantCode(t, "joining while banned, on a restarted server", err, parleypb.ErrorCode_ERROR_CODE_BANNED)
	if _, err := moderate(ctx, mod, "club", "trent", parleypb.ModAction_MOD_ACTION_UNBAN); err != nil {
		t.Fatal(err)
	}
	if _, err := troll.Join(ctx, "club", nil); err != nil {
		t.Fatalf("joining after the unban: %v", err)
	}

	// Ownership: the owner may not leave others behind without an owner;
	// a transfer makes the old owner a moderator.
	err = owner.Leave(ctx, "club")
	wantCode(t, "the owner leaving", err, parleypb.ErrorCode_ERROR_CODE_FORBIDDEN)
	_, err = moderate(ctx, mod, "club", "mike", parleypb.ModAction_MOD_ACTION_TRANSFER)
	wantCode(t, "a moderator transferring ownership", err, parleypb.ErrorCode_ERROR_CODE_FORBIDDEN)
	if _, err := moderate(ctx, owner, "club", "mike", parleypb.ModAction_MOD_ACTION_TRANSFER); err != nil {
		t.Fatal(err)
	}
	if ev := change(t, ctx, mem, "club", parleypb.ChangeKind_CHANGE_KIND_OWNER_CHANGED); ev.GetChange().GetUser() != "mike" || ev.GetSender() != "olive" {
		t.Fatalf("mike saw %v", ev)
	}
	roles := map[string]parleypb.Role{}
	if _, err := mem.Request(ctx, &parleypb.Envelope{Body: &parleypb.Envelope_Members{Members: &parleypb.MembersRequest{Room: "club"}}}); err != nil {
		t.Fatal(err)
	}
	for _, m := range nextEvent(t, ctx, mem, "the member list", func(e *parleypb.Envelope) bool { return e.GetMemberList() != nil }).GetMemberList().GetMembers() {
		roles[m.GetUser()] = m.GetRole()
	}
	if roles["mike"] != parleypb.Role_ROLE_OWNER || roles["olive"] != parleypb.Role_ROLE_MODERATOR || roles["mona"] != parleypb.Role_ROLE_MODERATOR || roles["trent"] != parleypb.Role_ROLE_MEMBER {
		t.Fatalf("roles after the transfer: %v", roles)
	}

	// Metadata: owners and moderators only.
	title := "The Club"
	if _, err := mod.Request(ctx, &parleypb.Envelope{Body: &parleypb.Envelope_UpdateRoom{UpdateRoom: &parleypb.UpdateRoom{Room: "club", Title: &title}}}); err != nil {
		t.Fatal(err)
	}
	if ev := change(t, ctx, troll, "club", parleypb.ChangeKind_CHANGE_KIND_UPDATED); ev.GetChange().GetTitle() != title {
		t.Fatalf("trent saw %v", ev)
	}
	_, err = troll.Request(ctx, &parleypb.Envelope{Body: &parleypb.Envelope_UpdateRoom{UpdateRoom: &parleypb.UpdateRoom{Room: "club", Title: &title}}})
	wantCode(t, "a member changing the title", err, parleypb.ErrorCode_ERROR_CODE_FORBIDDEN)

	// Deletion: the owner's; everyone is out, and nobody comes back.
	_, err = mod.Request(ctx, &parleypb.Envelope{Body: &parleypb.Envelope_DeleteRoom{DeleteRoom: &parleypb.DeleteRoom{Room: "club"}}})
	wantCode(t, "a moderator deleting the room", err, parleypb.ErrorCode_ERROR_CODE_FORBIDDEN)
	if _, err := mem.Request(ctx, &parleypb.Envelope{Body: &parleypb.Envelope_DeleteRoom{DeleteRoom: &parleypb.DeleteRoom{Room: "club", Reason: "closing up"}}}); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, ctx, troll, "the deletion", func(e *parleypb.Envelope) bool { return e.GetNotice().GetRoom() == "club" })
	_, err = troll.Join(ctx, "club", nil)
	wantCode(t, "joining a deleted room", err, parleypb.ErrorCode_ERROR_CODE_NO_SUCH_ROOM)
	if _, listed := roomList(t, ctx, troll, false)["club"]; listed {
		t.Fatal("a deleted room is still listed")
	}
}

// TestTokenRolesClaim: a token's roles claim gives its holder a role in the
// rooms it names, on top of the room's own roles.
func TestTokenRolesClaim(t *testing.T) {
	t.Parallel()
	v, err := auth.NewVerifier(auth.Options{HMACSecret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, func(c *server.Config) { c.Auth = v })
	ctx := testCtx(t, 20*time.Second)
	tok, err := auth.IssueWith(testSecret, auth.IssueOptions{Subject: "sam", TTL: time.Hour, Roles: map[string]string{"support-*": auth.RoleModerator}})
	if err != nil {
		t.Fatal(err)
	}
	sam, err := client.Dial(ctx, srv.URL(), codec.JSON, &client.Options{Header: http.Header{"Authorization": {"Bearer " + tok}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sam.CloseNow() })
	if err := sam.Hello(ctx, "", false); err != nil {
		t.Fatal(err)
	}
	user := login(t, ctx, srv, codec.JSON, "uma", "support-1", "general")
	if _, err := moderate(ctx, sam, "support-1", "uma", parleypb.ModAction_MOD_ACTION_KICK); err != nil {
		t.Fatalf("a moderator by token, kicking in support-1: %v", err)
	}
	nextEvent(t, ctx, user, "the kick", func(e *parleypb.Envelope) bool { return e.GetNotice().GetRoom() == "support-1" })
	_, err = moderate(ctx, sam, "general", "uma", parleypb.ModAction_MOD_ACTION_KICK)
	wantCode(t, "the same token in a room its claim does not name", err, parleypb.ErrorCode_ERROR_CODE_FORBIDDEN)
}

// TestMembershipSurvivesSIGKILL: what the room acknowledged about who
// belongs — a private room's members and roles, an invitation, a ban and a
// mute — is stored before the acknowledgement, so a SIGKILL right after it
// loses none of it, on either durable backend.
func TestMembershipSurvivesSIGKILL(t *testing.T) {
	for _, backend := range []string{"bolt", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			addr := freeAddr(t)
			args := durableStore(t, backend)
			ctx := testCtx(t, 90*time.Second)
			url := "ws://" + addr + "/ws"
			connect := func(name string) *client.Client {
				t.Helper()
				c, err := client.Dial(ctx, url, codec.Proto, nil)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.CloseNow() })
				if err := c.Hello(ctx, name, false); err != nil {
					t.Fatalf("%s hello: %v", name, err)
				}
				return c
			}

			p := startProc(t, addr, args...)
			owner := connect("olive")
			if _, err := createRoom(ctx, owner, "vault", parleypb.RoomKind_ROOM_KIND_PRIVATE, "mona", "mel", "ivan"); err != nil {
				t.Fatal(err)
			}
			for _, u := range []string{"mona", "mel"} {
				if _, err := connect(u).Join(ctx, "vault", nil); err != nil {
					t.Fatalf("%s accepting the invitation: %v", u, err)
				}
			}
			if err := setRole(ctx, owner, "vault", "mona", parleypb.Role_ROLE_MODERATOR); err != nil {
				t.Fatal(err)
			}
			if _, err := moderate(ctx, owner, "vault", "mel", parleypb.ModAction_MOD_ACTION_MUTE); err != nil {
				t.Fatal(err)
			}
			if _, err := createRoom(ctx, owner, "square", parleypb.RoomKind_ROOM_KIND_PUBLIC); err != nil {
				t.Fatal(err)
			}
			if _, err := moderate(ctx, owner, "square", "trent", parleypb.ModAction_MOD_ACTION_BAN); err != nil {
				t.Fatal(err)
			}
			p.kill() // right after the last acknowledgement

			startProc(t, addr, args...)
			mona := connect("mona")
			roles := map[string]parleypb.Role{}
			if _, err := mona.Request(ctx, &parleypb.Envelope{Body: &parleypb.Envelope_Members{Members: &parleypb.MembersRequest{Room: "vault"}}}); err != nil {
				t.Fatalf("a member asking for the member list after the restart: %v", err)
			}
			for _, m := range nextEvent(t, ctx, mona, "the member list", func(e *parleypb.Envelope) bool { return e.GetMemberList() != nil }).GetMemberList().GetMembers() {
				roles[m.GetUser()] = m.GetRole()
			}
			want := map[string]parleypb.Role{"olive": parleypb.Role_ROLE_OWNER, "mona": parleypb.Role_ROLE_MODERATOR, "mel": parleypb.Role_ROLE_MEMBER}
			for u, r := range want {
				if roles[u] != r {
					t.Errorf("after SIGKILL, %s is %v in vault, want %v (members: %v)", u, roles[u], r, roles)
				}
			}
			if _, listed := roomList(t, ctx, mona, true)["vault"]; !listed {
				t.Error("after SIGKILL, vault is not among mona's rooms")
			}
			_, err := connect("mallory").Join(ctx, "vault", nil)
			wantCode(t, "a stranger joining the private room after SIGKILL", err, parleypb.ErrorCode_ERROR_CODE_FORBIDDEN)
			if _, err := connect("ivan").Join(ctx, "vault", nil); err != nil {
				t.Errorf("the invitation did not survive SIGKILL: %v", err)
			}
			mel := connect("mel")
			if _, err := mel.Join(ctx, "vault", nil); err != nil {
				t.Fatal(err)
			}
			_, err = mel.Post(ctx, "vault", "am I heard?", "m1")
			wantCode(t, "a muted member posting after SIGKILL", err, parleypb.ErrorCode_ERROR_CODE_MUTED)
			_, err = connect("trent").Join(ctx, "square", nil)
			wantCode(t, "a banned user joining after SIGKILL", err, parleypb.ErrorCode_ERROR_CODE_BANNED)
		})
	}
}
