package catalog

import (
	"fmt"
	"slices"
	"strings"
)

// Set is the catalogs in force, compiled for matching. It is immutable:
// a change of any catalog compiles a new Set.
type Set struct {
	root    *node
	offered map[string]struct{}
	// offeredBy is the scopes each catalog in force offers.
	offeredBy map[string]map[string]struct{}
	// offeredList is offered, sorted.
	offeredList []string
	domains     []domain
	// enabled is true when any catalog exists, in force or not: then a
	// request no route matches is refused unless a catalog in force allows
	// it.
	enabled bool
	// byHost is true when a catalog in force, or one of its routes, names
	// hosts: then a request of no known host cannot be decided.
	byHost bool
}

// domain is the part of the URL space a catalog in force speaks for.
type domain struct {
	name   string
	hosts  []string
	prefix prefix
	allow  bool
}

// Empty is the Set with no catalogs: nothing is matched and nothing refused
// for want of a route.
var Empty = &Set{root: &node{}}

// Compile compiles catalogs in the order given, which should be the order
// they were created in (oldest first, then by name): a catalog is in force
// when it is valid and conflicts with no catalog before it. One that
// conflicts is set aside whole, so the cluster behaves as if it had not been
// applied, and the conflict is reported on both catalogs.
func Compile(catalogs []Catalog) (*Set, []Result) {
	set := &Set{root: &node{}, offered: map[string]struct{}{}, offeredBy: map[string]map[string]struct{}{}, enabled: len(catalogs) > 0}
	inForce := &trie{root: set.root}
	results := make([]Result, len(catalogs))
	index := map[string]int{}
	for i, c := range catalogs {
		r := &results[i]
		r.Name = c.Name
		index[c.Name] = i
		entries, probs := compileCatalog(c)
		if len(probs) > 0 {
			r.Problems = probs
			continue
		}
		own := newTrie()
		for _, e := range entries {
			if len(r.Conflicts) >= maxConflicts {
				break // enough to report; the catalog is set aside either way
			}
			r.Conflicts = append(r.Conflicts, own.conflicts(e)...)
			for _, cf := range inForce.conflicts(e) {
				r.Conflicts = append(r.Conflicts, cf)
				other := &results[index[cf.OtherCatalog]]
				if len(other.Conflicts) >= maxConflicts {
					continue
				}
				other.Conflicts = append(other.Conflicts, Conflict{
					Route: cf.OtherRoute, OtherCatalog: c.Name, OtherRoute: cf.Route, Example: cf.Example,
					Message: cf.Message + fmt.Sprintf("; APICatalog %q is set aside until then", c.Name),
				})
			}
			own.insert(e)
		}
		if len(r.Conflicts) > 0 {
			continue
		}
		for _, e := range entries {
			inForce.insert(e)
			set.byHost = set.byHost || len(e.hosts) > 0
		}
		set.byHost = set.byHost || len(c.Hosts) > 0
		scopes := make(map[string]struct{}, len(c.Scopes))
		for _, s := range c.Scopes {
			set.offered[s] = struct{}{}
			scopes[s] = struct{}{}
		}
		set.offeredBy[c.Name] = scopes
		p, _ := parsePrefix(c.PathPrefix)
		set.domains = append(set.domains, domain{name: c.Name, hosts: lowerAll(c.Hosts), prefix: p, allow: c.AllowUnmatched})
		r.InForce, r.Scopes, r.Routes = true, len(c.Scopes), len(entries)
	}
	for s := range set.offered {
		set.offeredList = append(set.offeredList, s)
	}
	slices.Sort(set.offeredList)
	return set, results
}

// ByHost reports whether catalogs in force route by host: a request whose
// host is unknown cannot be decided then.
func (s *Set) ByHost() bool { return s.byHost }

// Enabled reports whether any catalog exists. Without one, routes decide
// nothing and every scope may be asked for.
func (s *Set) Enabled() bool { return s.enabled }

// Offers reports whether a catalog in force offers scope.
func (s *Set) Offers(scope string) bool {
	_, ok := s.offered[scope]
	return ok
}

// OffersIn reports whether the catalog named catalog is in force and
// offers scope.
func (s *Set) OffersIn(catalog, scope string) bool {
	_, ok := s.offeredBy[catalog][scope]
	return ok
}

// OfferedScopes lists the scopes catalogs in force offer, sorted.
func (s *Set) OfferedScopes() []string { return s.offeredList }

// Decision is what the catalogs say about one request.
type Decision struct {
	// Target is the route the request matched; nil when none did.
	Target *Target
	// Covering names the catalog whose hosts and pathPrefix cover a request
	// no route matched (the most specific one); empty when none does.
	Covering string
	// AllowUnmatched is true when Covering lets any valid token through.
	AllowUnmatched bool
}

// KnownMethod reports whether routes can name method; the token service
// refuses any other while catalogs exist.
func KnownMethod(method string) bool { return methodBit(method) != 0 }

// Decide matches a request: its method, its Host (a port is ignored) and its
// path (without the query; percent-encoded as sent). A path that cannot be
// matched safely is a *PathError. It allocates nothing for a clean path.
func (s *Set) Decide(method, host, path string) (Decision, error) {
	clean, err := CleanPath(path)
	if err != nil {
		return Decision{}, err
	}
	host = hostOnly(host)
	if e := s.root.match(clean, methodBit(method), host); e != nil {
		return Decision{Target: e.target}, nil
	}
	// Upstreams answer HEAD with their GET handler.
	if method == "HEAD" {
		if e := s.root.match(clean, methodBit("GET"), host); e != nil {
			return Decision{Target: e.target}, nil
		}
	}
	var d Decision
	best := -1
	for i := range s.domains {
		dm := &s.domains[i]
		if !hostMatches(dm.hosts, host) || !dm.prefix.coversPath(clean) {
			continue
		}
		rank := len(dm.prefix)
		if len(dm.hosts) > 0 {
			rank += 1 << 16
		}
		switch {
		case rank > best:
			best, d.Covering, d.AllowUnmatched = rank, dm.name, dm.allow
		case rank == best:
			d.AllowUnmatched = d.AllowUnmatched && dm.allow // the stricter wins
		}
	}
	return d, nil
}

// hostOnly drops a port and a trailing dot from a Host value.
func hostOnly(h string) string {
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.Contains(h[i:], "]") {
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
		h = h[1 : len(h)-1]
	}
	return h
}
