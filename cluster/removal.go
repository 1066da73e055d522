package cluster

import (
	"slices"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
)

// In this Proto.Actor version a member dropped from a topology is blocked
// by its id for good (MemberList.UpdateClusterTopology): a live member that
// another dropped (it missed health checks or heartbeats while starved or
// paused) can never be seen again by that one. Their views stay split, and
// each hosts the rooms its own view gives it: two activations of a room,
// each with part of its members. The store's (room, seq) fence keeps them
// from acknowledging the same seq, but not the members from missing each
// other's posts. The only way back is a new id: the member must restart.
//
// Which one restarts is decided alike by every member, from what each
// reports in its health answer (view): of two members where either blocked
// the other, the one that is split from more members goes, or of two as
// split the one whose id sorts last. A member that was paused and, on
// waking, blocked everyone whose heartbeats looked stale is split from all
// of them and goes; so does one everybody else dropped. Members poll each
// other, so each reaches the verdict from the same reports; the loser
// shuts down, and its supervisor restarts it under a new id, which every
// member accepts. Whatever the blocks, the members that stay are pairwise
// unsplit and at least one stays (TestRemovedByHeals).

// view is what a member reports about its membership: its id, the ids in
// its topology (itself included) and the ids it blocked.
type view struct {
	ID      string   `json:"id"`
	Members []string `json:"members,omitempty"`
	Blocked []string `json:"blocked,omitempty"`
}

// removedBy reports whether self must leave the cluster, given the views
// the other members reported lately: it is split from one of them (either
// blocked the other) and loses to it. It names the winner.
func removedBy(self view, peers []view) (bool, string) {
	all := append([]view{self}, peers...)
	split := func(x, y view) bool { return slices.Contains(x.Blocked, y.ID) || slices.Contains(y.Blocked, x.ID) }
	splits := func(x view) int {
		n := 0
		for _, y := range all {
			if y.ID != x.ID && split(x, y) {
				n++
			}
		}
		return n
	}
	mine := splits(self)
	for _, p := range peers {
		if p.ID == "" || p.ID == self.ID || !split(self, p) {
			continue
		}
		if theirs := splits(p); mine > theirs || (mine == theirs && self.ID > p.ID) {
			return true, p.ID
		}
	}
	return false, ""
}

// selfView is this member's view, for its health answer and for judging
// the others'.
func (cl *Cluster) selfView() view {
	v := view{ID: cl.c.ActorSystem.ID}
	cl.mu.Lock()
	if cl.latest != nil {
		for _, m := range cl.latest.Members {
			v.Members = append(v.Members, m.Id)
		}
	}
	v.Blocked = slices.Clone(cl.blocked)
	cl.mu.Unlock()
	if !slices.Contains(v.Members, v.ID) {
		v.Members = append(v.Members, v.ID)
	}
	return v
}

// maxBlocked bounds the blocked ids a member reports: those of processes
// long gone (each restart leaves one) need not be, and a split is found
// within seconds of the block.
const maxBlocked = 64

// noteLeft records the members a topology dropped (under cl.mu): in this
// library version each is blocked for good. (The library's block list is
// not read: it is written under a lock and read without one.)
func (cl *Cluster) noteLeft(left []*pcluster.Member) {
	for _, m := range left {
		if !slices.Contains(cl.blocked, m.Id) {
			cl.blocked = append(cl.blocked, m.Id)
		}
	}
	if n := len(cl.blocked) - maxBlocked; n > 0 {
		cl.blocked = slices.Delete(cl.blocked, 0, n)
	}
}

// report is this member's view for its health answer; false once it
// began to leave (the answer is then 503: a member leaving gracefully is
// blocked by the others, and must not be judged split from them).
func (cl *Cluster) report() (view, bool) {
	if cl.left.Load() {
		return view{}, false
	}
	return cl.selfView(), true
}

// judge checks the views the other members reported lately (peers, by
// health address) against this member's, and marks this member removed
// when it is split from one of them and loses (removedBy) for verdictAfter
// in a row: the reports of all members arrive over a poll period, and a
// verdict from only some of them may name the wrong member.
func (cl *Cluster) judge(peers map[string]view) {
	if cl.left.Load() {
		return
	}
	self := cl.selfView()
	vs := make([]view, 0, len(peers))
	for _, v := range peers {
		vs = append(vs, v)
	}
	gone, winner := removedBy(self, vs)
	cl.verdictMu.Lock()
	if !gone {
		cl.losingSince = time.Time{}
	} else if cl.losingSince.IsZero() {
		cl.losingSince = time.Now()
	}
	since := cl.losingSince
	cl.verdictMu.Unlock()
	if !gone || time.Since(since) < cl.verdictAfter() {
		return
	}
	by := ""
	for addr, v := range peers {
		if v.ID == winner {
			by = addr
		}
	}
	cl.removeOnce.Do(func() {
		cl.Stats.Removed.Add(1)
		cl.removedBy = by
		cl.log.Error("this member is split from another (one dropped the other from its view after missed health checks or heartbeats, e.g. while starved or paused, and will never accept it again under its id) and is split from more members: shutting down so that its clients reconnect to the others; restart it to rejoin under a new id",
			"member", self.ID, "split_from", by, "split_from_member", winner, "our_view", len(self.Members), "blocked", len(self.Blocked))
		close(cl.removed)
	})
}

// Removed is closed when this member was removed from the cluster while
// alive (see judge); the process should shut down and be restarted.
func (cl *Cluster) Removed() <-chan struct{} { return cl.removed }

// RemovedBy is the health address of the member that removed this one
// (after Removed is closed).
func (cl *Cluster) RemovedBy() string {
	select {
	case <-cl.removed:
		return cl.removedBy
	default:
		return ""
	}
}

// verdictAfter is how long a member must keep losing before it goes:
// two poll periods, so every peer's report has come in, and at least a
// second.
func (cl *Cluster) verdictAfter() time.Duration {
	return max(2*cl.cfg.Refresh, time.Second)
}
