package protocol

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// closeRow matches a markdown table row that starts with a close code, such
// as "| 4005 | slow_consumer | ... | yes |".
var closeRow = regexp.MustCompile("^\\|\\s*`?([1-4][0-9]{3})`?\\s*\\|")

// TestProtocolDocCloseCodes keeps docs/protocol.md and the close-code table
// in step: every code the server sends is documented with its name and
// reconnect advice, and nothing else is. It fails (does not skip) while the
// document is missing.
func TestProtocolDocCloseCodes(t *testing.T) {
	path := filepath.Join("..", "docs", "protocol.md")
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("docs/protocol.md must document the close codes: %v", err)
	}
	defer f.Close()
	type row struct {
		line  int
		cells []string
	}
	documented := map[CloseCode]row{}
	sc := bufio.NewScanner(f)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		m := closeRow.FindStringSubmatch(text)
		if m == nil {
			continue
		}
		n, _ := strconv.Atoi(m[1])
		if n == 1005 || n == 1006 || n == 1015 {
			continue // reserved codes may be documented as "never sent"
		}
		if prev, dup := documented[CloseCode(n)]; dup {
			t.Errorf("%s:%d: close code %d already listed on line %d", path, line, n, prev.line)
		}
		var cells []string
		for _, c := range strings.Split(strings.Trim(strings.TrimSpace(text), "|"), "|") {
			cells = append(cells, strings.Trim(strings.TrimSpace(c), "`*"))
		}
		documented[CloseCode(n)] = row{line, cells}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for _, ci := range CloseCodes() {
		r, ok := documented[ci.Code]
		if !ok {
			t.Errorf("%s: close code %d (%s) is not in a table row starting with \"| %d |\"", path, ci.Code, ci.Name, ci.Code)
			continue
		}
		delete(documented, ci.Code)
		if !strings.Contains(strings.Join(r.cells, "|"), ci.Name) {
			t.Errorf("%s:%d: row for %d does not name it %q", path, r.line, ci.Code, ci.Name)
		}
		last := strings.ToLower(r.cells[len(r.cells)-1])
		if last == "yes" || last == "no" {
			if (last == "yes") != ci.Reconnect {
				t.Errorf("%s:%d: code %d reconnect %q, table says %v", path, r.line, ci.Code, last, ci.Reconnect)
			}
		}
	}
	for code, r := range documented {
		t.Errorf("%s:%d: documents close code %d, which is not in protocol.CloseCodes()", path, r.line, code)
	}
}
