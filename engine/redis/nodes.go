package redis

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/rueidis"

	"github.com/switchboard-rt/switchboard/engine"
)

var _ engine.NodeStats = (*Engine)(nil)

// Node stats live under one hash tag so that, in a cluster, the index set
// and every node's key share a slot and one MGET reads them all.
func (e *Engine) nodesKey() string           { return e.opts.KeyPrefix + "{nodes}" }
func (e *Engine) nodeKey(node string) string { return e.opts.KeyPrefix + "{nodes}:" + node }

// ReportNode implements engine.NodeStats: the snapshot is a key with a TTL,
// indexed in a set that readers prune of expired nodes.
func (e *Engine) ReportNode(ctx context.Context, node string, stats []byte, ttl time.Duration) error {
	c, err := e.redis()
	if err != nil {
		return err
	}
	cmds := rueidis.Commands{
		c.B().Set().Key(e.nodeKey(node)).Value(rueidis.BinaryString(stats)).Px(ttl).Build(),
		c.B().Sadd().Key(e.nodesKey()).Member(node).Build(),
	}
	for _, r := range c.DoMulti(ctx, cmds...) {
		if err := r.Error(); err != nil {
			return fmt.Errorf("redis: report node stats: %w", err)
		}
	}
	return nil
}

// Nodes implements engine.NodeStats.
func (e *Engine) Nodes(ctx context.Context) (map[string][]byte, error) {
	c, err := e.redis()
	if err != nil {
		return nil, err
	}
	ids, err := c.Do(ctx, c.B().Smembers().Key(e.nodesKey()).Build()).AsStrSlice()
	if err != nil {
		return nil, fmt.Errorf("redis: list nodes: %w", err)
	}
	out := make(map[string][]byte, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = e.nodeKey(id)
	}
	vals, err := c.Do(ctx, c.B().Mget().Key(keys...).Build()).ToArray()
	if err != nil {
		return nil, fmt.Errorf("redis: read node stats: %w", err)
	}
	var gone []string
	for i, v := range vals {
		s, err := v.ToString()
		if err != nil { // nil: the node stopped reporting and its key expired
			gone = append(gone, ids[i])
			continue
		}
		out[ids[i]] = []byte(s)
	}
	if len(gone) > 0 {
		_ = c.Do(ctx, c.B().Srem().Key(e.nodesKey()).Member(gone...).Build()).Error()
	}
	return out, nil
}
