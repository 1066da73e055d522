package transport

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// decoders decodes inbound frames of the text codecs for the readers of
// every connection. protojson and encoding/json run deep: decoded on a
// reader's own stack they grow it to 8 KiB, which the reader, parked in
// Read between frames, then keeps for the connection's lifetime — 4 KiB
// more per idle JSON connection than per protobuf one. A handful of
// long-lived workers keep that deep stack instead. A reader hands a frame
// to an idle worker (or starts one when none is idle) and waits for it, so
// frames are still delivered in order; a worker that has had nothing to do
// for decoderIdle exits, and all exit when the Server shuts down.
type decoders struct {
	jobs    chan *decodeJob // unbuffered: taken only by an idle worker
	stop    chan struct{}   // closed by Shutdown
	once    sync.Once
	workers atomic.Int32 // running, for tests
}

// decoderIdle is how long a worker waits for the next frame before it
// exits.
const decoderIdle = 10 * time.Second

type decodeJob struct {
	c         *Conn
	peer      Peer
	typ, want websocket.MessageType
	frame     []byte
	done      chan struct{} // one element once delivered
}

var decodeJobs = sync.Pool{New: func() any { return &decodeJob{done: make(chan struct{}, 1)} }}

func newDecoders() *decoders {
	return &decoders{jobs: make(chan *decodeJob), stop: make(chan struct{})}
}

// deliver decodes frame and tells peer, on a worker, and returns when it
// is done.
func (d *decoders) deliver(c *Conn, peer Peer, typ, want websocket.MessageType, frame []byte) {
	j := decodeJobs.Get().(*decodeJob)
	j.c, j.peer, j.typ, j.want, j.frame = c, peer, typ, want, frame
	select {
	case d.jobs <- j:
	default:
		d.workers.Add(1)
		go d.work(j)
	}
	<-j.done
	*j = decodeJob{done: j.done}
	decodeJobs.Put(j)
}

func (d *decoders) work(j *decodeJob) {
	defer d.workers.Add(-1)
	idle := time.NewTimer(decoderIdle)
	defer idle.Stop()
	for {
		j.c.deliver(j.peer, j.typ, j.want, j.frame)
		j.done <- struct{}{}
		idle.Reset(decoderIdle)
		select {
		case j = <-d.jobs:
		case <-idle.C:
			return
		case <-d.stop:
			return
		}
	}
}

// close makes idle workers exit; a worker busy with a frame exits after it.
func (d *decoders) close() { d.once.Do(func() { close(d.stop) }) }
