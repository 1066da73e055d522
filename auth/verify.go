package auth

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// The two outcomes of a failed [Verifier.Verify], for errors.Is. They are
// disjoint: a token is ErrExpired only when expiry is the one thing wrong with
// a correctly signed token, so the server may tell that client to refresh;
// everything else (forged, malformed, wrong issuer, not yet valid...) is
// ErrInvalid and deserves no hint beyond "unauthorized".
var (
	ErrExpired = errors.New("auth: token expired")
	ErrInvalid = errors.New("auth: invalid token")
)

const (
	// DefaultLeeway is the clock skew allowed on exp, nbf and iat when
	// Options.Leeway is zero.
	DefaultLeeway = 30 * time.Second

	// MinSecretBytes is the shortest HS256 secret accepted. RFC 7518 §3.2
	// requires a key at least as long as the hash output; shorter secrets
	// can be brute-forced offline from a single captured token.
	MinSecretBytes = 32

	// MaxTokenBytes bounds the token Verify will parse. Tokens arrive from
	// unauthenticated clients (often in a URL), so this caps the base64 and
	// JSON work an attacker can ask for before any signature is checked.
	MaxTokenBytes = 16 << 10
)

// Algorithm names as they appear in a token's "alg" header.
const (
	HS256 = "HS256"
	RS256 = "RS256"
	ES256 = "ES256"
)

// Options configures a [Verifier]. At least one of HMACSecret,
// PublicKeyFile and JWKSFile must be set; several may be, for example while
// migrating from a shared secret to an identity provider, and each algorithm
// is then checked only against its own kind of key.
type Options struct {
	HMACSecret    []byte // HS256; at least MinSecretBytes long
	PublicKeyFile string // PEM: RSA public key (RS256) or EC P-256 public key (ES256), or a certificate
	JWKSFile      string // a JWKS JSON file with RSA and EC keys selected by "kid" (RS256, ES256)

	// Issuer and Audience, when set, must match the token's "iss" and be
	// one of its "aud"; a token lacking the claim is then rejected.
	Issuer, Audience string

	Leeway time.Duration // clock skew allowance; zero means DefaultLeeway
}

// String describes the options without the secret.
func (o Options) String() string {
	return fmt.Sprintf("{HMACSecret:%s PublicKeyFile:%q JWKSFile:%q Issuer:%q Audience:%q Leeway:%v}",
		redacted(o.HMACSecret), o.PublicKeyFile, o.JWKSFile, o.Issuer, o.Audience, o.Leeway)
}

// Format makes every fmt verb (%v, %+v, %#v, %s, %x, %d...) print String:
// without it, %d or %x would walk the struct and print the secret's bytes.
func (o Options) Format(f fmt.State, _ rune) { fmt.Fprint(f, o.String()) }

// LogValue keeps the secret out of slog records.
func (o Options) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("hmac_secret", redacted(o.HMACSecret)),
		slog.String("public_key_file", o.PublicKeyFile),
		slog.String("jwks_file", o.JWKSFile),
		slog.String("issuer", o.Issuer),
		slog.String("audience", o.Audience),
		slog.Duration("leeway", o.Leeway),
	)
}

// redacted says whether a secret is set, never what it is or how long.
func redacted(secret []byte) string {
	if len(secret) == 0 {
		return "unset"
	}
	return "[redacted]"
}

// Verifier checks tokens against the configured keys. It is safe for
// concurrent use, including Reload during Verify.
type Verifier struct {
	opts Options // HMACSecret is a private copy; paths are re-read by Reload

	reload sync.Mutex // serialises Reload so the newest read wins
	keys   atomic.Pointer[keySet]
}

// keySet is one immutable generation of keys, swapped whole by Reload so a
// Verify never sees half a rotation.
type keySet struct {
	secret []byte
	static *publicKey            // from PublicKeyFile
	byKid  map[string]*publicKey // from JWKSFile
	algs   []string              // what the keys above allow, sorted
	parser *jwt.Parser
}

// publicKey is an RSA or EC P-256 key and the one algorithm it verifies.
type publicKey struct {
	alg string // RS256 or ES256
	key any    // *rsa.PublicKey or *ecdsa.PublicKey
}

// NewVerifier reads the configured keys. Its errors name the server flag to
// fix (-jwt-secret, -jwt-public-key, -jwt-jwks) and never the secret.
func NewVerifier(o Options) (*Verifier, error) {
	if len(o.HMACSecret) == 0 && o.PublicKeyFile == "" && o.JWKSFile == "" {
		return nil, errors.New("auth: no key configured: set -jwt-secret (HS256), -jwt-public-key (RS256/ES256 PEM) or -jwt-jwks (JWKS file)")
	}
	if len(o.HMACSecret) > 0 && len(o.HMACSecret) < MinSecretBytes {
		return nil, fmt.Errorf("auth: -jwt-secret is too short: HS256 needs at least %d bytes (e.g. openssl rand -base64 48)", MinSecretBytes)
	}
	if o.Leeway < 0 {
		return nil, fmt.Errorf("auth: leeway %v is negative", o.Leeway)
	}
	if o.Leeway == 0 {
		o.Leeway = DefaultLeeway
	}
	// Our own copy: the caller may zero or reuse its slice.
	o.HMACSecret = slices.Clone(o.HMACSecret)
	v := &Verifier{opts: o}
	ks, err := v.load()
	if err != nil {
		return nil, err
	}
	v.keys.Store(ks)
	return v, nil
}

// Reload re-reads PublicKeyFile and JWKSFile, for key rotation (on SIGHUP or
// a timer). On error the keys in use stay as they were, so a half-written
// file cannot lock every user out.
func (v *Verifier) Reload() error {
	v.reload.Lock()
	defer v.reload.Unlock()
	ks, err := v.load()
	if err != nil {
		return err
	}
	v.keys.Store(ks)
	return nil
}

// load builds a key set from the options and the files as they are now.
func (v *Verifier) load() (*keySet, error) {
	ks := &keySet{secret: v.opts.HMACSecret}
	if len(ks.secret) > 0 {
		ks.algs = append(ks.algs, HS256)
	}
	if v.opts.PublicKeyFile != "" {
		k, err := readPublicKeyFile(v.opts.PublicKeyFile)
		if err != nil {
			return nil, fmt.Errorf("auth: -jwt-public-key %s: %w", v.opts.PublicKeyFile, err)
		}
		ks.static = k
		ks.algs = append(ks.algs, k.alg)
	}
	if v.opts.JWKSFile != "" {
		m, err := readJWKSFile(v.opts.JWKSFile)
		if err != nil {
			return nil, fmt.Errorf("auth: -jwt-jwks %s: %w", v.opts.JWKSFile, err)
		}
		ks.byKid = m
		for _, k := range m {
			ks.algs = append(ks.algs, k.alg)
		}
	}
	slices.Sort(ks.algs)
	ks.algs = slices.Compact(ks.algs)
	if len(ks.algs) == 0 {
		// Unreachable given the checks above, but an empty allow-list would
		// mean "any algorithm" to the jwt parser, so refuse it explicitly.
		return nil, errors.New("auth: no usable key")
	}

	opts := []jwt.ParserOption{
		// The allow-list is what stops algorithm confusion: the token's
		// header cannot select an algorithm we hold no key for.
		jwt.WithValidMethods(ks.algs),
		jwt.WithLeeway(v.opts.Leeway),
		jwt.WithIssuedAt(),
	}
	if v.opts.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(v.opts.Issuer))
	}
	if v.opts.Audience != "" {
		opts = append(opts, jwt.WithAudience(v.opts.Audience))
	}
	ks.parser = jwt.NewParser(opts...)
	return ks, nil
}

// Algorithms lists the algorithms the current keys accept, for the server's
// start-up line ("tokens required: HS256, RS256").
func (v *Verifier) Algorithms() []string {
	return slices.Clone(v.keys.Load().algs)
}

// String describes the verifier without its secret.
func (v *Verifier) String() string {
	ks := v.keys.Load()
	return fmt.Sprintf("auth.Verifier{algorithms:%s jwks_keys:%d options:%s}",
		strings.Join(ks.algs, ","), len(ks.byKid), v.opts)
}

// Format keeps every fmt verb on String (see Options.Format).
func (v *Verifier) Format(f fmt.State, _ rune) { fmt.Fprint(f, v.String()) }

// LogValue keeps the secret out of slog records.
func (v *Verifier) LogValue() slog.Value {
	ks := v.keys.Load()
	return slog.GroupValue(
		slog.String("algorithms", strings.Join(ks.algs, ",")),
		slog.Int("jwks_keys", len(ks.byKid)),
		slog.Any("options", v.opts),
	)
}

// tokenClaims is the JSON shape of a Parley token.
type tokenClaims struct {
	jwt.RegisteredClaims
	// omitzero, not omitempty: an empty list ("no rooms") must survive a
	// round trip instead of turning into an absent claim ("every room").
	Rooms         []string          `json:"rooms,omitzero"`
	ReadOnlyRooms []string          `json:"read_only_rooms,omitzero"`
	Roles         map[string]string `json:"roles,omitempty"`
}

// errClaims marks failures of our own claim rules, so they are never mistaken
// for a plain expiry.
var errClaims = errors.New("bad claims")

// Validate adds Parley's rules to the registered-claim checks; the jwt
// validator calls it only after the signature has verified.
func (c *tokenClaims) Validate() error {
	if c.Subject == "" {
		return fmt.Errorf("%w: no subject (sub)", errClaims)
	}
	if err := checkPatterns("rooms", c.Rooms); err != nil {
		return fmt.Errorf("%w: %w", errClaims, err)
	}
	if err := checkPatterns("read_only_rooms", c.ReadOnlyRooms); err != nil {
		return fmt.Errorf("%w: %w", errClaims, err)
	}
	if err := checkRoles(c.Roles); err != nil {
		return fmt.Errorf("%w: %w", errClaims, err)
	}
	return nil
}

// checkRoles checks a roles claim: room patterns to "moderator" or "owner".
func checkRoles(roles map[string]string) error {
	patterns := make([]string, 0, len(roles))
	for pattern, role := range roles {
		if role != RoleModerator && role != RoleOwner {
			return fmt.Errorf("roles: %q gives %q; a role is %q or %q", pattern, role, RoleModerator, RoleOwner)
		}
		patterns = append(patterns, pattern)
	}
	return checkPatterns("roles", patterns)
}

// notOnlyExpired lists the claim failures that make an expired token
// invalid rather than merely expired.
var notOnlyExpired = []error{
	jwt.ErrTokenNotValidYet,
	jwt.ErrTokenUsedBeforeIssued,
	jwt.ErrTokenInvalidIssuer,
	jwt.ErrTokenInvalidAudience,
	jwt.ErrTokenInvalidSubject,
	jwt.ErrTokenRequiredClaimMissing,
	jwt.ErrInvalidType,
	errClaims,
}

// Verify checks a token's signature and claims. A failure wraps exactly one of
// ErrExpired and ErrInvalid; the message helps an operator debug but holds
// neither the token nor any key, and is not meant for the client.
func (v *Verifier) Verify(token string) (*Claims, error) {
	if token == "" {
		return nil, fmt.Errorf("%w: no token", ErrInvalid)
	}
	if len(token) > MaxTokenBytes {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrInvalid, MaxTokenBytes)
	}
	ks := v.keys.Load()
	var tc tokenClaims
	_, err := ks.parser.ParseWithClaims(token, &tc, ks.keyFor)
	if err != nil {
		// The jwt package validates claims only after the signature, so an
		// expiry error means the token is genuine.
		if errors.Is(err, jwt.ErrTokenExpired) && !isAny(err, notOnlyExpired) {
			return nil, fmt.Errorf("%w at %s", ErrExpired, tc.ExpiresAt.UTC().Format(time.RFC3339)) // Is(ErrTokenExpired) implies exp is set
		}
		return nil, fmt.Errorf("%w: %w", ErrInvalid, truncated{err})
	}
	c := &Claims{
		Subject:       tc.Subject,
		Rooms:         tc.Rooms,
		ReadOnlyRooms: tc.ReadOnlyRooms,
		Roles:         tc.Roles,
	}
	if tc.ExpiresAt != nil {
		c.Expiry = tc.ExpiresAt.Time
	}
	return c, nil
}

// maxDetail bounds the text of a verification error. Claims are decoded
// before the signature is checked, and JSON errors quote the offending
// value, so an anonymous client could otherwise put kilobytes into every
// log line about it.
const maxDetail = 200

// truncated shortens an error's text but keeps it for errors.Is.
type truncated struct{ err error }

func (t truncated) Error() string {
	s := t.err.Error()
	if len(s) <= maxDetail {
		return s
	}
	return strings.ToValidUTF8(s[:maxDetail], "") + "…"
}

func (t truncated) Unwrap() error { return t.err }

func isAny(err error, targets []error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

// keyFor is the jwt.Keyfunc. The parser has already restricted the algorithm
// to ks.algs; here the key is chosen by algorithm family first and kid
// second, and the key's own algorithm must match the token's, so no header
// combination can make one kind of key verify another kind of signature.
func (ks *keySet) keyFor(t *jwt.Token) (any, error) {
	// RFC 7515 §4.1.11: extensions listed in "crit" must be understood; we
	// understand none.
	if _, ok := t.Header["crit"]; ok {
		return nil, errors.New(`unsupported "crit" header`)
	}
	alg := t.Method.Alg()
	if alg == HS256 {
		if len(ks.secret) == 0 {
			return nil, errors.New("no HS256 secret configured")
		}
		return ks.secret, nil
	}
	k := ks.static
	if raw, ok := t.Header["kid"]; ok {
		kid, ok := raw.(string)
		if !ok {
			return nil, errors.New(`"kid" header is not a string`)
		}
		if jk, ok := ks.byKid[kid]; ok {
			k = jk
		} else if k == nil {
			return nil, errors.New("unknown kid")
		}
		// A kid we do not know falls back to the single configured public
		// key: issuers with one key often still send a kid.
	} else if k == nil {
		return nil, errors.New(`no "kid" header to select a JWKS key`)
	}
	if k.alg != alg {
		return nil, fmt.Errorf("key is for %s, token is %s", k.alg, alg)
	}
	return k.key, nil
}
