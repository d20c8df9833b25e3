package loadtest

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// ms formats a duration in milliseconds.
func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

func kib(b float64) string { return fmt.Sprintf("%.1f KiB", b/1024) }

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// WriteText prints a run's figures for people.
func (r *Result) WriteText(w io.Writer) {
	fmt.Fprintf(w, "== %s: %d subscribers", r.Name, r.Subs)
	if r.Transport != "" && r.Transport != TransportWebSocket {
		fmt.Fprintf(w, " over %s", r.Transport)
	}
	fmt.Fprintf(w, ", %d room(s), ", r.Rooms)
	if r.Idle() {
		fmt.Fprintf(w, "idle for %s, %d worker(s)\n", r.Duration, r.Workers)
	} else {
		fmt.Fprintf(w, "%.0f publishes/s for %s, %d worker(s)\n", r.Rate, r.Duration, r.Workers)
	}
	fmt.Fprintf(w, "  connect      %d ok, %d failed in %.2f s: %.0f connections/s", r.Connected, r.ConnectFailed, r.ConnectSeconds, r.ConnectsPerSec)
	if r.ServerPID != 0 {
		fmt.Fprintf(w, ", server CPU %.1f µs/connection", r.ConnectCPUPerConnUS)
	}
	fmt.Fprintf(w, "\n  subscribe    %d ok in %.2f s\n", r.Subscribed, r.SubscribeSeconds)
	if !r.Idle() {
		fmt.Fprintf(w, "  publish      %d publishes (worst lag behind schedule %s)\n", r.Publishes, ms(r.PublisherBehind))
		fmt.Fprintf(w, "  delivered    %d of %d expected, %.0f/s; lost %d, undelivered at the end %d, out of order %d\n",
			r.Delivered, r.Expected, r.DeliveredPerSec, r.Lost, r.Undelivered, r.OutOfOrder)
		fmt.Fprintf(w, "  latency      p50 %s  p99 %s  p99.9 %s  max %s  mean %s\n", ms(r.P50), ms(r.P99), ms(r.P999), ms(r.Max), ms(r.Mean))
	}
	if r.ServerPID != 0 {
		fmt.Fprintf(w, "  server CPU   %.2f s", r.ServerCPU.Seconds())
		if !r.Idle() {
			fmt.Fprintf(w, " while publishing: %.2f µs per delivered message", r.CPUPerDeliveryUS)
			if r.WritesPerDelivery > 0 {
				fmt.Fprintf(w, "; %.3f write calls per message, %.2f µs per write call", r.WritesPerDelivery, r.CPUPerWriteUS)
			}
		} else {
			fmt.Fprintf(w, " while holding")
		}
		fmt.Fprintf(w, "\n  server RSS   %s before, %s subscribed, %s at the end: %s per connection; %d threads\n",
			mib(r.RSSBefore), mib(r.RSSSubscribed), mib(r.RSSEnd), kib(r.RSSPerConn), r.ServerThreads)
	}
	fmt.Fprintf(w, "  machine      clients used %.2f s of CPU in that phase; other processes %.0f%% of the machine\n", r.ClientCPU.Seconds(), 100*r.OtherLoad)
	fmt.Fprintf(w, "  at the end   %d connections open, %d pings answered, %d error events", r.Open, r.Pings, r.ErrorEvents)
	if len(r.Closes) > 0 {
		codes := make([]string, 0, len(r.Closes))
		for c, n := range r.Closes {
			codes = append(codes, fmt.Sprintf("%s x%d", c, n))
		}
		sort.Strings(codes)
		fmt.Fprintf(w, ", closes: %s", strings.Join(codes, ", "))
	}
	fmt.Fprintln(w)
	if r.FirstError != "" {
		fmt.Fprintf(w, "  first error  %s\n", r.FirstError)
	}
}

// WriteText prints a floor run's figures for people.
func (f *FloorResult) WriteText(w io.Writer) {
	fmt.Fprintf(w, "== floor: %d connections, %d-byte frames, %d frame(s) per write, %.0f frames/s each for %s\n",
		f.Conns, f.FrameSize, f.FramesPerWrite, f.Rate, f.Duration)
	fmt.Fprintf(w, "  writes       %d (%d frames, %d errors), %d bytes written, %d read; worst lag %s\n",
		f.Writes, f.Frames, f.WriteErrors, f.BytesWritten, f.BytesRead, ms(f.Behind))
	fmt.Fprintf(w, "  writer CPU   %.2f s: %.2f µs per write, %.2f µs per frame\n", f.CPU.Seconds(), f.CPUPerWriteUS, f.CPUPerFrameUS)
	fmt.Fprintf(w, "  latency      p50 %s  p99 %s  max %s (from the round's start to the read)\n", ms(f.P50), ms(f.P99), ms(f.Max))
	fmt.Fprintf(w, "  machine      reader used %.2f s of CPU; other processes %.0f%% of the machine\n", f.ReaderCPU.Seconds(), 100*f.OtherLoad)
}
