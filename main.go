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
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/parleychat/parley/server"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "parley:", err)
		os.Exit(1)
	}
}

func run(args []string, stderr io.Writer) error {
	cfg, logLevel, err := parseConfig(args, os.Getenv, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: logLevel}))
	cfg.Logger = log

	srv, err := server.New(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv.Start()
	log.Info("parley serving", "addr", srv.Addr(), "ws", srv.URL())
	select {
	case <-ctx.Done():
		log.Info("signal received; draining")
	case err := <-waitErr(srv):
		return err
	}
	stop() // a second signal kills the process the usual way
	return srv.Shutdown(context.Background())
}

func waitErr(srv *server.Server) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- srv.Wait() }()
	return ch
}

// parseConfig reads flags; every flag may also be set by PARLEY_<NAME>
// (upper case, dashes as underscores), and a flag on the command line wins.
func parseConfig(args []string, getenv func(string) string, out io.Writer) (server.Config, slog.Level, error) {
	var cfg server.Config
	fs := flag.NewFlagSet("parley", flag.ContinueOnError)
	fs.SetOutput(out)
	var (
		origins  string
		logLevel string
		maxBytes int64
	)
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:8080", "address to serve HTTP and WebSocket on")
	fs.StringVar(&origins, "origins", "", "comma-separated Origin host patterns allowed besides same-origin (path.Match syntax, e.g. \"*.example.com\"); \"*\" allows all, \"null\" allows pages opened from a file")
	fs.DurationVar(&cfg.Transport.PingInterval, "ping-interval", 25*time.Second, "time between WebSocket pings")
	fs.DurationVar(&cfg.Transport.PongTimeout, "pong-timeout", 10*time.Second, "how long a ping waits for its pong before the connection is closed")
	fs.DurationVar(&cfg.Transport.WriteTimeout, "write-timeout", 10*time.Second, "bound on writing one frame")
	fs.IntVar(&cfg.Transport.QueueSize, "queue", 256, "outbound frames queued per connection before a slow client is closed with 1013")
	fs.DurationVar(&cfg.Actors.IdleTimeout, "idle-timeout", 15*time.Minute, "close a session that sent no application frame for this long (0 disables)")
	fs.Int64Var(&maxBytes, "max-message-bytes", 64<<10, "largest frame a client may send; larger ones close the connection with 1009")
	fs.IntVar(&cfg.Actors.History, "history", 100, "messages kept in memory per room and replayed on join")
	fs.IntVar(&cfg.Actors.MaxRooms, "max-rooms", 100, "rooms one session may be in")
	fs.Float64Var(&cfg.Actors.Rate, "rate", 20, "requests per second allowed per session")
	fs.IntVar(&cfg.Actors.Burst, "burst", 40, "burst of requests allowed per session")
	fs.DurationVar(&cfg.Actors.RoomLinger, "room-linger", 30*time.Second, "how long an empty room stays in memory")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "bound on a graceful shutdown")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
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
		return cfg, 0, envErr
	}
	if err := fs.Parse(args); err != nil {
		return cfg, 0, err
	}
	if fs.NArg() > 0 {
		return cfg, 0, fmt.Errorf("unexpected arguments %q; see -h", fs.Args())
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return cfg, 0, fmt.Errorf("-log-level %q: want debug, info, warn or error", logLevel)
	}
	for _, o := range strings.Split(origins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			cfg.Transport.OriginPatterns = append(cfg.Transport.OriginPatterns, o)
		}
	}
	cfg.Transport.MaxMessageBytes = maxBytes
	return cfg, level, nil
}
