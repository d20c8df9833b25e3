package hub

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/engine/memory"
	"github.com/switchboard-rt/switchboard/protocol"
)

// TestStreamGapNotice: an engine's HandleGap reaches the room's members as
// a stream_gap event naming the gap, except members whose subscription
// started at or after its end (their own history read covered it); a gap
// whose end is unknown reaches every member; a room without local
// members is ignored.
func TestStreamGapNotice(t *testing.T) {
	eng := memory.New(memory.Options{})
	h := newHub(t, Options{Engine: eng, NoJoinLeave: true})
	ctx := context.Background()
	early, es := connect(t, h, "early")
	subscribe(t, early, es, "r")
	var last string
	for range 8 {
		res, err := h.Publish(ctx, "r", "message", json.RawMessage(`{}`), PublishOptions{})
		if err != nil {
			t.Fatal(err)
		}
		last = res.EventID
	}
	late, ls := connect(t, h, "late")
	if d := subscribe(t, late, ls, "r"); d.Position != last {
		t.Fatalf("late subscriber at %s, want %s", d.Position, last)
	}
	top, _ := protocol.ParseEventID(last)
	at := func(off uint64) protocol.StreamPosition {
		return protocol.StreamPosition{Epoch: top.Epoch, Offset: off}
	}
	eh := (*engineHandler)(h)

	eh.HandleGap("r", engine.Gap{After: at(2), Until: at(5), Reason: engine.GapEvicted})
	gaps := es.ofType(t, protocol.TypeStreamGap)
	if len(gaps) != 1 {
		t.Fatalf("early member got %d stream_gap events, want 1:%s", len(gaps), es.dump(t))
	}
	g := gaps[0]
	d := decodeData[StreamGapData](t, g)
	if g.Room != "r" || g.ID != "" || g.TS == 0 || d.After != at(2).EventID() || d.Until != at(5).EventID() || d.Reason != engine.GapEvicted {
		t.Errorf("stream_gap = %+v data %+v, want room r, no id, a ts, after %s until %s reason evicted", g, d, at(2).EventID(), at(5).EventID())
	}
	if n := ls.count(t, protocol.TypeStreamGap); n != 0 {
		t.Errorf("a member that subscribed after the gap got %d stream_gap events", n)
	}

	// A lost stream: the end is in a new epoch, which no member started in.
	eh.HandleGap("r", engine.Gap{After: at(8), Until: protocol.StreamPosition{Epoch: "zz", Offset: 40}, Reason: engine.GapStreamLost})
	// An unknown end reaches everyone.
	eh.HandleGap("r", engine.Gap{After: at(8), Reason: engine.GapUnavailable})
	for name, s := range map[string]*fakeSink{"early": es, "late": ls} {
		gaps := s.ofType(t, protocol.TypeStreamGap)
		if len(gaps) < 2 {
			t.Fatalf("%s member got %d stream_gap events, want the lost stream's and the unknown one:%s", name, len(gaps), s.dump(t))
		}
		lost := decodeData[StreamGapData](t, gaps[len(gaps)-2])
		unknown := decodeData[StreamGapData](t, gaps[len(gaps)-1])
		if lost.Until != "zz-40" || lost.Reason != engine.GapStreamLost {
			t.Errorf("%s member: lost-stream notice %+v", name, lost)
		}
		if unknown.Until != "" || unknown.After != at(8).EventID() || unknown.Reason != engine.GapUnavailable {
			t.Errorf("%s member: unknown-end notice %+v, want no until", name, unknown)
		}
		raw := string(gaps[len(gaps)-1].frame.JSON)
		if want := `"data":{"after":"` + at(8).EventID() + `","reason":"unavailable"}`; !strings.Contains(raw, want) {
			t.Errorf("%s member: frame %s does not carry %s", name, raw, want)
		}
	}
	eh.HandleGap("nobody-here", engine.Gap{Until: at(1), Reason: engine.GapEvicted}) // no members: nothing to do
}
