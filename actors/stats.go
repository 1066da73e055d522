package actors

import (
	"sort"
	"sync"
	"sync/atomic"

	"github.com/parleychat/parley/supervision"
)

// Stats counts what the node's actors did; safe for concurrent reads.
type Stats struct {
	Sessions, Rooms, Presence supervision.Stats
	// DeadLetters counts messages sent to actors that were gone.
	DeadLetters atomic.Int64
	// ActiveRooms is how many room actors are running.
	ActiveRooms atomic.Int64
	// Passivations counts rooms stopped for being empty.
	Passivations atomic.Int64
	// Posts counts acknowledged posts; Deliveries the room events handed to
	// members (one per member per event); RateLimited the requests refused
	// by a session's rate limit; StoreErrors the failed store writes.
	Posts, Deliveries, RateLimited, StoreErrors atomic.Int64
	// Moved counts rooms activated (as cluster grains) on a node that did
	// not own them, which forwarded and stopped.
	Moved atomic.Int64
	// Fenced counts room activations stopped because the store refused
	// their batch: another activation of the room had stored those seqs.
	Fenced atomic.Int64
	// ResendsDropped counts resent joins a room dropped: the session's
	// first join had reached it (a backed-up room, in a cluster).
	ResendsDropped atomic.Int64
	// Relays counts fan-outs sent to another cluster member as one Relay
	// for several of its sessions.
	Relays atomic.Int64

	mailboxes sync.Map // room name -> *mailboxDepth
}

// mailboxDepth counts the messages waiting in one room's mailbox.
type mailboxDepth struct{ n atomic.Int64 }

func (d *mailboxDepth) MailboxStarted()     {}
func (d *mailboxDepth) MessagePosted(any)   { d.n.Add(1) }
func (d *mailboxDepth) MessageReceived(any) { d.n.Add(-1) }
func (d *mailboxDepth) MailboxEmpty()       {}

// RoomDepth is one room's mailbox depth.
type RoomDepth struct {
	Room  string
	Depth int64
}

// BusiestRooms returns the k rooms with the most messages waiting.
func (s *Stats) BusiestRooms(k int) []RoomDepth {
	var all []RoomDepth
	s.mailboxes.Range(func(key, v any) bool {
		if d := v.(*mailboxDepth).n.Load(); d > 0 {
			all = append(all, RoomDepth{key.(string), d})
		}
		return true
	})
	sort.Slice(all, func(i, j int) bool { return all[i].Depth > all[j].Depth })
	return all[:min(k, len(all))]
}
