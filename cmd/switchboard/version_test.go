package main

import (
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

// TestVersionStamped: a binary built with the -ldflags of make build and
// make release reports the version, commit and date it was given, and the
// toolchain and platform it was built for, under both spellings.
func TestVersionStamped(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	bin := filepath.Join(t.TempDir(), "switchboard")
	flags := "-X main.version=v9.8.7-test -X main.commit=0123456789ab -X main.date=2026-01-02T03:04:05Z"
	if out, err := exec.Command(goBin, "build", "-ldflags", flags, "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	want := "switchboard v9.8.7-test (commit 0123456789ab, 2026-01-02T03:04:05Z; " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + ")\n"
	for _, arg := range []string{"version", "--version"} {
		out, err := exec.Command(bin, arg).CombinedOutput()
		if err != nil || string(out) != want {
			t.Errorf("switchboard %s: %v, %q; want %q", arg, err, out, want)
		}
	}
	out, err := exec.Command(bin, "version", "--short").CombinedOutput()
	if code := exitCode(err); code != 2 || !strings.Contains(string(out), `unexpected argument "--short"`) {
		t.Errorf("version --short: exit %d, %q; want exit 2 naming the argument", code, out)
	}
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// TestVersionFromBuildInfo: without -ldflags the line comes from what the
// go command stamped: the module version, the VCS revision (shortened,
// marked when the tree was modified) and the commit time.
func TestVersionFromBuildInfo(t *testing.T) {
	// As if built without -ldflags, whatever this test binary was built with.
	saved := [3]string{version, commit, date}
	version, commit, date = "", "", ""
	defer func() { version, commit, date = saved[0], saved[1], saved[2] }()
	platform := runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
	vcs := []debug.BuildSetting{
		{Key: "vcs", Value: "git"},
		{Key: "vcs.revision", Value: "6d03e47e1f0a1b2c3d4e5f60718293a4b5c6d7e8"},
		{Key: "vcs.time", Value: "2026-12-04T01:00:00Z"},
		{Key: "vcs.modified", Value: "true"},
	}
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		want string
	}{
		{"no build info", nil, "switchboard dev (" + platform + ")"},
		{"go run", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "switchboard dev (" + platform + ")"},
		{"go install @tag", &debug.BuildInfo{Main: debug.Module{Version: "v0.1.0"}}, "switchboard v0.1.0 (" + platform + ")"},
		{"go build in a modified checkout", &debug.BuildInfo{Main: debug.Module{Version: "v0.1.1-0.20261204010000-6d03e47e1f0a+dirty"}, Settings: vcs},
			"switchboard v0.1.1-0.20261204010000-6d03e47e1f0a+dirty (commit 6d03e47e1f0a-dirty, 2026-12-04T01:00:00Z; " + platform + ")"},
		{"go build in a clean checkout", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs[:3]},
			"switchboard dev (commit 6d03e47e1f0a, 2026-12-04T01:00:00Z; " + platform + ")"},
	} {
		if got := versionLine(tc.bi); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}
