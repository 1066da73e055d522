package api_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"

	"github.com/parleychat/parley/actors"
	"github.com/parleychat/parley/api"
	parleypb "github.com/parleychat/parley/proto"
	apiv1 "github.com/parleychat/parley/proto/api"
	"github.com/parleychat/parley/proto/api/apiv1connect"
	"github.com/parleychat/parley/store"
)

// BenchmarkPublish measures Publish through the API end to end on
// loopback: HTTP/1.1 and Connect's binary protocol in, the room's group
// commit to an in-memory store, the answer out; in parallel from
// 4×GOMAXPROCS callers into 8 rooms. It reports calls/s and the p50 and
// p99 latencies besides ns/op.
func BenchmarkPublish(b *testing.B) {
	node, err := actors.NewNode(actors.Config{Store: store.NewMemory()})
	if err != nil {
		b.Fatal(err)
	}
	defer node.Shutdown(context.Background())
	const key = "bench-key-0123456789abcdef0123456789abcdef"
	keys, err := api.LoadKeys("", key)
	if err != nil {
		b.Fatal(err)
	}
	path, h := api.Handler(node, api.Options{Keys: keys})
	mux := http.NewServeMux()
	mux.Handle(path, h)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	defer hc.CloseIdleConnections()
	c := apiv1connect.NewParleyServiceClient(hc, srv.URL)
	ctx := context.Background()
	const rooms = 8
	for i := range rooms {
		r := connect.NewRequest(&apiv1.CreateRoomRequest{Room: fmt.Sprintf("bench-%d", i)})
		r.Header().Set("Authorization", "Bearer "+key)
		if _, err := c.CreateRoom(ctx, r); err != nil {
			b.Fatal(err)
		}
	}
	var (
		n   atomic.Int64
		mu  sync.Mutex
		lat []time.Duration
	)
	b.SetParallelism(4)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			i := n.Add(1)
			r := connect.NewRequest(&apiv1.PublishRequest{Room: fmt.Sprintf("bench-%d", i%rooms), SenderKind: parleypb.SenderKind_SENDER_KIND_SYSTEM,
				Text: "a message of a typical length, about sixty bytes long.....", IdempotencyKey: fmt.Sprint(i)})
			r.Header().Set("Authorization", "Bearer "+key)
			t0 := time.Now()
			if _, err := c.Publish(ctx, r); err != nil {
				b.Error(err)
				return
			}
			mine = append(mine, time.Since(t0))
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(len(lat))/elapsed.Seconds(), "calls/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
