package store

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// checkBatch enforces the shape every backend requires of a batch, so that
// switching -store never changes which batches are accepted. Whether the
// seqs follow the room's Latest is the backend's business (ErrConflict).
func checkBatch(b Batch) error {
	room := b.Room
	if room == "" {
		return fmt.Errorf("store: commit: empty room name")
	}
	// Checked even without messages: a state-only batch names its room too.
	if err := storable("room name", room); err != nil {
		return fmt.Errorf("store: commit to %q: %w", room, err)
	}
	if b.Info != nil && b.Info.Name != room {
		return fmt.Errorf("store: commit to %q: the room record is %q's", room, b.Info.Name)
	}
	for _, m := range b.Members {
		if m.Room != room || m.User == "" {
			return fmt.Errorf("store: commit to %q: a member record for room %q, user %q", room, m.Room, m.User)
		}
		if err := storable("member", m.User, m.InvitedBy); err != nil {
			return fmt.Errorf("store: commit to %q: %w", room, err)
		}
	}
	if b.Info != nil {
		if err := storable("room record", b.Info.Title, b.Info.Topic, b.Info.CreatedBy, b.Info.Peer); err != nil {
			return fmt.Errorf("store: commit to %q: %w", room, err)
		}
	}
	for i := range b.Rewrites {
		m := &b.Rewrites[i]
		if m.Room != room || m.Seq == 0 {
			return fmt.Errorf("store: commit to %q: a rewrite of room %q, seq %d", room, m.Room, m.Seq)
		}
		if err := storable("rewrite", m.Sender, m.Text, m.ClientMsgID); err != nil {
			return fmt.Errorf("store: commit to %q: seq %d: %w", room, m.Seq, err)
		}
	}
	if err := checkOutbox(b); err != nil {
		return err
	}
	msgs := b.Messages
	for i := range msgs {
		m := &msgs[i]
		if m.Room != room {
			return fmt.Errorf("store: commit to %q: batch mixes rooms %q and %q", room, room, m.Room)
		}
		if i > 0 && m.Seq != msgs[i-1].Seq+1 {
			return fmt.Errorf("store: commit to %q: batch seqs not consecutive at %d", room, m.Seq)
		}
		// PostgreSQL text holds neither NUL nor invalid UTF-8; rejecting them
		// everywhere keeps a message from being storable on one backend only.
		for _, f := range [...]struct{ name, v string }{
			{"room", m.Room}, {"sender", m.Sender}, {"text", m.Text}, {"client_msg_id", m.ClientMsgID},
		} {
			if !utf8.ValidString(f.v) || strings.IndexByte(f.v, 0) >= 0 {
				return fmt.Errorf("store: commit to %q: seq %d: %s is not valid UTF-8 without NUL bytes", room, m.Seq, f.name)
			}
		}
	}
	return nil
}

// storable checks strings for what every backend can keep: valid UTF-8
// without NUL bytes.
func storable(what string, vs ...string) error {
	for _, v := range vs {
		if !utf8.ValidString(v) || strings.IndexByte(v, 0) >= 0 {
			return fmt.Errorf("%s: a string is not valid UTF-8 without NUL bytes", what)
		}
	}
	return nil
}

// commitError says which batch of which room failed.
func commitError(b Batch, err error) error {
	if len(b.Messages) == 0 {
		return fmt.Errorf("store: commit to %q: %w", b.Room, err)
	}
	return fmt.Errorf("store: commit to %q at seq %d: %w", b.Room, b.Messages[0].Seq, err)
}
