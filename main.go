// Command parley runs a Parley chat server: flags (or PARLEY_* environment
// variables) in, one node out, drained gracefully on SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/parleychat/parley/api"
	"github.com/parleychat/parley/auth"
	"github.com/parleychat/parley/bots"
	"github.com/parleychat/parley/cluster"
	"github.com/parleychat/parley/hooks"
	"github.com/parleychat/parley/server"
	"github.com/parleychat/parley/store"
)

func main() {
	if err := run(os.Args[1:], os.Getenv, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "parley:", err)
		if errors.As(err, new(errRemoved)) {
			os.Exit(exitRemoved)
		}
		os.Exit(1)
	}
}

// exitRemoved is the exit status of a member the cluster removed for good
// (EX_TEMPFAIL: restart it and it rejoins under a new id).
const exitRemoved = 75

type errRemoved struct{ by string }

func (e errRemoved) Error() string {
	return "removed from the cluster (split from the member at " + e.by + "); drained; restart to rejoin"
}

// options is what the command line says.
type options struct {
	server        server.Config
	logLevel      slog.Level
	store         string
	data          string
	dice          string
	bots          []bots.Spec
	faultsWarning string
	anonymous     string
	jwt           auth.Options
	jwtSecret     string
	cluster       cluster.Config
	hooksFile     string
	apiKeysFile   string
	apiKey        string
	apiAddrSet    bool
	webhookSecret string
	webhookFile   string
	webhookEvents string
}

// extraFlags lets optional files add flags (main_faults.go, built only with
// -tags faults); each returns a function applied after parsing.
var extraFlags []func(fs *flag.FlagSet, o *options) func() error

func run(args []string, getenv func(string) string, stderr io.Writer) error {
	o, err := parseFlags(args, getenv, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: o.logLevel}))
	o.server.Logger = log
	if o.faultsWarning != "" {
		log.Warn(o.faultsWarning)
	}

	if o.hooksFile != "" {
		if o.server.Hooks, err = hooks.Load(o.hooksFile); err != nil {
			return err
		}
	}
	if err := setupWebhooks(&o, log); err != nil {
		return err
	}
	if err := setupAuth(&o, log); err != nil {
		return err
	}
	if err := setupAPI(&o, log); err != nil {
		return err
	}
	openCtx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	o.server.Store, err = store.Open(openCtx, o.store, o.data, log)
	cancel()
	if err != nil {
		return err
	}
	srv, err := server.New(o.server)
	if err != nil {
		o.server.Store.Close()
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var reload []reloader
	if o.server.Auth != nil {
		reload = append(reload, reloader{"auth: token keys", o.server.Auth.Reload})
	}
	if o.server.APIKeys != nil {
		reload = append(reload, reloader{"server API: API keys", o.server.APIKeys.Reload})
	}
	if len(reload) > 0 {
		defer reloadOnHUP(reload, log)()
	}
	if err := bots.Start(srv.Node, o.bots); err != nil {
		srv.Shutdown(context.Background())
		return fmt.Errorf("-bots: %w", err)
	}
	srv.Start()
	log.Info("parley serving", "addr", srv.Addr(), "ws", srv.URL(), "admin", srv.AdminAddr(), "api", srv.APIAddr())
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Wait() }()
	var removed <-chan struct{} // nil (never ready) on a single node
	if srv.Cluster != nil {
		removed = srv.Cluster.Removed()
	}
	select {
	case <-ctx.Done():
		log.Info("signal received; draining")
	case err := <-serveErr:
		srv.Shutdown(context.Background())
		return err
	case <-removed:
		// The cluster will never take this member back under its id (the
		// cluster package logged why): drain, so its clients reconnect to
		// the other members, and exit for the supervisor to restart it.
		stop()
		return errors.Join(errRemoved{by: srv.Cluster.RemovedBy()}, srv.Shutdown(context.Background()))
	}
	stop() // a second signal kills the process the usual way
	return srv.Shutdown(context.Background())
}

// reloader is something SIGHUP re-reads: what it is, and how.
type reloader struct {
	what   string
	reload func() error
}

// reloadOnHUP re-reads key files on SIGHUP (key rotation without a
// restart) until the returned function is called; that stops it and waits
// for it.
func reloadOnHUP(rs []reloader, log *slog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for {
			select {
			case <-hup:
				for _, r := range rs {
					if err := r.reload(); err != nil {
						log.Error(r.what+": reloading failed; the old ones stay", "err", err)
					} else {
						log.Info(r.what + ": reloaded")
					}
				}
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
		<-stopped
	}
}

// parseFlags reads flags; every flag may also be set by PARLEY_<NAME>
// (upper case, dashes as underscores), and a flag on the command line wins.
func parseFlags(args []string, getenv func(string) string, out io.Writer) (options, error) {
	var (
		o        options
		cfg      = &o.server
		origins  string
		logLevel string
		maxBytes int64
		trusted  string
		err      error
	)
	fs := flag.NewFlagSet("parley", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:8080", "address to serve HTTP and WebSocket on")
	fs.StringVar(&origins, "origins", "", "comma-separated Origin host patterns allowed besides same-origin (path.Match syntax, e.g. \"*.example.com\"); \"*\" allows all, \"null\" allows pages opened from a file")
	fs.DurationVar(&cfg.Transport.PingInterval, "ping-interval", 25*time.Second, "time between WebSocket pings")
	fs.DurationVar(&cfg.Transport.PongTimeout, "pong-timeout", 10*time.Second, "how long a ping waits for its pong before the connection is closed")
	fs.DurationVar(&cfg.Transport.WriteTimeout, "write-timeout", 10*time.Second, "bound on writing one frame")
	fs.IntVar(&cfg.Transport.QueueSize, "queue", 256, "outbound frames queued per connection before a slow client is closed with 1013")
	fs.DurationVar(&cfg.Actors.IdleTimeout, "idle-timeout", 15*time.Minute, "close a session that sent no application frame for this long (0 disables)")
	fs.Int64Var(&maxBytes, "max-message-bytes", 64<<10, "largest frame a client may send; larger ones close the connection with 1009")
	fs.IntVar(&cfg.Actors.History, "history", 100, "messages kept in memory per room and replayed on join")
	fs.IntVar(&cfg.Actors.MaxReplay, "max-replay", 10000, "most events replayed to a resuming client at once; a longer gap replays its newest ones after a resetEvent")
	fs.IntVar(&cfg.Actors.MaxRooms, "max-rooms", 100, "rooms one session may be in")
	fs.IntVar(&cfg.Actors.MaxMembers, "max-members", 10000, "connections one room may hold (0: no cap)")
	fs.IntVar(&cfg.Actors.PresenceMaxUsers, "presence-max-users", 1000, "rooms with more connected users than this announce no joins and leaves (members page through who is there); 0: always announce")
	fs.IntVar(&cfg.Transport.MaxConns, "max-conns", 100000, "open connections per node; past it handshakes get HTTP 503 (0: no cap)")
	fs.IntVar(&cfg.Transport.MaxConnsPerIP, "max-conns-per-ip", 100, "open connections per client address; past it HTTP 429 (0: no cap)")
	fs.Float64Var(&cfg.Transport.HandshakesPerSecond, "max-handshake-rate", 20, "connection attempts per second per client address; past it HTTP 429 (0: no limit)")
	fs.Float64Var(&cfg.Transport.NodeHandshakesPerSecond, "max-node-handshake-rate", 0, "connection attempts per second the node takes from all addresses together; past it HTTP 503 with Retry-After, so a reconnect storm is spread instead of starving connected members (0: no limit)")
	fs.StringVar(&cfg.Transport.ClientIPHeader, "client-ip-header", "X-Forwarded-For", "header carrying the client address, believed only from -trusted-proxies (X-Real-IP for nginx's realip style; empty: always the peer address)")
	fs.StringVar(&trusted, "trusted-proxies", "127.0.0.0/8,::1", "comma-separated addresses or CIDR ranges of reverse proxies whose -client-ip-header is believed; their connections without it are not limited per address (empty or \"none\": none)")
	fs.DurationVar(&cfg.HTTPIdleTimeout, "http-idle-timeout", server.DefaultHTTPIdleTimeout, "close a keep-alive HTTP connection (not a WebSocket) idle this long")
	fs.Float64Var(&cfg.Actors.Rate, "rate", 20, "requests per second allowed per session")
	fs.IntVar(&cfg.Actors.Burst, "burst", 40, "burst of requests allowed per session")
	fs.DurationVar(&cfg.Actors.RoomLinger, "room-linger", 30*time.Second, "how long an empty room stays in memory")
	fs.StringVar(&o.store, "store", "bolt", "history store: \"bolt\" (on disk in -data), \"memory\" (lost on exit), or a postgres://user@host:5432/db URL")
	fs.StringVar(&o.data, "data", "./parley-data", "directory of the bolt store")
	fs.IntVar(&cfg.Retention.MaxCount, "retention-count", 0, "messages kept per room in the store (0: no limit)")
	fs.DurationVar(&cfg.Retention.MaxAge, "retention-age", 0, "delete stored messages older than this (0: keep forever)")
	fs.DurationVar(&cfg.RetentionInterval, "retention-interval", time.Minute, "how often retention runs")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "bound on a graceful shutdown")
	fs.StringVar(&o.jwtSecret, "jwt-secret", "", "HS256 secret (at least 32 bytes) that signs connection tokens")
	fs.StringVar(&o.jwt.PublicKeyFile, "jwt-public-key", "", "PEM file with the RSA or EC P-256 public key that signs tokens (RS256, ES256)")
	fs.StringVar(&o.jwt.JWKSFile, "jwt-jwks", "", "JWKS file with the keys that sign tokens (RS256, ES256); re-read on SIGHUP")
	fs.StringVar(&o.jwt.Issuer, "jwt-issuer", "", "required iss claim (empty: not checked)")
	fs.StringVar(&o.jwt.Audience, "jwt-audience", "", "required aud claim (empty: not checked)")
	fs.StringVar(&o.anonymous, "anonymous", "auto", "allow logging in with a name and no token: true, false, or auto (true only when -addr is loopback and no token key is set)")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "PEM certificate chain; with -tls-key the server speaks TLS (wss://)")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "PEM private key for -tls-cert")
	fs.StringVar(&cfg.AdminAddr, "admin-addr", "127.0.0.1:8081", "operator listener: admin API, /metrics, /debug/pprof (empty: off)")
	fs.StringVar(&cfg.AdminToken, "admin-token", "", "Bearer token the admin API requires (mandatory when -admin-addr is not loopback)")
	fs.StringVar(&cfg.APIAddr, "api-addr", "127.0.0.1:8082", "server API listener for applications' backends (gRPC, gRPC-Web, HTTP/JSON); on when API keys are given, TLS with -tls-cert")
	fs.StringVar(&o.apiKeysFile, "api-keys", "", "file of server API keys, one \"name key\" per line (mode 600; re-read on SIGHUP)")
	fs.StringVar(&o.hooksFile, "hooks", "", "JSON file of the application's hooks (connect, join, post): URLs, timeouts, fail-open or -closed, and the signing secret")
	fs.StringVar(&o.apiKey, "api-key", "", "one server API key (at least 32 bytes; prefer -api-keys or PARLEY_API_KEY: a flag shows in ps)")
	fs.StringVar(&cfg.Webhooks.URL, "webhook-url", "", "URL the application receives webhooks at (signed JSON POSTs of room events, from the store's outbox; empty: off)")
	fs.StringVar(&o.webhookSecret, "webhook-secret", "", "secret (at least 32 bytes) that signs webhooks (prefer -webhook-secret-file or PARLEY_WEBHOOK_SECRET: a flag shows in ps)")
	fs.StringVar(&o.webhookFile, "webhook-secret-file", "", "file holding the secret that signs webhooks")
	fs.StringVar(&o.webhookEvents, "webhook-events", "", "comma-separated webhook event types to send (empty: all), e.g. message.created,notify,member.joined")
	fs.DurationVar(&cfg.Webhooks.Timeout, "webhook-timeout", 10*time.Second, "bound on one webhook request; a slower answer is a failure, retried")
	var botSpec string
	fs.StringVar(&botSpec, "bots", "", "bots to run, as name=room,room;name=room (known: "+strings.Join(bots.Names(), ", ")+"), e.g. \"dice=games;greeter=lobby\"")
	fs.StringVar(&o.dice, "dice-rooms", "", "comma-separated rooms where the dice bot answers /roll 2d6 (short for -bots dice=...)")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	var peers, etcd string
	cc := &o.cluster
	fs.StringVar(&cc.Provider, "cluster-provider", "", "join a cluster, finding members with: automanaged (a static -cluster-peers list), consul, etcd or k8s; empty: a single node")
	fs.StringVar(&cc.Name, "cluster-name", "parley", "cluster name; members with another name are ignored")
	fs.StringVar(&cc.Bind, "cluster-bind", "127.0.0.1:7070", "host:port this member's actors listen on for other members")
	fs.StringVar(&cc.Advertise, "cluster-advertise", "", "host:port other members reach -cluster-bind at, when it differs (NAT, containers)")
	fs.StringVar(&peers, "cluster-peers", "", "automanaged: comma-separated health host:port of every member, this one included")
	fs.IntVar(&cc.Health, "cluster-health", 0, "automanaged: this member's health port (it listens on its -cluster-peers entry)")
	fs.DurationVar(&cc.Refresh, "cluster-refresh", 500*time.Millisecond, "automanaged, consul: how often membership is checked (bounds how fast a dead member is noticed)")
	fs.DurationVar(&cc.DownAfter, "cluster-down-after", 5*time.Second, "automanaged: drop a peer whose health checks have failed this long; a peer whose port refuses connections (its process is gone) is dropped at once")
	fs.DurationVar(&cc.HeartbeatTimeout, "cluster-heartbeat-timeout", 5*time.Second, "drop a member whose gossip heartbeats stopped this long (a hung process); raise it for CPU-starved members, since dropping a live one takes its sessions out of every room")
	fs.StringVar(&etcd, "cluster-etcd", "", "etcd: comma-separated endpoints (host:port)")
	fs.StringVar(&cc.Consul, "cluster-consul", "", "consul: agent address (empty: CONSUL_HTTP_ADDR or 127.0.0.1:8500)")
	fs.DurationVar(&cc.RequestTimeout, "cluster-request-timeout", time.Second, "bound on one attempt to find a room's member")
	var apply []func() error
	for _, add := range extraFlags {
		apply = append(apply, add(fs, &o))
	}
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: parley [flags]\n\nParley is a fault-tolerant real-time chat server. Every flag can also be set\nwith an environment variable PARLEY_<FLAG> (e.g. PARLEY_ADDR, PARLEY_PING_INTERVAL);\na flag given on the command line wins.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		env := "PARLEY_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(env); v != "" && envErr == nil {
			if err := f.Value.Set(v); err != nil {
				envErr = fmt.Errorf("%s=%q: %w", env, v, err)
			}
		}
	})
	if envErr != nil {
		return o, envErr
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q; see -h", fs.Args())
	}
	fs.Visit(func(f *flag.Flag) { o.apiAddrSet = o.apiAddrSet || f.Name == "api-addr" })
	o.apiAddrSet = o.apiAddrSet || getenv("PARLEY_API_ADDR") != ""
	for _, f := range apply {
		if err := f(); err != nil {
			return o, err
		}
	}
	if err := o.logLevel.UnmarshalText([]byte(logLevel)); err != nil {
		return o, fmt.Errorf("-log-level %q: want debug, info, warn or error", logLevel)
	}
	if o.bots, err = bots.Parse(botSpec); err != nil {
		return o, err
	}
	if rooms := splitList(o.dice); len(rooms) > 0 {
		o.bots = append(o.bots, bots.Spec{Name: "dice", Rooms: rooms})
	}
	cc.Peers, cc.Endpoints = splitList(peers), splitList(etcd)
	if cc.Provider != "" {
		if !strings.HasPrefix(o.store, "postgres://") && !strings.HasPrefix(o.store, "postgresql://") {
			return o, fmt.Errorf("-cluster-provider %s: every member must share the history: set -store to a postgres:// URL (now %q)", cc.Provider, o.store)
		}
		cfg.Cluster = cc
	}
	if cfg.Transport.TrustedProxies, err = parsePrefixes(trusted); err != nil {
		return o, fmt.Errorf("-trusted-proxies: %w", err)
	}
	cfg.Transport.OriginPatterns = splitList(origins)
	cfg.Transport.MaxMessageBytes = maxBytes
	return o, nil
}

// setupAuth builds the token verifier and picks the login mode, and says
// which it is: an operator must never guess whether strangers can log in.
func setupAuth(o *options, log *slog.Logger) error {
	o.jwt.HMACSecret = []byte(o.jwtSecret)
	if o.jwtSecret != "" || o.jwt.PublicKeyFile != "" || o.jwt.JWKSFile != "" {
		v, err := auth.NewVerifier(o.jwt)
		if err != nil {
			return err
		}
		o.server.Auth = v
	}
	var anonymous bool
	switch o.anonymous {
	case "true":
		anonymous = true
	case "false":
	case "auto", "":
		// Names without tokens only where nothing else could log in, on a
		// machine of one's own: loopback, and no token key.
		anonymous = server.IsLoopback(o.server.Addr) && o.server.Auth == nil && o.server.Hooks.Connect.URL == ""
	default:
		return fmt.Errorf("-anonymous %q: want true, false or auto", o.anonymous)
	}
	o.server.Actors.RequireToken = !anonymous
	connectHook := o.server.Hooks.Connect.URL != ""
	switch {
	case o.server.Auth == nil && !anonymous && connectHook:
		log.Info("auth: the application's connect hook admits connections; tokens are refused (no key is set)")
	case o.server.Auth == nil && !anonymous:
		return fmt.Errorf("nobody could log in: -addr %s is not loopback, so tokens are required, but no key is set (-jwt-secret, -jwt-public-key or -jwt-jwks) and no connect hook (-hooks); or allow anonymous names with -anonymous=true", o.server.Addr)
	case o.server.Auth == nil:
		log.Warn("auth: anonymous mode: anyone may log in with any name (no token key is set)")
	case anonymous:
		log.Warn("auth: tokens checked, and anonymous names allowed beside them (-anonymous true): anyone may log in without a token under a name no token holder used (look-alikes of those are refused too)", "verifier", o.server.Auth)
	default:
		log.Info("auth: tokens required", "verifier", o.server.Auth)
	}
	return nil
}

// setupWebhooks reads the webhooks' secret and event filter; the server
// checks the rest. The secret is never logged.
func setupWebhooks(o *options, log *slog.Logger) error {
	w := &o.server.Webhooks
	if w.URL == "" {
		if o.webhookSecret != "" || o.webhookFile != "" || o.webhookEvents != "" {
			return errors.New("-webhook-secret, -webhook-secret-file and -webhook-events need -webhook-url")
		}
		return nil
	}
	switch {
	case o.webhookSecret != "" && o.webhookFile != "":
		return errors.New("set one of -webhook-secret and -webhook-secret-file, not both")
	case o.webhookFile != "":
		b, err := os.ReadFile(o.webhookFile)
		if err != nil {
			return fmt.Errorf("-webhook-secret-file: %w", err)
		}
		w.Secret = []byte(strings.TrimSpace(string(b)))
	case o.webhookSecret != "":
		w.Secret = []byte(o.webhookSecret)
	default:
		return errors.New("-webhook-url needs a signing secret: set -webhook-secret-file or -webhook-secret")
	}
	w.Events = splitList(o.webhookEvents)
	if o.store == "memory" {
		log.Warn("webhooks: with -store memory the outbox is lost with the process; use bolt or PostgreSQL for at-least-once delivery across restarts")
	}
	return nil
}

// setupAPI loads the server API's keys: the API is on when there are
// keys, off (and said so) when there are none, unless -api-addr was asked
// for explicitly, which then needs keys.
func setupAPI(o *options, log *slog.Logger) error {
	if o.apiKeysFile == "" && o.apiKey == "" {
		if o.apiAddrSet && o.server.APIAddr != "" {
			return fmt.Errorf("-api-addr %s: the server API needs keys: set -api-keys FILE or -api-key", o.server.APIAddr)
		}
		o.server.APIAddr = ""
		log.Info("server API off: no API keys (-api-keys FILE or -api-key)")
		return nil
	}
	if o.server.APIAddr == "" {
		return nil
	}
	keys, err := api.LoadKeys(o.apiKeysFile, o.apiKey)
	if err != nil {
		return err
	}
	o.server.APIKeys = keys
	return nil
}

// parsePrefixes reads a list of addresses and CIDR ranges.
func parsePrefixes(s string) ([]netip.Prefix, error) {
	if strings.TrimSpace(s) == "none" {
		return nil, nil
	}
	var out []netip.Prefix
	for _, p := range splitList(s) {
		if strings.Contains(p, "/") {
			pfx, err := netip.ParsePrefix(p)
			if err != nil {
				return nil, err
			}
			out = append(out, pfx.Masked())
			continue
		}
		addr, err := netip.ParseAddr(p)
		if err != nil {
			return nil, fmt.Errorf("%q is neither an address nor a CIDR range", p)
		}
		addr = addr.Unmap()
		out = append(out, netip.PrefixFrom(addr, addr.BitLen()))
	}
	return out, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
