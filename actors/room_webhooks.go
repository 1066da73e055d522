package actors

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	parleypb "github.com/parleychat/parley/proto"
	"github.com/parleychat/parley/store"
)

// Webhooks makes rooms tell the application what happened: each event of a
// selected type becomes an outbox entry committed in the event's own batch
// (store.Batch.Outbox), which package webhooks delivers. The zero value is
// off, and then a commit carries no entries and costs nothing more.
type Webhooks struct {
	// Want selects the event types written (WebhookTypes); nil: none.
	Want func(eventType string) bool
	// Committed is called after every commit that wrote entries, so the
	// deliverer need not poll to see them. It must not block.
	Committed func()
}

// Webhook event types.
const (
	WebhookMessageCreated = "message.created"
	WebhookNotify         = "notify"
)

// webhookChangeTypes names each kind of room change's webhook event.
var webhookChangeTypes = map[parleypb.ChangeKind]string{
	parleypb.ChangeKind_CHANGE_KIND_CREATED:        "room.created",
	parleypb.ChangeKind_CHANGE_KIND_JOINED:         "member.joined",
	parleypb.ChangeKind_CHANGE_KIND_LEFT:           "member.left",
	parleypb.ChangeKind_CHANGE_KIND_INVITED:        "member.invited",
	parleypb.ChangeKind_CHANGE_KIND_INVITE_REVOKED: "member.invite_revoked",
	parleypb.ChangeKind_CHANGE_KIND_KICKED:         "member.kicked",
	parleypb.ChangeKind_CHANGE_KIND_BANNED:         "member.banned",
	parleypb.ChangeKind_CHANGE_KIND_UNBANNED:       "member.unbanned",
	parleypb.ChangeKind_CHANGE_KIND_MUTED:          "member.muted",
	parleypb.ChangeKind_CHANGE_KIND_UNMUTED:        "member.unmuted",
	parleypb.ChangeKind_CHANGE_KIND_ROLE_CHANGED:   "member.role_changed",
	parleypb.ChangeKind_CHANGE_KIND_OWNER_CHANGED:  "room.owner_changed",
	parleypb.ChangeKind_CHANGE_KIND_UPDATED:        "room.updated",
	parleypb.ChangeKind_CHANGE_KIND_DELETED:        "room.deleted",
	parleypb.ChangeKind_CHANGE_KIND_ADDED:          "member.added",
	// A post's changes name it in change.targetSeq.
	parleypb.ChangeKind_CHANGE_KIND_EDITED:          "message.edited",
	parleypb.ChangeKind_CHANGE_KIND_MESSAGE_DELETED: "message.deleted",
	parleypb.ChangeKind_CHANGE_KIND_REACTED:         "reaction.added",
	parleypb.ChangeKind_CHANGE_KIND_UNREACTED:       "reaction.removed",
}

// WebhookTypes lists every webhook event type, for checking a filter.
func WebhookTypes() []string {
	out := []string{WebhookMessageCreated, WebhookNotify}
	for _, t := range webhookChangeTypes {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

// webhookBody is a webhook's JSON body (docs/API.md, "Webhooks").
type webhookBody struct {
	ID         string       `json:"id"`
	Type       string       `json:"type"`
	Room       string       `json:"room"`
	Seq        uint64       `json:"seq"`
	Time       time.Time    `json:"time"`
	Event      webhookEvent `json:"event"`
	Recipients []string     `json:"recipients,omitempty"`
}

type webhookEvent struct {
	Sender      string         `json:"sender"`
	SenderKind  string         `json:"senderKind"`
	Text        string         `json:"text,omitempty"`
	ClientMsgID string         `json:"clientMsgId,omitempty"`
	ReplyTo     uint64         `json:"replyTo,omitempty"`
	Mentions    []string       `json:"mentions,omitempty"`
	Change      *webhookChange `json:"change,omitempty"`
}

type webhookChange struct {
	Kind      string `json:"kind"`
	TargetSeq uint64 `json:"targetSeq,omitempty"`
	Emoji     string `json:"emoji,omitempty"`
	Count     uint32 `json:"count,omitempty"`
	User      string `json:"user,omitempty"`
	Role      string `json:"role,omitempty"`
	UntilMs   int64  `json:"untilMs,omitempty"`
	Reason    string `json:"reason,omitempty"`
	RoomKind  string `json:"roomKind,omitempty"`
	Title     string `json:"title,omitempty"`
	Topic     string `json:"topic,omitempty"`
	// ReadPositions: created, updated (the room's setting after it).
	ReadPositions bool `json:"readPositions,omitempty"`
}

// enumName is an enum value's name without its prefix, in lower case
// (SENDER_KIND_USER: "user").
func enumName(s, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(s, prefix))
}

// outbox returns the webhook entries of a batch's events, or nil when
// webhooks are off.
func (r *room) outbox(batch []*pendingEvent) []store.OutboxEntry {
	want := r.n.cfg.Webhooks.Want
	if want == nil {
		return nil
	}
	var out []store.OutboxEntry
	for _, p := range batch {
		ev := p.ev
		if ev == nil {
			continue
		}
		typ := WebhookMessageCreated
		if c := ev.GetChange(); c != nil {
			if typ = webhookChangeTypes[c.GetKind()]; typ == "" {
				continue
			}
		}
		body := webhookBody{
			Type: typ, Room: r.name, Seq: ev.Seq, Time: time.UnixMilli(ev.TimeMs).UTC(),
			Event: webhookEvent{
				Sender: ev.Sender, SenderKind: enumName(ev.SenderKind.String(), "SENDER_KIND_"),
				Text: ev.Text, ClientMsgID: ev.ClientMsgId, ReplyTo: ev.ReplyTo, Mentions: ev.Mentions,
			},
		}
		if c := ev.GetChange(); c != nil {
			wc := &webhookChange{Kind: enumName(c.Kind.String(), "CHANGE_KIND_"), User: c.User, UntilMs: c.UntilMs,
				Reason: c.Reason, Title: c.Title, Topic: c.Topic, ReadPositions: c.ReadPositions, TargetSeq: c.TargetSeq, Emoji: c.Emoji, Count: c.Count}
			if c.Role != parleypb.Role_ROLE_NONE {
				wc.Role = enumName(c.Role.String(), "ROLE_")
			}
			if c.RoomKind != parleypb.RoomKind_ROOM_KIND_UNSPECIFIED {
				wc.RoomKind = enumName(c.RoomKind.String(), "ROOM_KIND_")
			}
			body.Event.Change = wc
		}
		if want(typ) {
			out = append(out, r.outboxEntry(&body, 0))
		}
		if typ == WebhookMessageCreated && want(WebhookNotify) {
			if to := r.notifyRecipients(ev); len(to) > 0 {
				body.Type, body.Recipients = WebhookNotify, to
				out = append(out, r.outboxEntry(&body, 1))
			}
		}
	}
	return out
}

// outboxEntry encodes body as the n-th entry of its event; the id is
// "<room>/<seq>/<n>", unique because seqs are.
func (r *room) outboxEntry(body *webhookBody, n int) store.OutboxEntry {
	body.ID = fmt.Sprintf("%s/%d/%d", r.name, body.Seq, n)
	payload, err := json.Marshal(body)
	if err != nil { // cannot happen: strings, numbers and a time
		panic(err)
	}
	return store.OutboxEntry{ID: body.ID, Room: r.name, Type: body.Type, Payload: payload, Created: body.Time}
}

// notifyRecipients are the members a post should reach that have no
// connection in the room: those it mentions (its structured mentions, and
// @name in its text, for clients that send none), and in a direct room the
// other user. The sender is never one.
func (r *room) notifyRecipients(ev *parleypb.RoomEvent) []string {
	var out []string
	add := func(u string) {
		if u == "" || u == ev.Sender || r.users[u] > 0 || r.roster[u].Role < store.RoleMember || slices.Contains(out, u) {
			return
		}
		out = append(out, u)
	}
	if r.info != nil && r.info.Kind == store.KindDirect {
		add(r.info.CreatedBy)
		add(r.info.Peer)
	}
	for _, u := range ev.Mentions {
		add(u)
	}
	for _, u := range mentions(ev.Text) {
		add(u)
	}
	return out
}

// mentions are the names written as @name in text (a client may send none
// of its mentions as structured ones): a name runs over letters, digits, '_', '-' and
// '.', without a trailing '.' (the end of a sentence).
func mentions(text string) []string {
	var out []string
	for i := 0; i < len(text); i++ {
		if text[i] != '@' || (i > 0 && isNameRune(rune(text[i-1]))) {
			continue // an e-mail address, not a mention
		}
		j := i + 1
		for j < len(text) {
			r, size := utf8.DecodeRuneInString(text[j:])
			if !isNameRune(r) {
				break
			}
			j += size
		}
		if name := strings.TrimRight(text[i+1:j], "."); name != "" {
			out = append(out, name)
		}
		i = j - 1
	}
	return out
}

func isNameRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_' || r == '-' || r == '.'
}
