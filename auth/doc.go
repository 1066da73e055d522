// Package auth owns connection authentication for Parley: verifying the JWT a
// client presents at the WebSocket upgrade, turning it into Claims (who the
// user is, until when, and which rooms they may join or post to), finding the
// token on an HTTP request, and issuing HS256 tokens for local testing
// (cmd/parley-token).
//
// It deliberately knows nothing about sessions, actors or close codes: the
// server calls [TokenFromRequest] and [Verifier.Verify] at the handshake,
// keeps the [Claims] with the session, asks [Claims.MayJoin] and
// [Claims.MayPost] per request, and ends the session at [Claims.Expiry].
//
// Security properties this package guarantees, so callers need not:
//
//   - Only the algorithms that the configured keys imply are accepted: HS256
//     only with a shared secret, RS256 and ES256 only with public keys. A
//     token's "alg" never picks the key type, so "none" and the classic
//     HS256-signed-with-the-RSA-public-key confusion are rejected.
//   - Keys come only from the operator's files; the token's "jku", "x5u" and
//     "jwk" headers are ignored and a "crit" header is refused.
//   - Claims are checked only after the signature: ErrExpired means a
//     genuine token that has run out, not a forgery.
//   - Secrets never appear in errors, in fmt output or in slog records.
package auth
