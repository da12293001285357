package catalog

import (
	"fmt"
	"slices"
	"strings"
)

// Methods a route may name.
var Methods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// methodBit is a method's bit in a route's method set; 0 for a method no
// route can name.
func methodBit(m string) uint8 {
	switch m {
	case "GET":
		return 1 << 0
	case "HEAD":
		return 1 << 1
	case "POST":
		return 1 << 2
	case "PUT":
		return 1 << 3
	case "PATCH":
		return 1 << 4
	case "DELETE":
		return 1 << 5
	case "OPTIONS":
		return 1 << 6
	}
	return 0
}

// Catalog is one APICatalog as the matcher needs it.
type Catalog struct {
	Name string
	// Scopes are the names of the scopes the catalog offers.
	Scopes []string
	// Hosts the API is served at; empty for any. Routes without hosts of
	// their own inherit them.
	Hosts []string
	// PathPrefix is the part of the URL space the catalog speaks for; ""
	// or "/" for all of it. Every route lies under it, and AllowUnmatched
	// applies below it.
	PathPrefix string
	// AllowUnmatched lets any valid token through for a request under the
	// catalog's hosts and prefix that no route matches. False refuses it.
	AllowUnmatched bool
	Routes         []Route
}

// Route is one route of a catalog.
type Route struct {
	Name    string
	Methods []string
	Path    string
	Hosts   []string
	// Scopes are all required.
	Scopes []string
	// RecordType and RecordAction say what a successful call counts as, for
	// record insights; both empty when it counts as nothing.
	RecordType, RecordAction string
}

// Target is a route in force: what a matched request needs.
type Target struct {
	Catalog, Route string
	// ID is "catalog/route".
	ID string
	// Scopes are the scopes the call needs, sorted.
	Scopes                   []string
	RecordType, RecordAction string
	// Template is the route's path template.
	Template string
}

// Problem is something wrong in one catalog that CEL validation cannot see:
// it keeps the catalog out of force.
type Problem struct {
	// Field is the field path, e.g. spec.routes[3].path.
	Field   string
	Message string
}

// Conflict is two routes that match a common request, where neither is more
// specific and they need different things.
type Conflict struct {
	Route                    string
	OtherCatalog, OtherRoute string
	// Example is a request both match, e.g. "GET /crm/v3/objects/deals/batch".
	Example string
	Message string
}

// Result is what compiling says about one catalog.
type Result struct {
	Name string
	// InForce is true when the token service uses the catalog's routes.
	InForce   bool
	Problems  []Problem
	Conflicts []Conflict
	// Scopes and Routes count what is in force.
	Scopes, Routes int
}

// Validate checks what CEL cannot: path templates, hosts and prefixes, the
// scopes routes name, unique names, and routes of the catalog that conflict
// with each other.
func Validate(c Catalog) []Problem {
	entries, probs := compileCatalog(c)
	if len(probs) > 0 {
		return probs
	}
	t := newTrie()
	for _, e := range entries {
		for _, cf := range t.conflicts(e) {
			probs = append(probs, Problem{Field: fmt.Sprintf("spec.routes[%d]", e.index), Message: cf.Message})
		}
		t.insert(e)
	}
	return probs
}

// compileCatalog parses a catalog's routes into entries, or says what is
// wrong with them.
func compileCatalog(c Catalog) ([]*entry, []Problem) {
	var probs []Problem
	bad := func(field, format string, args ...any) {
		probs = append(probs, Problem{Field: field, Message: fmt.Sprintf(format, args...)})
	}
	prefix, err := parsePrefix(c.PathPrefix)
	if err != nil {
		bad("spec.pathPrefix", "%v", err)
	}
	offered := map[string]bool{}
	for i, s := range c.Scopes {
		if offered[s] {
			bad(fmt.Sprintf("spec.scopes[%d].name", i), "the scope %q is listed twice; list each scope once", s)
		}
		offered[s] = true
	}
	for i, h := range c.Hosts {
		if err := checkHost(h); err != nil {
			bad(fmt.Sprintf("spec.hosts[%d]", i), "%v", err)
		}
	}
	names := map[string]int{}
	entries := make([]*entry, 0, len(c.Routes))
	for i, r := range c.Routes {
		field := fmt.Sprintf("spec.routes[%d]", i)
		if j, dup := names[r.Name]; dup {
			bad(field+".name", "the route name %q is already used by spec.routes[%d]; give each route its own name", r.Name, j)
		}
		names[r.Name] = i
		tmpl, err := ParseTemplate(r.Path)
		if err != nil {
			bad(field+".path", "%v", err)
		} else if !prefix.covers(tmpl) {
			bad(field+".path", "the path template %q is outside the catalog's pathPrefix %q; every route of a catalog lies under its prefix", r.Path, c.PathPrefix)
		}
		var methods uint8
		if len(r.Methods) == 0 {
			bad(field+".methods", "a route needs at least one method, e.g. [GET]")
		}
		for j, m := range r.Methods {
			b := methodBit(m)
			if b == 0 {
				bad(fmt.Sprintf("%s.methods[%d]", field, j), "the method %q is not one of %s", m, strings.Join(Methods, ", "))
			}
			methods |= b
		}
		for j, s := range r.Scopes {
			if !offered[s] {
				bad(fmt.Sprintf("%s.scopes[%d]", field, j), "the route needs the scope %q, which the catalog does not offer; add it to spec.scopes or fix the name", s)
			}
		}
		hosts := r.Hosts
		for j, h := range hosts {
			if err := checkHost(h); err != nil {
				bad(fmt.Sprintf("%s.hosts[%d]", field, j), "%v", err)
			} else if len(c.Hosts) > 0 && !slices.ContainsFunc(c.Hosts, func(ch string) bool { return strings.EqualFold(ch, h) }) {
				bad(fmt.Sprintf("%s.hosts[%d]", field, j), "the host %q is not one of the catalog's spec.hosts %v; a route serves a subset of its API's hosts", h, c.Hosts)
			}
		}
		if len(hosts) == 0 {
			hosts = c.Hosts
		}
		if (r.RecordType == "") != (r.RecordAction == "") {
			bad(field+".record", "a record needs both a type and an action")
		}
		scopes := slices.Sorted(slices.Values(r.Scopes))
		entries = append(entries, &entry{
			index: i, tmpl: tmpl, methods: methods, hosts: lowerAll(hosts),
			target: &Target{
				Catalog: c.Name, Route: r.Name, ID: c.Name + "/" + r.Name, Scopes: slices.Compact(scopes),
				RecordType: r.RecordType, RecordAction: r.RecordAction, Template: r.Path,
			},
		})
	}
	return entries, probs
}

func lowerAll(ss []string) []string {
	if len(ss) == 0 {
		return nil
	}
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.ToLower(s)
	}
	return out
}

// checkHost accepts a DNS name or an IP address, without a port.
func checkHost(h string) error {
	if h == "" || len(h) > 253 {
		return fmt.Errorf("the host %q must be a DNS name of 1 to 253 characters, e.g. api.example.com", h)
	}
	for _, c := range h {
		if c == '-' || c == '.' || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9') {
			continue
		}
		return fmt.Errorf("the host %q may hold only letters, digits, - and . (no port, no scheme), e.g. api.example.com", h)
	}
	return nil
}

// prefix is a catalog's path prefix as literal segments.
type prefix []string

func parsePrefix(p string) (prefix, error) {
	if p == "" || p == "/" {
		return nil, nil
	}
	t, err := ParseTemplate(strings.TrimSuffix(p, "/"))
	if err != nil {
		return nil, err
	}
	out := make(prefix, 0, len(t.segs))
	for _, s := range t.segs {
		if s.kind != literal {
			return nil, fmt.Errorf("the pathPrefix %q has a wildcard; a prefix is literal segments, e.g. /crm", p)
		}
		out = append(out, s.text)
	}
	return out, nil
}

// covers reports whether every path t matches lies under the prefix.
func (p prefix) covers(t Template) bool {
	if len(t.segs) < len(p) {
		return false
	}
	for i, s := range p {
		if t.segs[i].kind != literal || t.segs[i].text != s {
			return false
		}
	}
	return true
}

// coversPath reports whether a clean request path lies under the prefix.
func (p prefix) coversPath(path string) bool {
	rest := path
	for _, s := range p {
		if len(rest) < 1+len(s) || rest[0] != '/' || rest[1:1+len(s)] != s {
			return false
		}
		rest = rest[1+len(s):]
		if rest != "" && rest[0] != '/' {
			return false
		}
	}
	return true
}
