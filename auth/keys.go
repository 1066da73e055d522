package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
)

// MinRSABits is the smallest RSA modulus accepted: 2048 bits is the floor
// NIST SP 800-131A and RFC 7518 §3.3 set for RS256.
const MinRSABits = 2048

// readPublicKeyFile reads one public key from a PEM file.
func readPublicKeyFile(name string) (*publicKey, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	return parsePublicKeyPEM(data)
}

// parsePublicKeyPEM accepts "PUBLIC KEY" (PKIX), "RSA PUBLIC KEY" (PKCS #1)
// and "CERTIFICATE" blocks. A certificate is only a carrier for its key here:
// identity providers publish signing certificates that are self-signed and
// long expired, and the JWT's own exp is what bounds a session.
func parsePublicKeyPEM(data []byte) (*publicKey, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no PEM public key or certificate found")
		}
		var (
			key any
			err error
		)
		switch block.Type {
		case "EC PARAMETERS":
			continue // openssl ecparam writes these before the key
		case "PUBLIC KEY":
			key, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			key, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
				key = cert.PublicKey
			}
		default:
			if strings.Contains(block.Type, "PRIVATE KEY") {
				// Refuse rather than derive the public half: the private key
				// does not belong on a chat server.
				return nil, fmt.Errorf("holds a %s; give the server only the public key (openssl pkey -pubout)", block.Type)
			}
			return nil, fmt.Errorf("unsupported PEM block %q; want PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE", block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", block.Type, err)
		}
		return checkPublicKey(key)
	}
}

// checkPublicKey admits RSA keys of at least MinRSABits and EC keys on P-256,
// and fixes the one algorithm each may verify.
func checkPublicKey(key any) (*publicKey, error) {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < MinRSABits {
			return nil, fmt.Errorf("RSA key has %d bits; at least %d are required", n, MinRSABits)
		}
		return &publicKey{alg: RS256, key: k}, nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("EC key is on %s; only P-256 (ES256) is supported", k.Curve.Params().Name)
		}
		return &publicKey{alg: ES256, key: k}, nil
	}
	return nil, fmt.Errorf("unsupported key type %T; want RSA (RS256) or EC P-256 (ES256)", key)
}

// jwk is the subset of RFC 7517/7518 that Parley reads.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	D   string `json:"d"` // only to refuse private keys
}

// readJWKSFile reads a JWK Set and returns its usable keys by kid.
func readJWKSFile(name string) (map[string]*publicKey, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	return parseJWKS(data)
}

// parseJWKS keeps the signature keys Parley can use and skips the rest (an
// identity provider's set may also hold encryption or Ed25519 keys), but
// fails on a usable-looking key that is broken, so a typo is not silently
// dropped. A symmetric ("oct") key is never used: HS256 takes its secret
// from -jwt-secret only.
func parseJWKS(data []byte) (map[string]*publicKey, error) {
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("not a JWKS JSON document: %w", err)
	}
	keys := make(map[string]*publicKey)
	var skipped []string
	for i, k := range set.Keys {
		where := fmt.Sprintf("key %d (kid %q)", i, k.Kid)
		if k.D != "" {
			return nil, fmt.Errorf("%s holds private key material (\"d\"); publish only public keys", where)
		}
		if k.Use != "" && k.Use != "sig" {
			skipped = append(skipped, where+": use "+k.Use)
			continue
		}
		var (
			pk  *publicKey
			err error
		)
		switch {
		case k.Kty == "RSA" && (k.Alg == "" || k.Alg == RS256):
			pk, err = k.rsa()
		case k.Kty == "EC" && k.Crv == "P-256" && (k.Alg == "" || k.Alg == ES256):
			pk, err = k.ec()
		default:
			skipped = append(skipped, fmt.Sprintf("%s: kty %q crv %q alg %q", where, k.Kty, k.Crv, k.Alg))
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if k.Kid == "" {
			// Keys are selected by the token's kid; one without is unreachable.
			return nil, fmt.Errorf("key %d has no \"kid\"", i)
		}
		if _, dup := keys[k.Kid]; dup {
			return nil, fmt.Errorf("%s: duplicate kid", where)
		}
		keys[k.Kid] = pk
	}
	if len(keys) == 0 {
		msg := "no RS256 or ES256 signing keys"
		if len(skipped) > 0 {
			msg += " (skipped " + strings.Join(skipped, "; ") + ")"
		}
		return nil, errors.New(msg)
	}
	return keys, nil
}

func (k *jwk) rsa() (*publicKey, error) {
	n, err := b64field("n", k.N)
	if err != nil {
		return nil, err
	}
	e, err := b64field("e", k.E)
	if err != nil {
		return nil, err
	}
	// An exponent wider than 4 bytes, even or below 3 is not a real RSA key.
	eb := new(big.Int).SetBytes(e)
	if eb.BitLen() > 31 || eb.Int64() < 3 || eb.Bit(0) == 0 {
		return nil, errors.New(`invalid RSA exponent "e"`)
	}
	return checkPublicKey(&rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(eb.Int64())})
}

func (k *jwk) ec() (*publicKey, error) {
	x, err := b64field("x", k.X)
	if err != nil {
		return nil, err
	}
	y, err := b64field("y", k.Y)
	if err != nil {
		return nil, err
	}
	// RFC 7518 §6.2.1.2: coordinates are the full field size, 32 bytes.
	if len(x) != 32 || len(y) != 32 {
		return nil, errors.New(`P-256 "x" and "y" must be 32 bytes each`)
	}
	// Parsing the uncompressed point checks it lies on the curve, which an
	// ecdsa.PublicKey built by hand would not.
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
	if err != nil {
		return nil, err
	}
	return checkPublicKey(pub)
}

// b64field decodes a base64url member, tolerating the padding some tools add.
func b64field(name, s string) ([]byte, error) {
	if s == "" {
		return nil, fmt.Errorf("missing %q", name)
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil, fmt.Errorf("%q is not base64url: %w", name, err)
	}
	return b, nil
}
