//go:build bench

package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-rt/switchboard/hub"
	"github.com/switchboard-rt/switchboard/internal/loadtest"
	"github.com/switchboard-rt/switchboard/internal/wstest"
	"github.com/switchboard-rt/switchboard/server"
)

// startBenchServer serves a node on a loopback port for the test's life.
func startBenchServer(t *testing.T) string {
	t.Helper()
	return wstest.Start(t, server.Config{Hub: hub.Options{NoJoinLeave: true}, NoDemo: true, DrainTimeout: 2 * time.Second}).URL()
}

// TestBenchTinyScenario runs the load tool end to end against an
// in-process server, with its workers on goroutines: 20 subscribers in 2
// rooms over 3 workers, 20 publishes. Every subscriber must get every
// event of its room, in order; the figures must be consistent. Nothing
// about speed is asserted.
func TestBenchTinyScenario(t *testing.T) {
	url := startBenchServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var log bytes.Buffer
	res, err := loadtest.Run(ctx, loadtest.Scenario{
		Name: "tiny", URL: url, ServerPID: os.Getpid(),
		Subs: 20, Rooms: 2, Rate: 100, Duration: 200 * time.Millisecond,
		ConnsPerWorker: 8, Settle: 50 * time.Millisecond, Drain: 10 * time.Second, Log: &log,
	})
	if err != nil {
		t.Fatalf("run: %v\nlog:\n%s", err, log.String())
	}
	want := []struct {
		name      string
		got, want uint64
	}{
		{"workers", uint64(res.Workers), 3},
		{"connected", uint64(res.Connected), 20},
		{"connect failures", uint64(res.ConnectFailed), 0},
		{"subscribed", uint64(res.Subscribed), 20},
		{"publishes", uint64(res.Publishes), 20},
		{"expected deliveries (10 per room x 10 subscribers x 2 rooms)", res.Expected, 200},
		{"delivered", res.Delivered, 200},
		{"lost", res.Lost, 0},
		{"out of order", res.OutOfOrder, 0},
		{"latency samples", res.Latency.Count, 200},
		{"open at the end", uint64(res.Open), 20},
		{"error events", res.ErrorEvents, 0},
	}
	for _, w := range want {
		if w.got != w.want {
			t.Errorf("%s = %d, want %d", w.name, w.got, w.want)
		}
	}
	if !(res.P50 <= res.P99 && res.P99 <= res.Max && res.Max > 0) {
		t.Errorf("latency not ordered: p50 %v p99 %v max %v", res.P50, res.P99, res.Max)
	}
	if res.DeliveredPerSec <= 0 || res.ConnectsPerSec <= 0 {
		t.Errorf("rates not positive: %.1f delivered/s, %.1f connects/s", res.DeliveredPerSec, res.ConnectsPerSec)
	}
	if res.RSSBefore <= 0 || res.RSSEnd <= 0 || res.ServerCPU < 0 {
		t.Errorf("process figures not read: rss %d/%d cpu %v", res.RSSBefore, res.RSSEnd, res.ServerCPU)
	}
	var out bytes.Buffer
	res.WriteText(&out)
	if !strings.Contains(out.String(), "lost 0") {
		t.Errorf("report does not show the loss:\n%s", out.String())
	}
}

// TestBenchIdleScenario holds a few idle subscribers and checks they are
// all still open and counted.
func TestBenchIdleScenario(t *testing.T) {
	url := startBenchServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := loadtest.Run(ctx, loadtest.Scenario{
		Name: "idle", URL: url, ServerPID: os.Getpid(), Subs: 10, Duration: 100 * time.Millisecond,
		Settle: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Open != 10 || res.Subscribed != 10 || res.Delivered != 0 || res.Lost != 0 {
		t.Errorf("open %d subscribed %d delivered %d lost %d, want 10 10 0 0", res.Open, res.Subscribed, res.Delivered, res.Lost)
	}
	if !res.Idle() {
		t.Error("a run without a rate is not reported idle")
	}
}

// TestBenchRefusals checks the command's answers to bad invocations; none
// of them may start anything.
func TestBenchRefusals(t *testing.T) {
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"not loopback", []string{"bench", "--url", "ws://192.0.2.1:80/ws", "--subs", "1"}, 1, "not a loopback address"},
		{"not a ws url", []string{"bench", "--url", "http://127.0.0.1:1/ws", "--subs", "1"}, 1, "is not ws://"},
		{"server flags with url", []string{"bench", "--url", "ws://127.0.0.1:1/ws", "--server-arg=--no-echo"}, 2, "apply to a spawned server"},
		{"no subscribers", []string{"bench", "--subs", "0"}, 1, "at least one subscriber"},
		{"more rooms than subscribers", []string{"bench", "--subs", "2", "--rooms", "3"}, 1, "more rooms than subscribers"},
		{"stray argument", []string{"bench", "extra"}, 2, "unexpected argument"},
		{"bad floor list", []string{"bench", "floor", "--frames-per-write", "x"}, 2, "bad --frames-per-write"},
		{"unknown child role flag", []string{"bench", "worker", "--nope"}, 1, "flag provided but not defined"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(tc.args, &stdout, &stderr); code != tc.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.code, stderr.String())
			}
			if !strings.Contains(stderr.String()+stdout.String(), tc.want) {
				t.Errorf("output does not say %q:\n%s%s", tc.want, stdout.String(), stderr.String())
			}
		})
	}
}
