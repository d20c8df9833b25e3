package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/switchboard-rt/switchboard/protocol"
)

// establish makes a connection active: as the user of creds, or anonymous
// with nil. ref is the id of the `auth` request that led here, if any.
func (c *Client) establish(creds *Credentials, ref string) {
	h := c.hub
	c.mu.Lock()
	if c.gone {
		c.mu.Unlock()
		return
	}
	c.pending = false
	if c.authTimer != nil {
		c.authTimer.Stop()
		c.authTimer = nil
	}
	if creds == nil {
		c.userID, c.anonymous = "anon-"+randomID(6), true
	} else {
		c.userID, c.creds = creds.UserID, creds
	}
	c.mu.Unlock()

	if !c.anonymous {
		if h.Banned(c.userID) {
			c.sink.Close(protocol.NewDisconnect(protocol.CloseBanned, "user is banned"))
			return
		}
		if max := h.opts.MaxConnectionsPerUser; max > 0 && h.UserConnections(c.userID) >= max {
			c.sink.Close(protocol.NewDisconnect(protocol.CloseBanned, fmt.Sprintf("too many connections for this user (limit %d)", max)))
			return
		}
	}
	h.addUser(c)
	c.sendEnvelope(&protocol.Envelope{
		Type: protocol.TypeConnectionEstablished,
		ID:   ref,
		Data: protocol.EncodeData(protocol.ConnectionEstablished{
			UserID:            c.userID,
			ConnectionID:      c.id,
			ServerTime:        time.Now().UnixMilli(),
			HeartbeatInterval: c.heartbeat.Milliseconds(),
			ProtocolVersion:   protocol.Version,
			Node:              h.opts.NodeID,
			ExpiresAt:         expiresAtMillis(creds),
			JSONPing:          c.jsonPing,
			Transport:         c.transport,
			Session:           c.session(),
		}),
	})
	c.scheduleExpiry()
	c.mu.Lock()
	c.announced = true
	c.mu.Unlock()
	if hook := h.opts.Hooks.OnConnect; hook != nil {
		hook(c.connectionInfo())
	}
}

func expiresAtMillis(creds *Credentials) int64 {
	if creds == nil || creds.ExpiresAt.IsZero() {
		return 0
	}
	return creds.ExpiresAt.UnixMilli()
}

func (h *Hub) addUser(c *Client) {
	us := h.connShard(c.userID)
	us.mu.Lock()
	set := us.users[c.userID]
	if set == nil {
		set = make(map[*Client]struct{}, 1)
		us.users[c.userID] = set
	}
	set[c] = struct{}{}
	us.mu.Unlock()
}

func (h *Hub) removeUser(c *Client) {
	us := h.connShard(c.userID)
	us.mu.Lock()
	if set := us.users[c.userID]; set != nil {
		delete(set, c)
		if len(set) == 0 {
			delete(us.users, c.userID)
		}
	}
	us.mu.Unlock()
}

// authDeadline runs when a pending connection did not authenticate in time.
func (c *Client) authDeadline() {
	c.mu.Lock()
	pending := c.pending && !c.gone
	c.mu.Unlock()
	if !pending {
		return
	}
	if c.hub.opts.Auth.AllowAnonymous {
		c.establish(nil, "")
		return
	}
	c.sink.Close(protocol.NewDisconnect(protocol.CloseUnauthorized, "no auth frame within the auth timeout"))
}

// handlePending runs a frame of a connection that has not authenticated:
// only auth and ping are allowed (with AllowAnonymous, any other frame
// makes the connection anonymous first).
func (c *Client) handlePending(ctx context.Context, env *protocol.Envelope) bool {
	h := c.hub
	switch env.Type {
	case protocol.TypePing:
		c.sendEnvelope(&protocol.Envelope{Type: protocol.TypePong, ID: env.ID})
		return true
	case protocol.TypePong:
		return true // a heartbeat answer: the transport already saw a sign of life
	case protocol.TypeAuth:
		var a protocol.AuthData
		if len(env.Data) > 0 {
			if err := json.Unmarshal(env.Data, &a); err != nil {
				c.sink.Close(protocol.NewDisconnect(protocol.CloseUnauthorized, "auth data must be {\"token\": string}"))
				return true
			}
		}
		if a.Token == "" {
			if h.opts.Auth.AllowAnonymous {
				c.establish(nil, env.ID)
				return true
			}
			c.sink.Close(protocol.NewDisconnect(protocol.CloseUnauthorized, "auth needs a token"))
			return true
		}
		creds, err := h.opts.Auth.Authenticator.Authenticate(ctx, a.Token)
		if err != nil || creds == nil || creds.UserID == "" {
			h.stats.authFailures.Add(1)
			c.sink.Close(protocol.NewDisconnect(protocol.CloseUnauthorized, "invalid token: "+errText(err)))
			return true
		}
		c.establish(creds, env.ID)
		return true
	}
	if h.opts.Auth.AllowAnonymous {
		c.establish(nil, "")
		return false // go on and run the frame as the anonymous user
	}
	c.sink.Close(protocol.NewDisconnect(protocol.CloseUnauthorized, "authenticate first: send {\"type\":\"auth\",\"data\":{\"token\":...}}"))
	return true
}

func errText(err error) string {
	if err == nil {
		return "no user id"
	}
	return err.Error()
}

// refresh replaces the credentials of an authenticated connection with
// those of a new token for the same user.
func (c *Client) refresh(ctx context.Context, env *protocol.Envelope) {
	h := c.hub
	if h.opts.Auth.Authenticator == nil || c.anonymous {
		c.sendError(protocol.Errorf(protocol.ErrBadRequest, env.ID, "refresh needs an authenticated connection"))
		return
	}
	// No data, or no token in it, is a malformed request, not a rejected
	// token: it is not an authentication failure.
	var a protocol.AuthData
	if len(env.Data) == 0 || json.Unmarshal(env.Data, &a) != nil || a.Token == "" {
		c.sendError(protocol.Errorf(protocol.ErrBadRequest, env.ID, "refresh data must be {\"token\": string}"))
		return
	}
	creds, err := h.opts.Auth.Authenticator.Authenticate(ctx, a.Token)
	if err != nil || creds == nil {
		h.stats.authFailures.Add(1)
		c.sendError(protocol.Errorf(protocol.ErrForbidden, env.ID, "refresh token rejected: %s", errText(err)))
		return
	}
	if creds.UserID != c.userID {
		c.sendError(protocol.Errorf(protocol.ErrForbidden, env.ID, "refresh token is for another user"))
		return
	}
	c.mu.Lock()
	c.creds = creds
	c.refreshed = true
	c.mu.Unlock()
	c.scheduleExpiry()
	c.sendEnvelope(&protocol.Envelope{Type: protocol.TypeRefreshed, ID: env.ID, Data: protocol.EncodeData(protocol.RefreshedData{ExpiresAt: expiresAtMillis(creds)})})
}

// scheduleExpiry arms (or re-arms) the connection's expiry: a
// session_expiring event ExpiryLead before, then close 4000.
func (c *Client) scheduleExpiry() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.expiryTimer != nil {
		c.expiryTimer.Stop()
		c.expiryTimer = nil
	}
	if c.gone || c.creds == nil || c.creds.ExpiresAt.IsZero() {
		return
	}
	exp := c.creds.ExpiresAt
	lead := c.hub.opts.Auth.ExpiryLead
	warnAt := time.Until(exp.Add(-lead))
	// A token that a refresh brought but that is already inside the lead
	// gets no new warning: warning again at once would only make the
	// client refresh again with another short token. It closes with 4000
	// at its expiry instead, and the client reconnects with a new token.
	warn := !(c.refreshed && warnAt <= 0)
	gen := c.expiryGen + 1
	c.expiryGen = gen
	fire := func() {
		c.mu.Lock()
		current := c.expiryGen == gen && !c.gone
		c.mu.Unlock()
		if !current {
			return
		}
		if time.Until(exp) > 0 {
			if warn {
				c.sendEnvelope(&protocol.Envelope{Type: protocol.TypeSessionExpiring, Data: protocol.EncodeData(protocol.SessionExpiringData{ExpiresAt: exp.UnixMilli()})})
			}
			c.mu.Lock()
			if c.expiryGen == gen && !c.gone {
				c.expiryTimer = time.AfterFunc(time.Until(exp), func() {
					c.mu.Lock()
					current := c.expiryGen == gen
					c.mu.Unlock()
					if current {
						c.sink.Close(protocol.NewDisconnect(protocol.CloseSessionExpired, "session expired: get a new token and reconnect"))
					}
				})
			}
			c.mu.Unlock()
			return
		}
		c.sink.Close(protocol.NewDisconnect(protocol.CloseSessionExpired, "session expired: get a new token and reconnect"))
	}
	if warnAt < 0 {
		warnAt = 0
	}
	c.expiryTimer = time.AfterFunc(warnAt, fire)
}

// violation counts a refused request; too many close with 4003.
func (c *Client) violation(e *protocol.Error) {
	c.hub.stats.forbidden.Add(1)
	c.sendError(e)
	c.mu.Lock()
	c.violations++
	over := c.violations > c.hub.opts.Auth.MaxViolations
	c.mu.Unlock()
	if over {
		c.sink.Close(protocol.NewDisconnect(protocol.CloseForbidden, "too many forbidden requests"))
	}
}

// grants returns the rooms the connection's token lists.
func (c *Client) grants() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.creds == nil {
		return nil
	}
	return c.creds.Rooms
}

// info returns the presence info from the connection's token.
func (c *Client) info() json.RawMessage {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.creds == nil {
		return nil
	}
	return c.creds.Info
}
