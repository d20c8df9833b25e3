package api

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/switchboard-rt/switchboard/engine"
	"github.com/switchboard-rt/switchboard/hub"
)

// spec is the part of openapi.yaml the checks read.
type spec struct {
	OpenAPI    string                          `yaml:"openapi"`
	Paths      map[string]map[string]operation `yaml:"paths"`
	Components struct {
		Parameters map[string]parameter `yaml:"parameters"`
		Schemas    map[string]schema    `yaml:"schemas"`
		Responses  map[string]any       `yaml:"responses"`
	} `yaml:"components"`
}

type operation struct {
	OperationID string         `yaml:"operationId"`
	Parameters  []parameter    `yaml:"parameters"`
	RequestBody *struct{}      `yaml:"requestBody"`
	Responses   map[string]any `yaml:"responses"`
}

type parameter struct {
	Ref  string `yaml:"$ref"`
	Name string `yaml:"name"`
	In   string `yaml:"in"`
}

type schema struct {
	Properties map[string]any `yaml:"properties"`
	Required   []string       `yaml:"required"`
}

func loadSpec(t *testing.T) *spec {
	t.Helper()
	b, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var s spec
	if err := yaml.Unmarshal(b, &s); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	if !strings.HasPrefix(s.OpenAPI, "3.0") {
		t.Fatalf("openapi.yaml declares OpenAPI %q, want 3.0.x", s.OpenAPI)
	}
	return &s
}

var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// TestOpenAPIMatchesRoutes checks that openapi.yaml documents exactly the
// router's routes, with their path parameters and the answers every
// route can give.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	s := loadSpec(t)
	documented := map[string]operation{}
	for path, item := range s.Paths {
		for m, op := range item {
			if !slices.Contains(httpMethods, m) {
				if m != "parameters" && m != "summary" && m != "description" {
					t.Errorf("openapi.yaml: %s has unknown key %q", path, m)
				}
				continue
			}
			documented[strings.ToUpper(m)+" "+path] = op
		}
	}
	routed := map[string]route{}
	for _, rt := range routeTable() {
		k := routeKey(rt)
		if _, dup := routed[k]; dup {
			t.Errorf("route %s is in the table twice", k)
		}
		routed[k] = rt
	}
	for k := range routed {
		if _, ok := documented[k]; !ok {
			t.Errorf("route %s is not in openapi.yaml", k)
		}
	}
	ids := map[string]bool{}
	for k, op := range documented {
		rt, ok := routed[k]
		if !ok {
			t.Errorf("openapi.yaml documents %s, which the router does not serve", k)
			continue
		}
		if op.OperationID == "" || ids[op.OperationID] {
			t.Errorf("%s: operationId %q missing or repeated", k, op.OperationID)
		}
		ids[op.OperationID] = true

		var inPath []string
		for _, p := range op.Parameters {
			if p.Ref != "" {
				name := strings.TrimPrefix(p.Ref, "#/components/parameters/")
				ref, ok := s.Components.Parameters[name]
				if !ok {
					t.Errorf("%s: parameter $ref %q does not resolve", k, p.Ref)
					continue
				}
				p = ref
			}
			if p.In == "path" {
				inPath = append(inPath, p.Name)
			}
		}
		var wild []string
		for _, seg := range strings.Split(rt.pattern, "/") {
			if strings.HasPrefix(seg, "{") {
				wild = append(wild, strings.Trim(seg, "{}"))
			}
		}
		slices.Sort(inPath)
		slices.Sort(wild)
		if !slices.Equal(inPath, wild) {
			t.Errorf("%s: path parameters %v documented, pattern has %v", k, inPath, wild)
		}

		want := []string{"200", "401", "403"}
		if strings.HasSuffix(rt.pattern, "/connections/{id}/disconnect") {
			want[0] = "202"
		}
		if rt.method == "POST" {
			want = append(want, "400", "413", "415")
			if op.RequestBody == nil {
				t.Errorf("%s: no requestBody documented", k)
			}
		}
		if strings.Contains(rt.pattern, "{") || rt.method == "GET" {
			want = append(want, "400") // invalid room or unknown query parameter
		}
		for _, code := range want {
			if _, ok := op.Responses[code]; !ok {
				t.Errorf("%s: response %s is not documented", k, code)
			}
		}
		for code, r := range op.Responses {
			checkRefs(t, s, k+" response "+code, r)
		}
	}
}

// checkRefs checks that every local $ref under v resolves.
func checkRefs(t *testing.T, s *spec, where string, v any) {
	t.Helper()
	switch v := v.(type) {
	case map[string]any:
		if ref, ok := v["$ref"].(string); ok {
			parts := strings.Split(strings.TrimPrefix(ref, "#/components/"), "/")
			found := false
			switch parts[0] {
			case "responses":
				_, found = s.Components.Responses[parts[1]]
			case "schemas":
				_, found = s.Components.Schemas[parts[1]]
			}
			if !found {
				t.Errorf("%s: $ref %q does not resolve", where, ref)
			}
		}
		for _, x := range v {
			checkRefs(t, s, where, x)
		}
	case []any:
		for _, x := range v {
			checkRefs(t, s, where, x)
		}
	}
}

// TestOpenAPISchemasMatchTypes checks that each documented object has the
// JSON fields of the Go type that reads or writes it, and that required
// fields are ones the Go type always writes.
func TestOpenAPISchemasMatchTypes(t *testing.T) {
	s := loadSpec(t)
	types := map[string]any{
		"Error":               errorBody{},
		"Event":               event{},
		"PublishRequest":      publishRequest{},
		"PublishResult":       hub.PublishResult{},
		"BatchRequest":        batchRequest{},
		"SeedBroadcastAnswer": seedAnswer{},
		"BatchEvent":          batchEvent{},
		"BatchAnswer":         batchAnswer{},
		"BatchResult":         batchResult{},
		"Recipients":          recipients{},
		"DisconnectRequest":   disconnectRequest{},
		"DisconnectAnswer":    disconnectAnswer{},
		"BanRequest":          banRequest{},
		"BanAnswer":           banAnswer{},
		"Accepted":            accepted{},
		"RoomList":            roomList{},
		"RoomInfo":            hub.RoomInfo{},
		"RoomDetail":          roomDetail{},
		"Member":              hub.MemberInfo{},
		"HistoryPage":         hub.HistoryPage{},
		"Presence":            presenceResponse{},
		"PresenceMember":      engine.ClientInfo{},
		"StatsAnswer":         statsResponse{},
		"ClusterTotals":       clusterTotals{},
		"NodeStats":           hub.Stats{},
	}
	for name := range s.Components.Schemas {
		if _, ok := types[name]; !ok {
			t.Errorf("schema %s has no Go type in this test", name)
		}
	}
	for name, v := range types {
		sc, ok := s.Components.Schemas[name]
		if !ok {
			t.Errorf("openapi.yaml has no schema %s", name)
			continue
		}
		fields := jsonFields(reflect.TypeOf(v))
		var documented, goNames []string
		for p := range sc.Properties {
			documented = append(documented, p)
		}
		for f := range fields {
			goNames = append(goNames, f)
		}
		slices.Sort(documented)
		slices.Sort(goNames)
		if !slices.Equal(documented, goNames) {
			t.Errorf("schema %s has properties %v; %T has JSON fields %v", name, documented, v, goNames)
		}
		for _, r := range sc.Required {
			if omit, ok := fields[r]; !ok || omit {
				t.Errorf("schema %s requires %q, which %T may leave out", name, r, v)
			}
		}
	}
}

// jsonFields returns the JSON field names of struct type t (embedded
// structs flattened) and whether each is omitempty.
func jsonFields(t reflect.Type) map[string]bool {
	out := map[string]bool{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if f.Anonymous && tag == "" {
			for k, v := range jsonFields(f.Type) {
				out[k] = v
			}
			continue
		}
		if !f.IsExported() || tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = f.Name
		}
		out[name] = strings.Contains(opts, "omitempty")
	}
	return out
}

// TestDocsCoverRoutes checks that docs/api.md has a section for every
// route.
func TestDocsCoverRoutes(t *testing.T) {
	b, err := os.ReadFile("../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, rt := range routeTable() {
		if heading := "### " + routeKey(rt); !strings.Contains(doc, heading+"\n") {
			t.Errorf("docs/api.md has no heading %q", heading)
		}
	}
}
