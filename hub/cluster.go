package hub

import (
	"context"
	"encoding/json"
	"sort"
	"time"

	"github.com/switchboard-rt/switchboard/engine"
)

// Node statistics are reported this often, and live three times as long,
// so a node that stops reporting leaves the listing within 15 s.
const (
	statsReportInterval = 5 * time.Second
	statsTTL            = 3 * statsReportInterval
)

// reportStats publishes this node's stats through engines that share them.
func (h *Hub) reportStats(ctx context.Context, ns engine.NodeStats) {
	report := func() {
		b, err := json.Marshal(h.Stats())
		if err != nil {
			return
		}
		rctx, cancel := context.WithTimeout(ctx, statsReportInterval)
		defer cancel()
		if err := ns.ReportNode(rctx, h.opts.NodeID, b, statsTTL); err != nil && ctx.Err() == nil {
			h.stats.engineErrors.Add(1)
			h.log.Warn("hub: reporting node stats failed", "err", err)
		}
	}
	report()
	t := time.NewTicker(statsReportInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			report()
		}
	}
}

// ClusterStats returns every live node's stats, this node's current ones
// first; other nodes' are at most a few seconds old. With an engine that
// does not share stats it is just this node.
func (h *Hub) ClusterStats(ctx context.Context) ([]Stats, error) {
	self := h.Stats()
	ns, ok := h.eng.(engine.NodeStats)
	if !ok {
		return []Stats{self}, nil
	}
	nodes, err := ns.Nodes(ctx)
	if err != nil {
		h.stats.engineErrors.Add(1)
		return []Stats{self}, err
	}
	out := []Stats{self}
	ids := make([]string, 0, len(nodes))
	for id := range nodes {
		if id != h.opts.NodeID {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	for _, id := range ids {
		var s Stats
		if json.Unmarshal(nodes[id], &s) == nil {
			out = append(out, s)
		}
	}
	return out, nil
}
