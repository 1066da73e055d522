package hooks

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// SignatureHeader carries the signature of every request Parley sends an
// application (hooks and webhooks): "t=<unix seconds>,v1=<hex>", where the
// hex is HMAC-SHA256 under the shared secret of "<t>.<body>". The
// timestamp lets the receiver refuse replays (Verify's tolerance); more
// than one v1 may appear while a secret is being rotated.
const SignatureHeader = "Parley-Signature"

// Sign returns the SignatureHeader value for body sent at t.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + mac(secret, ts, body)
}

func mac(secret []byte, ts string, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// Errors of Verify.
var (
	ErrNoSignature  = errors.New("hooks: no " + SignatureHeader + " header, or a malformed one")
	ErrBadSignature = errors.New("hooks: the signature does not match the body")
	ErrStale        = errors.New("hooks: the signature's timestamp is outside the tolerance (a replay?)")
)

// Verify checks a SignatureHeader value against body, as a receiver does:
// the MAC under secret (compared in constant time), and the timestamp
// within tolerance of now. Receivers should also drop an event id they
// have seen (webhooks are delivered at least once).
func Verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs []string
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return ErrNoSignature
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return ErrNoSignature
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: signed %v ago", ErrStale, d.Round(time.Second))
	}
	want := []byte(mac(secret, ts, body))
	for _, s := range sigs {
		if hmac.Equal([]byte(s), want) {
			return nil
		}
	}
	return ErrBadSignature
}

// signer signs each request's body on its way out.
type signer struct {
	next   http.RoundTripper
	secret []byte
}

func (s *signer) RoundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		var err error
		if body, err = io.ReadAll(r.Body); err != nil {
			return nil, err
		}
		r.Body.Close()
	}
	r = r.Clone(r.Context())
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	r.Header.Set(SignatureHeader, Sign(s.secret, time.Now(), body))
	return s.next.RoundTrip(r)
}
