package broker

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/protocol"
)

func TestEpochs(t *testing.T) {
	a, b := NewEpochs(), NewEpochs()
	seen := map[string]bool{}
	for range 1000 {
		for _, g := range []*Epochs{a, b} {
			e := g.Next()
			if seen[e] {
				t.Fatalf("epoch %q repeated", e)
			}
			seen[e] = true
			if _, ok := protocol.ParseEventID(e + "-1"); !ok || len(e) > 32 {
				t.Fatalf("epoch %q is not a valid epoch", e)
			}
		}
	}
	if s := RandomBase36(40); len(s) != 40 || strings.Trim(s, "abcdefghijklmnopqrstuvwxyz0123456789") != "" {
		t.Errorf("RandomBase36(40) = %q", s)
	}
}

func TestSortPresence(t *testing.T) {
	list := []engine.ClientInfo{{UserID: "b", ConnectionID: "1"}, {UserID: "a", ConnectionID: "9"}, {UserID: "a", ConnectionID: "2"}}
	SortPresence(list)
	if got := fmt.Sprint(list); got != "[{a 2 []} {a 9 []} {b 1 []}]" {
		t.Errorf("sorted: %s", got)
	}
}

func TestPresenceTTL(t *testing.T) {
	if d, err := PresenceTTL("x", 0, time.Minute); err != nil || d != time.Minute {
		t.Errorf("unset: %v %v, want the default", d, err)
	}
	if d, err := PresenceTTL("x", 3*time.Second, time.Minute); err != nil || d != 3*time.Second {
		t.Errorf("3s: %v %v", d, err)
	}
	if _, err := PresenceTTL("x", 500*time.Millisecond, time.Minute); err == nil || !strings.HasPrefix(err.Error(), "x: PresenceTTL 500ms is below the minimum 1s") {
		t.Errorf("500ms: %v, want the minimum named", err)
	}
	if _, err := PresenceTTL("x", -time.Second, time.Minute); err == nil {
		t.Errorf("negative accepted")
	}
}

func TestSleepCtx(t *testing.T) {
	if !SleepCtx(context.Background(), time.Millisecond) {
		t.Error("a sleep without cancel reported cancel")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if SleepCtx(ctx, time.Hour) {
		t.Error("a cancelled sleep reported a full sleep")
	}
}
