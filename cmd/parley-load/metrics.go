package main

import (
	"bytes"
	"fmt"
	"math/bits"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ---------------------------------------------------------------- histogram

// hist is a log-linear latency histogram in nanoseconds: exact below 64 ns,
// then 32 buckets per power of two (at most ~3% error), safe for concurrent
// Record without locks.
type hist struct {
	counts [histBuckets]atomic.Uint64
	n      atomic.Uint64
	max    atomic.Int64
}

const histBuckets = 64 + 40*32

func histIndex(v int64) int {
	if v < 64 {
		if v < 0 {
			return 0
		}
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - 6 // v>>shift is in [32, 63]
	i := 64 + (shift-1)*32 + int(uint64(v)>>shift) - 32
	if i >= histBuckets {
		return histBuckets - 1
	}
	return i
}

// histUpper is the largest value that lands in bucket i.
func histUpper(i int) int64 {
	if i < 64 {
		return int64(i)
	}
	shift := (i-64)/32 + 1
	m := int64((i-64)%32 + 32)
	return (m+1)<<shift - 1
}

func (h *hist) Record(d time.Duration) {
	v := int64(d)
	h.counts[histIndex(v)].Add(1)
	h.n.Add(1)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// Quantile returns the upper bound of the bucket holding quantile q (0..1),
// never more than the maximum seen.
func (h *hist) Quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n) + 0.5)
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			return time.Duration(min(histUpper(i), h.max.Load()))
		}
	}
	return time.Duration(h.max.Load())
}

// Latency is a histogram summarized in milliseconds for the report.
type Latency struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (h *hist) Summary() Latency {
	return Latency{Count: h.n.Load(), P50: ms(h.Quantile(0.50)), P90: ms(h.Quantile(0.90)),
		P99: ms(h.Quantile(0.99)), Max: ms(time.Duration(h.max.Load()))}
}

func (l Latency) String() string {
	if l.Count == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  max %s  (n=%d)", fmtMs(l.P50), fmtMs(l.P90), fmtMs(l.P99), fmtMs(l.Max), l.Count)
}

func fmtMs(v float64) string {
	switch {
	case v < 1:
		return fmt.Sprintf("%.0fµs", v*1000)
	case v < 100:
		return fmt.Sprintf("%.1fms", v)
	default:
		return fmt.Sprintf("%.0fms", v)
	}
}

// ---------------------------------------------------------------- bitsets

// bitset is a growable set of message numbers.
type bitset []uint64

func (b *bitset) set(i uint64) (was bool) {
	w := int(i / 64)
	if w >= len(*b) {
		n := max(2*len(*b), w+1)
		nb := make(bitset, n)
		copy(nb, *b)
		*b = nb
	}
	m := uint64(1) << (i % 64)
	was = (*b)[w]&m != 0
	(*b)[w] |= m
	return was
}

func (b bitset) word(w int) uint64 {
	if w < len(b) {
		return b[w]
	}
	return 0
}

// missing counts numbers in [from, to) that are in want but not in b.
func (b bitset) missing(want bitset, from, to uint64) uint64 {
	var n uint64
	for i := from; i < to; {
		w := int(i / 64)
		lo := i % 64
		hi := uint64(64)
		if end := uint64(w+1) * 64; end > to {
			hi = to - uint64(w)*64
		}
		mask := ^uint64(0) << lo
		if hi < 64 {
			mask &= (uint64(1) << hi) - 1
		}
		n += uint64(bits.OnesCount64(want.word(w) &^ b.word(w) & mask))
		i = uint64(w+1) * 64
	}
	return n
}

// ---------------------------------------------------------------- ledgers

// roomLedger is what the tool published to one room: message numbers are
// handed out per room, and a number is marked once the server acknowledged
// the post. Every member is expected to receive every acknowledged number
// exactly once.
type roomLedger struct {
	name    string
	next    atomic.Uint64
	mu      sync.Mutex
	acked   bitset
	members []*receiver
}

func (r *roomLedger) ack(n uint64) {
	r.mu.Lock()
	r.acked.set(n)
	r.mu.Unlock()
}

// receiver is one measured connection's view of its room.
type receiver struct {
	room *roomLedger
	conn Conn
	run  *loadRun

	mu      sync.Mutex
	got     bitset
	dups    uint64
	foreign uint64 // payloads that were not ours, or for another room
}

// onMsg runs on the connection's read goroutine for every message.
func (rc *receiver) onMsg(room, payload []byte) {
	now := rc.run.now()
	n, sent, ok := parsePayload(payload)
	if !ok || string(room) != rc.room.name {
		rc.mu.Lock()
		rc.foreign++
		rc.mu.Unlock()
		return
	}
	rc.mu.Lock()
	dup := rc.got.set(n)
	if dup {
		rc.dups++
	}
	rc.mu.Unlock()
	if dup {
		return
	}
	rc.run.delivered.Add(1)
	rc.run.lastRecv.Store(int64(now))
	rc.run.latency.Load().Record(now - sent)
	rc.run.recordMax(now - sent)
}

// ---------------------------------------------------------------- payloads

// A payload is "plt <n> <sent-ns> " padded with 'x' to the message size:
// the room's message number, and the send time in nanoseconds since the
// tool started (monotonic), so latency is measured end to end.
const payloadMagic = "plt "

func makePayload(dst []byte, n uint64, sent time.Duration, size int) []byte {
	dst = append(dst, payloadMagic...)
	dst = strconv.AppendUint(dst, n, 10)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, int64(sent), 10)
	dst = append(dst, ' ')
	for len(dst) < size {
		dst = append(dst, 'x')
	}
	return dst
}

func parsePayload(b []byte) (n uint64, sent time.Duration, ok bool) {
	if !bytes.HasPrefix(b, []byte(payloadMagic)) {
		return 0, 0, false
	}
	b = b[len(payloadMagic):]
	var v [2]uint64
	for k := range v {
		i := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			v[k] = v[k]*10 + uint64(b[i]-'0')
			i++
		}
		if i == 0 || i >= len(b) || b[i] != ' ' {
			return 0, 0, false
		}
		b = b[i+1:]
	}
	return v[0], time.Duration(v[1]), true
}

// ---------------------------------------------------------------- /proc

// clockTicks is USER_HZ, which Linux fixes at 100 on every architecture Go
// runs on.
const clockTicks = 100

// procCPU is utime+stime of a process, from /proc/PID/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// procRSS is VmRSS of a process in KiB, from /proc/PID/status.
func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

// procThreads is the Threads line of /proc/PID/status.
func procThreads(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Threads:"); ok {
			v, _ := strconv.ParseInt(strings.TrimSpace(rest), 10, 64)
			return v
		}
	}
	return 0
}

// machineCPU is the busy time of all CPUs (everything but idle and iowait),
// from /proc/stat: with the server's and the tool's own, it shows how much
// else ran on the machine during a measurement.
func machineCPU() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected format")
	}
	var busy int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 8 { // guest time is already in user
			break
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, err
		}
		busy += n
	}
	return time.Duration(busy) * time.Second / clockTicks, nil
}

// pids are the server's processes (one, or a cluster's nodes): their CPU,
// memory and threads are summed.
type pids []int

func (p *pids) String() string {
	var s []string
	for _, id := range *p {
		s = append(s, strconv.Itoa(id))
	}
	return strings.Join(s, ",")
}

func (p *pids) Set(v string) error {
	*p = nil
	for _, f := range strings.Split(v, ",") {
		id, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || id < 0 {
			return fmt.Errorf("want process ids separated by commas")
		}
		if id != 0 {
			*p = append(*p, id)
		}
	}
	return nil
}

func (p pids) set() bool { return len(p) > 0 }

func (p pids) first() int {
	if len(p) == 0 {
		return 0
	}
	return p[0]
}

func (p pids) cpu() (time.Duration, error) {
	var sum time.Duration
	for _, id := range p {
		d, err := procCPU(id)
		if err != nil {
			return 0, err
		}
		sum += d
	}
	return sum, nil
}

func (p pids) rss() (int64, error) {
	var sum int64
	for _, id := range p {
		kb, err := procRSS(id)
		if err != nil {
			return 0, err
		}
		sum += kb
	}
	return sum, nil
}

func (p pids) threads() int64 {
	var sum int64
	for _, id := range p {
		sum += procThreads(id)
	}
	return sum
}
