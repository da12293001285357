package tokenservice

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/privateapps-dev/privateapp-operator/internal/catalog"
	"github.com/privateapps-dev/privateapp-operator/internal/ratelimit"
)

// swapCatalogs is a Catalogs whose set a test replaces.
type swapCatalogs struct{ set atomic.Pointer[catalog.Set] }

func (c *swapCatalogs) Current() *catalog.Set {
	if s := c.set.Load(); s != nil {
		return s
	}
	return catalog.Empty
}

func (c *swapCatalogs) use(t testing.TB, cs ...catalog.Catalog) {
	t.Helper()
	set, results := catalog.Compile(cs)
	for _, r := range results {
		if !r.InForce {
			t.Fatalf("catalog %s not in force: %+v %+v", r.Name, r.Problems, r.Conflicts)
		}
	}
	c.set.Store(set)
}

// crmCatalog is the sample catalog's shape: the CRM objects, read and
// write, and the products the warehouse-sync sample app writes.
var crmCatalog = catalog.Catalog{
	Name: "crm",
	Scopes: []string{"crm.objects.contacts.read", "crm.objects.contacts.write", "crm.objects.deals.read", "crm.objects.deals.write",
		"crm.objects.products.write"},
	Routes: []catalog.Route{
		{Name: "contacts-get", Methods: []string{"GET"}, Path: "/crm/v3/objects/contacts/{id}", Scopes: []string{"crm.objects.contacts.read"}},
		{Name: "deals-get", Methods: []string{"GET"}, Path: "/crm/v3/objects/deals/{id}", Scopes: []string{"crm.objects.deals.read"}},
		{Name: "deals-update", Methods: []string{"PATCH"}, Path: "/crm/v3/objects/deals/{id}", Scopes: []string{"crm.objects.deals.write"},
			RecordType: "deals", RecordAction: "Updated"},
		{Name: "products-write", Methods: []string{"POST", "PATCH"}, Path: "/crm/v3/objects/products/{rest...}", Scopes: []string{"crm.objects.products.write"}},
	},
}

// checkAs sends a check the way a gateway does; header holds the gateway's
// headers (and any a client slipped in).
func (f *fixture) checkAs(t *testing.T, method, path, tok string, header map[string]string) answer {
	t.Helper()
	return f.send(t, method, path, "Bearer "+tok, nil, header)
}

func TestCheckMatchesCatalogRoutes(t *testing.T) {
	f := newFixture(t)
	warehouse := mustNew(t)
	f.tokens = append(f.tokens, warehouse.Reveal())
	wa := app("team-a", "warehouse-sync", warehouse, nil, t0, nil)
	wa.Spec.Scopes = []string{"crm.objects.products.write"}
	f.ix.Set(wa)
	f.catalogs.use(t, crmCatalog)
	crm := f.current.Reveal() // holds crm.objects.contacts.read and crm.objects.deals.write

	tests := []struct {
		name         string
		method, path string
		tok          string
		header       map[string]string
		code         int
		route        string
		category     string
		message      string
	}{
		// The reproduction of the issue: Envoy in path-prefix mode sends the
		// client's method and path after /v1/check.
		{name: "Envoy: products.write does not reach deals", method: "GET", path: PathCheck + "/crm/v3/objects/deals/1", tok: warehouse.Reveal(),
			code: 403, category: categoryScopes, message: "lacks the scopes route crm/deals-get (/crm/v3/objects/deals/{id}) requires: crm.objects.deals.read"},
		{name: "Envoy: a client query names no scope it could satisfy", method: "GET", path: PathCheck + "/crm/v3/objects/deals/1?scope=crm.objects.products.write",
			tok: warehouse.Reveal(), code: 403, category: categoryScopes, message: "crm.objects.deals.read"},
		{name: "Envoy: a client query requires nothing", method: "PATCH", path: PathCheck + "/crm/v3/objects/deals/1?scope=crm.schemas.companies.write",
			tok: crm, code: 200, route: "crm/deals-update"},
		{name: "Envoy: .. cannot walk from products to deals", method: "POST", path: PathCheck + "/crm/v3/objects/products/%2e%2e/deals/1",
			tok: warehouse.Reveal(), code: 403, category: categoryNoRoute, message: "no APICatalog route covers POST /crm/v3/objects/deals/1"},
		{name: "Envoy: the route's own scope", method: "POST", path: PathCheck + "/crm/v3/objects/products/42", tok: warehouse.Reveal(), code: 200, route: "crm/products-write"},
		{name: "Envoy: an encoded slash is refused", method: "GET", path: PathCheck + "/crm/v3/objects%2Fdeals/1", tok: crm,
			code: 403, category: categoryValidation, message: "encoded /"},
		{name: "nginx: a route's scope held", method: "GET", path: PathCheck, tok: crm,
			header: map[string]string{"X-Original-Method": "GET", "X-Original-URL": "https://api.example.com/crm/v3/objects/contacts/7?archived=false"}, code: 200, route: "crm/contacts-get"},
		{name: "nginx: a route's scope missing", method: "GET", path: PathCheck, tok: crm,
			header: map[string]string{"X-Original-Method": "GET", "X-Original-URL": "https://api.example.com/crm/v3/objects/deals/7"}, code: 403, category: categoryScopes,
			message: "crm.objects.deals.read"},
		{name: "nginx: the gateway's scope parameter adds to the route's", method: "GET", path: PathCheck + "?scope=crm.objects.contacts.write", tok: crm,
			header: map[string]string{"X-Original-Method": "GET", "X-Original-URL": "/crm/v3/objects/contacts/7"}, code: 403, category: categoryScopes,
			message: "crm.objects.contacts.write"},
		{name: "nginx: no route", method: "GET", path: PathCheck, tok: crm,
			header: map[string]string{"X-Original-Method": "DELETE", "X-Original-URL": "https://api.example.com/crm/v3/objects/contacts/7"}, code: 403, category: categoryNoRoute,
			message: `no APICatalog route covers DELETE /crm/v3/objects/contacts/7 on host api.example.com, and APICatalog "crm", which covers it, refuses`},
		{name: "ForwardAuth: a route's scope held", method: "GET", path: PathCheck, tok: crm,
			header: map[string]string{"X-Forwarded-Method": "PATCH", "X-Forwarded-Host": "api.example.com", "X-Forwarded-Uri": "/crm/v3/objects/deals/9"}, code: 200, route: "crm/deals-update"},
		{name: "ForwardAuth: a client's X-Original-URL that disagrees is refused", method: "GET", path: PathCheck, tok: warehouse.Reveal(),
			header: map[string]string{"X-Original-URL": "/crm/v3/objects/products/1", "X-Original-Method": "POST",
				"X-Forwarded-Method": "GET", "X-Forwarded-Host": "api.example.com", "X-Forwarded-Uri": "/crm/v3/objects/deals/1"},
			code: 403, category: categoryValidation, message: "X-Original-URL says POST /crm/v3/objects/products/1 and X-Forwarded-Uri says GET /crm/v3/objects/deals/1"},
		{name: "nginx: a client's X-Forwarded-Uri that disagrees is refused", method: "GET", path: PathCheck, tok: warehouse.Reveal(),
			header: map[string]string{"X-Original-URL": "http://api.example.com/crm/v3/objects/deals/1", "X-Original-Method": "GET",
				"X-Forwarded-Method": "POST", "X-Forwarded-Uri": "/crm/v3/objects/products/1"},
			code: 403, category: categoryValidation, message: "must agree"},
		{name: "Envoy: a client's X-Original-URL that disagrees is refused", method: "GET", path: PathCheck + "/crm/v3/objects/deals/1", tok: warehouse.Reveal(),
			header: map[string]string{"X-Original-URL": "/crm/v3/objects/products/1", "X-Original-Method": "POST"},
			code:   403, category: categoryValidation, message: "the path after /v1/check (path-prefix mode) says GET /crm/v3/objects/deals/1"},
		{name: "headers that agree are fine", method: "GET", path: PathCheck, tok: crm,
			header: map[string]string{"X-Original-URL": "http://api.example.com:8080/crm/v3/objects/contacts/1", "X-Original-Method": "GET",
				"X-Forwarded-Method": "GET", "X-Forwarded-Host": "API.example.com", "X-Forwarded-Uri": "/crm/v3//objects/contacts/1"},
			code: 200, route: "crm/contacts-get"},
		{name: "a check about no request", method: "GET", path: PathCheck + "?scope=crm.objects.contacts.read", tok: crm,
			code: 403, category: categoryNoRoute, message: "does not say which request it is about"},
		{name: "an odd method", method: "GET", path: PathCheck, tok: crm,
			header: map[string]string{"X-Original-Method": "PROPFIND", "X-Original-URL": "/crm/v3/objects/contacts/7"}, code: 403, category: categoryValidation,
			message: `the method "PROPFIND" is not one a catalog route can name`},
		{name: "HEAD is read as GET", method: "HEAD", path: PathCheck + "/crm/v3/objects/contacts/7", tok: crm, code: 200, route: "crm/contacts-get"},
		{name: "Envoy: ; path parameters are refused", method: "POST", path: PathCheck + "/crm/v3/objects/products/..;/deals/1", tok: warehouse.Reveal(),
			code: 403, category: categoryValidation, message: "has a ;"},
		{name: "a token in the path is not echoed", method: "GET", path: PathCheck + "/tokens/" + crm, tok: crm,
			code: 403, category: categoryNoRoute, message: "GET /tokens/pat_[REDACTED]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := f.checkAs(t, tt.method, tt.path, tt.tok, tt.header)
			if a.code != tt.code {
				t.Fatalf("status %d, want %d: %s", a.code, tt.code, a.body)
			}
			if tt.code == 200 {
				if got := a.header.Get(HeaderRoute); got != tt.route {
					t.Fatalf("%s: %q, want %q", HeaderRoute, got, tt.route)
				}
				return
			}
			e := errorBody(t, a)
			if e.Category != tt.category || !strings.Contains(e.Message, tt.message) {
				t.Fatalf("error %+v, want category %s and a message containing %q", e, tt.category, tt.message)
			}
		})
	}
}

func TestCheckWithCatalogsGrantsOnlyOfferedScopes(t *testing.T) {
	f := newFixture(t)
	open := catalog.Catalog{Name: "open", AllowUnmatched: true, Scopes: []string{"crm.objects.contacts.read"}}
	f.catalogs.use(t, open)
	nginx := map[string]string{"X-Original-Method": "GET", "X-Original-URL": "http://api.example.com/anything"}
	// The app holds contacts.read and deals.write; only contacts.read is
	// offered now.
	a := f.checkAs(t, "GET", PathCheck+"?scope=crm.objects.contacts.read", f.current.Reveal(), nginx)
	if a.code != 200 || a.header.Get(HeaderScopes) != "crm.objects.contacts.read" || a.header.Get(HeaderRoute) != "-" {
		t.Fatalf("unmatched request under an Allow catalog: %d %s %q; want 200 with only the offered scope", a.code, a.body, a.header.Get(HeaderScopes))
	}
	a = f.checkAs(t, "GET", PathCheck+"?scope=crm.objects.deals.write", f.current.Reveal(), nginx)
	if a.code != 403 || !strings.Contains(errorBody(t, a).Message, "crm.objects.deals.write") {
		t.Fatalf("a held scope no catalog offers: %d %s; want 403", a.code, a.body)
	}
	// Without catalogs, the old behaviour: the gateway's scope parameters
	// decide, and a path-prefix query decides nothing.
	f.catalogs.set.Store(catalog.Empty)
	if a := f.checkAs(t, "GET", PathCheck+"?scope=crm.objects.deals.write", f.current.Reveal(), nil); a.code != 200 ||
		a.header.Get(HeaderScopes) != "crm.objects.contacts.read crm.objects.deals.write" {
		t.Fatalf("without catalogs: %d %s", a.code, a.body)
	}
	if a := f.checkAs(t, "GET", PathCheck+"/x?scope=crm.schemas.companies.write", f.current.Reveal(), nil); a.code != 200 {
		t.Fatalf("without catalogs, a path-prefix query required a scope: %d %s", a.code, a.body)
	}
}

func TestOriginOf(t *testing.T) {
	tests := []struct {
		name, method, target string
		header               map[string]string
		want                 origin
		wantErr              string
	}{
		{name: "nginx auth_request", method: "GET", target: PathCheck,
			header: map[string]string{"X-Original-Method": "POST", "X-Original-URL": "https://api.example.com:8443/crm/v3/objects/contacts?a=b#f"},
			want:   origin{method: "POST", host: "api.example.com", path: "/crm/v3/objects/contacts", from: fromOriginalURL}},
		{name: "nginx, a Host that ends the authority early", method: "GET", target: PathCheck,
			header: map[string]string{"X-Original-URL": "https://api.example.com:?/admin/users"}, wantErr: `the host "api.example.com:?" is not a host name`},
		{name: "nginx, a Host with userinfo", method: "GET", target: PathCheck,
			header: map[string]string{"X-Original-URL": "https://api.example.com:@public.example.com/admin"}, wantErr: "is not a host name"},
		{name: "nginx, a Host with several ports", method: "GET", target: PathCheck,
			header: map[string]string{"X-Original-URL": "https://api.example.com:1:2:3/admin"}, wantErr: "is not a host name"},
		{name: "an IPv6 host", method: "GET", target: PathCheck,
			header: map[string]string{"X-Original-URL": "http://[::1]:8080/a"}, want: origin{method: "GET", host: "::1", path: "/a", from: fromOriginalURL}},
		{name: "a relative copy does not take the host of another family (a client's copy)", method: "GET", target: PathCheck,
			header: map[string]string{"X-Original-URL": "/admin/users", "X-Forwarded-Uri": "/admin/users", "X-Forwarded-Host": "billing.example.com"},
			want:   origin{method: "GET", path: "/admin/users", from: fromOriginalURL}},
		{name: "a method override", method: "POST", target: PathCheck,
			header: map[string]string{"X-Original-URL": "/a", "X-HTTP-Method-Override": "DELETE"}, wantErr: "X-Http-Method-Override"},
		{name: "Envoy, an encoded slash survives an unusual byte", method: "GET", target: PathCheck + "/crm/x/admin/..%2F..%2Fpublic/\xc3\xa9",
			want: origin{method: "GET", host: "example.com", path: "/crm/x/admin/..%2F..%2Fpublic/\xc3\xa9", from: fromPathPrefix}},
		{name: "nginx, a path only", method: "GET", target: PathCheck, header: map[string]string{"X-Original-URL": "/crm?x"},
			want: origin{method: "GET", path: "/crm", from: fromOriginalURL}},
		{name: "nginx, a host only", method: "GET", target: PathCheck, header: map[string]string{"X-Original-URL": "http://api.example.com"},
			want: origin{method: "GET", host: "api.example.com", path: "/", from: fromOriginalURL}},
		{name: "Traefik ForwardAuth", method: "GET", target: PathCheck,
			header: map[string]string{"X-Forwarded-Method": "DELETE", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "api.example.com", "X-Forwarded-Uri": "/crm/v3/objects/contacts/42?x=1"},
			want:   origin{method: "DELETE", host: "api.example.com", path: "/crm/v3/objects/contacts/42", from: fromForwardedURI}},
		{name: "Envoy path prefix", method: "PATCH", target: PathCheck + "/crm/v3/objects/%64eals?scope=a.read",
			want: origin{method: "PATCH", host: "example.com", path: "/crm/v3/objects/%64eals", from: fromPathPrefix}},
		{name: "Envoy path prefix, the root", method: "GET", target: PathCheck + "/", want: origin{method: "GET", host: "example.com", path: "/", from: fromPathPrefix}},
		{name: "a direct call", method: "GET", target: PathCheck},
		{name: "not a URL", method: "GET", target: PathCheck, header: map[string]string{"X-Original-URL": "crm/v3"}, wantErr: "neither an absolute URL nor a path"},
		{name: "methods disagree", method: "GET", target: PathCheck,
			header:  map[string]string{"X-Original-URL": "/a", "X-Original-Method": "GET", "X-Forwarded-Uri": "/a", "X-Forwarded-Method": "DELETE"},
			wantErr: "X-Original-URL says GET /a and X-Forwarded-Uri says DELETE /a"},
		{name: "hosts disagree", method: "GET", target: PathCheck,
			header:  map[string]string{"X-Original-URL": "http://a.example.com/a", "X-Forwarded-Uri": "/a", "X-Forwarded-Host": "b.example.com"},
			wantErr: "must agree"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := checkRequestFor(t, tt.method, tt.target, tt.header)
			got, err := originOf(&c)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one about %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("originOf = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

// BenchmarkCheckWithCatalog is BenchmarkCheck asked as nginx asks, without a
// catalog and with one of 1,000 routes: the difference is what matching
// costs a check.
func BenchmarkCheckWithCatalog(b *testing.B) {
	c := catalog.Catalog{Name: "bench", Scopes: []string{"crm.objects.contacts.read", "crm.objects.deals.write"}}
	for i := range 250 {
		base := fmt.Sprintf("/area%d/v3/objects/type%d", i%10, i)
		for j, p := range []string{base, base + "/{id}", base + "/search", base + "/{id}/associations/{to}/{toId}"} {
			c.Routes = append(c.Routes, catalog.Route{Name: fmt.Sprintf("r%d-%d", i, j), Methods: []string{"GET"}, Path: p, Scopes: []string{"crm.objects.contacts.read"}})
		}
	}
	for _, n := range []int{0, 1000} {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			f := newFixture(b)
			if n > 0 {
				f.catalogs.use(b, c)
			}
			limits := DefaultLimits()
			limits.Editions["professional"] = EditionLimits{PerTenSeconds: 1 << 40, PerDay: 1 << 40}
			s := &Service{Index: f.ix, Limiter: ratelimit.New(), Limits: limits, Usage: f.usage, Clock: f.clock,
				Accounts: labels{"team-a": {"professional", ""}}, Catalogs: &f.catalogs}
			benchmarkHandler(b, s.Handler(), PathCheck, map[string]string{"Authorization": "Bearer " + f.current.Reveal(),
				"X-Original-Method": "GET", "X-Original-URL": "https://api.example.com/area7/v3/objects/type247/12345"})
		})
	}
}

// TestClientCannotPickTheHost: where the gateway names the request by a
// relative X-Original-URL, a client's copy of X-Forwarded-Host does not
// choose the host the catalogs route by; with catalogs that route by host
// the check is refused as hostless.
func TestClientCannotPickTheHost(t *testing.T) {
	f := newFixture(t)
	open := catalog.Catalog{Name: "billing", Hosts: []string{"billing.example.com"}, AllowUnmatched: true,
		Scopes: []string{"billing.invoices.read"}}
	f.catalogs.use(t, crmCatalog, open)
	tok := f.current.Reveal()
	forged := map[string]string{"X-Original-Method": "GET", "X-Original-URL": "/admin/users",
		"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/admin/users", "X-Forwarded-Host": "billing.example.com"}
	a := f.checkAs(t, "GET", PathCheck, tok, forged)
	if a.code != http.StatusForbidden || !strings.Contains(string(a.body), "does not say which host") {
		t.Errorf("a relative X-Original-URL with a client's X-Forwarded-Host: %d %s; want 403, the host unknown", a.code, a.body)
	}
	// The gateway's own absolute URL names the host: billing lets it through.
	a = f.checkAs(t, "GET", PathCheck, tok, map[string]string{"X-Original-Method": "GET", "X-Original-URL": "https://billing.example.com/admin/users"})
	if a.code != http.StatusOK {
		t.Errorf("the absolute URL of billing's host: %d %s", a.code, a.body)
	}
}

// checkRequestFor is what Handler reads of a check with this method,
// target and headers, sent to the Host example.com.
func checkRequestFor(t *testing.T, method, target string, header map[string]string) checkRequest {
	t.Helper()
	var ctx fasthttp.RequestCtx
	ctx.Request.Header.SetMethod(method)
	ctx.Request.SetRequestURI(target)
	for k, v := range header {
		ctx.Request.Header.Set(k, v)
	}
	uri := ctx.Request.Header.RequestURI()
	path, query, host, err := splitTarget(uri)
	if err != nil {
		t.Fatal(err)
	}
	if host == "" {
		host = "example.com"
	}
	return readCheck(&ctx, uri, path, query, host)
}
