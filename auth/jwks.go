package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"os"
)

// jwk is the part of a JSON Web Key (RFC 7517) we use.
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
}

// loadJWKS reads RSA and EC P-256 signature keys from a JWKS file. Keys
// marked for encryption ("use": "enc") are skipped; anything malformed is
// an error that names the key.
func (j *JWT) loadJWKS(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("auth: read JWKS: %w", err)
	}
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return fmt.Errorf("auth: %s is not a JWKS file: %w", path, err)
	}
	n := 0
	for i, k := range set.Keys {
		if k.Use == "enc" {
			continue
		}
		pub, err := k.publicKey()
		if err != nil {
			return fmt.Errorf("auth: %s: key %d (kid %q): %w", path, i, k.Kid, err)
		}
		if err := j.addKey(k.Kid, pub); err != nil {
			return fmt.Errorf("auth: %s: key %d (kid %q): %w", path, i, k.Kid, err)
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("auth: %s has no signature keys", path)
	}
	return nil
}

func b64int(s string) (*big.Int, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("bad base64url integer")
	}
	return new(big.Int).SetBytes(b), nil
}

// b64fixed decodes a base64url field element of exactly n bytes.
func b64fixed(s string, n int) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != n {
		return nil, fmt.Errorf("want %d bytes in base64url", n)
	}
	return b, nil
}

func (k jwk) publicKey() (any, error) {
	switch k.Kty {
	case "RSA":
		n, err := b64int(k.N)
		if err != nil {
			return nil, fmt.Errorf("n: %w", err)
		}
		e, err := b64int(k.E)
		if err != nil || !e.IsInt64() || e.Int64() < 3 || e.Int64() > 1<<31 {
			return nil, fmt.Errorf("e: bad exponent")
		}
		return &rsa.PublicKey{N: n, E: int(e.Int64())}, nil
	case "EC":
		if k.Crv != "P-256" {
			return nil, fmt.Errorf("curve %q: ES256 needs P-256", k.Crv)
		}
		x, err := b64fixed(k.X, 32)
		if err != nil {
			return nil, fmt.Errorf("x: %w", err)
		}
		y, err := b64fixed(k.Y, 32)
		if err != nil {
			return nil, fmt.Errorf("y: %w", err)
		}
		// Parsing the uncompressed point checks that it is on the curve.
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			return nil, fmt.Errorf("point is not on P-256: %w", err)
		}
		return pub, nil
	}
	return nil, fmt.Errorf("key type %q is not supported (want RSA or EC)", k.Kty)
}
