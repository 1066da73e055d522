// Command parley-token prints an HS256 token for local testing of a Parley
// server that verifies tokens with a shared secret (its -jwt-secret flag or
// PARLEY_JWT_SECRET). Production tokens come from your identity provider.
//
//	export PARLEY_JWT_SECRET=$(openssl rand -base64 48)
//	go run ./cmd/parley-token -sub alice -ttl 1h -rooms 'lobby,team-*' -read-only announcements
//
// The token goes to stdout alone, so it can be captured:
// TOKEN=$(go run ./cmd/parley-token -sub alice). Misuse exits with status 2.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/parleychat/parley/auth"
)

// secretEnv is the server's variable for -jwt-secret, so one export serves
// both programs.
const secretEnv = "PARLEY_JWT_SECRET"

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// run is the whole command, returning the exit status: 0 printed a token,
// 2 misuse (flags, or a token the server would reject).
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("parley-token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	secret := fs.String("secret", "", "HS256 secret, as given to the server's -jwt-secret (default $"+secretEnv+", which keeps it out of ps and shell history)")
	sub := fs.String("sub", "", "user name, the token's subject (required)")
	ttl := fs.Duration("ttl", time.Hour, "lifetime of the token; 0: no expiry")
	rooms := fs.String("rooms", "", "comma-separated room patterns (path.Match: 'team-*') the user may join and post to; not given: every room; given but empty: none")
	readOnly := fs.String("read-only", "", "comma-separated room patterns the user may join but not post to (these win over -rooms)")
	iss := fs.String("iss", "", "issuer claim, when the server checks one")
	aud := fs.String("aud", "", "audience claim, when the server checks one")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: parley-token -sub NAME [-ttl 1h] [-rooms 'lobby,team-*'] [-read-only 'announcements']\n\n"+
			"Prints an HS256 token for a Parley server started with the same secret\n"+
			"(-jwt-secret or $%s).\n\nFlags:\n", secretEnv)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2 // the flag package has printed the error and the usage
	}
	misuse := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "parley-token: "+format+"\n(run parley-token -h for usage)\n", a...)
		return 2
	}
	if fs.NArg() > 0 {
		return misuse("unexpected arguments %q", fs.Args())
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })

	key := *secret
	if key == "" {
		key = getenv(secretEnv)
	}
	switch {
	case key == "":
		return misuse("no secret: set %s (or -secret) to the server's -jwt-secret", secretEnv)
	case *sub == "":
		return misuse("-sub is required")
	case *ttl < 0:
		return misuse("-ttl %v is negative", *ttl)
	}
	o := auth.IssueOptions{
		Subject:       *sub,
		TTL:           *ttl,
		ReadOnlyRooms: splitList(*readOnly),
		Issuer:        *iss,
		Audience:      *aud,
	}
	if given["rooms"] {
		// Given but empty means "no rooms", which nil would not say.
		o.Rooms = append([]string{}, splitList(*rooms)...)
	}
	tok, err := auth.IssueWith([]byte(key), o)
	if err != nil {
		// Every IssueWith error is about the input: a short secret, a bad
		// pattern. None of them contains the secret.
		return misuse("%v", err)
	}
	fmt.Fprintln(stdout, tok)
	return 0
}

// splitList splits a comma-separated list, dropping blanks so that a
// trailing comma is harmless.
func splitList(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
