package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var secret = []byte("0123456789abcdef0123456789abcdef-test-secret")

type keys struct {
	rsa     *rsa.PrivateKey
	ec      *ecdsa.PrivateKey
	rsaPEM  string
	ecPEM   string
	jwks    string
	rsaBlob []byte // PKIX public key bytes, for the key-confusion attack
}

func newKeys(t *testing.T) keys {
	t.Helper()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, pub any) (string, []byte) {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		b := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p, b
	}
	rp, rblob := write("rsa.pem", &rk.PublicKey)
	ep, _ := write("ec.pem", &ek.PublicKey)
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	set := map[string]any{"keys": []map[string]string{
		{"kty": "RSA", "kid": "r1", "n": b64(rk.N.Bytes()), "e": b64(big.NewInt(int64(rk.E)).Bytes())},
		{"kty": "EC", "kid": "e1", "crv": "P-256", "x": b64(ek.X.FillBytes(make([]byte, 32))), "y": b64(ek.Y.FillBytes(make([]byte, 32)))},
		{"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
	}}
	jb, _ := json.Marshal(set)
	jp := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jp, jb, 0o600); err != nil {
		t.Fatal(err)
	}
	return keys{rsa: rk, ec: ek, rsaPEM: rp, ecPEM: ep, jwks: jp, rsaBlob: rblob}
}

func sign(t *testing.T, m jwt.SigningMethod, key any, claims jwt.MapClaims, kid string) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claims(sub string, exp time.Duration, extra map[string]any) jwt.MapClaims {
	c := jwt.MapClaims{"exp": time.Now().Add(exp).Unix()}
	if sub != "" {
		c["sub"] = sub
	}
	for k, v := range extra {
		c[k] = v
	}
	return c
}

func TestNewJWTConfigErrors(t *testing.T) {
	if _, err := NewJWT(JWTOptions{}); err == nil {
		t.Error("no key: want error")
	}
	if _, err := NewJWT(JWTOptions{Secret: []byte("short")}); err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Errorf("short secret: got %v", err)
	}
	dir := t.TempDir()
	priv := filepath.Join(dir, "priv.pem")
	os.WriteFile(priv, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: []byte{1, 2}}), 0o600)
	if _, err := NewJWT(JWTOptions{PublicKeyFiles: []string{priv}}); err == nil || !strings.Contains(err.Error(), "not a public key") {
		t.Errorf("private key file: got %v", err)
	}
	if _, err := NewJWT(JWTOptions{PublicKeyFiles: []string{filepath.Join(dir, "missing.pem")}}); err == nil {
		t.Error("missing file: want error")
	}
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"keys":[{"kty":"OKP","kid":"x"}]}`), 0o600)
	if _, err := NewJWT(JWTOptions{JWKSFile: bad}); err == nil || !strings.Contains(err.Error(), "not supported") {
		t.Errorf("unsupported JWKS key: got %v", err)
	}
	os.WriteFile(bad, []byte(`not json`), 0o600)
	if _, err := NewJWT(JWTOptions{JWKSFile: bad}); err == nil {
		t.Error("malformed JWKS: want error")
	}
}

func TestAuthenticate(t *testing.T) {
	k := newKeys(t)
	hs, err := NewJWT(JWTOptions{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	pk, err := NewJWT(JWTOptions{PublicKeyFiles: []string{k.rsaPEM, k.ecPEM}, Issuer: "https://issuer.test", Audience: "switchboard"})
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := NewJWT(JWTOptions{JWKSFile: k.jwks})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(pk.Algorithms(), ","); got != "RS256,ES256" {
		t.Errorf("algorithms = %s", got)
	}
	issAud := map[string]any{"iss": "https://issuer.test", "aud": "switchboard"}
	ctx := context.Background()

	tests := []struct {
		name    string
		v       *JWT
		token   string
		wantErr string // "" = valid
	}{
		{"hs256 valid", hs, sign(t, jwt.SigningMethodHS256, secret, claims("u1", time.Hour, map[string]any{"rooms": []string{"team:1"}, "info": map[string]string{"name": "Ann"}}), ""), ""},
		{"rs256 valid", pk, sign(t, jwt.SigningMethodRS256, k.rsa, claims("u2", time.Hour, issAud), ""), ""},
		{"es256 valid", pk, sign(t, jwt.SigningMethodES256, k.ec, claims("u3", time.Hour, issAud), ""), ""},
		{"jwks rs256 by kid", jwks, sign(t, jwt.SigningMethodRS256, k.rsa, claims("u4", time.Hour, nil), "r1"), ""},
		{"jwks es256 by kid", jwks, sign(t, jwt.SigningMethodES256, k.ec, claims("u5", time.Hour, nil), "e1"), ""},
		{"jwks unknown kid", jwks, sign(t, jwt.SigningMethodRS256, k.rsa, claims("u4", time.Hour, nil), "nope"), "signature invalid"},
		{"alg none", hs, sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims("u1", time.Hour, nil), ""), "signature invalid"},
		// The classic key confusion: an HS256 token whose HMAC key is the
		// server's RSA public key. Refused because HS256 is not enabled
		// where only public keys are configured.
		{"hs256 signed with the RSA public key", pk, sign(t, jwt.SigningMethodHS256, k.rsaBlob, claims("evil", time.Hour, issAud), ""), "signature invalid"},
		{"wrong algorithm for the secret", hs, sign(t, jwt.SigningMethodHS512, secret, claims("u1", time.Hour, nil), ""), "signature invalid"},
		{"wrong signature", hs, sign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-xx"), claims("u1", time.Hour, nil), ""), "signature invalid"},
		{"expired", hs, sign(t, jwt.SigningMethodHS256, secret, claims("u1", -time.Minute, nil), ""), "expired"},
		{"expired within leeway", hs, sign(t, jwt.SigningMethodHS256, secret, claims("u1", -2*time.Second, nil), ""), ""},
		{"not yet valid", hs, sign(t, jwt.SigningMethodHS256, secret, claims("u1", time.Hour, map[string]any{"nbf": time.Now().Add(time.Minute).Unix()}), ""), "not valid yet"},
		{"issued in the future", hs, sign(t, jwt.SigningMethodHS256, secret, claims("u1", time.Hour, map[string]any{"iat": time.Now().Add(time.Minute).Unix()}), ""), "not valid yet"},
		// Dates are JSON numbers; jwt.NumericDate alone would take "123".
		{"string exp", hs, sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "u1", "exp": strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)}, ""), "must be numbers"},
		{"string nbf", hs, sign(t, jwt.SigningMethodHS256, secret, claims("u1", time.Hour, map[string]any{"nbf": strconv.FormatInt(time.Now().Add(-time.Minute).Unix(), 10)}), ""), "must be numbers"},
		{"string iat", hs, sign(t, jwt.SigningMethodHS256, secret, claims("u1", time.Hour, map[string]any{"iat": strconv.FormatInt(time.Now().Add(-time.Minute).Unix(), 10)}), ""), "must be numbers"},
		{"null exp", hs, sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "u1", "exp": nil}, ""), "must be numbers"},
		{"boolean nbf", hs, sign(t, jwt.SigningMethodHS256, secret, claims("u1", time.Hour, map[string]any{"nbf": true}), ""), "must be numbers"},
		{"numeric dates with fractions", hs, sign(t, jwt.SigningMethodHS256, secret, claims("u1", time.Hour, map[string]any{"nbf": 1.5, "iat": float64(time.Now().Unix()) - 0.25}), ""), ""},
		{"no exp", hs, sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"sub": "u1"}, ""), "exp"},
		{"wrong iss", pk, sign(t, jwt.SigningMethodRS256, k.rsa, claims("u2", time.Hour, map[string]any{"iss": "other", "aud": "switchboard"}), ""), "issuer"},
		{"wrong aud", pk, sign(t, jwt.SigningMethodRS256, k.rsa, claims("u2", time.Hour, map[string]any{"iss": "https://issuer.test", "aud": "other"}), ""), "audience"},
		{"missing sub", hs, sign(t, jwt.SigningMethodHS256, secret, claims("", time.Hour, nil), ""), "no sub"},
		{"subscription token used to connect", hs, sign(t, jwt.SigningMethodHS256, secret, claims("u1", time.Hour, map[string]any{"room": "private:1"}), ""), "subscription token"},
		{"malformed", hs, "not.a.token", "malformed"},
		{"empty", hs, "", "malformed"},
		{"huge", hs, strings.Repeat("a", MaxTokenLen+1), "invalid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			creds, err := tt.v.Authenticate(ctx, tt.token)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("want valid, got %v", err)
				}
				if creds.UserID == "" || creds.ExpiresAt.IsZero() {
					t.Fatalf("bad credentials %+v", creds)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("want error containing %q, got %v (creds %+v)", tt.wantErr, err, creds)
			}
		})
	}

	creds, err := hs.Authenticate(ctx, tests[0].token)
	if err != nil {
		t.Fatal(err)
	}
	if creds.UserID != "u1" || len(creds.Rooms) != 1 || creds.Rooms[0] != "team:1" || string(creds.Info) != `{"name":"Ann"}` {
		t.Errorf("claims not carried: %+v (info %s)", creds, creds.Info)
	}
}

// respell returns the other spellings of a token's signature that a
// lenient base64url decoder reads as the same bytes: the last character
// with different unused low bits, and the padded form.
func respell(t *testing.T, token string) []string {
	t.Helper()
	i := strings.LastIndexByte(token, '.')
	head, sig := token[:i+1], token[i+1:]
	want, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		t.Fatal(err)
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	var out []string
	for _, c := range alphabet {
		alt := sig[:len(sig)-1] + string(c)
		if alt == sig {
			continue
		}
		if b, err := base64.RawURLEncoding.DecodeString(alt); err == nil && string(b) == string(want) {
			out = append(out, head+alt)
		}
	}
	if len(out) == 0 {
		t.Fatalf("signature %q has no unused bits to vary", sig)
	}
	return append(out, head+base64.URLEncoding.EncodeToString(want))
}

func TestNonCanonicalSignatureRefused(t *testing.T) {
	k := newKeys(t)
	hs, err := NewJWT(JWTOptions{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	pk, err := NewJWT(JWTOptions{PublicKeyFiles: []string{k.rsaPEM, k.ecPEM}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		v     *JWT
		token string
	}{
		{"HS256", hs, sign(t, jwt.SigningMethodHS256, secret, claims("u1", time.Hour, nil), "")},
		{"RS256", pk, sign(t, jwt.SigningMethodRS256, k.rsa, claims("u2", time.Hour, nil), "")},
		{"ES256", pk, sign(t, jwt.SigningMethodES256, k.ec, claims("u3", time.Hour, nil), "")},
	} {
		if _, err := tc.v.Authenticate(ctx, tc.token); err != nil {
			t.Fatalf("%s: canonical token refused: %v", tc.name, err)
		}
		alts := respell(t, tc.token)
		for _, alt := range alts {
			if creds, err := tc.v.Authenticate(ctx, alt); err == nil {
				t.Errorf("%s: re-spelt signature %q accepted as %q", tc.name, alt[strings.LastIndexByte(alt, '.')+1:], creds.UserID)
			}
		}
		t.Logf("%s: %d other spellings refused", tc.name, len(alts))
	}
	sub := sign(t, jwt.SigningMethodHS256, secret, claims("u1", time.Hour, map[string]any{"room": "private:1"}), "")
	for _, alt := range respell(t, sub) {
		if err := hs.VerifySubscription(ctx, alt, "private:1", "u1"); err == nil {
			t.Errorf("re-spelt subscription token %q accepted", alt)
		}
	}
	strNbf := sign(t, jwt.SigningMethodHS256, secret, claims("u1", time.Hour, map[string]any{"room": "private:1", "nbf": "1"}), "")
	if err := hs.VerifySubscription(ctx, strNbf, "private:1", "u1"); err == nil {
		t.Error("subscription token with a string nbf accepted")
	}
}

func TestVerifySubscription(t *testing.T) {
	hs, err := NewJWT(JWTOptions{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tok := sign(t, jwt.SigningMethodHS256, secret, claims("u1", time.Hour, map[string]any{"room": "private:1"}), "")
	if err := hs.VerifySubscription(ctx, tok, "private:1", "u1"); err != nil {
		t.Fatalf("valid subscription token: %v", err)
	}
	if err := hs.VerifySubscription(ctx, tok, "private:2", "u1"); err == nil {
		t.Error("token for another room accepted")
	}
	if err := hs.VerifySubscription(ctx, tok, "private:1", "u2"); err == nil {
		t.Error("token of another user accepted (foreign subscription token)")
	}
	expired := sign(t, jwt.SigningMethodHS256, secret, claims("u1", -time.Hour, map[string]any{"room": "private:1"}), "")
	if err := hs.VerifySubscription(ctx, expired, "private:1", "u1"); err == nil {
		t.Error("expired subscription token accepted")
	}
}

func FuzzAuthenticate(f *testing.F) {
	hs, err := NewJWT(JWTOptions{Secret: secret})
	if err != nil {
		f.Fatal(err)
	}
	good, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "u", "exp": time.Now().Add(time.Hour).Unix()}).SignedString(secret)
	f.Add(good)
	f.Add("")
	f.Add("eyJhbGciOiJub25lIn0.eyJzdWIiOiJ1In0.")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, token string) {
		creds, err := hs.Authenticate(context.Background(), token)
		if err == nil && (creds == nil || creds.UserID == "") {
			t.Fatalf("accepted a token without a user: %q", token)
		}
		if err == nil && token != good {
			// Only a correctly signed token can pass; the fuzzer cannot
			// forge HMAC, so anything else accepted is a bug.
			parts := strings.Split(token, ".")
			if len(parts) != 3 {
				t.Fatalf("accepted malformed token %q", token)
			}
		}
	})
}
