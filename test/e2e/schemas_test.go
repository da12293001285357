package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/rest"
)

// writeSchemas writes a standalone, strict JSON schema for every kind the
// API server serves (our CRDs included, once installed), laid out for
// kubeconform's -schema-location "<dir>/{{ .Group }}/{{ .ResourceAPIVersion }}/{{ .ResourceKind }}.json".
// They come from the server's own OpenAPI v3 documents: nothing is
// downloaded, and the schemas are exactly those of the Kubernetes version the
// tests run.
func writeSchemas(t *testing.T, cfg *rest.Config, dir string) string {
	t.Helper()
	hc, err := rest.HTTPClientFor(cfg)
	must(t, err)
	get := func(uri string) []byte {
		t.Helper()
		req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, strings.TrimSuffix(cfg.Host, "/")+uri, nil)
		must(t, err)
		resp, err := hc.Do(req)
		must(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		must(t, err)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s", uri, resp.Status)
		}
		return b
	}
	var index struct {
		Paths map[string]struct {
			ServerRelativeURL string `json:"serverRelativeURL"`
		} `json:"paths"`
	}
	must(t, json.Unmarshal(get("/openapi/v3"), &index))
	written := 0
	for path, ref := range index.Paths {
		if path != "api/v1" && !(strings.HasPrefix(path, "apis/") && strings.Count(path, "/") == 2) {
			continue
		}
		body := get(ref.ServerRelativeURL)
		var doc struct {
			Components struct {
				Schemas map[string]map[string]any `json:"schemas"`
			} `json:"components"`
		}
		must(t, json.Unmarshal(body, &doc))
		schemas := doc.Components.Schemas
		for name, s := range schemas {
			gvks, _ := s["x-kubernetes-group-version-kind"].([]any)
			for _, g := range gvks {
				gvk := g.(map[string]any)
				group, version, kind := gvk["group"].(string), gvk["version"].(string), gvk["kind"].(string)
				if group == "" {
					group = version
				}
				standalone := inline(schemas, s, map[string]bool{name: true})
				b, err := json.Marshal(standalone)
				must(t, err)
				p := filepath.Join(dir, group, version, strings.ToLower(kind)+".json")
				must(t, os.MkdirAll(filepath.Dir(p), 0o755))
				must(t, os.WriteFile(p, b, 0o644))
				written++
			}
		}
	}
	if written < 50 {
		t.Fatalf("wrote only %d schemas from the API server's OpenAPI documents", written)
	}
	return filepath.Join(dir, "{{ .Group }}", "{{ .ResourceAPIVersion }}", "{{ .ResourceKind }}.json")
}

// inline resolves every $ref into a copy of the schema it names (a cycle,
// as in JSONSchemaProps, becomes an open schema), turns OpenAPI's nullable
// into JSON Schema's null type, and closes every object that lists its
// properties and does not keep unknown fields: kubeconform's strict mode.
func inline(all map[string]map[string]any, s map[string]any, seen map[string]bool) map[string]any {
	out := map[string]any{}
	for k, v := range s {
		switch k {
		case "$ref":
			name := strings.TrimPrefix(v.(string), "#/components/schemas/")
			if seen[name] {
				continue
			}
			next := map[string]bool{name: true}
			for n := range seen {
				next[n] = true
			}
			for rk, rv := range inline(all, all[name], next) {
				if _, set := out[rk]; !set {
					out[rk] = rv
				}
			}
		case "properties", "patternProperties":
			props := map[string]any{}
			for name, p := range v.(map[string]any) {
				props[name] = inline(all, p.(map[string]any), seen)
			}
			out[k] = props
		case "items", "additionalProperties", "not":
			if m, ok := v.(map[string]any); ok {
				out[k] = inline(all, m, seen)
			} else {
				out[k] = v
			}
		case "allOf", "anyOf", "oneOf":
			var list []any
			for _, e := range v.([]any) {
				list = append(list, inline(all, e.(map[string]any), seen))
			}
			out[k] = list
		case "x-kubernetes-group-version-kind", "description", "default", "example":
		default:
			out[k] = v
		}
	}
	if out["nullable"] == true {
		if typ, ok := out["type"].(string); ok {
			out["type"] = []any{typ, "null"}
		}
	}
	_, hasProps := out["properties"]
	_, hasAdditional := out["additionalProperties"]
	if hasProps && !hasAdditional && out["x-kubernetes-preserve-unknown-fields"] != true {
		out["additionalProperties"] = false
	}
	return out
}
