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

// kvBucket is the engine's handle on a key-value bucket, made on first
// use (bans here, room occupancy in occupancy.go).
type kvBucket struct {
	mu sync.Mutex
	kv jetstream.KeyValue
}

func (e *Engine) banBucketName() string { return e.histStream + "_BANS" }

// banKV returns the bucket, creating it if needed. Core-only mode has no
// JetStream and so no shared bans.
func (e *Engine) banKV(ctx context.Context) (jetstream.KeyValue, error) {
	return e.bucket(ctx, &e.bans, "bans", jetstream.KeyValueConfig{Bucket: e.banBucketName(), Description: "Switchboard bans"})
}

// bucket returns h's bucket, creating it with cfg (history 1, the
// engine's storage and replicas) if needed. what names it in errors.
func (e *Engine) bucket(ctx context.Context, h *kvBucket, what string, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	b, err := e.box()
	if err != nil {
		return nil, err
	}
	if b.js == nil {
		return nil, fmt.Errorf("nats: %s across nodes need JetStream (core-only mode): %w", what, errors.ErrUnsupported)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.kv != nil {
		return h.kv, nil
	}
	cfg.History = 1
	cfg.Storage = jetstream.FileStorage
	if e.opts.MemoryStorage {
		cfg.Storage = jetstream.MemoryStorage
	}
	cfg.Replicas = e.opts.Replicas
	ctx, cancel := e.opCtx(ctx)
	defer cancel()
	kv, err := b.js.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("nats: %s bucket %s: %w", what, cfg.Bucket, err)
	}
	h.kv = kv
	return kv, nil
}

// banGone forgets the bucket handle after an error that says the bucket
// is not there (the server lost its data), so that the next call makes it
// again.
func (e *Engine) banGone(err error) { bucketGone(&e.bans, err) }

func bucketGone(h *kvBucket, err error) {
	if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) || errors.Is(err, jetstream.ErrNoStreamResponse) {
		h.mu.Lock()
		h.kv = nil
		h.mu.Unlock()
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
