// Command profserver runs a Parley node (server.New, as main.go builds it)
// with Go's profiling endpoints on a second loopback listener, for
// profiling the server under parley-load:
//
//	go run ./bench/profserver -addr 127.0.0.1:18080 -debug-addr 127.0.0.1:6060 -store memory &
//	go run ./cmd/parley-load -url ws://127.0.0.1:18080/ws -scenario fanout -rate 400 -duration 30s -pid $! &
//	go tool pprof -top http://127.0.0.1:6060/debug/pprof/profile?seconds=20
//	go tool pprof -sample_index=inuse_space -top http://127.0.0.1:6060/debug/pprof/heap
//
// Parley itself has no pprof endpoint (it should not expose one by
// default); this harness is for benchmarking only. With -stats-every it
// prints goroutines and memory classes (heap, stacks) each interval, which
// divided by the connection count says where per-connection memory goes.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/parleychat/parley/server"
	"github.com/parleychat/parley/store"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "profserver:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		cfg        server.Config
		storeSpec  string
		dataDir    string
		debugAddr  string
		statsEvery time.Duration
		mutexFrac  int
	)
	flag.StringVar(&cfg.Addr, "addr", "127.0.0.1:18080", "address for HTTP and WebSocket")
	flag.StringVar(&debugAddr, "debug-addr", "127.0.0.1:6060", "loopback address for /debug/pprof")
	flag.StringVar(&storeSpec, "store", "memory", "history store: memory, bolt or a postgres URL")
	flag.StringVar(&dataDir, "data", "", "bolt directory (default: a temporary one)")
	flag.IntVar(&cfg.Transport.QueueSize, "queue", 256, "outbound frames queued per connection")
	flag.Float64Var(&cfg.Actors.Rate, "rate", 100000, "requests per second per session")
	flag.IntVar(&cfg.Actors.Burst, "burst", 100000, "request burst per session")
	flag.IntVar(&cfg.Actors.MaxRooms, "max-rooms", 100, "rooms per session")
	flag.IntVar(&cfg.Actors.History, "history", 100, "messages per room kept in memory")
	flag.DurationVar(&statsEvery, "stats-every", 0, "print goroutines and memory classes this often (0: never)")
	flag.IntVar(&mutexFrac, "mutex-fraction", 0, "runtime.SetMutexProfileFraction (0: off)")
	flag.Parse()
	if mutexFrac > 0 {
		runtime.SetMutexProfileFraction(mutexFrac)
		runtime.SetBlockProfileRate(mutexFrac)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg.Logger = log
	if storeSpec == "bolt" && dataDir == "" {
		d, err := os.MkdirTemp("", "profserver-bolt-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		dataDir = d
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	st, err := store.Open(ctx, storeSpec, dataDir, log)
	cancel()
	if err != nil {
		return err
	}
	cfg.Store = st
	srv, err := server.New(cfg)
	if err != nil {
		st.Close()
		return err
	}
	go func() {
		if err := http.ListenAndServe(debugAddr, nil); err != nil {
			fmt.Fprintln(os.Stderr, "profserver: debug listener:", err)
		}
	}()
	srv.Start()
	fmt.Fprintf(os.Stderr, "profserver: pid %d serving %s, pprof on http://%s/debug/pprof/\n", os.Getpid(), srv.URL(), debugAddr)
	if statsEvery > 0 {
		go printStats(statsEvery)
	}
	sig, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-sig.Done()
	return srv.Shutdown(context.Background())
}

func printStats(every time.Duration) {
	var m runtime.MemStats
	for range time.Tick(every) {
		runtime.ReadMemStats(&m)
		fmt.Fprintf(os.Stderr, "profserver: goroutines %d, heap in use %.1f MiB (%d objects), stacks %.1f MiB, sys %.1f MiB, GC cycles %d\n",
			runtime.NumGoroutine(), mib(m.HeapInuse), m.HeapObjects, mib(m.StackInuse), mib(m.Sys), m.NumGC)
	}
}

func mib(v uint64) float64 { return float64(v) / (1 << 20) }
