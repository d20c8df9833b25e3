package hub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Credentials are what authentication established about a connection.
type Credentials struct {
	// UserID is the user (the token's sub). Required.
	UserID string
	// Rooms are rooms the token grants (for the "token" permission).
	Rooms []string
	// Info is passed to presence as the connection's info.
	Info json.RawMessage
	// ExpiresAt is when the credentials expire; zero means never. Before
	// then the client gets session_expiring and may send `refresh`.
	ExpiresAt time.Time
}

// Authenticator verifies a connection token, wherever it came from: the
// Authorization header, a cookie, the token query parameter, or an `auth`
// or `refresh` frame. Errors are shown to the client as "unauthorized"
// with the error's text, so they must not leak secrets.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (*Credentials, error)
}

// SubscriptionVerifier verifies a subscription token: a grant for one user
// to subscribe to one private room.
type SubscriptionVerifier interface {
	VerifySubscription(ctx context.Context, token, room, userID string) error
}

// Permission says who may do something in a namespace's rooms.
type Permission string

// Permissions.
const (
	// Anyone, anonymous connections included.
	PermAnyone Permission = "anyone"
	// Authenticated users only.
	PermAuthenticated Permission = "authenticated"
	// Token: users whose token lists the room, or who present a
	// subscription token for it.
	PermToken Permission = "token"
	// Owner: the room's own user: "NS:ID" rooms where ID is the user id
	// (for example "user:42" for user 42).
	PermOwner Permission = "owner"
	// Server: nobody over the socket; only the server API.
	PermServer Permission = "server"
)

// Valid reports whether p is one of the permissions.
func (p Permission) Valid() bool {
	switch p {
	case PermAnyone, PermAuthenticated, PermToken, PermOwner, PermServer:
		return true
	}
	return false
}

// Permissions say who may subscribe to, publish in, and read the presence
// and history of a namespace's rooms. Empty fields take the hub default:
// PermAnyone without an Authenticator, PermAuthenticated with one.
type Permissions struct {
	Subscribe Permission
	Publish   Permission
	Presence  Permission
	History   Permission
}

// AuthOptions configure authentication. With a nil Authenticator every
// connection is anonymous and may do anything (the quick start).
type AuthOptions struct {
	// Authenticator verifies tokens. nil: no authentication.
	Authenticator Authenticator
	// Subscriptions verifies subscription tokens for private rooms; nil
	// means subscription tokens are refused.
	Subscriptions SubscriptionVerifier
	// AllowAnonymous lets connections without a token in as anonymous
	// users even when an Authenticator is set.
	AllowAnonymous bool
	// Timeout is how long a connection that brought no token at the
	// handshake may take to send its `auth` frame; then it is closed with
	// 4001 (or, with AllowAnonymous, let in as anonymous). Default 5 s.
	Timeout time.Duration
	// ExpiryLead is how long before its credentials expire a connection
	// gets session_expiring. Default 30 s.
	ExpiryLead time.Duration
	// MaxViolations is how many refused requests a connection may make
	// before it is closed with 4003. Default 10.
	MaxViolations int
}

// Defaults for AuthOptions.
const (
	DefaultAuthTimeout   = 5 * time.Second
	DefaultExpiryLead    = 30 * time.Second
	DefaultMaxViolations = 10
)

func (o *AuthOptions) fill() {
	if o.Timeout <= 0 {
		o.Timeout = DefaultAuthTimeout
	}
	if o.ExpiryLead <= 0 {
		o.ExpiryLead = DefaultExpiryLead
	}
	if o.MaxViolations <= 0 {
		o.MaxViolations = DefaultMaxViolations
	}
}

// resolve fills a namespace's empty permissions from the defaults.
func (p Permissions) resolve(def Permission) (Permissions, error) {
	for _, f := range []*Permission{&p.Subscribe, &p.Publish, &p.Presence, &p.History} {
		if *f == "" {
			*f = def
		}
		if !f.Valid() {
			return p, fmt.Errorf("unknown permission %q (want anyone, authenticated, token, owner or server)", *f)
		}
	}
	return p, nil
}

// allowed decides a permission for c in room. subToken reports whether a
// valid subscription token for the room was presented.
func (c *Client) allowed(p Permission, room string, subToken bool) bool {
	switch p {
	case PermAnyone:
		return true
	case PermAuthenticated:
		return !c.anonymous
	case PermToken:
		if c.anonymous {
			return false
		}
		if subToken {
			return true
		}
		for _, r := range c.grants() {
			if r == room {
				return true
			}
		}
		return false
	case PermOwner:
		i := strings.IndexByte(room, ':')
		return !c.anonymous && i > 0 && room[i+1:] == c.userID
	}
	return false
}

// ErrBanned is returned by Authenticate paths for a banned user.
var ErrBanned = errors.New("user is banned")
