package catalog

import (
	"fmt"
	"slices"
	"strings"
)

// entry is one route in the trie.
type entry struct {
	index   int // in its catalog's spec.routes
	tmpl    Template
	methods uint8
	hosts   []string // lower case; empty for any host
	target  *Target
}

// node is one segment position of the templates that share a prefix.
// Matching walks it depth first, literal before {name} before {name...}, so
// the first route found is the most specific one: wherever one template
// matches a subset of another's paths, it has a literal (or a {name}) at the
// first segment where they differ.
type node struct {
	lit   map[string]*node
	param *node
	// rest holds the templates that end in {name...} here, leaf those that
	// end here; routes with hosts come first in each, so they win over
	// routes of the same template without.
	rest, leaf []*entry
}

type trie struct{ root *node }

func newTrie() *trie { return &trie{root: &node{}} }

func (t *trie) insert(e *entry) {
	n := t.root
	for _, s := range e.tmpl.segs {
		switch s.kind {
		case literal:
			if n.lit == nil {
				n.lit = map[string]*node{}
			}
			c := n.lit[s.text]
			if c == nil {
				c = &node{}
				n.lit[s.text] = c
			}
			n = c
		case param:
			if n.param == nil {
				n.param = &node{}
			}
			n = n.param
		case rest:
			n.rest = insertEntry(n.rest, e)
			return
		}
	}
	n.leaf = insertEntry(n.leaf, e)
}

// insertEntry keeps entries with hosts before those without, each group in
// the order inserted.
func insertEntry(es []*entry, e *entry) []*entry {
	if len(e.hosts) == 0 {
		return append(es, e)
	}
	i := slices.IndexFunc(es, func(x *entry) bool { return len(x.hosts) == 0 })
	if i < 0 {
		return append(es, e)
	}
	return slices.Insert(es, i, e)
}

// match finds the most specific route for the rest of a clean path ("" when
// all of it is consumed, else starting with /). It does not allocate.
func (n *node) match(path string, method uint8, host string) *entry {
	if path == "" {
		return pick(n.leaf, method, host)
	}
	seg, after := path[1:], ""
	if i := strings.IndexByte(seg, '/'); i >= 0 {
		seg, after = seg[:i], seg[i:]
	}
	if c := n.lit[seg]; c != nil {
		if e := c.match(after, method, host); e != nil {
			return e
		}
	}
	if n.param != nil && seg != "" {
		if e := n.param.match(after, method, host); e != nil {
			return e
		}
	}
	return pick(n.rest, method, host)
}

func pick(es []*entry, method uint8, host string) *entry {
	for _, e := range es {
		if e.methods&method != 0 && hostMatches(e.hosts, host) {
			return e
		}
	}
	return nil
}

func hostMatches(hosts []string, host string) bool {
	if len(hosts) == 0 {
		return true
	}
	for _, h := range hosts {
		if strings.EqualFold(h, host) {
			return true
		}
	}
	return false
}

// maxConflicts bounds the conflicts reported per route and per catalog: a
// catalog of thousands of catch-all routes must not cost gigabytes of
// messages.
const maxConflicts = 20

// conflicts lists the routes in the trie that conflict with e, at most
// maxConflicts.
func (t *trie) conflicts(e *entry) []Conflict {
	var out []Conflict
	for _, o := range t.root.overlapping(e.tmpl.segs, nil) {
		if c, ok := conflict(e, o); ok {
			out = append(out, c)
			if len(out) == maxConflicts {
				break
			}
		}
	}
	return out
}

// overlapping collects the entries below n whose templates may match a path
// that segs also match. It visits only the branches segs can reach.
func (n *node) overlapping(segs []segment, out []*entry) []*entry {
	if len(segs) == 0 {
		return append(out, n.leaf...)
	}
	s := segs[0]
	if s.kind == rest {
		out = append(out, n.rest...)
		for _, c := range n.lit {
			out = c.all(out)
		}
		if n.param != nil {
			out = n.param.all(out)
		}
		return out
	}
	out = append(out, n.rest...)
	switch s.kind {
	case literal:
		if c := n.lit[s.text]; c != nil {
			out = c.overlapping(segs[1:], out)
		}
		if n.param != nil && s.text != "" {
			out = n.param.overlapping(segs[1:], out)
		}
	case param:
		for text, c := range n.lit {
			if text != "" {
				out = c.overlapping(segs[1:], out)
			}
		}
		if n.param != nil {
			out = n.param.overlapping(segs[1:], out)
		}
	}
	return out
}

// all collects every entry at and below n.
func (n *node) all(out []*entry) []*entry {
	out = append(out, n.leaf...)
	out = append(out, n.rest...)
	for _, c := range n.lit {
		out = c.all(out)
	}
	if n.param != nil {
		out = n.param.all(out)
	}
	return out
}

// conflict reports whether routes a and b match a common request where the
// matcher cannot prefer one, and they need different things.
func conflict(a, b *entry) (Conflict, bool) {
	common := a.methods & b.methods
	if common == 0 {
		return Conflict{}, false
	}
	host, ok := commonHost(a.hosts, b.hosts)
	if !ok {
		return Conflict{}, false
	}
	path, ok := a.tmpl.overlaps(b.tmpl)
	if !ok {
		return Conflict{}, false
	}
	aSub, bSub := a.tmpl.subsetOf(b.tmpl), b.tmpl.subsetOf(a.tmpl)
	switch {
	case aSub && bSub:
		// The same template: a route with hosts wins over one without.
		if (len(a.hosts) == 0) != (len(b.hosts) == 0) {
			return Conflict{}, false
		}
	case aSub && (len(a.hosts) > 0 || len(b.hosts) == 0), bSub && (len(b.hosts) > 0 || len(a.hosts) == 0):
		// The more specific template wins, and it is at least as
		// specific in hosts. One that is narrower in path but applies to
		// any host, over one for the API's hosts, would take that API's
		// requests unseen: that is a conflict.
		return Conflict{}, false
	}
	if sameNeeds(a.target, b.target) {
		return Conflict{}, false
	}
	example := methodName(common) + " " + path
	if host != "" {
		example += " on host " + host
	}
	return Conflict{
		Route: a.target.Route, OtherCatalog: b.target.Catalog, OtherRoute: b.target.Route, Example: example,
		Message: fmt.Sprintf("route %q (%s) of APICatalog %q and route %q (%s) of APICatalog %q both match %s and neither is more specific, "+
			"but they need different things (%s against %s); change a path template, method or host so that each request matches one route, or make their needs the same",
			a.target.Route, a.target.Template, a.target.Catalog, b.target.Route, b.target.Template, b.target.Catalog, example,
			needs(a.target), needs(b.target)),
	}, true
}

func commonHost(a, b []string) (string, bool) {
	switch {
	case len(a) == 0 && len(b) == 0:
		return "", true
	case len(a) == 0:
		return b[0], true
	case len(b) == 0:
		return a[0], true
	}
	for _, h := range a {
		if slices.Contains(b, h) {
			return h, true
		}
	}
	return "", false
}

func sameNeeds(a, b *Target) bool {
	return slices.Equal(a.Scopes, b.Scopes) && a.RecordType == b.RecordType && a.RecordAction == b.RecordAction
}

func needs(t *Target) string {
	s := "scopes [" + strings.Join(t.Scopes, " ") + "]"
	if t.RecordType != "" {
		s += ", counts " + t.RecordType + " " + t.RecordAction
	}
	return s
}

func methodName(bits uint8) string {
	for _, m := range Methods {
		if methodBit(m)&bits != 0 {
			return m
		}
	}
	return ""
}
