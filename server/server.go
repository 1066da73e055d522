// Package server assembles one Parley node: the actors, the WebSocket
// transport, the history store and the HTTP endpoints (/ws, /healthz,
// /readyz), and runs its graceful shutdown. main.go parses flags into a
// Config; tests build a Server directly on 127.0.0.1:0.
package server

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parleychat/parley/actors"
	"github.com/parleychat/parley/admin"
	"github.com/parleychat/parley/api"
	"github.com/parleychat/parley/auth"
	"github.com/parleychat/parley/cluster"
	"github.com/parleychat/parley/hooks"
	"github.com/parleychat/parley/metrics"
	"github.com/parleychat/parley/store"
	"github.com/parleychat/parley/supervision"
	"github.com/parleychat/parley/transport"
	"github.com/parleychat/parley/web"
	"github.com/parleychat/parley/webhooks"
)

// Config is everything a node needs. Zero values mean the defaults of the
// package each part belongs to.
type Config struct {
	Addr      string
	Transport transport.Options
	Actors    actors.Config
	// Store is the history store; nil means in memory. The server closes it.
	Store store.Store
	// Retention is how long and how much history is kept; the server trims
	// the store every RetentionInterval (zero means 1m). A zero Retention
	// keeps everything.
	Retention         store.Retention
	RetentionInterval time.Duration
	// ShutdownTimeout bounds Shutdown when its ctx has no deadline. Zero
	// means 10s.
	ShutdownTimeout time.Duration
	Logger          *slog.Logger
	// Faults injects failures, for tests only.
	Faults *supervision.Faults
	// Auth verifies tokens (in the handshake, Hello and Refresh); nil means
	// tokens are refused. Whether one is required is Actors.RequireToken.
	Auth *auth.Verifier
	// TLSCert and TLSKey, when both set, make the main listener serve TLS
	// (wss://, https://).
	TLSCert, TLSKey string
	// Cluster, when set, makes the node a member of a Proto.Actor cluster
	// (rooms anywhere, presence merged); nil is a single node. A cluster
	// needs a store every member shares (PostgreSQL).
	Cluster *cluster.Config
	// AdminAddr is the operator's listener (admin API, /metrics, pprof);
	// empty disables it. AdminToken is then required as a Bearer token.
	AdminAddr, AdminToken string
	// APIAddr is the server API's listener (applications' backends: gRPC,
	// gRPC-Web, Connect's HTTP/JSON); empty disables it. It serves TLS
	// with TLSCert and TLSKey when those are set, and needs APIKeys.
	APIAddr string
	APIKeys *api.Keys
	// Hooks ask the application before a connection, a join or a post
	// (zero: none).
	Hooks hooks.Config
	// Webhooks tell the application what happened, from the store's
	// outbox (zero: off).
	Webhooks webhooks.Config
	// WebhookOptions tune their delivery (tests).
	WebhookOptions webhooks.Options
	// HTTPIdleTimeout closes a keep-alive HTTP connection (not a
	// WebSocket) that has sent no request for this long. Zero means 30s.
	HTTPIdleTimeout time.Duration
	// HTTPReadTimeout bounds reading one HTTP request, headers and body (a
	// WebSocket's handshake, not the WebSocket). Zero means 30s; the
	// headers alone get at most 10s.
	HTTPReadTimeout time.Duration
}

// Defaults of the HTTP timeouts.
const (
	DefaultHTTPIdleTimeout = 30 * time.Second
	DefaultHTTPReadTimeout = 30 * time.Second
	httpHeaderTimeout      = 10 * time.Second
)

// Server is one running node.
type Server struct {
	cfg  Config
	log  *slog.Logger
	Node *actors.Node
	// Cluster is the node's membership, nil for a single node.
	Cluster *cluster.Cluster
	ws      *transport.Server
	http    *http.Server
	ln      net.Listener
	ready   atomic.Bool

	// Metrics is the node's Prometheus registry (served on the admin
	// listener).
	Metrics *metrics.Registry
	admin   *http.Server
	adminLn net.Listener
	api     *http.Server
	apiLn   net.Listener
	// webhooks delivers the outbox; nil when webhooks are off.
	webhooks *webhooks.Deliverer

	serveErr chan error
	stopOnce sync.Once
	stopErr  error
	started  atomic.Bool

	// bg runs the goroutines Start starts besides the main listener's
	// (retention, the admin listener); Shutdown stops them with trimStop
	// and the admin server's own Shutdown, and waits.
	bg       sync.WaitGroup
	trimStop chan struct{}
}

// New builds a node and listens on cfg.Addr, but does not serve yet.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	if cfg.Store == nil {
		cfg.Store = store.NewMemory()
	}
	if cfg.RetentionInterval <= 0 {
		cfg.RetentionInterval = time.Minute
	}
	if cfg.HTTPIdleTimeout <= 0 {
		cfg.HTTPIdleTimeout = DefaultHTTPIdleTimeout
	}
	if cfg.HTTPReadTimeout <= 0 {
		cfg.HTTPReadTimeout = DefaultHTTPReadTimeout
	}
	s := &Server{cfg: cfg, log: cfg.Logger, serveErr: make(chan error, 1), trimStop: make(chan struct{})}
	s.Metrics = metrics.New()
	s.cfg.Store = s.Metrics.Store(cfg.Store)
	var err error
	ac := cfg.Actors
	ac.Store, ac.Logger, ac.Faults, ac.Verifier = s.cfg.Store, cfg.Logger, cfg.Faults, cfg.Auth
	hc, err := hooks.New(cfg.Hooks, hooks.Options{MaxTextRunes: ac.MaxTextRunes, Observe: s.Metrics.HookCall, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	ac.Hooks = hc.ActorHooks()
	if cfg.Webhooks.Enabled() {
		if err := cfg.Webhooks.Check(actors.WebhookTypes()); err != nil {
			return nil, err
		}
		wo := cfg.WebhookOptions
		wo.Observe, wo.Logger = s.Metrics.WebhookCall, cfg.Logger
		if s.webhooks, err = webhooks.New(cfg.Webhooks, s.cfg.Store, wo); err != nil {
			return nil, err
		}
		ac.Webhooks = actors.Webhooks{Want: cfg.Webhooks.Want(), Committed: s.webhooks.Wake}
		s.Metrics.WatchOutbox(s.cfg.Store)
	}
	if ac.MaxMessageBytes == 0 {
		ac.MaxMessageBytes = int(cmp.Or(cfg.Transport.MaxMessageBytes, transport.DefaultMaxMessageBytes))
	}
	if cfg.Cluster != nil {
		cc := *cfg.Cluster
		cc.Logger = cfg.Logger
		if s.Cluster, err = cluster.New(cc); err != nil {
			return nil, err
		}
		ac.Cluster = s.Cluster
	}
	node, err := actors.NewNode(ac)
	if err != nil {
		return nil, err
	}
	s.Node = node
	to := cfg.Transport
	to.Logger, to.Verifier, to.Authenticator = cfg.Logger, cfg.Auth, hc.Authenticator()
	// The one place sockets meet actors: each accepted connection gets a
	// session, and what the socket reads goes to the session's inbox.
	s.ws = transport.NewServer(transport.HandlerFunc(func(c *transport.Conn) (transport.Peer, error) {
		in, err := node.Attach(c)
		if err != nil {
			return nil, err
		}
		return in, nil
	}), to)
	s.Metrics.Watch(node, &s.ws.Stats)
	if s.Cluster != nil {
		s.Metrics.WatchCluster(node, s.Cluster)
	}

	mux := http.NewServeMux()
	mux.Handle("/ws", s.ws)
	mux.Handle("/", web.Handler())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !s.ready.Load() {
			http.Error(w, "not ready: starting or draining", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	// Every accepted connection counts against the connection limits while
	// it is open, WebSocket or not (transport's Listener, ConnContext and
	// Guard), and an HTTP connection is closed when it idles: a keep-alive
	// connection nobody uses costs a goroutine and a socket like any other.
	// A WebSocket is hijacked, and net/http's timeouts stop at that point.
	s.http = &http.Server{
		Handler:           s.ws.Guard(mux),
		ConnContext:       s.ws.ConnContext,
		ReadHeaderTimeout: min(httpHeaderTimeout, cfg.HTTPReadTimeout), // the WebSocket handshake timeout too
		ReadTimeout:       cfg.HTTPReadTimeout,
		IdleTimeout:       cfg.HTTPIdleTimeout,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		node.Shutdown(context.Background())
		return nil, fmt.Errorf("listen on %s (change it with -addr): %w", cfg.Addr, err)
	}
	s.ln = s.ws.Listener(ln)
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		s.closeEarly()
		return nil, errors.New("TLS needs both -tls-cert and -tls-key")
	}
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			s.closeEarly()
			return nil, fmt.Errorf("load -tls-cert %s and -tls-key %s: %w", cfg.TLSCert, cfg.TLSKey, err)
		}
		s.ln = tls.NewListener(s.ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	}
	if cfg.AdminAddr != "" {
		if cfg.AdminToken == "" && !IsLoopback(cfg.AdminAddr) {
			s.closeEarly()
			return nil, fmt.Errorf("the admin API on %s is not on loopback: set -admin-token", cfg.AdminAddr)
		}
		aln, err := net.Listen("tcp", cfg.AdminAddr)
		if err != nil {
			s.closeEarly()
			return nil, fmt.Errorf("listen on %s (change it with -admin-addr, or empty to disable): %w", cfg.AdminAddr, err)
		}
		s.adminLn = aln
		// No WriteTimeout: pprof's profiles and traces take as long as
		// asked (30s by default).
		s.admin = &http.Server{
			Handler:           admin.Handler(node, admin.Options{Token: cfg.AdminToken, Addr: cfg.AdminAddr, Metrics: s.Metrics.Handler(), Logger: cfg.Logger}),
			ReadHeaderTimeout: min(httpHeaderTimeout, cfg.HTTPReadTimeout),
			ReadTimeout:       cfg.HTTPReadTimeout,
			IdleTimeout:       cfg.HTTPIdleTimeout,
			ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
		}
	}
	if cfg.APIAddr != "" {
		if err := s.listenAPI(); err != nil {
			s.closeEarly()
			return nil, err
		}
	}
	s.log.Info("limits: " + to.Limits() + fmt.Sprintf("; idle HTTP connections closed after %v", cfg.HTTPIdleTimeout))
	return s, nil
}

// listenAPI opens the server API's listener. Without TLS it speaks
// HTTP/2 in the clear as well as HTTP/1.1 (gRPC needs HTTP/2; Connect's
// JSON and gRPC-Web take either).
func (s *Server) listenAPI() error {
	cfg := s.cfg
	if cfg.APIKeys.Len() == 0 {
		return fmt.Errorf("the server API on %s needs API keys: set -api-keys FILE or -api-key", cfg.APIAddr)
	}
	ln, err := net.Listen("tcp", cfg.APIAddr)
	if err != nil {
		return fmt.Errorf("listen on %s (change it with -api-addr, or empty to disable): %w", cfg.APIAddr, err)
	}
	path, h := api.Handler(s.Node, api.Options{Keys: cfg.APIKeys, Observe: s.Metrics.APICall, Logger: cfg.Logger})
	mux := http.NewServeMux()
	mux.Handle(path, h)
	s.api = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: min(httpHeaderTimeout, cfg.HTTPReadTimeout),
		ReadTimeout:       cfg.HTTPReadTimeout,
		IdleTimeout:       cfg.HTTPIdleTimeout,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
		Protocols:         new(http.Protocols),
	}
	s.api.Protocols.SetHTTP1(true)
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			ln.Close()
			return fmt.Errorf("load -tls-cert %s and -tls-key %s: %w", cfg.TLSCert, cfg.TLSKey, err)
		}
		s.api.Protocols.SetHTTP2(true)
		s.api.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
		ln = tls.NewListener(ln, s.api.TLSConfig)
	} else {
		s.api.Protocols.SetUnencryptedHTTP2(true)
	}
	s.apiLn = ln
	s.log.Info("server API: listening", "addr", ln.Addr().String(), "keys", cfg.APIKeys.Len(), "tls", cfg.TLSCert != "")
	return nil
}

func (s *Server) closeEarly() {
	s.ln.Close()
	if s.adminLn != nil {
		s.adminLn.Close()
	}
	s.Node.Shutdown(context.Background())
}

// IsLoopback reports whether a listen address is on loopback only (main
// uses it to choose the default authentication mode).
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// AdminAddr is where the admin API listens, or "" when it is off.
func (s *Server) AdminAddr() string {
	if s.adminLn == nil {
		return ""
	}
	return s.adminLn.Addr().String()
}

// APIAddr is where the server API listens, or "" when it is off.
func (s *Server) APIAddr() string {
	if s.apiLn == nil {
		return ""
	}
	return s.apiLn.Addr().String()
}

// Handler is the server's HTTP handler (/ws, /healthz, /readyz, ...).
func (s *Server) Handler() http.Handler { return s.http.Handler }

// Addr is the address the server listens on (useful with port 0).
func (s *Server) Addr() string { return s.ln.Addr().String() }

// URL is the WebSocket endpoint, ws://addr/ws (wss:// with TLS).
func (s *Server) URL() string {
	if s.cfg.TLSCert != "" {
		return "wss://" + s.Addr() + "/ws"
	}
	return "ws://" + s.Addr() + "/ws"
}

// Start serves in the background; Wait reports how serving ended.
func (s *Server) Start() {
	if s.started.Swap(true) {
		return
	}
	s.bg.Add(1)
	go func() {
		defer s.bg.Done()
		s.trimLoop()
	}()
	if s.webhooks != nil {
		s.webhooks.Start()
	}
	if s.admin != nil {
		s.bg.Add(1)
		go func() {
			defer s.bg.Done()
			if err := s.admin.Serve(s.adminLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("admin listener failed", "addr", s.AdminAddr(), "err", err)
			}
		}()
	}
	if s.api != nil {
		s.bg.Add(1)
		go func() {
			defer s.bg.Done()
			if err := s.api.Serve(s.apiLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("server API listener failed", "addr", s.APIAddr(), "err", err)
			}
		}()
	}
	s.ready.Store(true)
	go func() {
		err := s.http.Serve(s.ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.serveErr <- err
	}()
}

// Wait blocks until serving stops (after Shutdown, or on a listener error).
// Before Start it returns once Shutdown ran.
func (s *Server) Wait() error { return <-s.serveErr }

// Shutdown drains the node: /readyz turns 503, no new connections are
// accepted, every socket is closed with 1001, the actors stop (rooms write
// what they hold), and the store is closed. It is bounded by ctx and by
// ShutdownTimeout, and safe to call more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() { s.stopErr = s.shutdown(ctx) })
	return s.stopErr
}

func (s *Server) shutdown(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ShutdownTimeout)
	defer cancel()
	start := time.Now()
	s.ready.Store(false)
	if !s.started.Swap(true) {
		// Never served: nothing is connected and nothing runs but the
		// actors; close the listeners (New opened them) and stop those.
		s.ln.Close()
		if s.adminLn != nil {
			s.adminLn.Close()
		}
		if s.apiLn != nil {
			s.apiLn.Close()
		}
		s.serveErr <- nil
		_, nerr := s.Node.Shutdown(ctx)
		if s.webhooks != nil {
			s.webhooks.Close()
		}
		return errors.Join(nerr, s.cfg.Store.Close())
	}
	// http.Server.Shutdown stops the listener but ignores hijacked
	// connections (every WebSocket): transport closes those itself.
	httpDone := make(chan error, 1)
	go func() { httpDone <- s.http.Shutdown(ctx) }()
	if s.api != nil {
		// Calls in flight finish (their rooms still run); new ones are
		// refused.
		s.api.Shutdown(ctx)
	}
	closed, err := s.ws.Shutdown(ctx, "server shutting down")
	_, nerr := s.Node.Shutdown(ctx)
	herr := <-httpDone
	if s.admin != nil {
		s.admin.Shutdown(ctx)
	}
	close(s.trimStop)
	bgDone := make(chan struct{})
	go func() { s.bg.Wait(); close(bgDone) }()
	select {
	case <-bgDone:
	case <-ctx.Done():
	}
	// After the actors, whose last commits may add entries; before the
	// store, which it deletes delivered entries from.
	if s.webhooks != nil {
		s.webhooks.Close()
	}
	serr := s.cfg.Store.Close()
	s.log.Info("shutdown complete", "sessions_closed", closed, "took", time.Since(start).Round(time.Millisecond))
	return errors.Join(err, nerr, herr, serr)
}

// trimLoop enforces retention in the background. Rooms never wait for it:
// the store deletes in bounded batches.
func (s *Server) trimLoop() {
	r := s.cfg.Retention
	if r.MaxCount <= 0 && r.MaxAge <= 0 {
		<-s.trimStop
		return
	}
	t := time.NewTicker(s.cfg.RetentionInterval)
	defer t.Stop()
	for {
		select {
		case <-s.trimStop:
			return
		case now := <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RetentionInterval)
			n, err := s.cfg.Store.Trim(ctx, r, now)
			cancel()
			if err != nil {
				s.log.Error("retention: trim failed; will retry", "err", err)
			} else if n > 0 {
				s.log.Info("retention: deleted old messages", "deleted", n, "max_count", r.MaxCount, "max_age", r.MaxAge)
			}
		}
	}
}
