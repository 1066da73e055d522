// Command wirefloor measures the floor under the load tool's rooms scenario
// on this machine: the CPU that one write(2) per delivery costs a server and
// one read per delivery costs a client, over loopback TCP, with nothing
// else — no WebSocket framing, no actors, no protocol. No chat server can
// deliver a message to a socket for less, nor a client read it for less, so
// these figures bound what any server can reach with the load tool on the
// same cores (docs/BENCHMARKS.md, "Why rooms 2× is out of reach here").
//
//	go run ./bench/wirefloor -rates 4000,8000,12000
//
// It runs the client as a child process (so that each side's CPU is its
// own), opens -conns connections in rooms of -room, and for each rate writes
// -size byte frames for -duration: each "post" to a room is one write to
// each of its members, from -workers goroutines, as a server with no
// per-delivery overhead would. Loopback only; bounded in count and time.
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

type opts struct {
	conns, room, workers, size int
	duration                   time.Duration
}

// clientReport is what the child prints after each step.
type clientReport struct {
	Deliveries int64   `json:"deliveries"`
	CPUSeconds float64 `json:"cpu_s"`
	P50ms      float64 `json:"p50_ms"`
	P99ms      float64 `json:"p99_ms"`
	MaxMs      float64 `json:"max_ms"`
}

func main() {
	var o opts
	client := flag.String("client", "", "internal: run as the client of this address")
	rates := flag.String("rates", "4000,8000,12000", "posts per second to offer, comma-separated (each post is -room deliveries)")
	flag.IntVar(&o.conns, "conns", 10000, "connections (the load tool's rooms scenario: 1,000 rooms × 10)")
	flag.IntVar(&o.room, "room", 10, "members per room")
	flag.IntVar(&o.workers, "workers", 2, "server goroutines doing the writes")
	flag.IntVar(&o.size, "size", 80, "bytes per delivery (a Parley proto delivery of a 64-byte message is about this)")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "length of each step")
	flag.Parse()
	if *client != "" {
		if err := runClient(*client, o); err != nil {
			fmt.Fprintln(os.Stderr, "wirefloor client:", err)
			os.Exit(1)
		}
		return
	}
	var rs []int
	for _, s := range strings.Split(*rates, ",") {
		r, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || r <= 0 {
			fmt.Fprintf(os.Stderr, "wirefloor: -rates: %q is not a positive number\n", s)
			os.Exit(2)
		}
		rs = append(rs, r)
	}
	if o.conns%o.room != 0 || o.conns > 15000 {
		fmt.Fprintln(os.Stderr, "wirefloor: -conns must be a multiple of -room and at most 15000 (each side holds one descriptor per connection)")
		os.Exit(2)
	}
	if err := runServer(rs, o); err != nil {
		fmt.Fprintln(os.Stderr, "wirefloor:", err)
		os.Exit(1)
	}
}

func cpuNow() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func runServer(rates []int, o opts) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer ln.Close()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	child := exec.Command(self, "-client", ln.Addr().String(), "-conns", strconv.Itoa(o.conns),
		"-size", strconv.Itoa(o.size), "-duration", o.duration.String())
	child.Stderr = os.Stderr
	out, err := child.StdoutPipe()
	if err != nil {
		return err
	}
	if err := child.Start(); err != nil {
		return err
	}
	defer child.Process.Kill()
	reports := bufio.NewScanner(out)

	conns := make([]net.Conn, 0, o.conns)
	for len(conns) < o.conns {
		_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(30 * time.Second))
		c, err := ln.Accept()
		if err != nil {
			return fmt.Errorf("accepting the client's connections (%d of %d): %w", len(conns), o.conns, err)
		}
		conns = append(conns, c)
	}
	fmt.Printf("wirefloor: %d loopback connections in rooms of %d, %d-byte deliveries, %d writer goroutines, %v per step\n",
		o.conns, o.room, o.size, o.workers, o.duration)
	fmt.Printf("%12s %14s %18s %18s %12s %10s %10s\n", "posts/s", "deliveries/s", "server µs/deliv.", "client µs/deliv.", "both, cores", "p50 ms", "p99 ms")
	for _, rate := range rates {
		sent, serverCPU, wall := step(conns, rate, o)
		// A step ends for the client when a marker frame (time 0) reaches
		// every connection.
		marker := make([]byte, o.size)
		for _, c := range conns {
			if _, err := c.Write(marker); err != nil {
				return err
			}
		}
		if !reports.Scan() {
			return fmt.Errorf("the client ended: %v", reports.Err())
		}
		var cr clientReport
		if err := json.Unmarshal(reports.Bytes(), &cr); err != nil {
			return fmt.Errorf("client report %q: %w", reports.Text(), err)
		}
		if cr.Deliveries != sent {
			return fmt.Errorf("the client read %d deliveries of %d", cr.Deliveries, sent)
		}
		perS := float64(sent) / wall.Seconds()
		sus := serverCPU.Seconds() * 1e6 / float64(sent)
		cus := cr.CPUSeconds * 1e6 / float64(sent)
		fmt.Printf("%12d %14.0f %18.2f %18.2f %12.2f %10.1f %10.1f\n", rate, perS, sus, cus,
			(serverCPU.Seconds()+cr.CPUSeconds)/wall.Seconds(), cr.P50ms, cr.P99ms)
	}
	for _, c := range conns {
		c.Close()
	}
	return child.Wait()
}

// step offers rate posts/s for o.duration and returns the deliveries
// written, the server's CPU and the wall time they took.
func step(conns []net.Conn, rate int, o opts) (int64, time.Duration, time.Duration) {
	rooms := len(conns) / o.room
	posts := make(chan int, 1<<16)
	var wg sync.WaitGroup
	for range o.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, o.size)
			for r := range posts {
				binary.LittleEndian.PutUint64(buf, uint64(time.Now().UnixNano()))
				for _, c := range conns[r*o.room : (r+1)*o.room] {
					_, _ = c.Write(buf)
				}
			}
		}()
	}
	c0, t0 := cpuNow(), time.Now()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	n := 0
	for time.Since(t0) < o.duration {
		<-tick.C
		for due := int(time.Since(t0).Seconds() * float64(rate)); n < due; n++ {
			posts <- n % rooms
		}
	}
	close(posts)
	wg.Wait()
	return int64(n * o.room), cpuNow() - c0, time.Since(t0)
}

func runClient(addr string, o opts) error {
	type result struct {
		n    int64
		lats []time.Duration
	}
	type conn struct {
		nc  net.Conn
		res chan result // one result per step, closed when the server closes
	}
	cs := make([]*conn, o.conns)
	for i := range cs {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		c := &conn{nc: nc, res: make(chan result, 1)}
		cs[i] = c
		go func() {
			buf := make([]byte, o.size)
			var r result
			for {
				if _, err := io.ReadFull(c.nc, buf); err != nil {
					if !errors.Is(err, io.EOF) {
						fmt.Fprintln(os.Stderr, "wirefloor client:", err)
					}
					close(c.res)
					return
				}
				sent := int64(binary.LittleEndian.Uint64(buf))
				if sent == 0 { // end of a step
					c.res <- r
					r = result{lats: r.lats[:0:0]}
					continue
				}
				r.n++
				r.lats = append(r.lats, time.Duration(time.Now().UnixNano()-sent))
			}
		}()
	}
	enc := json.NewEncoder(os.Stdout)
	for {
		c0 := cpuNow()
		var rep clientReport
		var lats []time.Duration
		for _, c := range cs {
			r, ok := <-c.res
			if !ok {
				return nil // the server closed: done
			}
			rep.Deliveries += r.n
			lats = append(lats, r.lats...)
		}
		rep.CPUSeconds = (cpuNow() - c0).Seconds()
		if len(lats) > 0 {
			slices.Sort(lats)
			ms := func(q float64) float64 { return float64(lats[int(q*float64(len(lats)-1))]) / 1e6 }
			rep.P50ms, rep.P99ms, rep.MaxMs = ms(.5), ms(.99), ms(1)
		}
		if err := enc.Encode(rep); err != nil {
			return err
		}
	}
}
