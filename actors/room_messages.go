package actors

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"unicode"
	"unicode/utf8"

	"github.com/asynkron/protoactor-go/actor"
	"google.golang.org/protobuf/proto"

	"github.com/parleychat/parley/actors/actorpb"
	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/store"
)

// A room's posts after they are posted (this file): replies and mentions
// checked when posted; edits, deletes and reactions as events of the log
// naming their target post; and each post's current version (edited text,
// tombstone, reactions) rewritten in the store in the commit of the event
// that changed it (store.Batch.Rewrites). History then needs no folding of
// events when read, and a deleted text leaves the store with the delete.

// Bounds on what a post carries beside its text.
const (
	MaxEmojiBytes = 32
	MaxMentions   = 50
	// maxReactionKinds bounds the different emoji on one post, so a
	// post's stored record stays small whatever a crowd does to it.
	maxReactionKinds = 50
)

// postState is a message of the log as it stands now: its event, and for a
// post what it keeps beside it (nil: nothing).
type postState struct {
	ev   *parleypb.RoomEvent
	post *actorpb.StoredPost
}

// bodyMark starts a post's stored Body (a StoredPost). A protobuf encoding
// never starts with a zero byte (field numbers start at 1), so the Bodies
// of room changes, stored before posts had Bodies, still read as they were.
const bodyMark = 0

func encodePost(sp *actorpb.StoredPost) []byte {
	if sp == nil || proto.Size(sp) == 0 {
		return nil // a plain post costs what it did before
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(sp)
	if err != nil {
		panic(err) // a StoredPost always marshals
	}
	return append([]byte{bodyMark}, b...)
}

// postOf is what a stored post keeps beside its text; nil for a change
// or a plain post.
func postOf(m store.Message) *actorpb.StoredPost {
	if len(m.Body) == 0 || m.Body[0] != bodyMark {
		return nil
	}
	sp := new(actorpb.StoredPost)
	if err := proto.Unmarshal(m.Body[1:], sp); err != nil {
		return nil // shown as a plain post rather than not at all
	}
	return sp
}

// decorate puts a post's stored state on its event, as history shows it.
func decorate(ev *parleypb.RoomEvent, sp *actorpb.StoredPost) {
	if sp == nil {
		return
	}
	ev.ReplyTo, ev.Mentions, ev.EditedMs, ev.Deleted = sp.GetReplyTo(), sp.GetMentions(), sp.GetEditedMs(), sp.GetDeleted()
	ev.Reactions = reactionsOf(sp)
}

func reactionsOf(sp *actorpb.StoredPost) []*parleypb.Reaction {
	var out []*parleypb.Reaction
	for _, r := range sp.GetReactions() {
		out = append(out, &parleypb.Reaction{Emoji: r.GetEmoji(), Count: uint32(len(r.GetUsers()))})
	}
	return out
}

// forReader is ev as user reads it: the reactions that are user's say so.
// The event is copied only when that changes it: others share it.
func forReader(ev *parleypb.RoomEvent, sp *actorpb.StoredPost, user string) *parleypb.RoomEvent {
	var mine []int
	for i, r := range sp.GetReactions() {
		if slices.Contains(r.GetUsers(), user) {
			mine = append(mine, i)
		}
	}
	if len(mine) == 0 || len(ev.GetReactions()) != len(sp.GetReactions()) {
		return ev
	}
	ev = proto.Clone(ev).(*parleypb.RoomEvent)
	for _, i := range mine {
		ev.Reactions[i].Mine = true
	}
	return ev
}

// readerEvent is a stored message as user reads it.
func readerEvent(m store.Message, user string) *parleypb.RoomEvent {
	return forReader(eventOf(m), postOf(m), user)
}

// state returns message seq as it stands now, changes waiting for the
// commit included; nil when the room has no such message (never had, or
// retention deleted it). A message older than the window is read from the
// store while the room waits: changes to old posts are rare, and the
// answer decides the request.
func (r *room) state(seq uint64) (*postState, error) {
	if seq == 0 || seq > r.next {
		return nil, nil
	}
	if st := r.touched[seq]; st != nil {
		return st, nil
	}
	for _, p := range r.pending {
		if p.ev != nil && p.ev.Seq == seq {
			return &postState{p.ev, p.post}, nil
		}
	}
	if e := r.windowEntry(seq); e != nil {
		return &postState{e.ev, e.post}, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	msgs, err := r.n.cfg.Store.After(ctx, r.name, seq-1, 1)
	if err != nil || len(msgs) == 0 || msgs[0].Seq != seq {
		return nil, err
	}
	return &postState{eventOf(msgs[0]), postOf(msgs[0])}, nil
}

// windowEntry is the window's entry of seq, or nil.
func (r *room) windowEntry(seq uint64) *windowEntry {
	i := sort.Search(len(r.window), func(i int) bool { return r.window[i].ev.Seq >= seq })
	if i < len(r.window) && r.window[i].ev.Seq == seq {
		return r.window[i]
	}
	return nil
}

// postExtras checks a post's reply and mentions and returns what the post
// keeps of them (nil: neither).
func (r *room) postExtras(m *actorpb.RoomPost) (*actorpb.StoredPost, *refusal, error) {
	if m.GetReplyTo() == 0 && len(m.GetMentions()) == 0 {
		return nil, nil, nil
	}
	sp := &actorpb.StoredPost{ReplyTo: m.GetReplyTo()}
	if to := m.GetReplyTo(); to != 0 {
		t, err := r.state(to)
		if err != nil {
			return nil, nil, err
		}
		if no := targetRefusal(t, to, "replied to"); no != nil {
			return nil, no, nil
		}
	}
	for _, u := range m.GetMentions() {
		if slices.Contains(sp.Mentions, u) {
			continue
		}
		if r.roster[u].Role < store.RoleMember {
			return nil, refuse(parleypb.ErrorCode_ERROR_CODE_NOT_MEMBER, "cannot mention %q: not a member of this room", u), nil
		}
		sp.Mentions = append(sp.Mentions, u)
	}
	return sp, nil, nil
}

// targetRefusal says why message seq (t, as state found it) cannot be
// what: it is not there, not a post, or deleted.
func targetRefusal(t *postState, seq uint64, what string) *refusal {
	switch {
	case t == nil:
		return refuse(parleypb.ErrorCode_ERROR_CODE_NO_SUCH_MESSAGE, "this room has no message %d", seq)
	case t.ev.GetChange() != nil:
		return refuse(parleypb.ErrorCode_ERROR_CODE_NOT_ALLOWED, "message %d is a change to the room, not a post: it cannot be %s", seq, what)
	case t.ev.GetDeleted():
		return refuse(parleypb.ErrorCode_ERROR_CODE_ALREADY_DELETED, "message %d was deleted: it cannot be %s", seq, what)
	}
	return nil
}

// alter edits, deletes or reacts to a post (m.Op), with text as the post
// hook left it (edits), unless the room refuses it.
func (r *room) alter(ctx actor.Context, m *actorpb.RoomPost, text string) {
	to, id := m.GetSession(), m.GetRequestId()
	if no := r.mayPost(m); no != nil {
		r.answer(ctx, to, id, no)
		return
	}
	p, no, err := r.alteration(m, text)
	switch {
	case err != nil:
		r.n.Stats.StoreErrors.Add(1)
		r.log.Error("could not read the message a request names", "seq", m.GetTargetSeq(), "err", err)
		errorTo(ctx, to, id, r.name, parleypb.ErrorCode_ERROR_CODE_UNAVAILABLE, "history store unavailable; retry with the same client_msg_id")
		return
	case no != nil:
		r.log.Debug("refused a change to a post", "user", m.GetUser(), "op", m.GetOp().String(), "seq", m.GetTargetSeq(), "code", no.code.String())
		r.answer(ctx, to, id, no)
		return
	case p == nil: // nothing to change: the reaction is there already, or is not
		ctx.Send(to, &parleypb.Ack{RequestId: id, Room: r.name})
		return
	}
	if k := m.GetClientMsgId(); k != "" {
		r.dedup.remember(dedupKey{m.GetUser(), k}, p.ev.Seq)
	}
	p.session, p.requestID = to, id
	r.apply(p)
	if r.touched == nil {
		r.touched = make(map[uint64]*postState)
	}
	for _, w := range p.rewrites {
		r.touched[w.ev.Seq] = w
	}
	r.queue(ctx, p)
}

// alteration is the event m makes and the messages it rewrites; nil for
// nothing to do.
func (r *room) alteration(m *actorpb.RoomPost, text string) (*pendingEvent, *refusal, error) {
	seq, user, op := m.GetTargetSeq(), m.GetUser(), m.GetOp()
	t, err := r.state(seq)
	if err != nil {
		return nil, nil, err
	}
	what := map[actorpb.PostOp]string{actorpb.PostOp_POST_OP_EDIT: "edited", actorpb.PostOp_POST_OP_DELETE: "deleted"}[op]
	if what == "" {
		what = "reacted to"
	}
	if no := targetRefusal(t, seq, what); no != nil {
		return nil, no, nil
	}
	ev := proto.Clone(t.ev).(*parleypb.RoomEvent)
	sp := &actorpb.StoredPost{}
	if t.post != nil {
		sp = proto.Clone(t.post).(*actorpb.StoredPost)
	}
	change := &parleypb.RoomChange{TargetSeq: seq}
	p := &pendingEvent{}
	switch op {
	case actorpb.PostOp_POST_OP_EDIT:
		if t.ev.GetSender() != user {
			return nil, refuse(parleypb.ErrorCode_ERROR_CODE_NOT_YOURS, "message %d is %s's: only its author edits a post", seq, t.ev.GetSender()), nil
		}
		change.Kind = parleypb.ChangeKind_CHANGE_KIND_EDITED
		p.ev = r.changeEvent(user, m.GetKind(), change)
		p.ev.Text = text
		ev.Text, ev.EditedMs = text, p.ev.TimeMs
		sp.EditedMs, sp.Edits = p.ev.TimeMs, append(sp.Edits, p.ev.Seq)
	case actorpb.PostOp_POST_OP_DELETE:
		if t.ev.GetSender() != user && r.role(user, m.GetKind(), m.GetClaimRole()) < store.RoleModerator {
			return nil, refuse(parleypb.ErrorCode_ERROR_CODE_NOT_YOURS, "message %d is %s's: only its author, a moderator or the owner deletes it", seq, t.ev.GetSender()), nil
		}
		// The texts of its edits go with it (read before a seq is taken).
		for _, e := range sp.GetEdits() {
			es, err := r.state(e)
			if err != nil {
				return nil, nil, err
			}
			if es != nil && es.ev.GetText() != "" {
				erased := proto.Clone(es.ev).(*parleypb.RoomEvent)
				erased.Text = ""
				p.rewrites = append(p.rewrites, &postState{ev: erased})
			}
		}
		// A deleted post mentions nobody any more: it leaves their unread mentions.
		for _, u := range sp.GetMentions() {
			if rec := r.roster[u]; slices.Contains(rec.Mentions, seq) {
				rec.Mentions = slices.DeleteFunc(slices.Clone(rec.Mentions), func(s uint64) bool { return s == seq })
				p.members = append(p.members, rec)
			}
		}
		change.Kind, change.Reason = parleypb.ChangeKind_CHANGE_KIND_MESSAGE_DELETED, m.GetReason()
		p.ev = r.changeEvent(user, m.GetKind(), change)
		ev.Text, ev.Mentions, ev.Reactions, ev.EditedMs, ev.Deleted = "", nil, nil, 0, true
		sp = &actorpb.StoredPost{ReplyTo: sp.GetReplyTo(), Deleted: true}
	default:
		emoji, remove := m.GetEmoji(), op == actorpb.PostOp_POST_OP_UNREACT
		i := slices.IndexFunc(sp.Reactions, func(r *actorpb.StoredReaction) bool { return r.GetEmoji() == emoji })
		has := i >= 0 && slices.Contains(sp.Reactions[i].Users, user)
		switch {
		case has != remove:
			return nil, nil, nil
		case remove:
			sp.Reactions[i].Users = slices.DeleteFunc(sp.Reactions[i].Users, func(u string) bool { return u == user })
			change.Count = uint32(len(sp.Reactions[i].Users))
			if change.Count == 0 {
				sp.Reactions = slices.Delete(sp.Reactions, i, i+1)
			}
			change.Kind = parleypb.ChangeKind_CHANGE_KIND_UNREACTED
		case i < 0 && len(sp.Reactions) >= maxReactionKinds:
			return nil, refuse(parleypb.ErrorCode_ERROR_CODE_TOO_LONG, "message %d has %d different reactions already; at most %d", seq, len(sp.Reactions), maxReactionKinds), nil
		default:
			if i < 0 {
				sp.Reactions = append(sp.Reactions, &actorpb.StoredReaction{Emoji: emoji})
				i = len(sp.Reactions) - 1
			}
			sp.Reactions[i].Users = append(sp.Reactions[i].Users, user)
			change.Count = uint32(len(sp.Reactions[i].Users))
			change.Kind = parleypb.ChangeKind_CHANGE_KIND_REACTED
		}
		change.Emoji = emoji
		p.ev = r.changeEvent(user, m.GetKind(), change)
		ev.Reactions = reactionsOf(sp)
	}
	p.ev.ClientMsgId = m.GetClientMsgId()
	p.rewrites = append(p.rewrites, &postState{ev: ev, post: sp})
	return p, nil, nil
}

// rewriteWindow puts a committed rewrite into the window, as a new entry:
// sessions may still be reading the old entry's frames.
func (r *room) rewriteWindow(st *postState) {
	if e := r.windowEntry(st.ev.Seq); e != nil {
		i := sort.Search(len(r.window), func(i int) bool { return r.window[i].ev.Seq >= st.ev.Seq })
		r.window[i] = &windowEntry{ev: st.ev, post: st.post}
	}
}

// validEmoji checks a reaction's emoji: a short run of emoji code points
// (pictographs, with their modifiers, variation selectors, joiners and
// keycaps), not words.
func validEmoji(s string) error {
	if s == "" || !utf8.ValidString(s) {
		return fmt.Errorf("is empty or not UTF-8")
	}
	symbol := false
	for _, c := range s {
		switch {
		case unicode.Is(unicode.So, c):
			symbol = true
		case unicode.In(c, unicode.Sk, unicode.Mn, unicode.Me, unicode.Cf), c >= '0' && c <= '9', c == '#', c == '*':
		default:
			return fmt.Errorf("%q is not an emoji", s)
		}
	}
	if !symbol {
		return fmt.Errorf("%q is not an emoji", s)
	}
	return nil
}
