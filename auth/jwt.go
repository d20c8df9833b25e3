// Package auth verifies who a connection is: JWTs (HS256 with a shared
// secret, RS256 and ES256 with public keys from PEM files or a JWKS file),
// subscription tokens for private rooms, and a connect proxy that asks the
// application's backend about a handshake's cookies. Its verifiers plug
// into hub.AuthOptions and transport.Options.
package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/switchboard-rt/switchboard/hub"
)

// JWTOptions configure JWT verification. At least one key source is
// required; each enables exactly its algorithm, and no other algorithm is
// ever accepted (so "alg": "none" and HS256 tokens signed with a public key
// are refused).
type JWTOptions struct {
	// Secret enables HS256 with this shared secret (at least 32 bytes).
	Secret []byte
	// PublicKeyFiles are PEM files with RSA (enables RS256) or ECDSA P-256
	// (enables ES256) public keys or certificates.
	PublicKeyFiles []string
	// JWKSFile is a JSON Web Key Set file with RSA and EC P-256 keys;
	// tokens pick one by their "kid" header.
	JWKSFile string
	// Issuer and Audience, when set, must match the token's iss and aud.
	Issuer   string
	Audience string
	// Leeway allows for clock skew on exp, nbf and iat. Default 5 s.
	Leeway time.Duration
}

// MinSecretLen is the shortest HS256 secret accepted: RFC 7518 asks for a
// key at least as long as the hash output.
const MinSecretLen = 32

// JWT verifies connection tokens and subscription tokens. It implements
// hub.Authenticator and hub.SubscriptionVerifier. Safe for concurrent use.
type JWT struct {
	opts    JWTOptions
	methods []string
	rsa     []keyEntry
	ec      []keyEntry
}

type keyEntry struct {
	kid string
	key any
}

// ConnectionClaims are the claims of a connection token.
type ConnectionClaims struct {
	jwt.RegisteredClaims
	// Rooms the user may join where the namespace's permission is "token".
	Rooms []string `json:"rooms,omitempty"`
	// Info is passed to presence.
	Info json.RawMessage `json:"info,omitempty"`
	// Room, if present, makes this a subscription token, which is refused
	// as a connection token.
	Room string `json:"room,omitempty"`
}

// UnmarshalJSON decodes the claims, refusing dates that are not JSON
// numbers (see checkDates).
func (c *ConnectionClaims) UnmarshalJSON(b []byte) error {
	if err := checkDates(b); err != nil {
		return err
	}
	type plain ConnectionClaims // without this method
	return json.Unmarshal(b, (*plain)(c))
}

// SubscriptionClaims are the claims of a subscription token: sub may
// subscribe to room until exp.
type SubscriptionClaims struct {
	jwt.RegisteredClaims
	Room string `json:"room"`
}

// UnmarshalJSON decodes the claims, refusing dates that are not JSON
// numbers (see checkDates).
func (c *SubscriptionClaims) UnmarshalJSON(b []byte) error {
	if err := checkDates(b); err != nil {
		return err
	}
	type plain SubscriptionClaims
	return json.Unmarshal(b, (*plain)(c))
}

// checkDates requires exp, nbf and iat, where present, to be JSON numbers
// (RFC 7519 2, NumericDate). jwt.NumericDate also takes a numeric string
// such as "123", which no conforming issuer writes: a token that spells a
// date differently from its issuer's library is refused, not guessed at.
func checkDates(payload []byte) error {
	var dates struct {
		Exp json.RawMessage `json:"exp"`
		Nbf json.RawMessage `json:"nbf"`
		Iat json.RawMessage `json:"iat"`
	}
	if err := json.Unmarshal(payload, &dates); err != nil {
		return err
	}
	for _, d := range []struct {
		name string
		v    json.RawMessage
	}{{"exp", dates.Exp}, {"nbf", dates.Nbf}, {"iat", dates.Iat}} {
		if d.v == nil {
			continue
		}
		if c := d.v[0]; c != '-' && (c < '0' || c > '9') {
			return fmt.Errorf("claim %s is not a number: %w", d.name, errDateType)
		}
	}
	return nil
}

var errDateType = errors.New("a date claim must be a JSON number")

// NewJWT loads the keys and returns a verifier.
func NewJWT(opts JWTOptions) (*JWT, error) {
	if opts.Leeway <= 0 {
		opts.Leeway = 5 * time.Second
	}
	j := &JWT{opts: opts}
	if len(opts.Secret) > 0 {
		if len(opts.Secret) < MinSecretLen {
			return nil, fmt.Errorf("auth: the JWT secret is %d bytes; use at least %d random bytes", len(opts.Secret), MinSecretLen)
		}
		j.methods = append(j.methods, jwt.SigningMethodHS256.Alg())
	}
	for _, f := range opts.PublicKeyFiles {
		if err := j.loadPEM(f); err != nil {
			return nil, err
		}
	}
	if opts.JWKSFile != "" {
		if err := j.loadJWKS(opts.JWKSFile); err != nil {
			return nil, err
		}
	}
	if len(j.rsa) > 0 {
		j.methods = append(j.methods, jwt.SigningMethodRS256.Alg())
	}
	if len(j.ec) > 0 {
		j.methods = append(j.methods, jwt.SigningMethodES256.Alg())
	}
	if len(j.methods) == 0 {
		return nil, errors.New("auth: no JWT key configured: set a secret, a public key file or a JWKS file")
	}
	return j, nil
}

// Algorithms returns the accepted algorithms.
func (j *JWT) Algorithms() []string { return append([]string(nil), j.methods...) }

func (j *JWT) loadPEM(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("auth: read public key: %w", err)
	}
	n := 0
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		var pub any
		switch blk.Type {
		case "PUBLIC KEY":
			pub, err = x509.ParsePKIXPublicKey(blk.Bytes)
		case "RSA PUBLIC KEY":
			pub, err = x509.ParsePKCS1PublicKey(blk.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(blk.Bytes); err == nil {
				pub = cert.PublicKey
			}
		default:
			return fmt.Errorf("auth: %s: PEM block %q is not a public key (private keys do not belong on the server)", path, blk.Type)
		}
		if err != nil {
			return fmt.Errorf("auth: %s: %w", path, err)
		}
		if err := j.addKey("", pub); err != nil {
			return fmt.Errorf("auth: %s: %w", path, err)
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("auth: %s has no PEM public key", path)
	}
	return nil
}

func (j *JWT) addKey(kid string, pub any) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return fmt.Errorf("RSA key of %d bits is too short (want 2048 or more)", k.N.BitLen())
		}
		j.rsa = append(j.rsa, keyEntry{kid, k})
	case *ecdsa.PublicKey:
		if k.Curve.Params().Name != "P-256" {
			return fmt.Errorf("EC key on curve %s: ES256 needs P-256", k.Curve.Params().Name)
		}
		j.ec = append(j.ec, keyEntry{kid, k})
	default:
		return fmt.Errorf("unsupported public key type %T (want RSA or EC P-256)", pub)
	}
	return nil
}

// keyFunc picks the key for a token whose algorithm the parser already
// checked against the allowed list.
func (j *JWT) keyFunc(t *jwt.Token) (any, error) {
	kid, _ := t.Header["kid"].(string)
	pick := func(keys []keyEntry) (any, error) {
		var set jwt.VerificationKeySet
		for _, k := range keys {
			if kid == "" || k.kid == "" || k.kid == kid {
				set.Keys = append(set.Keys, k.key)
			}
		}
		if len(set.Keys) == 0 {
			return nil, fmt.Errorf("no key with kid %q", kid)
		}
		return set, nil
	}
	switch t.Method.Alg() {
	case jwt.SigningMethodHS256.Alg():
		return j.opts.Secret, nil
	case jwt.SigningMethodRS256.Alg():
		return pick(j.rsa)
	case jwt.SigningMethodES256.Alg():
		return pick(j.ec)
	}
	return nil, fmt.Errorf("algorithm %s is not accepted", t.Method.Alg())
}

func (j *JWT) parse(token string, claims jwt.Claims) error {
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(j.methods),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(j.opts.Leeway),
		jwt.WithIssuedAt(),
		// One spelling per token: base64url without padding whose unused
		// trailing bits are zero (RFC 4648 3.5), so a signature cannot be
		// re-spelt into another token string that still verifies.
		jwt.WithStrictDecoding(),
	}
	if j.opts.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(j.opts.Issuer))
	}
	if j.opts.Audience != "" {
		opts = append(opts, jwt.WithAudience(j.opts.Audience))
	}
	if len(token) > MaxTokenLen {
		return fmt.Errorf("token longer than %d bytes", MaxTokenLen)
	}
	_, err := jwt.NewParser(opts...).ParseWithClaims(token, claims, j.keyFunc)
	return err
}

// MaxTokenLen bounds tokens; real ones are well under 4 KiB.
const MaxTokenLen = 8 << 10

// Authenticate implements hub.Authenticator.
func (j *JWT) Authenticate(ctx context.Context, token string) (*hub.Credentials, error) {
	var c ConnectionClaims
	if err := j.parse(token, &c); err != nil {
		return nil, tokenError(err)
	}
	if c.Subject == "" {
		return nil, errors.New("token has no sub (user id)")
	}
	if c.Room != "" {
		return nil, errors.New("a subscription token cannot be used to connect")
	}
	if len(c.Info) > 0 && !json.Valid(c.Info) {
		return nil, errors.New("token info is not JSON")
	}
	creds := &hub.Credentials{UserID: c.Subject, Rooms: c.Rooms, Info: c.Info}
	if c.ExpiresAt != nil {
		// The token was accepted with the leeway; the session ends with it
		// too, or a token just past exp would be let in and closed at once.
		creds.ExpiresAt = c.ExpiresAt.Time.Add(j.opts.Leeway)
	}
	return creds, nil
}

// VerifySubscription implements hub.SubscriptionVerifier: the token must
// name room and the connection's user.
func (j *JWT) VerifySubscription(ctx context.Context, token, room, userID string) error {
	_, err := j.VerifySubscriptionExpiry(ctx, token, room, userID)
	return err
}

// VerifySubscriptionExpiry implements hub.SubscriptionExpirer: it verifies
// like VerifySubscription and returns when the grant ends, the token's exp
// plus the leeway it was accepted with (zero without exp).
func (j *JWT) VerifySubscriptionExpiry(ctx context.Context, token, room, userID string) (time.Time, error) {
	var c SubscriptionClaims
	if err := j.parse(token, &c); err != nil {
		return time.Time{}, tokenError(err)
	}
	if c.Room != room {
		return time.Time{}, fmt.Errorf("token is for room %q", c.Room)
	}
	if c.Subject != userID {
		return time.Time{}, errors.New("token is for another user")
	}
	if c.ExpiresAt == nil {
		return time.Time{}, nil
	}
	return c.ExpiresAt.Time.Add(j.opts.Leeway), nil
}

// tokenError turns the library's error into a short reason safe to show
// the client.
func tokenError(err error) error {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return errors.New("token expired")
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return errors.New("token not valid yet")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return errors.New("token lacks a required claim (exp)")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return errors.New("token issuer not accepted")
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return errors.New("token audience not accepted")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return errors.New("token signature invalid or algorithm not accepted")
	case errors.Is(err, errDateType):
		return errors.New("token malformed: exp, nbf and iat must be numbers")
	case errors.Is(err, jwt.ErrTokenMalformed):
		return errors.New("token malformed")
	}
	return errors.New("token invalid")
}

var (
	_ hub.Authenticator        = (*JWT)(nil)
	_ hub.SubscriptionVerifier = (*JWT)(nil)
	_ hub.SubscriptionExpirer  = (*JWT)(nil)
)
