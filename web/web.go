// Package web is Parley's own chat page: plain JavaScript modules and CSS,
// embedded in the binary and served at "/" with no build step at run time.
// static/app.js draws the page; static/parley-client.js is the TypeScript
// SDK (clients/ts) bundled by esbuild and committed, so the page exercises
// the same client front-end developers use (test.sh checks the bundle is
// current).
package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"regexp"
)

//go:embed static
var files embed.FS

// Static is the page's files (index.html, app.js, parley-client.js, style.css...).
var Static fs.FS = mustSub(files, "static")

func mustSub(f fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(f, dir)
	if err != nil {
		panic(err)
	}
	return sub
}

// csp allows only the page's own files and its own WebSocket: an injected
// <script> or inline handler would not run even if a bug rendered markup.
// connect-src names ws: and wss: on the page's host as well as 'self', for
// browsers older than CSP 3, where 'self' does not cover WebSockets.
func csp(host string) string {
	connect := "'self'"
	if validHost.MatchString(host) {
		connect += " ws://" + host + " wss://" + host
	}
	return "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
		"connect-src " + connect + "; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
}

var validHost = regexp.MustCompile(`^[A-Za-z0-9.-]+(:[0-9]+)?$|^\[[0-9A-Fa-f:.]+\](:[0-9]+)?$`)

// etags holds a content hash per file. Embedded files have no modification
// time, so without an ETag a browser would download them every time.
var etags = func() map[string]string {
	m := make(map[string]string)
	fs.WalkDir(Static, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(Static, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		m["/"+p] = `"` + hex.EncodeToString(sum[:8]) + `"`
		return nil
	})
	m["/"] = m["/index.html"]
	return m
}()

// Handler serves the page. Mount it at "/"; the mux's more specific paths
// (/ws, /healthz, /readyz) still win.
func Handler() http.Handler {
	files := http.FileServerFS(Static)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		tag, ok := etags[r.URL.Path]
		if !ok {
			http.NotFound(w, r) // no directory listings, no guessing
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", csp(r.Host))
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		// Revalidate on every load (a new binary may bring new files); the
		// ETag makes that a 304 when nothing changed.
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", tag)
		files.ServeHTTP(w, r)
	})
}
