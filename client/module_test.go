package client_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// freshProgram is a program of another module that uses the client as
// docs/clients.md shows: connect to the node at os.Args[1], subscribe,
// publish and get its own event back.
const freshProgram = `package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/switchboard-rt/switchboard/client"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := client.New(os.Args[1], nil)
	if err := c.Connect(ctx); err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	got := make(chan client.Event, 1)
	if _, err := c.Subscribe(ctx, "chat:lobby", func(e client.Event) {
		if e.Type == "message" {
			got <- e
		}
	}); err != nil {
		log.Fatal(err)
	}
	ack, err := c.Publish(ctx, "chat:lobby", "message", map[string]string{"text": "hi"})
	if err != nil {
		log.Fatal(err)
	}
	select {
	case e := <-got:
		fmt.Println(string(e.Data), e.ID == ack.EventID)
	case <-ctx.Done():
		log.Fatal("no event: ", ctx.Err())
	}
}
`

// TestFreshModule: a new module outside this repository imports
// github.com/switchboard-rt/switchboard/client with the steps of
// docs/clients.md for a checkout (go mod edit -replace, then go mod
// tidy), builds and vets, and the program talks to a node. The
// requirements come from the Go module proxy, or the module cache.
func TestFreshModule(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go" // where the machine keeps Go when PATH lacks it
	}
	checkout, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(freshProgram), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	goCmd := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, goBin, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	goCmd("mod", "init", "example.com/freshapp")
	goCmd("mod", "edit", "-replace", "github.com/switchboard-rt/switchboard="+checkout)
	goCmd("mod", "tidy")
	goMod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(goMod), "require github.com/switchboard-rt/switchboard ") {
		t.Fatalf("go mod tidy did not require the module:\n%s", goMod)
	}
	goCmd("vet", ".")
	bin := filepath.Join(dir, "freshapp")
	goCmd("build", "-o", bin, ".")

	url, stop := exampleServer()
	defer stop()
	out, err := exec.CommandContext(ctx, bin, url).CombinedOutput()
	if err != nil || string(out) != "{\"text\":\"hi\"} true\n" {
		t.Fatalf("the fresh module's program: %v, %q; want its event back", err, out)
	}
}
