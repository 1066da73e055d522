package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The contract about rooms' state (rooms.go) that every backend shares:
// room and member records written by Commit, with the batch's messages or
// alone, and read back by the Rooms methods.

func roomRec(name string, kind uint8) RoomRecord {
	return RoomRecord{Name: name, Kind: kind, Title: "Title of " + name, Topic: "about " + name,
		CreatedBy: "alice", CreatedAt: t0, Members: 1}
}

func memberRec(room, user string, role uint8) Member {
	return Member{Room: room, User: user, Role: role, Since: t0.Add(time.Hour)}
}

func mustCommit(t testing.TB, s Store, b Batch) {
	t.Helper()
	if err := s.Commit(context.Background(), b); err != nil {
		t.Fatalf("Commit to %q: %v", b.Room, err)
	}
}

func getRoom(t testing.TB, s Store, name string) (RoomRecord, bool) {
	t.Helper()
	r, ok, err := s.Room(context.Background(), name)
	if err != nil {
		t.Fatalf("Room(%q): %v", name, err)
	}
	return r, ok
}

func wantRoom(t testing.TB, s Store, want RoomRecord) {
	t.Helper()
	got, ok := getRoom(t, s, want.Name)
	if !ok {
		t.Fatalf("Room(%q): no record, want %+v", want.Name, want)
	}
	if !sameRoom(got, want) {
		t.Fatalf("Room(%q) =\n  %+v\nwant\n  %+v", want.Name, got, want)
	}
}

func wantNoRoom(t testing.TB, s Store, name string) {
	t.Helper()
	if got, ok := getRoom(t, s, name); ok {
		t.Fatalf("Room(%q) = %+v, want no record", name, got)
	}
}

func listMembers(t testing.TB, s Store, room, after string, limit int) []Member {
	t.Helper()
	m, err := s.Members(context.Background(), room, after, limit)
	if err != nil {
		t.Fatalf("Members(%q, %q, %d): %v", room, after, limit, err)
	}
	return m
}

func listUserRooms(t testing.TB, s Store, user, after string, limit int) []UserRoom {
	t.Helper()
	r, err := s.UserRooms(context.Background(), user, after, limit)
	if err != nil {
		t.Fatalf("UserRooms(%q, %q, %d): %v", user, after, limit, err)
	}
	return r
}

func listPublic(t testing.TB, s Store, after string, limit int) []RoomRecord {
	t.Helper()
	r, err := s.PublicRooms(context.Background(), after, limit)
	if err != nil {
		t.Fatalf("PublicRooms(%q, %d): %v", after, limit, err)
	}
	return r
}

// sameRoom compares every field; times by instant, since backends may
// hand them back in another location.
func sameRoom(a, b RoomRecord) bool {
	a.CreatedAt, b.CreatedAt = a.CreatedAt.UTC(), b.CreatedAt.UTC()
	return a.CreatedAt.Equal(b.CreatedAt) && a.Name == b.Name && a.Kind == b.Kind && a.Title == b.Title &&
		a.Topic == b.Topic && a.CreatedBy == b.CreatedBy && a.Peer == b.Peer && a.Deleted == b.Deleted && a.ReadPositions == b.ReadPositions &&
		a.Members == b.Members && a.Latest == b.Latest
}

func sameMember(a, b Member) bool {
	return a.Room == b.Room && a.User == b.User && a.Role == b.Role && a.Invited == b.Invited &&
		a.InvitedBy == b.InvitedBy && a.Since.Equal(b.Since) && a.BannedUntil.Equal(b.BannedUntil) &&
		a.MutedUntil.Equal(b.MutedUntil)
}

func sameList[T any](t testing.TB, what string, got, want []T, eq func(a, b T) bool) {
	t.Helper()
	if !slices.EqualFunc(got, want, eq) {
		t.Fatalf("%s:\n  got  %+v\n  want %+v", what, got, want)
	}
}

func sameUserRoom(a, b UserRoom) bool {
	return sameRoom(a.Room, b.Room) && sameMember(a.Member, b.Member)
}

func userOf(m Member) string           { return m.User }
func roomOfUserRoom(u UserRoom) string { return u.Room.Name }
func nameOf(r RoomRecord) string       { return r.Name }

// pageThrough reads a listing in pages of limit, each page starting after
// the last name of the one before, as clients page, checking that no page
// is over the limit and that names strictly increase.
func pageThrough[T any](t testing.TB, limit int, key func(T) string, page func(after string, limit int) []T) []T {
	t.Helper()
	var all []T
	after := ""
	for {
		p := page(after, limit)
		if len(p) > limit {
			t.Fatalf("a page of %d after %q, over the limit %d", len(p), after, limit)
		}
		for _, x := range p {
			if key(x) <= after {
				t.Fatalf("%q listed after %q", key(x), after)
			}
			after = key(x)
		}
		all = append(all, p...)
		if len(p) == 0 {
			return all
		}
	}
}

// byName sorts members as every backend must list them: by the bytes of
// the user name (not by a locale's collation).
func byUser(ms []Member) []Member {
	ms = slices.Clone(ms)
	slices.SortFunc(ms, func(a, b Member) int { return strings.Compare(a.User, b.User) })
	return ms
}

func runRoomsContract(t *testing.T, open func(t *testing.T) Store) {
	ctx := context.Background()

	// Every field of a room record comes back as committed, Latest
	// excepted, which reads fill from the room's log.
	t.Run("RoomRecord", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		wantNoRoom(t, s, "lobby")
		wantNoRoom(t, s, "")
		sameList(t, `Members of ""`, listMembers(t, s, "", "", 10), nil, sameMember)
		sameList(t, `UserRooms of ""`, listUserRooms(t, s, "", "", 10), nil, sameUserRoom)
		mustAppend(t, s, batch("history only", 1, 3))
		wantNoRoom(t, s, "history only")

		ist := time.FixedZone("IST", 5*3600+1800)
		info := RoomRecord{Name: "ünïcödé 房间 🚀", Kind: KindDirect, Title: "héllo, 世界! 👋🏽", Topic: "tab\tnew\nline \\'\"%_",
			CreatedBy: "Zoë 🦊", CreatedAt: t0.In(ist), Peer: "bob", Deleted: true, ReadPositions: true, Members: 123456, Latest: 99}
		mustCommit(t, s, Batch{Room: info.Name, Info: &info})
		want := info
		want.Latest = 0 // ignored by Commit: the room has no log yet
		wantRoom(t, s, want)

		mustAppend(t, s, batch(info.Name, 1, 4))
		want.Latest = 4
		wantRoom(t, s, want)

		// A record replaces the old one whole: emptied strings stay empty.
		info = RoomRecord{Name: info.Name, Kind: KindPublic, CreatedAt: time.Time{}}
		mustCommit(t, s, Batch{Room: info.Name, Info: &info})
		want = info
		want.Latest = 4
		wantRoom(t, s, want)

		far := RoomRecord{Name: "far", Kind: KindPrivate, Title: strings.Repeat("long ✓ ", 2000), CreatedAt: Forever, Members: -1}
		mustCommit(t, s, Batch{Room: far.Name, Info: &far})
		wantRoom(t, s, far)
		wantNoRoom(t, s, "fa")
		wantNoRoom(t, s, "far ")
	})

	// Member records: every field, upserts, Empty deleting, records of one
	// batch applied in order, and listing by user name in pages.
	t.Run("MemberRecords", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		const room = "club"
		ist := time.FixedZone("IST", 5*3600+1800)
		alice := Member{Room: room, User: "alice", Role: RoleOwner, Since: t0}
		bob := Member{Room: room, User: "bob", Invited: true, InvitedBy: "alice", Since: t0.Add(time.Minute)}
		carol := Member{Room: room, User: "carol", Since: t0.Add(2 * time.Minute), BannedUntil: Forever}
		dave := Member{Room: room, User: "Dävé 🦊", Role: RoleMember, Since: t0.In(ist), MutedUntil: t0.Add(24 * time.Hour)}
		eve := Member{Room: room, User: "eve", Role: RoleModerator, Invited: true, InvitedBy: "Zoë 🦊",
			Since: time.Time{}, BannedUntil: t0.Add(time.Hour), MutedUntil: Forever}
		mustCommit(t, s, Batch{Room: room, Members: []Member{alice, bob, carol, dave, eve}})
		want := byUser([]Member{alice, bob, carol, dave, eve})
		if want[0].User != "Dävé 🦊" {
			t.Fatal("the test expects byte order, where upper case sorts first")
		}
		sameList(t, "members", listMembers(t, s, room, "", 100), want, sameMember)

		// A record replaces the user's old one whole; an Empty one deletes
		// it, also when there was none.
		bob = Member{Room: room, User: "bob", Role: RoleMember, Since: t0.Add(time.Hour)}
		mustCommit(t, s, Batch{Room: room, Members: []Member{bob, {Room: room, User: "carol"}, {Room: room, User: "nobody"}}})
		want = byUser([]Member{alice, bob, dave, eve})
		sameList(t, "after an upsert and deletes", listMembers(t, s, room, "", 100), want, sameMember)

		// In order: the later record for a user wins.
		frank1, frank2 := memberRec(room, "frank", RoleMember), memberRec(room, "frank", RoleModerator)
		gina := memberRec(room, "gina", RoleMember)
		eve2 := memberRec(room, "eve", RoleMember)
		mustCommit(t, s, Batch{Room: room, Members: []Member{
			frank1, gina, {Room: room, User: "eve"}, frank2, {Room: room, User: "gina"}, eve2,
		}})
		want = byUser([]Member{alice, bob, dave, eve2, frank2})
		sameList(t, "after one batch touching users twice", listMembers(t, s, room, "", 100), want, sameMember)

		for limit := 1; limit <= len(want)+1; limit++ {
			got := pageThrough(t, limit, userOf, func(after string, limit int) []Member {
				return listMembers(t, s, room, after, limit)
			})
			sameList(t, fmt.Sprintf("members in pages of %d", limit), got, want, sameMember)
		}
		sameList(t, `Members after "bob", 2`, listMembers(t, s, room, "bob", 2), []Member{eve2, frank2}, sameMember)
		sameList(t, `Members after "b", 1`, listMembers(t, s, room, "b", 1), []Member{bob}, sameMember)
		sameList(t, `Members after "frank"`, listMembers(t, s, room, "frank", 10), nil, sameMember)
		for _, limit := range []int{0, -1} {
			sameList(t, fmt.Sprint("Members with limit ", limit), listMembers(t, s, room, "", limit), nil, sameMember)
		}

		// Rooms whose names share prefixes keep their records apart.
		for _, r := range []string{"club/b", "clu", "club "} {
			mustCommit(t, s, Batch{Room: r, Members: []Member{memberRec(r, "zed", RoleMember)}})
		}
		for _, r := range []string{"club/b", "clu", "club "} {
			sameList(t, "members of "+r, listMembers(t, s, r, "", 10), []Member{memberRec(r, "zed", RoleMember)}, sameMember)
		}
		sameList(t, "members of club beside its neighbours", listMembers(t, s, room, "", 100), want, sameMember)

		// Deleting every record leaves an empty room, which can fill again.
		var gone []Member
		for _, m := range want {
			gone = append(gone, Member{Room: room, User: m.User})
		}
		mustCommit(t, s, Batch{Room: room, Members: gone})
		sameList(t, "members after all left", listMembers(t, s, room, "", 100), nil, sameMember)
		mustCommit(t, s, Batch{Room: room, Members: []Member{alice}})
		sameList(t, "members after one came back", listMembers(t, s, room, "", 100), []Member{alice}, sameMember)
		sameList(t, "members of a room never written", listMembers(t, s, "nowhere", "", 100), nil, sameMember)
	})

	// A user's rooms: those where the user has a record, with the room's
	// record (Latest filled) and the user's, by room name; deleted rooms and
	// rooms without a record are left out.
	t.Run("UserRooms", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		rec := map[string]RoomRecord{}
		describe := func(r RoomRecord) {
			mustCommit(t, s, Batch{Room: r.Name, Info: &r})
			rec[r.Name] = r
		}
		dm := roomRec("ab", KindDirect)
		dm.Peer = "bob"
		deleted := roomRec("b", KindPublic)
		deleted.Deleted = true
		for _, r := range []RoomRecord{roomRec("a", KindPublic), roomRec("a/b", KindPrivate), dm, deleted, roomRec("c", KindPrivate), roomRec("e", KindPublic)} {
			describe(r)
		}
		mustAppend(t, s, batch("a", 1, 3))
		mustAppend(t, s, batch("c", 1, 5))
		mine := map[string]Member{
			"a":   memberRec("a", "alice", RoleOwner),
			"a/b": {Room: "a/b", User: "alice", Invited: true, InvitedBy: "bob", Since: t0},
			"ab":  memberRec("ab", "alice", RoleMember),
			"b":   memberRec("b", "alice", RoleMember),
			"c":   {Room: "c", User: "alice", Since: t0, BannedUntil: Forever},
			"d":   memberRec("d", "alice", RoleMember), // a room without a record
			"e":   memberRec("e", "alice", RoleModerator),
		}
		for room, m := range mine {
			mustCommit(t, s, Batch{Room: room, Members: []Member{m, memberRec(room, "bob", RoleMember)}})
		}
		mustCommit(t, s, Batch{Room: "a", Members: []Member{memberRec("a", "al", RoleMember)}})
		mustCommit(t, s, Batch{Room: "e", Members: []Member{memberRec("e", "alice2", RoleMember)}})
		entry := func(room string, latest uint64) UserRoom {
			r := rec[room]
			r.Latest = latest
			return UserRoom{Room: r, Member: mine[room]}
		}
		want := []UserRoom{entry("a", 3), entry("a/b", 0), entry("ab", 0), entry("c", 5), entry("e", 0)}
		for limit := 1; limit <= len(want)+1; limit++ {
			got := pageThrough(t, limit, roomOfUserRoom, func(after string, limit int) []UserRoom {
				return listUserRooms(t, s, "alice", after, limit)
			})
			sameList(t, fmt.Sprintf("alice's rooms in pages of %d", limit), got, want, sameUserRoom)
		}
		sameList(t, `alice's rooms after "a", 2`, listUserRooms(t, s, "alice", "a", 2), want[1:3], sameUserRoom)
		sameList(t, `alice's rooms after "ab", 1 (the deleted "b" skipped)`, listUserRooms(t, s, "alice", "ab", 1), want[3:4], sameUserRoom)
		sameList(t, "alice's rooms, limit 0", listUserRooms(t, s, "alice", "", 0), nil, sameUserRoom)
		al := rec["a"]
		al.Latest = 3
		sameList(t, "al's rooms", listUserRooms(t, s, "al", "", 10), []UserRoom{{al, memberRec("a", "al", RoleMember)}}, sameUserRoom)
		sameList(t, "alice2's rooms", listUserRooms(t, s, "alice2", "", 10), []UserRoom{{rec["e"], memberRec("e", "alice2", RoleMember)}}, sameUserRoom)
		sameList(t, "nobody's rooms", listUserRooms(t, s, "nobody", "", 10), nil, sameUserRoom)

		// Leaving drops the room; a new record shows; deleting and
		// undeleting a room hides and shows it.
		mine["ab"] = Member{Room: "ab", User: "alice"}
		mine["a/b"] = memberRec("a/b", "alice", RoleMember)
		mustCommit(t, s, Batch{Room: "ab", Members: []Member{mine["ab"]}})
		mustCommit(t, s, Batch{Room: "a/b", Members: []Member{mine["a/b"]}})
		gone := rec["e"]
		gone.Deleted = true
		describe(gone)
		want = []UserRoom{entry("a", 3), entry("a/b", 0), entry("c", 5)}
		sameList(t, "alice's rooms after changes", listUserRooms(t, s, "alice", "", 10), want, sameUserRoom)
		back := rec["b"]
		back.Deleted = false
		describe(back)
		want = []UserRoom{entry("a", 3), entry("a/b", 0), entry("b", 0), entry("c", 5)}
		sameList(t, "alice's rooms after undeleting b", listUserRooms(t, s, "alice", "", 10), want, sameUserRoom)
		sameList(t, "bob's rooms", pageThrough(t, 2, roomOfUserRoom, func(after string, limit int) []UserRoom {
			return listUserRooms(t, s, "bob", after, limit)
		}), []UserRoom{
			{entry("a", 3).Room, memberRec("a", "bob", RoleMember)},
			{entry("a/b", 0).Room, memberRec("a/b", "bob", RoleMember)},
			{entry("ab", 0).Room, memberRec("ab", "bob", RoleMember)},
			{entry("b", 0).Room, memberRec("b", "bob", RoleMember)},
			{entry("c", 5).Room, memberRec("c", "bob", RoleMember)},
		}, sameUserRoom)
	})

	// Public rooms: kind public and not deleted, by name, Latest filled;
	// private, direct and deleted rooms are left out, and changes of kind
	// or deletion move rooms in and out.
	t.Run("PublicRooms", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		rec := map[string]RoomRecord{}
		describe := func(r RoomRecord) {
			mustCommit(t, s, Batch{Room: r.Name, Info: &r})
			rec[r.Name] = r
		}
		gone := roomRec("pub-2", KindPublic)
		gone.Deleted = true
		for _, r := range []RoomRecord{roomRec("pub-1", KindPublic), gone, roomRec("priv", KindPrivate), roomRec("dm", KindDirect),
			roomRec("pub-3", KindPublic), roomRec("Pub-0", KindPublic), roomRec("pub-4", KindPublic)} {
			describe(r)
		}
		mustAppend(t, s, batch("pub-4", 1, 2))
		mustAppend(t, s, batch("history only", 1, 2))
		latest := func(name string, l uint64) RoomRecord { r := rec[name]; r.Latest = l; return r }
		want := []RoomRecord{latest("Pub-0", 0), latest("pub-1", 0), latest("pub-3", 0), latest("pub-4", 2)}
		for limit := 1; limit <= len(want)+1; limit++ {
			got := pageThrough(t, limit, nameOf, func(after string, limit int) []RoomRecord { return listPublic(t, s, after, limit) })
			sameList(t, fmt.Sprintf("public rooms in pages of %d", limit), got, want, sameRoom)
		}
		sameList(t, `public rooms after "pub-1", 1`, listPublic(t, s, "pub-1", 1), want[2:3], sameRoom)
		sameList(t, `public rooms after "pub-10"`, listPublic(t, s, "pub-10", 10), want[2:], sameRoom)
		sameList(t, "public rooms, limit 0", listPublic(t, s, "", 0), nil, sameRoom)

		made := rec["pub-1"]
		made.Kind = KindPrivate
		describe(made)
		opened := rec["priv"]
		opened.Kind = KindPublic
		describe(opened)
		back := rec["pub-2"]
		back.Deleted = false
		describe(back)
		closed := rec["pub-3"]
		closed.Deleted = true
		describe(closed)
		want = []RoomRecord{latest("Pub-0", 0), latest("priv", 0), latest("pub-2", 0), latest("pub-4", 2)}
		sameList(t, "public rooms after changes", listPublic(t, s, "", 10), want, sameRoom)
	})

	// A batch that conflicts stores nothing: not its messages, not its
	// room record, not its member records.
	t.Run("ConflictStoresNoState", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		const room = "r"
		info := roomRec(room, KindPublic)
		alice := memberRec(room, "alice", RoleOwner)
		msgs := batch(room, 1, 3)
		mustCommit(t, s, Batch{Room: room, Messages: msgs, Info: &info, Members: []Member{alice}})
		stolen := info
		stolen.Title, stolen.Kind = "stolen", KindPrivate
		mallory := memberRec(room, "mallory", RoleOwner)
		for _, first := range []uint64{1, 2, 3} {
			imposter := batch(room, first, 2)
			for i := range imposter {
				imposter[i].Text, imposter[i].Body = "overwritten", []byte("x")
			}
			err := s.Commit(ctx, Batch{Room: room, Messages: imposter, Info: &stolen, Members: []Member{mallory, {Room: room, User: "alice"}}})
			if !errors.Is(err, ErrConflict) {
				t.Fatalf("Commit of state with seqs from %d = %v, want ErrConflict", first, err)
			}
		}
		fresh := roomRec("fresh", KindPublic)
		err := s.Commit(ctx, Batch{Room: "fresh", Messages: batch("fresh", 0, 1), Info: &fresh, Members: []Member{memberRec("fresh", "mallory", RoleOwner)}})
		if !errors.Is(err, ErrConflict) {
			t.Fatalf("Commit of state with seq 0 = %v, want ErrConflict", err)
		}
		info.Latest = 3
		wantRoom(t, s, info)
		wantNoRoom(t, s, "fresh")
		sameList(t, "members", listMembers(t, s, room, "", 10), []Member{alice}, sameMember)
		sameList(t, "fresh members", listMembers(t, s, "fresh", "", 10), nil, sameMember)
		sameList(t, "mallory's rooms", listUserRooms(t, s, "mallory", "", 10), nil, sameUserRoom)
		sameList(t, "alice's rooms", listUserRooms(t, s, "alice", "", 10), []UserRoom{{info, alice}}, sameUserRoom)
		sameList(t, "public rooms", listPublic(t, s, "", 10), []RoomRecord{info}, sameRoom)
		sameMessages(t, "messages", after(t, s, room, 0, 10), msgs)
		wantBounds(t, s, "fresh", Bounds{})

		// The writer that holds the room goes on.
		next := batch(room, 4, 1)
		bob := memberRec(room, "bob", RoleMember)
		mustCommit(t, s, Batch{Room: room, Messages: next, Members: []Member{bob}})
		sameList(t, "members after the next batch", listMembers(t, s, room, "", 10), []Member{alice, bob}, sameMember)
		sameMessages(t, "messages after the next batch", after(t, s, room, 0, 10), append(msgs, next...))
	})

	// Batches every backend refuses (checkBatch) store nothing either, and
	// are not conflicts.
	t.Run("InvalidStateStoresNothing", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		good := roomRec("x", KindPublic)
		u := memberRec("x", "u", RoleMember)
		with := func(f func(b *Batch)) Batch {
			info := good
			b := Batch{Room: "x", Info: &info, Members: []Member{u}}
			f(&b)
			return b
		}
		for name, b := range map[string]Batch{
			"a record of another room":        with(func(b *Batch) { b.Info.Name = "y" }),
			"a member of another room":        with(func(b *Batch) { b.Members = append(b.Members, memberRec("y", "v", RoleMember)) }),
			"a member without a user":         with(func(b *Batch) { b.Members = append(b.Members, memberRec("x", "", RoleMember)) }),
			"NUL in a user":                   with(func(b *Batch) { b.Members = append(b.Members, memberRec("x", "v\x00", RoleMember)) }),
			"invalid UTF-8 in invited by":     with(func(b *Batch) { b.Members[0].InvitedBy = "\xff" }),
			"NUL in a title":                  with(func(b *Batch) { b.Info.Title = "a\x00b" }),
			"invalid UTF-8 in a peer":         with(func(b *Batch) { b.Info.Peer = "\xc3" }),
			"a message with NUL":              with(func(b *Batch) { b.Messages = []Message{{Room: "x", Seq: 1, Text: "a\x00"}} }),
			"a message of another room":       with(func(b *Batch) { b.Messages = []Message{{Room: "y", Seq: 1}} }),
			"an invalid UTF-8 room, no posts": {Room: "\xc3", Members: []Member{memberRec("\xc3", "u", RoleMember)}},
			"a room with NUL, no posts":       {Room: "x\x00", Info: &RoomRecord{Name: "x\x00", Kind: KindPublic}},
		} {
			if err := s.Commit(ctx, b); err == nil || errors.Is(err, ErrConflict) {
				t.Fatalf("Commit with %s = %v, want a non-conflict error", name, err)
			}
		}
		wantNoRoom(t, s, "x")
		wantBounds(t, s, "x", Bounds{})
		sameList(t, "members", listMembers(t, s, "x", "", 10), nil, sameMember)
		sameList(t, "u's rooms", listUserRooms(t, s, "u", "", 10), nil, sameUserRoom)
		sameList(t, "public rooms", listPublic(t, s, "", 10), nil, sameRoom)
	})

	// State alone, without messages, is a batch like any other: it takes
	// no seq, and the log carries on from where it was.
	t.Run("StateWithoutMessages", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		info := roomRec("quiet", KindPrivate)
		alice := memberRec("quiet", "alice", RoleOwner)
		mustCommit(t, s, Batch{Room: "quiet", Info: &info, Members: []Member{alice}})
		wantBounds(t, s, "quiet", Bounds{})
		wantRoom(t, s, info)
		sameList(t, "alice's rooms", listUserRooms(t, s, "alice", "", 10), []UserRoom{{info, alice}}, sameUserRoom)
		msgs := batch("quiet", 1, 2)
		mustAppend(t, s, msgs)
		bob := memberRec("quiet", "bob", RoleMember)
		mustCommit(t, s, Batch{Room: "quiet", Members: []Member{bob}})
		info.Members = 2
		mustCommit(t, s, Batch{Room: "quiet", Info: &info})
		info.Latest = 2
		wantRoom(t, s, info)
		wantBounds(t, s, "quiet", Bounds{Oldest: 1, Latest: 2})
		sameList(t, "members", listMembers(t, s, "quiet", "", 10), []Member{alice, bob}, sameMember)
		sameMessages(t, "messages", after(t, s, "quiet", 0, 10), msgs)
		mustAppend(t, s, batch("quiet", 3, 1))
	})

	// SenderKind and Body come back as committed; an empty Body comes back
	// nil; what the caller does with its slices afterwards changes nothing
	// stored, and read slices are the reader's own.
	t.Run("EventFields", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		msgs := batch("events", 1, 6)
		msgs[1].SenderKind, msgs[1].Body = 1, []byte{}
		msgs[2].SenderKind, msgs[2].Body = 2, []byte{0, 0xff, 0, 1, '\n', 0xc3}
		msgs[3].SenderKind, msgs[3].Body, msgs[3].Text = 255, bytes.Repeat([]byte{0xfe, 0}, 40000), ""
		msgs[4].Body, msgs[4].Text = []byte("x"), strings.Repeat("long ✓ ", 5000)
		msgs[5].SenderKind = 3
		want := slices.Clone(msgs)
		want[2].Body = slices.Clone(msgs[2].Body)
		mustAppend(t, s, msgs[:3])
		mustAppend(t, s, msgs[3:])
		msgs[2].Body[0] = 9
		got := after(t, s, "events", 0, 10)
		sameMessages(t, "events", got, want)
		sameMessages(t, "events backwards", before(t, s, "events", 0, 10), want)
		got[2].Body[1] = 9
		got[4].Body = append(got[4].Body, 'y')
		sameMessages(t, "events read again", after(t, s, "events", 0, 10), want)
	})

	// Many rooms committing state at once (for bolt: sharing transactions)
	// each keep their own, and one user's index gets every room.
	t.Run("ConcurrentState", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		const rooms, rounds = 8, 15
		var wg sync.WaitGroup
		for r := range rooms {
			room := fmt.Sprintf("room-%d", r)
			wg.Go(func() {
				for i := range rounds {
					info := roomRec(room, KindPublic)
					info.Members = i + 1
					b := Batch{Room: room, Messages: batch(room, uint64(i+1), 1), Info: &info,
						Members: []Member{memberRec(room, "everyone", RoleMember), memberRec(room, fmt.Sprint("u-", i), RoleMember)}}
					if err := s.Commit(ctx, b); err != nil {
						t.Errorf("Commit to %s: %v", room, err)
						return
					}
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		got := pageThrough(t, 3, roomOfUserRoom, func(after string, limit int) []UserRoom {
			return listUserRooms(t, s, "everyone", after, limit)
		})
		if len(got) != rooms {
			t.Fatalf("everyone's rooms: %d, want %d", len(got), rooms)
		}
		for r, ur := range got {
			room := fmt.Sprintf("room-%d", r)
			want := roomRec(room, KindPublic)
			want.Members, want.Latest = rounds, rounds
			if !sameRoom(ur.Room, want) || !sameMember(ur.Member, memberRec(room, "everyone", RoleMember)) {
				t.Fatalf("everyone's room %d: %+v, want %+v", r, ur, want)
			}
			if n := len(listMembers(t, s, room, "", 100)); n != rounds+1 {
				t.Fatalf("%s has %d members, want %d", room, n, rounds+1)
			}
		}
		if n := len(listPublic(t, s, "", 100)); n != rooms {
			t.Fatalf("%d public rooms, want %d", n, rooms)
		}
	})
}
