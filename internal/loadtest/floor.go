package loadtest

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The floor: what writing the same bytes costs a program that does nothing
// else. A writer process holds N loopback connections to a reader process
// and, at the scenario's rate, writes one pre-encoded frame (or k frames at
// once) to each connection with one write() per recipient. Its CPU per
// write, read from /proc like the server's, is the lower bound that the
// server's CPU per delivery is compared with.
//
// Each round's frames carry the time the round started, which the reader
// compares with the time it read the frame: the floor's delivery latency,
// measured as the scenarios measure the server's (from just before the
// first write of a fan-out to the subscriber's read), so that the server's
// p99 can be read against what the machine itself allows.

// FloorConfig is one floor run.
type FloorConfig struct {
	// Exe is the switchboard binary; empty runs writer and reader on
	// goroutines of this process (tests), which makes the CPU figure that
	// of the whole process.
	Exe string
	// Conns is the number of connections (recipients). Default 1,000.
	Conns int
	// Rate is frames per second per connection. Default 100.
	Rate float64
	// Duration of the writing. Default 10 s.
	Duration time.Duration
	// FrameSize is the size of one frame on the wire. Default 140.
	FrameSize int
	// FramesPerWrite is how many frames go in one write(). Default 1. The
	// frame rate stays Rate: with 4 there is a write every 4/Rate s.
	FramesPerWrite int
	// Log receives progress lines and the children's diagnostics.
	Log io.Writer
}

// FloorResult is what a floor run measured.
type FloorResult struct {
	Conns          int           `json:"conns"`
	FramesPerWrite int           `json:"frames_per_write"`
	FrameSize      int           `json:"frame_size"`
	Rate           float64       `json:"rate"`
	Duration       time.Duration `json:"duration"`
	Writes         uint64        `json:"writes"`
	Frames         uint64        `json:"frames"`
	WriteErrors    uint64        `json:"write_errors"`
	BytesWritten   uint64        `json:"bytes_written"`
	BytesRead      uint64        `json:"bytes_read"`
	Behind         time.Duration `json:"behind_max"`
	WriterPID      int           `json:"writer_pid"`
	CPU            time.Duration `json:"cpu"`
	CPUPerWriteUS  float64       `json:"cpu_per_write_us"`
	CPUPerFrameUS  float64       `json:"cpu_per_frame_us"`
	ReaderCPU      time.Duration `json:"reader_cpu"`
	// Latency is from the start of a round (just before its first write)
	// to the reader's read of the frame, as in the scenarios.
	Latency   HistSnapshot  `json:"-"`
	P50       time.Duration `json:"p50"`
	P99       time.Duration `json:"p99"`
	Max       time.Duration `json:"max"`
	OtherLoad float64       `json:"other_load"` // see Result.OtherLoad
}

func (c *FloorConfig) fill() error {
	if c.Conns <= 0 {
		c.Conns = 1000
	}
	if c.Rate <= 0 {
		c.Rate = 100
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.FrameSize <= 0 {
		c.FrameSize = 140
	}
	if c.FramesPerWrite <= 0 {
		c.FramesPerWrite = 1
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	switch {
	case c.FrameSize < minFloorFrame || c.FrameSize > 65535:
		return fmt.Errorf("bench floor: frame size must be %d..65535 bytes", minFloorFrame)
	case c.Conns > 15000:
		return errors.New("bench floor: at most 15,000 connections (one process holds each end)")
	}
	return nil
}

// RunFloor measures the floor.
func RunFloor(ctx context.Context, c FloorConfig) (*FloorResult, error) {
	if err := c.fill(); err != nil {
		return nil, err
	}
	timeout := c.Duration + 2*time.Minute
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	wargs := []string{"--conns", strconv.Itoa(c.Conns), "--frame-size", strconv.Itoa(c.FrameSize),
		"--frames-per-write", strconv.Itoa(c.FramesPerWrite), "--timeout", timeout.String()}
	writer, err := startChild(ctx, c.Exe, "floor writer", roleFloorWriter, wargs, c.Log)
	if err != nil {
		return nil, err
	}
	defer writer.stop(5 * time.Second)
	var listening struct {
		Addr string `json:"addr"`
	}
	if err := writer.expect(ctx, "listening", 10*time.Second, &listening); err != nil {
		return nil, err
	}
	rargs := []string{"--addr", listening.Addr, "--conns", strconv.Itoa(c.Conns), "--frame-size", strconv.Itoa(c.FrameSize),
		"--timeout", timeout.String()}
	reader, err := startChild(ctx, c.Exe, "floor reader", roleFloorReader, rargs, c.Log)
	if err != nil {
		return nil, err
	}
	defer reader.stop(5 * time.Second)
	if err := reader.expect(ctx, "connected", time.Minute, nil); err != nil {
		return nil, err
	}
	if err := writer.expect(ctx, "ready", time.Minute, nil); err != nil {
		return nil, err
	}
	time.Sleep(500 * time.Millisecond)
	res := &FloorResult{Conns: c.Conns, FramesPerWrite: c.FramesPerWrite, FrameSize: c.FrameSize,
		Rate: c.Rate, Duration: c.Duration, WriterPID: writer.pid}
	rounds := int(c.Rate*c.Duration.Seconds()/float64(c.FramesPerWrite) + 0.5)
	interval := time.Duration(float64(time.Second) * float64(c.FramesPerWrite) / c.Rate)
	fmt.Fprintf(c.Log, "bench: floor: %d connections, %d frame(s) per write, %d rounds every %s\n", c.Conns, c.FramesPerWrite, rounds, interval)
	load := startLoadMeter(writer.pid, []int{reader.pid, os.Getpid()})
	before, err := ReadProc(writer.pid)
	if err != nil {
		return nil, err
	}
	if err := writer.send(map[string]any{"cmd": "run", "rounds": rounds, "interval_ns": interval}); err != nil {
		return nil, err
	}
	var done struct {
		Writes  uint64 `json:"writes"`
		Errors  uint64 `json:"errors"`
		Bytes   uint64 `json:"bytes"`
		Behind  int64  `json:"behind_ns"`
		Elapsed int64  `json:"elapsed_ns"`
	}
	if err := writer.expect(ctx, "done", c.Duration+time.Minute, &done); err != nil {
		return nil, err
	}
	after, err := ReadProc(writer.pid)
	if err != nil {
		return nil, err
	}
	res.ReaderCPU, res.OtherLoad = load.stop()
	if err := reader.send(map[string]any{"cmd": "report", "expect_bytes": done.Bytes, "drain_ns": 10 * time.Second}); err != nil {
		return nil, err
	}
	var got struct {
		Bytes   uint64       `json:"bytes"`
		Latency HistSnapshot `json:"latency"`
	}
	if err := reader.expect(ctx, "report", 30*time.Second, &got); err != nil {
		return nil, err
	}
	res.Writes, res.WriteErrors, res.BytesWritten, res.BytesRead = done.Writes, done.Errors, done.Bytes, got.Bytes
	res.Frames = done.Writes * uint64(c.FramesPerWrite)
	res.Behind = time.Duration(done.Behind)
	res.Latency = got.Latency
	res.P50, res.P99, res.Max = got.Latency.Quantile(0.50), got.Latency.Quantile(0.99), time.Duration(got.Latency.MaxNS)
	res.CPU = after.CPU - before.CPU
	if res.Writes > 0 {
		res.CPUPerWriteUS = float64(res.CPU) / float64(time.Microsecond) / float64(res.Writes)
		res.CPUPerFrameUS = float64(res.CPU) / float64(time.Microsecond) / float64(res.Frames)
	}
	if res.BytesRead != res.BytesWritten {
		return res, fmt.Errorf("bench floor: reader got %d bytes of %d written", res.BytesRead, res.BytesWritten)
	}
	return res, nil
}

func runFloorWriter(ctx context.Context, args []string, in io.Reader, em *emitter) error {
	fs := flag.NewFlagSet("bench floor-writer", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	conns := fs.Int("conns", 1000, "")
	size := fs.Int("frame-size", 140, "")
	k := fs.Int("frames-per-write", 1, "")
	timeout := fs.Duration("timeout", 5*time.Minute, "")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("bench floor-writer: %w", err)
	}
	if *conns < 1 || *size < minFloorFrame || *size > 65535 || *k < 1 || *k > 64 {
		return errors.New("bench floor-writer: bad --conns, --frame-size or --frames-per-write")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	cmds := commands(ctx, in)

	frame := floorFrame(*size)
	buf := make([]byte, 0, *size**k)
	for range *k {
		buf = append(buf, frame...)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("bench floor-writer: %w", err)
	}
	defer ln.Close()
	if err := em.emit(map[string]string{"event": "listening", "addr": ln.Addr().String()}); err != nil {
		return err
	}
	go func() { <-ctx.Done(); _ = ln.Close() }()
	cs := make([]net.Conn, 0, *conns)
	defer func() {
		for _, c := range cs {
			_ = c.Close()
		}
	}()
	for len(cs) < *conns {
		c, err := ln.Accept()
		if err != nil {
			return fmt.Errorf("bench floor-writer: accept: %w", err)
		}
		cs = append(cs, c)
	}
	if err := em.emit(map[string]any{"event": "ready", "conns": len(cs)}); err != nil {
		return err
	}
	for {
		m, err := nextCommand(ctx, cmds)
		if m == nil {
			return err
		}
		if cmdName(m) != "run" {
			continue
		}
		var rounds int
		var interval time.Duration
		_ = json.Unmarshal(m["rounds"], &rounds)
		_ = json.Unmarshal(m["interval_ns"], &interval)
		var writes, errs, bytes uint64
		var behind time.Duration
		start := time.Now()
		for r := 0; r < rounds && ctx.Err() == nil; r++ {
			if wait := time.Until(start.Add(time.Duration(r) * interval)); wait > 0 {
				time.Sleep(wait)
			} else {
				behind = max(behind, -wait)
			}
			// One stamp per round, in each frame of the buffer: the
			// fan-out's "just before the publish".
			now := time.Now().UnixNano()
			for f := range *k {
				stampFloorFrame(buf[f**size:(f+1)**size], now)
			}
			for _, c := range cs {
				n, err := c.Write(buf)
				writes++
				bytes += uint64(n)
				if err != nil {
					errs++
				}
			}
		}
		if err := em.emit(map[string]any{"event": "done", "writes": writes, "errors": errs, "bytes": bytes,
			"behind_ns": behind, "elapsed_ns": time.Since(start)}); err != nil {
			return err
		}
	}
}

func runFloorReader(ctx context.Context, args []string, in io.Reader, em *emitter) error {
	fs := flag.NewFlagSet("bench floor-reader", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	addr := fs.String("addr", "", "")
	conns := fs.Int("conns", 1000, "")
	size := fs.Int("frame-size", 140, "")
	timeout := fs.Duration("timeout", 5*time.Minute, "")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("bench floor-reader: %w", err)
	}
	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		return fmt.Errorf("bench floor-reader: --addr: %w", err)
	}
	if err := checkLoopback(host); err != nil {
		return err
	}
	if *size < minFloorFrame || *size > 65535 {
		return errors.New("bench floor-reader: bad --frame-size")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	cmds := commands(ctx, in)
	var total atomic.Uint64
	var hist Histogram
	var wg sync.WaitGroup
	cs := make([]net.Conn, 0, *conns)
	defer func() {
		for _, c := range cs {
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0)
			}
			_ = c.Close()
		}
		wg.Wait()
	}()
	d := &net.Dialer{Timeout: 10 * time.Second}
	for range *conns {
		c, err := d.DialContext(ctx, "tcp", *addr)
		if err != nil {
			return fmt.Errorf("bench floor-reader: %w", err)
		}
		cs = append(cs, c)
		wg.Go(func() {
			buf := make([]byte, clientReadBuffer)
			frame := make([]byte, 0, *size) // the frame being completed
			for {
				n, err := c.Read(buf)
				now := time.Now().UnixNano()
				total.Add(uint64(n))
				for p := buf[:n]; len(p) > 0; {
					m := min(len(p), *size-len(frame))
					frame = append(frame, p[:m]...)
					p = p[m:]
					if len(frame) == *size {
						if sent, ok := floorFrameStamp(frame); ok {
							hist.Record(time.Duration(now - sent))
						}
						frame = frame[:0]
					}
				}
				if err != nil {
					return
				}
			}
		})
	}
	if err := em.emit(map[string]any{"event": "connected", "conns": len(cs)}); err != nil {
		return err
	}
	for {
		m, err := nextCommand(ctx, cmds)
		if m == nil {
			return err
		}
		if cmdName(m) != "report" {
			continue
		}
		var want uint64
		var drain time.Duration
		_ = json.Unmarshal(m["expect_bytes"], &want)
		_ = json.Unmarshal(m["drain_ns"], &drain)
		deadline := time.Now().Add(drain)
		for total.Load() < want && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		if err := em.emit(map[string]any{"event": "report", "bytes": total.Load(), "latency": hist.Snapshot()}); err != nil {
			return err
		}
	}
}

// minFloorFrame is the smallest floor frame: a 2-byte header, the JSON
// around the data, and the 19-digit send time.
const minFloorFrame = 2 + len(floorDataPrefix) + floorStampLen + 2

const (
	floorDataPrefix = `{"type":"message","data":"`
	floorStampLen   = 19 // decimal Unix nanoseconds, zero-padded
)

// floorFrame returns one unmasked text frame of exactly size bytes on the
// wire (header included), its payload JSON like the server's events; the
// data starts with a send time (stampFloorFrame), zero here.
func floorFrame(size int) []byte {
	hl := 2
	if size-2 > 125 {
		hl = 4
	}
	n := size - hl
	f := make([]byte, 0, size)
	if hl == 2 {
		f = append(f, 0x81, byte(n))
	} else {
		f = append(f, 0x81, 126, byte(n>>8), byte(n))
	}
	f = append(f, floorDataPrefix...)
	for range floorStampLen {
		f = append(f, '0')
	}
	for len(f) < size-2 {
		f = append(f, 'x')
	}
	return append(f, `"}`...)
}

// floorStampAt is where the send time starts in a frame of len(f) bytes.
func floorStampAt(f []byte) int {
	if len(f)-2 > 125 {
		return 4 + len(floorDataPrefix)
	}
	return 2 + len(floorDataPrefix)
}

// stampFloorFrame writes t (Unix ns) into frame f made by floorFrame.
func stampFloorFrame(f []byte, t int64) {
	d := f[floorStampAt(f) : floorStampAt(f)+floorStampLen]
	for i := len(d) - 1; i >= 0; i-- {
		d[i] = byte('0' + t%10)
		t /= 10
	}
}

// floorFrameStamp reads the send time of frame f; false if the frame was
// never stamped or is not a floor frame.
func floorFrameStamp(f []byte) (int64, bool) {
	v, n := parseUint(f[floorStampAt(f):])
	return int64(v), n == floorStampLen && v != 0
}
