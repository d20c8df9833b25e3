package auth

import (
	"context"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func TestVerifySubscriptionExpiry(t *testing.T) {
	hs, err := NewJWT(JWTOptions{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tok := sign(t, jwt.SigningMethodHS256, secret, claims("u1", time.Hour, map[string]any{"room": "private:1"}), "")
	exp, err := hs.VerifySubscriptionExpiry(ctx, tok, "private:1", "u1")
	if err != nil {
		t.Fatalf("valid subscription token: %v", err)
	}
	// The grant ends with the token: exp plus the 5 s leeway it is accepted with.
	if d := time.Until(exp) - time.Hour - 5*time.Second; d > 2*time.Second || d < -2*time.Second {
		t.Errorf("expiry %v is not exp + 5 s (off by %v)", exp, d)
	}
	if _, err := hs.VerifySubscriptionExpiry(ctx, tok, "private:2", "u1"); err == nil {
		t.Error("token for another room accepted")
	}
}
