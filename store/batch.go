package store

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// checkBatch enforces the shape every backend requires of an Append batch, so
// that switching -store never changes which batches are accepted. Whether the
// seqs follow the room's Latest is the backend's business (ErrConflict).
func checkBatch(msgs []Message) error {
	room := msgs[0].Room
	if room == "" {
		return fmt.Errorf("store: append: empty room name")
	}
	for i := range msgs {
		m := &msgs[i]
		if m.Room != room {
			return fmt.Errorf("store: append to %q: batch mixes rooms %q and %q", room, room, m.Room)
		}
		if i > 0 && m.Seq != msgs[i-1].Seq+1 {
			return fmt.Errorf("store: append to %q: batch seqs not consecutive at %d", room, m.Seq)
		}
		// PostgreSQL text holds neither NUL nor invalid UTF-8; rejecting them
		// everywhere keeps a message from being storable on one backend only.
		for _, f := range [...]struct{ name, v string }{
			{"room", m.Room}, {"sender", m.Sender}, {"text", m.Text}, {"client_msg_id", m.ClientMsgID},
		} {
			if !utf8.ValidString(f.v) || strings.IndexByte(f.v, 0) >= 0 {
				return fmt.Errorf("store: append to %q: seq %d: %s is not valid UTF-8 without NUL bytes", room, m.Seq, f.name)
			}
		}
	}
	return nil
}
