package web_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/parleychat/parley/web"
)

// TestHandler: the page's files with the right types and security headers,
// revalidated cheaply, and nothing else.
func TestHandler(t *testing.T) {
	h := web.Handler()
	get := func(method, path string, hdr ...string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, "http://chat.example:8080"+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			r.Header.Set(hdr[i], hdr[i+1])
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	for path, ctype := range map[string]string{
		"/":                 "text/html",
		"/app.js":           "text/javascript",
		"/parley-client.js": "text/javascript",
		"/style.css":        "text/css",
		"/favicon.svg":      "image/svg+xml",
	} {
		w := get("GET", path)
		if w.Code != http.StatusOK || !strings.HasPrefix(w.Header().Get("Content-Type"), ctype) {
			t.Errorf("GET %s: %d %q, want 200 %s", path, w.Code, w.Header().Get("Content-Type"), ctype)
			continue
		}
		csp := w.Header().Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "connect-src 'self' ws://chat.example:8080 wss://chat.example:8080") {
			t.Errorf("GET %s: CSP %q", path, csp)
		}
		if w.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no nosniff", path)
		}
		tag := w.Header().Get("ETag")
		if tag == "" {
			t.Errorf("GET %s: no ETag", path)
			continue
		}
		if w := get("GET", path, "If-None-Match", tag); w.Code != http.StatusNotModified {
			t.Errorf("GET %s with its ETag: %d, want 304", path, w.Code)
		}
	}
	if body := get("GET", "/").Body.String(); !strings.Contains(body, `<script type="module" src="app.js">`) {
		t.Errorf("index.html does not load app.js as a module")
	}
	for _, path := range []string{"/nope", "/static/app.js", "/../go.mod", "/index.html/"} {
		if w := get("GET", path); w.Code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", path, w.Code)
		}
	}
	if w := get("POST", "/"); w.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %d, want 405", w.Code)
	}
}
