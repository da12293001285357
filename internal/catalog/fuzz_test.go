package catalog

import (
	"strings"
	"testing"
)

// FuzzDecide sends arbitrary methods, hosts and paths to the matcher: it must
// never panic, cleaning must be a fixed point, and a matched route's template
// must match the cleaned path by a plain segment-by-segment reading, so no
// request reaches a route it does not fit.
func FuzzDecide(f *testing.F) {
	set := mustCompile(f, crm)
	for _, seed := range []struct{ method, host, path string }{
		{"GET", "api.example.com", "/crm/v3/objects/deals/1"},
		{"GET", "", "/crm/v3/objects/products/%2e%2e/deals/1"},
		{"POST", "files.example.com:443", "/files/v3//a/./b/../c"},
		{"PATCH", "[::1]:80", "/crm/v3/objects/contacts/%7Bid%7D"},
		{"DELETE", "", "/crm/v3/objects/products/"},
		{"GET", "", "/crm%2Fv3"},
		{"get", "", "/%"},
	} {
		f.Add(seed.method, seed.host, seed.path)
	}
	f.Fuzz(func(t *testing.T, method, host, path string) {
		d, err := set.Decide(method, host, path)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "the request path ") {
				t.Fatalf("error without the usual start: %v", err)
			}
			return
		}
		clean, err := CleanPath(path)
		if err != nil {
			t.Fatalf("Decide accepted a path CleanPath refuses: %v", err)
		}
		if again, err := CleanPath(clean); err != nil || again != clean {
			t.Fatalf("cleaning %q gives %q, then %q, %v", path, clean, again, err)
		}
		if d.Target == nil {
			return
		}
		if !plainMatch(d.Target.Template, clean) {
			t.Fatalf("%s %q (clean %q) matched %s (%s), which does not fit", method, path, clean, d.Target.ID, d.Target.Template)
		}
		if methodBit(method) == 0 {
			t.Fatalf("the method %q matched route %s", method, d.Target.ID)
		}
	})
}

// plainMatch is the reference reading of a template: it compares segments
// in order, without the trie.
func plainMatch(tmpl, path string) bool {
	ts, ps := strings.Split(tmpl[1:], "/"), strings.Split(path[1:], "/")
	for i, t := range ts {
		if strings.HasSuffix(t, "...}") {
			return len(ps) > i
		}
		if i >= len(ps) {
			return false
		}
		if strings.HasPrefix(t, "{") {
			if ps[i] == "" {
				return false
			}
			continue
		}
		if t != ps[i] {
			return false
		}
	}
	return len(ts) == len(ps)
}
