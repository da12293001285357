package catalog

import (
	"fmt"
	"strings"
	"testing"
)

func TestParseTemplate(t *testing.T) {
	tests := []struct {
		in      string
		wantErr string // a part of the message; "" for valid
	}{
		{"/crm/v3/objects/contacts/{id}", ""},
		{"/files/{path...}", ""},
		{"/", ""},
		{"/{all...}", ""},
		{"/crm/v3/objects/", ""},
		{"", "empty"},
		{"crm/v3", "must start with /"},
		{"/crm//v3", "empty segment"},
		{"/crm/./v3", `"." segment`},
		{"/crm/../v3", `".." segment`},
		{"/crm/%7Bid%7D", "decoded"},
		{"/crm?x=1", "query"},
		{"/crm v3", "space or control"},
		{`/crm\v3`, "backslash"},
		{"/files/{path...}/meta", "must be the last segment"},
		{"/files/{id}.json", "whole segment"},
		{"/files/{}", "name is a letter"},
		{"/files/{1id}", "name is a letter"},
		{"/a/{id}/b/{id}", "twice"},
		{"/" + strings.Repeat("a", MaxTemplateLength), "the limit is 1024"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, err := ParseTemplate(tt.in)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("no error, want one about %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("error %q does not say %q", err, tt.wantErr)
			}
		})
	}
}

func TestCleanPath(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  string
	}{
		{"/crm/v3/objects/deals/1", "/crm/v3/objects/deals/1", ""},
		{"/", "/", ""},
		{"/crm/v3/", "/crm/v3/", ""},
		{"//crm///v3//deals", "/crm/v3/deals", ""},
		{"/crm/v3/./objects/../objects/deals", "/crm/v3/objects/deals", ""},
		{"/crm/v3/objects/products/../deals/1", "/crm/v3/objects/deals/1", ""},
		{"/crm/v3/%6fbjects/deals", "/crm/v3/objects/deals", ""},
		{"/crm/v3/objects/products/%2e%2e/deals/1", "/crm/v3/objects/deals/1", ""},
		{"/crm/v3/objects/products/%2E%2E/deals/1", "/crm/v3/objects/deals/1", ""},
		{"/a/.", "/a/", ""},
		{"/a/..", "/", ""},
		{"/a/b/..", "/a/", ""},
		{"/.a/..b/...", "/.a/..b/...", ""},
		{"/caf\xc3\xa9", "/caf\xc3\xa9", ""},
		{"/caf%C3%A9", "/caf\xc3\xa9", ""},
		{"/a%20b", "/a b", ""},
		{"", "", "does not start with /"},
		{"crm", "", "does not start with /"},
		{"/..", "", "above the root"},
		{"/a/../../b", "", "above the root"},
		{"/a/%2e%2e/%2E%2e/b", "", "above the root"},
		{"/crm%2Fv3", "", "encoded /"},
		{"/crm%2fv3", "", "encoded /"},
		{"/crm%5Cv3", "", "encoded /"},
		{`/crm\v3`, "", "backslash"},
		{"/public/..;/admin/users", "", "has a ;"},
		{"/admin%3Bx/users", "", "has a ;"},
		{"/crm/%zz", "", "malformed percent-encoding"},
		{"/crm/%4", "", "malformed percent-encoding"},
		{"/crm/v3/objects/products/%252e%252e/deals/1", "", "encoded %"},
		{"/crm/%", "", "malformed percent-encoding"},
		{"/crm/%00", "", "control character"},
		{"/crm/\x01", "", "control character"},
		{"/" + strings.Repeat("a", MaxPathLength), "", "the limit is 8192"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := CleanPath(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("CleanPath(%q) = %q, %v; want an error about %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("CleanPath(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
			// Clean is a fixed point: cleaning again changes nothing.
			if again, err := CleanPath(got); err != nil && !strings.Contains(got, "%") || err == nil && again != got {
				t.Fatalf("CleanPath(%q) = %q, but cleaning that gives %q, %v", tt.in, got, again, err)
			}
		})
	}
}

// crm is a catalog shaped like HubSpot's CRM API.
var crm = Catalog{
	Name:   "crm",
	Scopes: []string{"crm.objects.contacts.read", "crm.objects.contacts.write", "crm.objects.deals.read", "crm.objects.deals.write", "crm.objects.products.write", "files.read"},
	Routes: []Route{
		{Name: "contacts-list", Methods: []string{"GET"}, Path: "/crm/v3/objects/contacts", Scopes: []string{"crm.objects.contacts.read"}},
		{Name: "contacts-get", Methods: []string{"GET", "HEAD"}, Path: "/crm/v3/objects/contacts/{id}", Scopes: []string{"crm.objects.contacts.read"}},
		{Name: "contacts-create", Methods: []string{"POST"}, Path: "/crm/v3/objects/contacts", Scopes: []string{"crm.objects.contacts.write"}, RecordType: "contacts", RecordAction: "Created"},
		{Name: "contacts-update", Methods: []string{"PATCH"}, Path: "/crm/v3/objects/contacts/{id}", Scopes: []string{"crm.objects.contacts.write"}, RecordType: "contacts", RecordAction: "Updated"},
		{Name: "contacts-search", Methods: []string{"POST"}, Path: "/crm/v3/objects/contacts/search", Scopes: []string{"crm.objects.contacts.read"}},
		{Name: "contacts-merge", Methods: []string{"POST"}, Path: "/crm/v3/objects/contacts/merge", Scopes: []string{"crm.objects.contacts.write"}, RecordType: "contacts", RecordAction: "Merged"},
		{Name: "deals-get", Methods: []string{"GET"}, Path: "/crm/v3/objects/deals/{id}", Scopes: []string{"crm.objects.deals.read"}},
		{Name: "deals-batch", Methods: []string{"GET"}, Path: "/crm/v3/objects/deals/batch", Scopes: []string{"crm.objects.deals.read", "crm.objects.deals.write"}},
		{Name: "products-write", Methods: []string{"POST", "PATCH", "DELETE"}, Path: "/crm/v3/objects/products/{rest...}", Scopes: []string{"crm.objects.products.write"}},
		{Name: "files", Methods: []string{"GET"}, Path: "/files/v3/{path...}", Hosts: []string{"files.example.com"}, Scopes: []string{"files.read"}},
		{Name: "open", Methods: []string{"GET"}, Path: "/crm/v3/ping", Scopes: nil},
	},
}

func mustCompile(t testing.TB, cs ...Catalog) *Set {
	t.Helper()
	set, results := Compile(cs)
	for _, r := range results {
		if !r.InForce {
			t.Fatalf("catalog %s is not in force: %+v %+v", r.Name, r.Problems, r.Conflicts)
		}
	}
	return set
}

func TestDecide(t *testing.T) {
	set := mustCompile(t, crm, Catalog{
		Name: "legacy", PathPrefix: "/legacy", AllowUnmatched: true, Scopes: []string{"legacy.read"},
		Routes: []Route{{Name: "admin", Methods: []string{"GET"}, Path: "/legacy/admin", Scopes: []string{"legacy.read"}}},
	})
	tests := []struct {
		method, host, path string
		route              string // "" for no route
		covering           string
		allow              bool
		wantErr            string
	}{
		{"GET", "api.example.com", "/crm/v3/objects/contacts", "crm/contacts-list", "", false, ""},
		{"POST", "api.example.com", "/crm/v3/objects/contacts", "crm/contacts-create", "", false, ""},
		{"GET", "", "/crm/v3/objects/contacts/123", "crm/contacts-get", "", false, ""},
		{"HEAD", "", "/crm/v3/objects/contacts/123", "crm/contacts-get", "", false, ""},
		{"PATCH", "", "/crm/v3/objects/contacts/123", "crm/contacts-update", "", false, ""},
		{"DELETE", "", "/crm/v3/objects/contacts/123", "", "crm", false, ""},
		// HEAD without a HEAD route is read as GET, as upstreams answer it.
		{"HEAD", "", "/crm/v3/objects/deals/1", "crm/deals-get", "", false, ""},
		{"POST", "", "/crm/v3/objects/contacts/search", "crm/contacts-search", "", false, ""},
		// A literal segment wins over {id} only for its own methods.
		{"GET", "", "/crm/v3/objects/contacts/search", "crm/contacts-get", "", false, ""},
		{"GET", "", "/crm/v3/objects/deals/batch", "crm/deals-batch", "", false, ""},
		{"GET", "", "/crm/v3/objects/deals/1", "crm/deals-get", "", false, ""},
		// The reproduction of the issue: products.write does not reach deals.
		{"GET", "", "/crm/v3/objects/products/../deals/1", "crm/deals-get", "", false, ""},
		{"GET", "", "/crm/v3/objects/products/%2e%2e/deals/1", "crm/deals-get", "", false, ""},
		{"GET", "", "//crm/v3//objects/deals/1", "crm/deals-get", "", false, ""},
		{"POST", "", "/crm/v3/objects/products/1/associations/x", "crm/products-write", "", false, ""},
		{"POST", "", "/crm/v3/objects/products/", "crm/products-write", "", false, ""},
		{"POST", "", "/crm/v3/objects/products", "", "crm", false, ""},
		{"GET", "", "/crm/v3/objects/products/1", "", "crm", false, ""},
		// A trailing slash is its own path: {id} does not match an empty segment.
		{"GET", "", "/crm/v3/objects/contacts/", "", "crm", false, ""},
		{"GET", "", "/crm/v3/objects/contacts/1/", "", "crm", false, ""},
		// Hosts: the port and case are ignored.
		{"GET", "files.example.com", "/files/v3/a/b.pdf", "crm/files", "", false, ""},
		{"GET", "FILES.example.com:8443", "/files/v3/a/b.pdf", "crm/files", "", false, ""},
		{"GET", "api.example.com", "/files/v3/a/b.pdf", "", "crm", false, ""},
		{"GET", "", "/files/v3/a/b.pdf", "", "crm", false, ""},
		// Odd methods match nothing.
		{"get", "", "/crm/v3/objects/contacts", "", "crm", false, ""},
		{"PROPFIND", "", "/crm/v3/objects/contacts", "", "crm", false, ""},
		{"", "", "/crm/v3/objects/contacts", "", "crm", false, ""},
		{"GET", "", "/crm/v3/ping", "crm/open", "", false, ""},
		// The legacy catalog lets unmatched requests below its prefix through.
		{"GET", "", "/legacy/admin", "legacy/admin", "", false, ""},
		{"GET", "", "/legacy/reports/1", "", "legacy", true, ""},
		{"GET", "", "/legacy", "", "legacy", true, ""},
		{"GET", "", "/legacyx", "", "crm", false, ""},
		{"GET", "", "/legacy/../crm/v3/x", "", "crm", false, ""},
		{"GET", "", "/crm/v3/objects%2Fdeals/1", "", "", false, "encoded /"},
		{"GET", "", "/../crm", "", "", false, "above the root"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.host+tt.path, func(t *testing.T) {
			d, err := set.Decide(tt.method, tt.host, tt.path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one about %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if d.Target != nil {
				got = d.Target.ID
			}
			if got != tt.route || d.Covering != tt.covering || d.AllowUnmatched != tt.allow {
				t.Fatalf("route %q covering %q allow %v; want %q %q %v", got, d.Covering, d.AllowUnmatched, tt.route, tt.covering, tt.allow)
			}
		})
	}
	if d, _ := set.Decide("GET", "", "/crm/v3/objects/deals/batch"); strings.Join(d.Target.Scopes, ",") != "crm.objects.deals.read,crm.objects.deals.write" {
		t.Fatalf("deals-batch needs %v", d.Target.Scopes)
	}
	if !set.Offers("legacy.read") || set.Offers("crm.objects.tickets.read") || !set.Enabled() {
		t.Fatal("the offered scopes are not those of the catalogs in force")
	}
	if Empty.Enabled() {
		t.Fatal("the empty set is enabled")
	}
}

func TestValidate(t *testing.T) {
	route := func(name, method, path string, scopes ...string) Route {
		return Route{Name: name, Methods: []string{method}, Path: path, Scopes: scopes}
	}
	tests := []struct {
		name      string
		c         Catalog
		wantField string
		wantMsg   string
	}{
		{"valid", crm, "", ""},
		{"a bad template", Catalog{Scopes: []string{"a.read"}, Routes: []Route{route("r", "GET", "/a/{id", "a.read")}}, "spec.routes[0].path", "whole segment"},
		{"a duplicate scope", Catalog{Scopes: []string{"a.read", "a.read"}}, "spec.scopes[1].name", "listed twice"},
		{"a scope the catalog does not offer", Catalog{Scopes: []string{"a.read"}, Routes: []Route{route("r", "GET", "/a", "a.write")}}, "spec.routes[0].scopes[0]", `"a.write", which the catalog does not offer`},
		{"no method", Catalog{Routes: []Route{{Name: "r", Path: "/a"}}}, "spec.routes[0].methods", "at least one method"},
		{"an odd method", Catalog{Routes: []Route{route("r", "FETCH", "/a")}}, "spec.routes[0].methods[0]", "not one of GET"},
		{"a duplicate route name", Catalog{Routes: []Route{route("r", "GET", "/a"), route("r", "GET", "/b")}}, "spec.routes[1].name", "already used by spec.routes[0]"},
		{"a route outside the prefix", Catalog{PathPrefix: "/crm", Routes: []Route{route("r", "GET", "/crmx/a")}}, "spec.routes[0].path", "outside the catalog's pathPrefix"},
		{"a wildcard prefix", Catalog{PathPrefix: "/crm/{x}"}, "spec.pathPrefix", "wildcard"},
		{"a host with a port", Catalog{Hosts: []string{"api.example.com:443"}}, "spec.hosts[0]", "no port"},
		{"a route host outside the catalog's", Catalog{Hosts: []string{"a.example.com"}, Routes: []Route{{Name: "r", Methods: []string{"GET"}, Path: "/", Hosts: []string{"b.example.com"}}}}, "spec.routes[0].hosts[0]", "not one of the catalog's"},
		{"a record without an action", Catalog{Routes: []Route{{Name: "r", Methods: []string{"GET"}, Path: "/", RecordType: "contacts"}}}, "spec.routes[0].record", "both a type and an action"},
		{"two routes that conflict", Catalog{Scopes: []string{"a.read", "b.read"}, Routes: []Route{
			route("by-id", "GET", "/a/{id}/c", "a.read"), route("by-name", "GET", "/a/b/{name}", "b.read"),
		}}, "spec.routes[1]", `both match GET /a/b/c and neither is more specific`},
		{"the same template twice with different needs", Catalog{Scopes: []string{"a.read", "b.read"}, Routes: []Route{
			route("one", "GET", "/a/{id}", "a.read"), route("two", "GET", "/a/{name}", "b.read"),
		}}, "spec.routes[1]", `"one" (/a/{id}) of APICatalog`},
		{"a route for any host narrower than one for the API's host", Catalog{Scopes: []string{"a.read", "b.read"}, Routes: []Route{
			{Name: "billing", Methods: []string{"GET"}, Path: "/v1/{p...}", Hosts: []string{"billing.example.com"}, Scopes: []string{"a.read"}},
			{Name: "status", Methods: []string{"GET"}, Path: "/v1/status"},
		}}, "spec.routes[1]", `both match GET /v1/status on host billing.example.com`},
		{"rest against rest", Catalog{Scopes: []string{"a.read", "b.read"}, Routes: []Route{
			route("one", "GET", "/a/{p...}", "a.read"), route("two", "GET", "/a/{q...}", "b.read"),
		}}, "spec.routes[1]", "GET /a/x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			probs := Validate(tt.c)
			if tt.wantField == "" {
				if len(probs) > 0 {
					t.Fatalf("unexpected problems: %+v", probs)
				}
				return
			}
			for _, p := range probs {
				if p.Field == tt.wantField && strings.Contains(p.Message, tt.wantMsg) {
					return
				}
			}
			t.Fatalf("problems %+v; want one at %s saying %q", probs, tt.wantField, tt.wantMsg)
		})
	}
}

func TestNoConflict(t *testing.T) {
	// Overlaps the matcher resolves, or where the needs are the same.
	pairs := []struct{ a, b Route }{
		{Route{Name: "a", Methods: []string{"GET"}, Path: "/x/{id}", Scopes: []string{"s.read"}}, Route{Name: "b", Methods: []string{"GET"}, Path: "/x/batch", Scopes: []string{"t.read"}}},
		{Route{Name: "a", Methods: []string{"GET"}, Path: "/{all...}", Scopes: []string{"s.read"}}, Route{Name: "b", Methods: []string{"GET"}, Path: "/x/{id}/y", Scopes: []string{"t.read"}}},
		{Route{Name: "a", Methods: []string{"GET"}, Path: "/x/{id}", Scopes: []string{"s.read"}}, Route{Name: "b", Methods: []string{"POST"}, Path: "/x/{id}", Scopes: []string{"t.read"}}},
		{Route{Name: "a", Methods: []string{"GET"}, Path: "/x/{id}", Scopes: []string{"s.read"}}, Route{Name: "b", Methods: []string{"GET"}, Path: "/x/{id}", Hosts: []string{"h.example.com"}, Scopes: []string{"t.read"}}},
		{Route{Name: "a", Methods: []string{"GET"}, Path: "/x/{id}/c", Scopes: []string{"s.read"}}, Route{Name: "b", Methods: []string{"GET"}, Path: "/x/b/{n}", Scopes: []string{"s.read"}}},
		{Route{Name: "a", Methods: []string{"GET"}, Path: "/x/{r...}", Scopes: []string{"s.read"}}, Route{Name: "b", Methods: []string{"GET"}, Path: "/x", Scopes: []string{"t.read"}}},
		{Route{Name: "a", Methods: []string{"GET"}, Path: "/x/{id}", Scopes: []string{"s.read"}}, Route{Name: "b", Methods: []string{"GET"}, Path: "/x/", Scopes: []string{"t.read"}}},
		{Route{Name: "a", Methods: []string{"GET"}, Path: "/x/{id}", Hosts: []string{"a.example.com"}, Scopes: []string{"s.read"}}, Route{Name: "b", Methods: []string{"GET"}, Path: "/{p}/1", Hosts: []string{"b.example.com"}, Scopes: []string{"t.read"}}},
	}
	for _, p := range pairs {
		c := Catalog{Name: "c", Scopes: []string{"s.read", "t.read"}, Routes: []Route{p.a, p.b}}
		if probs := Validate(c); len(probs) > 0 {
			t.Errorf("%s and %s: %+v", p.a.Path, p.b.Path, probs)
		}
	}
}

func TestCompileSetsAsideTheNewerOfTwoConflictingCatalogs(t *testing.T) {
	older := Catalog{Name: "crm", Scopes: []string{"crm.objects.deals.read"}, Routes: []Route{
		{Name: "deals", Methods: []string{"GET"}, Path: "/crm/v3/objects/deals/{id}", Scopes: []string{"crm.objects.deals.read"}},
	}}
	newer := Catalog{Name: "sales", Scopes: []string{"sales.read"}, Routes: []Route{
		{Name: "any-object", Methods: []string{"GET"}, Path: "/crm/v3/objects/{type}/{id}", Scopes: []string{"sales.read"}},
		{Name: "deals-again", Methods: []string{"GET", "POST"}, Path: "/crm/v3/objects/deals/{dealId}", Scopes: []string{"sales.read"}},
	}}
	set, results := Compile([]Catalog{older, newer})
	if !results[0].InForce || results[0].Routes != 1 || results[0].Scopes != 1 {
		t.Fatalf("the older catalog: %+v", results[0])
	}
	if results[1].InForce || len(results[1].Conflicts) != 1 {
		t.Fatalf("the newer catalog: %+v", results[1])
	}
	cf := results[1].Conflicts[0]
	if cf.Route != "deals-again" || cf.OtherCatalog != "crm" || cf.OtherRoute != "deals" || cf.Example != "GET /crm/v3/objects/deals/x" {
		t.Fatalf("conflict %+v", cf)
	}
	if len(results[0].Conflicts) != 1 || !strings.Contains(results[0].Conflicts[0].Message, `APICatalog "sales" is set aside`) {
		t.Fatalf("the older catalog does not report the conflict: %+v", results[0].Conflicts)
	}
	if d, _ := set.Decide("GET", "", "/crm/v3/objects/tickets/1"); d.Target != nil {
		t.Fatalf("a route of the set-aside catalog is in force: %+v", d.Target)
	}
	if set.Offers("sales.read") {
		t.Fatal("a scope of the set-aside catalog is offered")
	}
	// A catalog with a problem is not in force either, and is reported.
	_, results = Compile([]Catalog{{Name: "bad", Routes: []Route{{Name: "r", Methods: []string{"GET"}, Path: "nope"}}}})
	if results[0].InForce || len(results[0].Problems) != 1 {
		t.Fatalf("a bad catalog: %+v", results[0])
	}
}

// routes builds n routes shaped like a real API: areas, object types, and
// per type a list, a get by id, a search and an association path.
func routes(n int) Catalog {
	c := Catalog{Name: "bench", Scopes: []string{"s.read", "s.write"}}
	for i := 0; len(c.Routes) < n; i++ {
		base := fmt.Sprintf("/area%d/v3/objects/type%d", i%10, i)
		for _, r := range []Route{
			{Methods: []string{"GET"}, Path: base, Scopes: []string{"s.read"}},
			{Methods: []string{"GET"}, Path: base + "/{id}", Scopes: []string{"s.read"}},
			{Methods: []string{"POST"}, Path: base + "/search", Scopes: []string{"s.read"}},
			{Methods: []string{"PUT"}, Path: base + "/{id}/associations/{to}/{toId}", Scopes: []string{"s.write"}},
		} {
			r.Name = fmt.Sprintf("r%d", len(c.Routes))
			c.Routes = append(c.Routes, r)
		}
	}
	c.Routes = c.Routes[:n]
	return c
}

func TestBenchmarkCatalogsCompile(t *testing.T) {
	for _, n := range []int{10, 1000, 10000} {
		set := mustCompile(t, routes(n))
		d, err := set.Decide("GET", "api.example.com", "/area2/v3/objects/type2/12345")
		if err != nil || d.Target == nil || d.Target.Route != "r9" {
			t.Fatalf("%d routes: %+v %v", n, d.Target, err)
		}
	}
}

func BenchmarkDecide(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		set := mustCompile(b, routes(n))
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				d, _ := set.Decide("GET", "api.example.com", "/area2/v3/objects/type2/12345")
				if d.Target == nil {
					b.Fatal("no route")
				}
			}
		})
	}
	set := mustCompile(b, routes(1000))
	b.Run("routes=1000/unclean-path", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = set.Decide("GET", "api.example.com", "/area2/v3//objects/x/../type2/12345")
		}
	})
}

func TestDecideDoesNotAllocate(t *testing.T) {
	set := mustCompile(t, routes(1000))
	if n := testing.AllocsPerRun(100, func() {
		_, _ = set.Decide("GET", "api.example.com:443", "/area2/v3/objects/type2/12345/associations/deals/7")
		_, _ = set.Decide("POST", "api.example.com", "/nowhere/at/all")
	}); n != 0 {
		t.Fatalf("Decide allocates %v times per call", n)
	}
}

func TestDecideOutsideEveryCatalog(t *testing.T) {
	set := mustCompile(t, Catalog{Name: "files", PathPrefix: "/files/", Hosts: []string{"files.example.com"}, AllowUnmatched: true},
		Catalog{Name: "files-strict", PathPrefix: "/files/private"})
	tests := []struct {
		host, path string
		covering   string
		allow      bool
	}{
		{"files.example.com", "/files/a", "files", true},
		{"files.example.com", "/files/private/a", "files", true}, // a catalog with hosts is more specific than one without
		{"other.example.com", "/files/private/a", "files-strict", false},
		{"other.example.com", "/files/a", "", false},
		{"files.example.com", "/crm", "", false},
	}
	for _, tt := range tests {
		d, err := set.Decide("GET", tt.host, tt.path)
		if err != nil || d.Target != nil || d.Covering != tt.covering || d.AllowUnmatched != tt.allow {
			t.Errorf("%s%s: %+v %v; want covering %q allow %v", tt.host, tt.path, d, err, tt.covering, tt.allow)
		}
	}
}
