package actors

// dedupWindow is what a room remembers of recent client_msg_ids, so that
// a retried post is acknowledged with its original seq instead of stored
// twice: the newest ids, at most maxN of them and at most maxBytes of
// memory (each id costs its user's and its own length plus a fixed
// overhead), the oldest forgotten first.
type dedupWindow struct {
	ids   map[dedupKey]uint64
	order []dedupEntry // oldest first; an entry whose id was forgotten since, or remembered again, is skipped
	bytes int
	maxN  int
	max   int // bytes
}

type dedupKey struct{ user, id string }

type dedupEntry struct {
	key dedupKey
	seq uint64
}

// dedupOverhead is what one remembered id costs besides its strings: the
// map entry and the order slot, roughly.
const dedupOverhead = 96

func newDedupWindow(maxN, maxBytes int) *dedupWindow {
	return &dedupWindow{ids: make(map[dedupKey]uint64), maxN: maxN, max: maxBytes}
}

func cost(k dedupKey) int { return len(k.user) + len(k.id) + dedupOverhead }

func (w *dedupWindow) lookup(k dedupKey) (uint64, bool) {
	seq, ok := w.ids[k]
	return seq, ok
}

// remember records k as seq's id, forgetting the oldest ids past the bounds.
func (w *dedupWindow) remember(k dedupKey, seq uint64) {
	if _, ok := w.ids[k]; !ok {
		w.bytes += cost(k)
	}
	w.ids[k] = seq
	w.order = append(w.order, dedupEntry{k, seq})
	for len(w.ids) > w.maxN || w.bytes > w.max {
		w.evictOldest()
	}
	if len(w.order) > 2*w.maxN+16 { // stale entries pile up behind forget
		w.compact()
	}
}

// forget drops k (its post was not stored after all).
func (w *dedupWindow) forget(k dedupKey) {
	if _, ok := w.ids[k]; ok {
		delete(w.ids, k)
		w.bytes -= cost(k)
	}
}

func (w *dedupWindow) evictOldest() {
	for len(w.order) > 0 {
		e := w.order[0]
		w.order[0] = dedupEntry{}
		w.order = w.order[1:]
		if seq, ok := w.ids[e.key]; ok && seq == e.seq {
			w.forget(e.key)
			return
		}
	}
}

func (w *dedupWindow) compact() {
	live := w.order[:0]
	for _, e := range w.order {
		if seq, ok := w.ids[e.key]; ok && seq == e.seq {
			live = append(live, e)
		}
	}
	clear(w.order[len(live):])
	w.order = live
}

func (w *dedupWindow) reset() {
	clear(w.ids)
	w.order, w.bytes = nil, 0
}
