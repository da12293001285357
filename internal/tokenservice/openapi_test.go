package tokenservice

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	authnv1 "k8s.io/api/authentication/v1"

	"github.com/privateapps-dev/privateapp-operator/api/openapi"
)

// documented checks answers against api/openapi/token-service.yaml and
// remembers, per operation and status, which fields and headers they had.
type documented struct {
	doc    *openapi3.T
	router routers.Router
	seen   map[string]*seenAnswers
}

type seenAnswers struct{ fields, headers map[string]bool }

func loadDocument(t *testing.T) *documented {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(openapi.TokenServiceYAML)
	if err != nil {
		t.Fatalf("api/openapi/token-service.yaml: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("api/openapi/token-service.yaml is not a valid OpenAPI 3 document: %v", err)
	}
	doc.Servers = nil // the tests' servers are not the chart's
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &documented{doc: doc, router: router, seen: map[string]*seenAnswers{}}
}

// check validates one answer to method path (the query included) and
// records it.
func (d *documented) check(t *testing.T, method, path string, a answer) {
	t.Helper()
	req := httptest.NewRequest(method, "http://token-service.test:8443"+path, nil)
	route, params, err := d.router.FindRoute(req)
	if err != nil && err.Error() == routers.ErrMethodNotAllowed.Error() && a.code == http.StatusMethodNotAllowed {
		// A 405 is documented under the operation the path has: it is
		// what any other method gets.
		for _, m := range []string{http.MethodGet, http.MethodPost} {
			other := httptest.NewRequest(m, "http://token-service.test:8443"+path, nil)
			if route, params, err = d.router.FindRoute(other); err == nil {
				req, method = other, m
				break
			}
		}
	}
	if err != nil {
		t.Fatalf("%s %s answered %d, and the document has no such operation: %v", method, path, a.code, err)
	}
	err = openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 a.code, Header: a.header, Body: io.NopCloser(bytes.NewReader(a.body)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true},
	})
	if err != nil {
		t.Errorf("%s %s answered %d %s, which the document does not describe: %v", method, path, a.code, a.body, err)
	}
	key := fmt.Sprintf("%s %s %d", method, route.Path, a.code)
	s := d.seen[key]
	if s == nil {
		s = &seenAnswers{fields: map[string]bool{}, headers: map[string]bool{}}
		d.seen[key] = s
	}
	for h := range a.header {
		s.headers[http.CanonicalHeaderKey(h)] = true
	}
	var body any
	if json.Unmarshal(a.body, &body) == nil {
		jsonFields(body, "", s.fields)
	}
}

func jsonFields(v any, prefix string, out map[string]bool) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			out[prefix+k] = true
			jsonFields(e, prefix+k+".", out)
		}
	case []any:
		for _, e := range v {
			jsonFields(e, strings.TrimSuffix(prefix, ".")+"[].", out)
		}
	}
}

func schemaFields(s *openapi3.Schema, prefix string, out map[string]bool, depth int) {
	if s == nil || depth > 6 {
		return
	}
	if s.Type.Is(openapi3.TypeArray) && s.Items != nil {
		schemaFields(s.Items.Value, strings.TrimSuffix(prefix, ".")+"[].", out, depth+1)
		return
	}
	for name, p := range s.Properties {
		out[prefix+name] = true
		schemaFields(p.Value, prefix+name+".", out, depth+1)
	}
}

// uncovered lists what the document promises that no recorded answer had:
// an operation's status, or a field or header of its answer.
func (d *documented) uncovered() []string {
	var missing []string
	for path, item := range d.doc.Paths.Map() {
		for method, op := range item.Operations() {
			for status, resp := range op.Responses.Map() {
				key := fmt.Sprintf("%s %s %s", method, path, status)
				s := d.seen[key]
				if s == nil {
					missing = append(missing, key+": no answer with this status")
					continue
				}
				for h := range resp.Value.Headers {
					if !s.headers[http.CanonicalHeaderKey(h)] {
						missing = append(missing, key+": header "+h)
					}
				}
				for _, mt := range resp.Value.Content {
					if mt.Schema == nil || mt.Schema.Value == nil {
						continue
					}
					fields := map[string]bool{}
					schemaFields(mt.Schema.Value, "", fields, 0)
					for f := range fields {
						if !s.fields[f] {
							missing = append(missing, key+": field "+f)
						}
					}
				}
			}
		}
	}
	slices.Sort(missing)
	return missing
}

// TestOpenAPI sends the token service a request for every
// answer api/openapi/token-service.yaml describes: every answer must
// validate against the document, and every status, field and header the
// document names must appear in an answer.
func TestOpenAPI(t *testing.T) {
	d := loadDocument(t)
	f, _ := oauthFixture(t)
	f.catalogs.use(t, crmCatalog)
	// Derive the issuer from the Host, so that a made-up Host shows the 404.
	s := *f.service
	s.Issuer = ""
	s.Introspection = &IntrospectionLimit{PerSecond: 3}
	s.Audiences = []string{"https://kubernetes.default.svc"}
	f.serve(t, &s)
	paused, tiny := mustNew(t), mustNew(t)
	f.tokens = append(f.tokens, paused.Reveal(), tiny.Reveal())
	suspended := app("team-a", "paused", paused, nil, time.Time{}, nil)
	suspended.Spec.Suspend = true
	f.ix.Set(suspended)
	f.ix.Set(app("tiny", "crm", tiny, nil, time.Time{}, nil))

	bearer := func(tok string) string { return "Bearer " + tok }
	infoBody := func(tok string) []byte { return []byte(`{"tokenKey":"` + tok + `"}`) }
	review := func(tok string) []byte {
		b, _ := json.Marshal(authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: tok}})
		return b
	}
	form := func(tok string) []byte { return []byte(url.Values{"token": {tok}}.Encode()) }
	formHeader := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	apache := basic("apache", gatewaySecret)
	nginx := func(method, u string) map[string]string {
		return map[string]string{"X-Original-Method": method, "X-Original-URL": u, "X-Request-Id": "req-" + strconv.Itoa(int(f.clock.Now().Unix()))}
	}
	type exchange struct {
		method, path, auth string
		body               []byte
		header             map[string]string
		code               int
	}
	send := func(x exchange) {
		t.Helper()
		a := f.send(t, x.method, x.path, x.auth, x.body, x.header)
		if a.code != x.code {
			t.Fatalf("%s %s: %d %s, want %d", x.method, x.path, a.code, a.body, x.code)
		}
		d.check(t, x.method, x.path, a)
	}
	// Each exchange in a second of its own, unless it tests a limit.
	for _, x := range []exchange{
		{http.MethodGet, PathCheck + "?gateway=edge", bearer(f.current.Reveal()), nil, nginx("GET", "http://api.example.com/crm/v3/objects/contacts/1"), 200},
		{http.MethodGet, PathCheck, bearer(f.current.Reveal()), nil, nginx("BREW", "http://api.example.com/crm/v3/objects/contacts/1"), 403},
		{http.MethodGet, PathCheck, "", nil, nginx("GET", "http://api.example.com/crm/v3/objects/contacts/1"), 401},
		{http.MethodGet, PathCheck, bearer(f.current.Reveal()), nil, nginx("GET", "http://api.example.com/crm/v3/objects/companies/1"), 403},
		{http.MethodGet, PathCheck, bearer(f.current.Reveal()), nil, nginx("GET", "http://api.example.com/crm/v3/objects/deals/1"), 403},

		{http.MethodPost, PathAccessTokenInfo, "", infoBody(f.current.Reveal()), nil, 200},
		{http.MethodPost, PathAccessTokenInfo, "", infoBody(f.prev.Reveal()), nil, 200},
		{http.MethodPost, PathAccessTokenInfo, "", []byte(`{"tokenKey":`), nil, 400},
		{http.MethodPost, PathAccessTokenInfo, "", infoBody(mustNew(t).Reveal()), nil, 401},
		{http.MethodPost, PathAccessTokenInfo, "", infoBody(paused.Reveal()), nil, 403},
		{http.MethodGet, PathAccessTokenInfo, "", nil, nil, 405},
		{http.MethodPost, PathAccessTokenInfo, "", infoBody(strings.Repeat("a", maxBody)), nil, 413},

		{http.MethodGet, PathDailyUsage, bearer(f.current.Reveal()), nil, nil, 200},
		{http.MethodGet, PathDailyUsage, bearer(mustNew(t).Reveal()), nil, nil, 401},
		{http.MethodGet, PathDailyUsage, bearer(paused.Reveal()), nil, nil, 403},
		{http.MethodPost, PathDailyUsage, bearer(f.current.Reveal()), nil, nil, 405},

		{http.MethodPost, PathTokenReview, "", review(f.current.Reveal()), nil, 200},
		{http.MethodPost, PathTokenReview, "", review(mustNew(t).Reveal()), nil, 200},
		{http.MethodPost, PathTokenReview, "", []byte("{"), nil, 400},
		{http.MethodGet, PathTokenReview, "", nil, nil, 405},

		{http.MethodPost, PathIntrospect, apache, form(f.current.Reveal()), formHeader, 200},
		{http.MethodPost, PathIntrospect, apache, form(f.prev.Reveal()), formHeader, 200},
		{http.MethodPost, PathIntrospect, apache, nil, formHeader, 400},
		{http.MethodPost, PathIntrospect, basic("apache", "a-wrong-secret-0123456"), form(f.current.Reveal()), formHeader, 401},
		{http.MethodGet, PathIntrospect, apache, nil, nil, 405},

		{http.MethodGet, PathOAuthMetadata, "", nil, nil, 200},
		{http.MethodPost, PathOAuthMetadata, "", nil, nil, 405},
		{http.MethodGet, PathOpenAPIJSON, "", nil, nil, 200},
		{http.MethodGet, PathOpenAPIYAML, "", nil, nil, 200},
	} {
		f.clock.Step(time.Second)
		send(x)
	}
	// Past a limit: the tiny edition's 3 calls per 10 s for a check, the
	// introspection limit of 3 a second for the others.
	f.clock.Step(10 * time.Second)
	for range 3 {
		f.send(t, http.MethodGet, PathCheck, bearer(tiny.Reveal()), nil, nil)
	}
	send(exchange{http.MethodGet, PathCheck, bearer(tiny.Reveal()), nil, nil, 429})
	for _, x := range []exchange{
		{http.MethodPost, PathAccessTokenInfo, "", infoBody(f.current.Reveal()), nil, 429},
		{http.MethodGet, PathDailyUsage, bearer(f.current.Reveal()), nil, nil, 429},
		{http.MethodPost, PathTokenReview, "", review(f.current.Reveal()), nil, 429},
		{http.MethodPost, PathIntrospect, "", form(f.current.Reveal()), formHeader, 429},
	} {
		f.clock.Step(time.Second)
		for range 3 {
			f.send(t, x.method, x.path, x.auth, x.body, x.header)
		}
		send(x)
	}
	// A Host that is no host name gets no issuer: 404.
	req, _ := http.NewRequest(http.MethodGet, f.url+PathOAuthMetadata, nil)
	req.Host = "not_a_host_name"
	d.check(t, http.MethodGet, PathOAuthMetadata, roundTrip(t, http.DefaultClient, req))
	// TokenReview from a caller without the client certificate it needs.
	needsCert := *f.service
	needsCert.TokenReviewNeedsClientCert = true
	f.serve(t, &needsCert)
	send(exchange{http.MethodPost, PathTokenReview, "", review(f.current.Reveal()), nil, 401})

	if missing := d.uncovered(); len(missing) > 0 {
		t.Errorf("the document promises what no answer showed:\n%s", strings.Join(missing, "\n"))
	}
}

// TestOpenAPIIsServed: the token service serves the document it is checked
// against, as JSON and YAML.
func TestOpenAPIIsServed(t *testing.T) {
	f := newFixture(t)
	a := f.do(t, http.MethodGet, PathOpenAPIJSON, "", nil)
	var doc map[string]any
	if a.code != 200 || a.header.Get("Content-Type") != "application/json" || json.Unmarshal(a.body, &doc) != nil || doc["openapi"] != "3.0.3" {
		t.Fatalf("GET %s: %d %s %.80s", PathOpenAPIJSON, a.code, a.header.Get("Content-Type"), a.body)
	}
	if a = f.do(t, http.MethodGet, PathOpenAPIYAML, "", nil); a.code != 200 || !bytes.Equal(a.body, openapi.TokenServiceYAML) {
		t.Fatalf("GET %s: %d, not the document in api/openapi", PathOpenAPIYAML, a.code)
	}
}
