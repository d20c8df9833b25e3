package api

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// TestDocsRouteTable: the route table at the top of docs/api.md lists
// every route of routeTable, and nothing else.
func TestDocsRouteTable(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "| Method and path |") {
			in = true
			continue
		}
		if !in || strings.HasPrefix(line, "|---") {
			continue
		}
		if !strings.HasPrefix(line, "| `") {
			break // the table ends
		}
		cell, _, _ := strings.Cut(strings.TrimPrefix(line, "| `"), "`")
		documented = append(documented, cell)
	}
	var real []string
	for _, rt := range routeTable() {
		real = append(real, rt.method+" "+rt.pattern)
	}
	for _, r := range real {
		if !slices.Contains(documented, r) {
			t.Errorf("docs/api.md's route table lacks %s", r)
		}
	}
	for _, d := range documented {
		if !slices.Contains(real, d) {
			t.Errorf("docs/api.md's route table lists %s, which is not a route", d)
		}
	}
}
