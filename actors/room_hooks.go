package actors

import (
	"context"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/parleychat/parley/actors/actorpb"
	parleypb "github.com/parleychat/parley/proto"
)

// Hooks are the application's say before a user joins a room or posts to
// it (hooks/ asks it over HTTP, with its timeout and failure policy
// applied: what comes back here is the final word). A nil function is no
// hook. They run on goroutines of their own, never on a room's: the room
// holds the request, goes on with everything else, and takes the verdict
// as a message. Posts are decided in the order they came and stored in
// that order, whatever order the verdicts arrive in; a slow hook holds up
// the posts of its room only.
type Hooks struct {
	// Join says whether user may join room.
	Join func(ctx context.Context, room, user string) Verdict
	// Post says whether user may post text to room, and what to store (the
	// application may rewrite it).
	Post func(ctx context.Context, room, user, text, clientMsgID string) Verdict
}

// Verdict is a hook's final word.
type Verdict struct {
	Allow bool
	// Reason is why not, shown to the client (FORBIDDEN).
	Reason string
	// Failed says the application could not be asked and the hook's
	// policy refuses then: the client gets UNAVAILABLE (retry later).
	Failed bool
	// Text is, for a post allowed, the text to store.
	Text string
}

// maxHeldPosts bounds the posts one room holds for its hook; past it,
// posts are refused RATE_LIMITED (the application is behind).
const maxHeldPosts = 1024

// held is a request waiting for its hook's verdict.
type held struct {
	owner *room // the incarnation that asked (a restarted room ignores old verdicts)
	post  *actorpb.RoomPost
	join  *actorpb.RoomJoin
	// retries of the post that came while it waited (same client_msg_id):
	// answered with it.
	retries []*actorpb.RoomPost
	done    bool
	v       Verdict
}

// hookVerdict is a hook's answer, sent to the room by the goroutine that
// asked (a local message: never crosses the network).
type hookVerdict struct {
	h *held
	v Verdict
}

// hooked reports whether a user's request goes to the application first:
// the system's and bots' do not (the application or the operator made
// them), nor does a connection re-registering after a restart.
func hooked(kind parleypb.SenderKind) bool {
	return kind == parleypb.SenderKind_SENDER_KIND_USER || kind == parleypb.SenderKind_SENDER_KIND_UNSPECIFIED
}

// holdPost holds m for the post hook and reports whether it did; a retry
// of a held post waits with it.
func (r *room) holdPost(ctx actor.Context, m *actorpb.RoomPost) bool {
	hook := r.n.cfg.Hooks.Post
	if hook == nil || !hooked(m.GetKind()) {
		return false
	}
	if op := m.GetOp(); op != actorpb.PostOp_POST_OP_POST && op != actorpb.PostOp_POST_OP_EDIT {
		return false // the application judges words; a delete or a reaction adds none
	}
	if id := m.GetClientMsgId(); id != "" {
		for _, h := range r.heldPosts {
			if h.post.GetUser() == m.GetUser() && h.post.GetClientMsgId() == id {
				h.retries = append(h.retries, m)
				return true
			}
		}
	}
	if r.info != nil { // (a first direct message makes its room when decided)
		if no := r.mayPost(m); no != nil { // the application is not asked in vain
			r.answer(ctx, m.GetSession(), m.GetRequestId(), no)
			return true
		}
	}
	if len(r.heldPosts) >= maxHeldPosts {
		errorTo(ctx, m.GetSession(), m.GetRequestId(), r.name, parleypb.ErrorCode_ERROR_CODE_RATE_LIMITED,
			"the application's post hook is behind; retry the post later")
		return true
	}
	h := &held{owner: r, post: m}
	r.heldPosts = append(r.heldPosts, h)
	self, root := ctx.Self(), r.n.System.Root
	room, user, text, id := r.name, m.GetUser(), m.GetText(), m.GetClientMsgId()
	go func() {
		root.Send(self, &hookVerdict{h: h, v: hook(context.Background(), room, user, text, id)})
	}()
	return true
}

// holdJoin holds m for the join hook and reports whether it did.
func (r *room) holdJoin(ctx actor.Context, m *actorpb.RoomJoin) bool {
	hook := r.n.cfg.Hooks.Join
	if hook == nil || !hooked(m.GetKind()) || m.GetRejoin() {
		return false
	}
	h := &held{owner: r, join: m}
	r.heldJoins++
	self, root := ctx.Self(), r.n.System.Root
	room, user := r.name, m.GetUser()
	go func() {
		root.Send(self, &hookVerdict{h: h, v: hook(context.Background(), room, user)})
	}()
	return true
}

// verdict takes a hook's answer: a join goes on or is refused at once; a
// post waits until those before it are decided.
func (r *room) verdict(ctx actor.Context, v *hookVerdict) {
	h := v.h
	if h.owner != r || h.done {
		return // asked by an earlier incarnation; its requester retries
	}
	h.done, h.v = true, v.v
	if h.join != nil {
		r.heldJoins--
		if !h.v.Allow {
			r.refuseHeld(ctx, h.join.GetSession(), h.join.GetRequestId(), h.v)
			return
		}
		r.joinDecided(ctx, h.join)
		return
	}
	for len(r.heldPosts) > 0 && r.heldPosts[0].done {
		h := r.heldPosts[0]
		r.heldPosts[0] = nil
		r.heldPosts = r.heldPosts[1:]
		for _, m := range append([]*actorpb.RoomPost{h.post}, h.retries...) {
			if !h.v.Allow {
				r.refuseHeld(ctx, m.GetSession(), m.GetRequestId(), h.v)
				continue
			}
			// The first is stored; its retries find it in the dedup window.
			r.postDecided(ctx, m, h.v.Text)
		}
	}
}

func (r *room) refuseHeld(ctx actor.Context, to *actor.PID, requestID string, v Verdict) {
	if v.Failed {
		errorTo(ctx, to, requestID, r.name, parleypb.ErrorCode_ERROR_CODE_UNAVAILABLE, "the application could not be asked; retry later")
		return
	}
	errorTo(ctx, to, requestID, r.name, parleypb.ErrorCode_ERROR_CODE_FORBIDDEN, refusedBy(v.Reason))
}

func refusedBy(reason string) string {
	if reason == "" {
		return "refused by the application"
	}
	return "refused by the application: " + reason
}
