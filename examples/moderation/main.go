// Command moderation is an example application that plugs into Parley
// through all three of its surfaces for applications (docs/API.md):
//
//   - the server API: at start it makes sure a "welcome" room exists and
//     publishes a welcome into it, as the system, idempotently;
//   - the post hook: it filters a word list out of every user's post
//     (rewriting the words to asterisks), and refuses posts that are
//     nothing but shouting;
//   - webhooks: it records the "notify" events Parley sends for users who
//     were mentioned or written to while away, where a real application
//     would send its push notifications.
//
// Run Parley with the API, the hook and the webhook pointing here:
//
//	parley -api-keys api-keys -hooks hooks.json -webhook-url http://127.0.0.1:9000/webhooks -webhook-secret-file secret
//	go run ./examples/moderation -api-key "$KEY" -secret-file secret -words darn,heck
//
// with hooks.json {"post": {"url": "http://127.0.0.1:9000"}, "secret_file": "secret"}
// (the hook's base URL: its Connect path is added).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "moderation:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("moderation", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:9000", "address for Parley's hook and webhook calls")
	apiURL := fs.String("api", "http://127.0.0.1:8082", "Parley's server API")
	apiKey := fs.String("api-key", os.Getenv("PARLEY_API_KEY"), "a Parley API key")
	secretFile := fs.String("secret-file", "", "file holding the secret Parley signs hook and webhook requests with")
	words := fs.String("words", "darn,heck", "comma-separated words the post hook filters out")
	if err := fs.Parse(args); err != nil {
		return err
	}
	secret, err := os.ReadFile(*secretFile)
	if err != nil {
		return fmt.Errorf("-secret-file: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	app := New(Config{
		APIURL: *apiURL, APIKey: *apiKey, Secret: []byte(strings.TrimSpace(string(secret))),
		Words: strings.Split(*words, ","), Logger: log,
	})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	welcomeCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	seq, err := app.Welcome(welcomeCtx)
	cancel()
	if err != nil {
		return err
	}
	log.Info("welcome published", "room", WelcomeRoom, "seq", seq)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: app.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Shutdown(context.Background())
	}()
	log.Info("serving Parley's hooks and webhooks", "addr", ln.Addr().String())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
