package main_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The import rules of docs/ARCHITECTURE.md, checked against what the
// packages really import (go list -deps: direct and indirect), so that a
// forbidden import fails here instead of eroding the layering.

const mod = "github.com/parleychat/parley"

// deps lists the packages pkg imports, directly or not, test files excluded.
func deps(t *testing.T, format string, pkgs ...string) []string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list", "-deps", "-f", format}, pkgs...)...).Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list %v: %v\n%s", pkgs, err, ee.Stderr)
		}
		t.Fatalf("go list %v: %v", pkgs, err)
	}
	var list []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l != "" && !slices.Contains(list, l) {
			list = append(list, l)
		}
	}
	slices.Sort(list)
	return list
}

func TestImportRules(t *testing.T) {
	t.Parallel()
	for _, rule := range []struct {
		pkg string
		// forbidden are the packages pkg must not depend on, each with
		// every package under it; one ending in "/" is a plain prefix, one
		// ending in "$" that package alone.
		forbidden []string
		why       string
	}{
		{"./transport/...", []string{mod + "/actors", mod + "/server", mod + "/store", mod + "/cluster", "github.com/asynkron/"},
			"transport is a thin WebSocket adapter beside actors, not under or over them"},
		{"./actors/...", []string{mod + "/transport", mod + "/server", mod + "/cluster", mod + "/admin", mod + "/web", "github.com/coder/websocket"},
			"actors know no sockets; server is where they meet transport"},
		{"./proto", []string{mod + "/", "github.com/asynkron/"},
			"the wire protocol imports nothing of Parley's and nothing of the actor runtime"},
		{"./proto/codec", []string{mod + "/actors", mod + "/transport", mod + "/client", "github.com/asynkron/"},
			"codecs are part of the wire protocol"},
		{"./client/...", []string{mod + "/actors", mod + "/transport", mod + "/server", mod + "/store", "github.com/asynkron/"},
			"the Go client needs only the wire protocol"},
		{"./store/...", []string{mod + "/actors", mod + "/transport", mod + "/server", "github.com/asynkron/"},
			"the store is below everything that uses it"},
		{"./webhooks/...", []string{mod + "/transport", mod + "/server", mod + "/cluster"},
			"webhooks read the store's outbox (their signature is hooks', which is how actors/ comes in); server starts them"},
		{"./supervision/...", []string{mod + "/actors$", mod + "/transport", mod + "/server"},
			"supervision serves the actors, not the other way round"},
		{"./cluster/...", []string{mod + "/transport", mod + "/server"},
			"the cluster moves rooms, never sockets"},
		{"./api/...", []string{mod + "/transport", mod + "/server", mod + "/admin", "github.com/coder/websocket"},
			"the server API asks the node, which asks the actors; it holds no socket"},
		{"./hooks/...", []string{mod + "/transport", mod + "/server", mod + "/admin", mod + "/api$", "github.com/coder/websocket"},
			"hooks call the application; rooms and the transport take their verdicts through actors.Hooks and auth.Authenticator"},
		{"./proto/api/...", []string{mod + "/actors", mod + "/transport", mod + "/server", mod + "/store", "github.com/asynkron/"},
			"the server API's definition is wire protocol, like parley.proto"},
	} {
		own := mod + "/" + strings.TrimSuffix(strings.TrimPrefix(rule.pkg, "./"), "/...")
		for _, d := range deps(t, "{{.ImportPath}}", rule.pkg) {
			if under(d, own) {
				continue
			}
			for _, f := range rule.forbidden {
				if under(d, f) {
					t.Errorf("%s depends on %s: %s", rule.pkg, d, rule.why)
				}
			}
		}
	}
}

// under reports whether package p is f or below it; an f ending in "/" is
// a plain prefix, one ending in "$" matches itself alone.
func under(p, f string) bool {
	if exact, ok := strings.CutSuffix(f, "$"); ok {
		return p == exact
	}
	if strings.HasSuffix(f, "/") {
		return strings.HasPrefix(p, f)
	}
	return p == f || strings.HasPrefix(p, f+"/")
}

// TestWebSocketOnlyInTransport: of the server's packages only transport
// touches a socket; the Go client and the load tools dial with the same
// library.
func TestWebSocketOnlyInTransport(t *testing.T) {
	t.Parallel()
	allowed := []string{mod + "/transport", mod + "/client", mod + "/cmd/parley-load", mod + "/bench/"}
	for _, line := range deps(t, `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "./...") {
		f := strings.Fields(line)
		if !strings.HasPrefix(f[0], mod) || !slices.Contains(f[1:], "github.com/coder/websocket") {
			continue
		}
		ok := false
		for _, a := range allowed {
			ok = ok || f[0] == a || strings.HasPrefix(f[0], a+"/") || (strings.HasSuffix(a, "/") && strings.HasPrefix(f[0], a))
		}
		if !ok {
			t.Errorf("%s imports github.com/coder/websocket; only transport (and the client and load tools) may", f[0])
		}
	}
}

// TestClientModules: the Go client brings only the wire protocol,
// coder/websocket and protobuf into a program that uses it.
func TestClientModules(t *testing.T) {
	t.Parallel()
	got := deps(t, "{{with .Module}}{{.Path}}{{end}}", "./client")
	want := []string{"github.com/coder/websocket", mod, "google.golang.org/protobuf"}
	if !slices.Equal(got, want) {
		t.Fatalf("the client's modules are %q, want only %q", got, want)
	}
	for _, p := range deps(t, "{{.ImportPath}}", "./client") {
		if strings.HasPrefix(p, mod) && p != mod+"/client" && !strings.HasPrefix(p, mod+"/client/") && !strings.HasPrefix(p, mod+"/proto") {
			t.Errorf("the client imports %s; it may import only proto/...", p)
		}
	}
}
