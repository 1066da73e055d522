package cluster

import (
	"fmt"
	"net"
	"strconv"
	"time"

	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/consul"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/etcd"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/k8s"
	"github.com/hashicorp/consul/api"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Providers lists the membership providers -cluster-provider accepts.
var Providers = []string{"automanaged", "consul", "etcd", "k8s"}

// newProvider builds the membership provider cfg names: Parley's own for
// automanaged (peers.go), Proto.Actor's for the others; see the README for
// when to pick which.
func newProvider(cfg Config) (pcluster.ClusterProvider, error) {
	switch cfg.Provider {
	case "automanaged":
		if len(cfg.Peers) == 0 {
			return nil, fmt.Errorf("-cluster-provider automanaged needs -cluster-peers: the health host:port of every member, this one included")
		}
		if cfg.Health <= 0 {
			return nil, fmt.Errorf("-cluster-provider automanaged needs -cluster-health: this member's health port (one of -cluster-peers)")
		}
		self := false
		for _, p := range cfg.Peers {
			_, port, err := net.SplitHostPort(p)
			if err != nil {
				return nil, fmt.Errorf("-cluster-peers %q: %w", p, err)
			}
			if port == strconv.Itoa(cfg.Health) {
				self = true
			}
		}
		if !self {
			return nil, fmt.Errorf("-cluster-peers must include this member's own health endpoint (port %d)", cfg.Health)
		}
		return newPeersProvider(cfg), nil
	case "consul":
		cc := api.DefaultConfig()
		if cfg.Consul != "" {
			cc.Address = cfg.Consul
		}
		p, err := consul.NewWithConfig(cc, consul.WithRefreshTTL(cfg.Refresh))
		if err != nil {
			return nil, fmt.Errorf("-cluster-provider consul: %w", err)
		}
		return p, nil
	case "etcd":
		if len(cfg.Endpoints) == 0 {
			return nil, fmt.Errorf("-cluster-provider etcd needs -cluster-etcd: the etcd endpoints (host:port, comma-separated)")
		}
		p, err := etcd.NewWithConfig("/parley", clientv3.Config{Endpoints: cfg.Endpoints, DialTimeout: 5 * time.Second})
		if err != nil {
			return nil, fmt.Errorf("-cluster-provider etcd: %w", err)
		}
		return p, nil
	case "k8s":
		p, err := k8s.New()
		if err != nil {
			return nil, fmt.Errorf("-cluster-provider k8s (needs to run in a pod with a service account allowed to list, watch and patch pods): %w", err)
		}
		return p, nil
	case "":
		return nil, fmt.Errorf("no -cluster-provider; want one of %v", Providers)
	}
	return nil, fmt.Errorf("-cluster-provider %q: want one of %v", cfg.Provider, Providers)
}
