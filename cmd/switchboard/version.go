package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"
)

// Set at build time with -ldflags "-X main.commit=... -X main.date=..."
// (make build, make release): the commit built and its date. The date is
// the commit's, not the build's, so that a rebuild of a commit gives the
// same binary.
var (
	commit = ""
	date   = ""
)

// versionOf is the version set with -ldflags, else the main module's
// version in bi: a tag (go install ...@v0.1.0) or, for go build in a
// checkout, a pseudo-version. "dev" when neither is known (go run).
func versionOf(bi *debug.BuildInfo) string {
	if version != "" {
		return version
	}
	if bi != nil && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// versionLine is what `switchboard version` prints: "switchboard VERSION",
// then what else is known of the build in parentheses, e.g.
//
//	switchboard v0.1.0 (commit 6d03e4712ab3, 2026-12-04T01:31:08Z; go1.26.8 linux/amd64)
//
// Without -ldflags the commit and date come from the VCS stamp that go build
// puts in a binary built in a checkout; go install ...@vX.Y.Z stamps only
// the version.
func versionLine(bi *debug.BuildInfo) string {
	c, d := commit, date
	if bi != nil && c == "" {
		var modified bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				c = s.Value[:min(len(s.Value), 12)]
			case "vcs.time":
				if d == "" {
					d = s.Value
				}
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if c != "" && modified {
			c += "-dirty"
		}
	}
	var about []string
	if c != "" {
		about = append(about, "commit "+c)
	}
	if d != "" {
		about = append(about, d)
	}
	build := runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
	if len(about) > 0 {
		build = strings.Join(about, ", ") + "; " + build
	}
	return fmt.Sprintf("switchboard %s (%s)", versionOf(bi), build)
}

// versionCmd is `switchboard version`, also --version and -v.
func versionCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprintf(stderr, "switchboard version: unexpected argument %q (it takes none)\n", args[0])
		return 2
	}
	bi, _ := debug.ReadBuildInfo()
	fmt.Fprintln(stdout, versionLine(bi))
	return 0
}
