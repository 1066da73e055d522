package auth

import (
	"net/http"
	"strings"
)

// TokenFromRequest returns the token from an "Authorization: Bearer <t>"
// header, else from the "token" query parameter, else "". The query form
// exists because browsers cannot set headers on a WebSocket handshake; URLs
// end up in proxy and access logs, so such tokens should be short-lived and
// the server should not log the raw query.
func TokenFromRequest(r *http.Request) string {
	if r == nil {
		return ""
	}
	// RFC 7235: the scheme is case-insensitive.
	if scheme, tok, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " "); ok && strings.EqualFold(scheme, "Bearer") {
		if tok = strings.TrimSpace(tok); tok != "" {
			return tok
		}
	}
	if r.URL == nil {
		return ""
	}
	return r.URL.Query().Get("token")
}
