package nats

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/switchboard-rt/switchboard/engine"
)

// Occupancy lives in a JetStream key-value bucket, SWITCHBOARD_<prefix>_OCC:
// key = the room's token, value = occRecord, the nodes with members in the
// room (each with its expiry, Unix ms) and the room's generation. Every
// change is a compare-and-set on the key's revision, retried on conflict,
// so of two nodes that join at once exactly one sees the count go 0 -> 1
// (the same decision the Redis engine's script makes). Each node refreshes
// its entries with its presence (every PresenceTTL/3); a crashed node's
// entries expire and are swept by the next change. Expiries are the
// nodes' own clocks: keep them in step (NTP) to well within PresenceTTL.
// The bucket's age limit drops a room's record a week after its last
// change, as the Redis engine's generation key does. Core-only mode has no
// JetStream: Occupy and Vacate fail with errors.ErrUnsupported.

var _ engine.Occupancy = (*Engine)(nil)

const (
	// occTTL keeps a room's record (and so its generation) well beyond
	// any occupied period's end.
	occTTL = 7 * 24 * time.Hour
	// occMaxTries bounds the compare-and-set retries of one change.
	occMaxTries = 64
)

// occRecord is the JSON value of a room's key.
type occRecord struct {
	Generation uint64           `json:"g"`
	Nodes      map[string]int64 `json:"n,omitempty"` // node -> expiry, Unix ms
}

// sweep drops the entries that expired by now, except keep's.
func (r *occRecord) sweep(now int64, keep string) bool {
	swept := false
	for n, exp := range r.Nodes {
		if n != keep && exp <= now {
			delete(r.Nodes, n)
			swept = true
		}
	}
	return swept
}

// occKey is one (room, node) this engine occupies, for the refresh.
type occKey struct{ room, node string }

// localRooms is what this engine occupied and has not vacated.
type localRooms struct {
	mu sync.Mutex
	m  map[occKey]struct{}
}

func (e *Engine) occBucketName() string { return e.histStream + "_OCC" }

func occBucketConfig(e *Engine) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{Bucket: e.occBucketName(), Description: "Switchboard room occupancy", TTL: occTTL}
}

// Occupy implements engine.Occupancy.
func (e *Engine) Occupy(ctx context.Context, room, node string) (engine.OccupancyChange, error) {
	e.occRooms.mu.Lock()
	e.occRooms.m[occKey{room, node}] = struct{}{}
	e.occRooms.mu.Unlock()
	ttl := e.opts.PresenceTTL.Milliseconds()
	return e.occUpdate(ctx, room, func(r *occRecord, now int64) (engine.OccupancyChange, bool) {
		r.sweep(now, node)
		_, had := r.Nodes[node]
		var ch engine.OccupancyChange
		if len(r.Nodes) == 0 && !had {
			r.Generation++
			ch.Changed = true
		}
		if r.Nodes == nil {
			r.Nodes = make(map[string]int64, 1)
		}
		r.Nodes[node] = now + ttl
		ch.Generation = r.Generation
		return ch, true
	})
}

// Vacate implements engine.Occupancy.
func (e *Engine) Vacate(ctx context.Context, room, node string) (engine.OccupancyChange, error) {
	e.occRooms.mu.Lock()
	delete(e.occRooms.m, occKey{room, node})
	e.occRooms.mu.Unlock()
	return e.occUpdate(ctx, room, func(r *occRecord, now int64) (engine.OccupancyChange, bool) {
		_, removed := r.Nodes[node]
		delete(r.Nodes, node)
		swept := r.sweep(now, "")
		return engine.OccupancyChange{Changed: removed && len(r.Nodes) == 0, Generation: r.Generation}, removed || swept
	})
}

// occUpdate applies f to room's record and stores the result (when f says
// so) if nobody changed the record meanwhile; otherwise it reads it again
// and retries, a bounded number of times.
func (e *Engine) occUpdate(ctx context.Context, room string, f func(r *occRecord, now int64) (engine.OccupancyChange, bool)) (engine.OccupancyChange, error) {
	kv, err := e.bucket(ctx, &e.occ, "room occupancy", occBucketConfig(e))
	if err != nil {
		return engine.OccupancyChange{}, err
	}
	ctx, cancel := e.opCtx(ctx)
	defer cancel()
	key := token(room)
	for range occMaxTries {
		var rec occRecord
		var rev uint64
		ent, err := kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			bucketGone(&e.occ, err)
			return engine.OccupancyChange{}, fmt.Errorf("nats: read occupancy of %q: %w", room, err)
		default:
			rev = ent.Revision()
			if err := json.Unmarshal(ent.Value(), &rec); err != nil {
				return engine.OccupancyChange{}, fmt.Errorf("nats: occupancy record of %q: %w", room, err)
			}
		}
		ch, write := f(&rec, time.Now().UnixMilli())
		if !write {
			return ch, nil
		}
		data, err := json.Marshal(&rec)
		if err != nil {
			return engine.OccupancyChange{}, fmt.Errorf("nats: occupancy record of %q: %w", room, err)
		}
		if rev == 0 {
			_, err = kv.Create(ctx, key, data)
		} else {
			_, err = kv.Update(ctx, key, data, rev)
		}
		if err == nil {
			return ch, nil
		}
		if !casConflict(err) {
			bucketGone(&e.occ, err)
			return engine.OccupancyChange{}, fmt.Errorf("nats: store occupancy of %q: %w", room, err)
		}
	}
	return engine.OccupancyChange{}, fmt.Errorf("nats: occupancy of %q: %d conflicting updates in a row", room, occMaxTries)
}

// casConflict reports that a Create or Update lost a race: the key's
// revision was not the one read.
func casConflict(err error) bool {
	var api *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) ||
		(errors.As(err, &api) && api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence)
}

// refreshOccupancy pushes back the expiry of this engine's entries without
// deciding anything. Errors are left for the next round.
func (e *Engine) refreshOccupancy() {
	b := e.conn.Load()
	if b == nil || b.js == nil {
		return
	}
	e.occRooms.mu.Lock()
	keys := make([]occKey, 0, len(e.occRooms.m))
	for k := range e.occRooms.m {
		keys = append(keys, k)
	}
	e.occRooms.mu.Unlock()
	ttl := e.opts.PresenceTTL.Milliseconds()
	for _, k := range keys {
		if e.ctx.Err() != nil {
			return
		}
		_, _ = e.occUpdate(e.ctx, k.room, func(r *occRecord, now int64) (engine.OccupancyChange, bool) {
			r.sweep(now, k.node)
			if r.Nodes == nil {
				r.Nodes = make(map[string]int64, 1)
			}
			r.Nodes[k.node] = now + ttl
			return engine.OccupancyChange{}, true
		})
	}
}
