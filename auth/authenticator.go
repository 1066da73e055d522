package auth

import (
	"errors"
	"net/http"
)

// Authenticator admits a WebSocket handshake that carries no token by some
// other means (the application's connect hook, hooks/): the claims it
// returns are the connection's, as a verified token's would be. Nil claims
// and no error let the connection in with none (Hello decides); a *Denied
// refuses it (HTTP 403), ErrUnavailable too (HTTP 503: try later).
type Authenticator interface {
	Authenticate(r *http.Request, clientIP string) (*Claims, error)
}

// AuthenticatorFunc is a function as an Authenticator.
type AuthenticatorFunc func(r *http.Request, clientIP string) (*Claims, error)

// Authenticate calls f.
func (f AuthenticatorFunc) Authenticate(r *http.Request, clientIP string) (*Claims, error) {
	return f(r, clientIP)
}

// Denied is an Authenticator's refusal, with the reason the client is shown.
type Denied struct{ Reason string }

func (d *Denied) Error() string { return d.Reason }

// ErrUnavailable is an Authenticator that could not decide (the
// application did not answer, and its policy is to refuse then).
var ErrUnavailable = errors.New("the application that authenticates connections is unavailable; try again later")
