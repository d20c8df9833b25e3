package nats

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-rt/switchboard/engine"
)

// Bans live in a JetStream key-value bucket, SWITCHBOARD_<prefix>_BANS:
// key = the user id in unpadded base64url (KV keys allow few characters),
// value = the ban's end in Unix ms. A ban is read as over once that time
// has passed, and its entry is then deleted; lifting deletes it at once.
// A bucket-wide MaxAge cannot express bans of different lengths, and
// per-message TTLs need NATS 2.11, so the expiry is in the value.

var _ engine.BanStore = (*Engine)(nil)

// banBucket is the engine's handle on the bucket, made on first use.
type banBucket struct {
	mu sync.Mutex
	kv jetstream.KeyValue
}

func (e *Engine) banBucketName() string { return e.histStream + "_BANS" }

// banKV returns the bucket, creating it if needed. Core-only mode has no
// JetStream and so no shared bans.
func (e *Engine) banKV(ctx context.Context) (jetstream.KeyValue, error) {
	b, err := e.box()
	if err != nil {
		return nil, err
	}
	if b.js == nil {
		return nil, fmt.Errorf("nats: bans across nodes need JetStream (core-only mode): %w", errors.ErrUnsupported)
	}
	e.bans.mu.Lock()
	defer e.bans.mu.Unlock()
	if e.bans.kv != nil {
		return e.bans.kv, nil
	}
	storage := jetstream.FileStorage
	if e.opts.MemoryStorage {
		storage = jetstream.MemoryStorage
	}
	ctx, cancel := e.opCtx(ctx)
	defer cancel()
	kv, err := b.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      e.banBucketName(),
		Description: "Switchboard bans",
		History:     1,
		Storage:     storage,
		Replicas:    e.opts.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("nats: bans bucket %s: %w", e.banBucketName(), err)
	}
	e.bans.kv = kv
	return kv, nil
}

// banGone forgets the bucket handle after an error that says the bucket
// is not there (the server lost its data), so that the next call makes it
// again.
func (e *Engine) banGone(err error) {
	if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrNoStreamResponse) {
		e.bans.mu.Lock()
		e.bans.kv = nil
		e.bans.mu.Unlock()
	}
}

func banKey(user string) string { return base64.RawURLEncoding.EncodeToString([]byte(user)) }

// SetBan implements engine.BanStore.
func (e *Engine) SetBan(ctx context.Context, user string, until time.Time) error {
	kv, err := e.banKV(ctx)
	if err != nil {
		return err
	}
	ctx, cancel := e.opCtx(ctx)
	defer cancel()
	if until.IsZero() || !until.After(time.Now()) {
		err = kv.Delete(ctx, banKey(user))
	} else {
		_, err = kv.Put(ctx, banKey(user), []byte(strconv.FormatInt(until.UnixMilli(), 10)))
	}
	if err != nil {
		e.banGone(err)
		return fmt.Errorf("nats: store ban: %w", err)
	}
	return nil
}

// BanUntil implements engine.BanStore.
func (e *Engine) BanUntil(ctx context.Context, user string) (time.Time, error) {
	kv, err := e.banKV(ctx)
	if err != nil {
		return time.Time{}, err
	}
	ctx, cancel := e.opCtx(ctx)
	defer cancel()
	ent, err := kv.Get(ctx, banKey(user))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return time.Time{}, nil
	}
	if err != nil {
		e.banGone(err)
		return time.Time{}, fmt.Errorf("nats: read ban: %w", err)
	}
	ms, err := strconv.ParseInt(string(ent.Value()), 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("nats: ban entry %q: %w", ent.Value(), err)
	}
	until := time.UnixMilli(ms)
	if !until.After(time.Now()) {
		// Over: tidy the entry, unless it was replaced meanwhile.
		_ = kv.Delete(ctx, banKey(user), jetstream.LastRevision(ent.Revision()))
		return time.Time{}, nil
	}
	return until, nil
}
