package tokenservice

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/privateapps-dev/privateapp-operator/internal/calllog"
	"github.com/privateapps-dev/privateapp-operator/internal/catalog"
)

const gatewaySecret = "apache-secret-0123456789"

// oauthFixture is the fixture with two introspection clients: apache, which
// sees every scope, and billing-gw, limited to the billing catalog.
func oauthFixture(t *testing.T) (*fixture, string) {
	t.Helper()
	f := newFixture(t)
	path := filepath.Join(t.TempDir(), "clients.yaml")
	writeClients(t, path, `clients:
- id: apache
  secret: `+gatewaySecret+`
- id: billing-gw
  secret: billing-secret-0123456789
  catalogs: [billing]
`)
	clients, err := LoadIntrospectionClients(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := *f.service
	s.OAuthClients, s.Issuer, s.Introspection = clients, "https://tokens.example.com", &IntrospectionLimit{PerSecond: 5}
	f.serve(t, &s)
	return f, path
}

func writeClients(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func basic(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}

// introspect posts a form to the introspection endpoint.
func (f *fixture) introspect(t *testing.T, auth string, form url.Values) (answer, map[string]any) {
	t.Helper()
	a := f.send(t, http.MethodPost, PathIntrospect, auth, []byte(form.Encode()), map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	var body map[string]any
	if err := json.Unmarshal(a.body, &body); err != nil {
		t.Fatalf("introspection answer %d is not JSON: %s", a.code, a.body)
	}
	return a, body
}

func TestIntrospection(t *testing.T) {
	f, _ := oauthFixture(t)
	f.catalogs.use(t, crmCatalog, catalog.Catalog{Name: "billing", PathPrefix: "/billing", Scopes: []string{"crm.objects.deals.write"}})
	apache := basic("apache", gatewaySecret)

	// An active token: RFC 7662's fields and the project's.
	a, got := f.introspect(t, apache, url.Values{"token": {f.current.Reveal()}, "token_type_hint": {"access_token"}})
	want := map[string]any{
		"active": true, "scope": "crm.objects.contacts.read crm.objects.deals.write", "client_id": "team-a/crm", "username": "alice",
		"token_type": "Bearer", "iat": float64(t0.Unix()), "sub": "privateapp:team-a:crm", "aud": "apache", "iss": "https://tokens.example.com",
		"namespace": "team-a", "name": "crm",
	}
	if a.code != 200 || !jsonEqual(got, want) {
		t.Fatalf("active token: %d %s, want 200 %v", a.code, a.body, want)
	}
	if a.header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", a.header.Get("Cache-Control"))
	}
	// The previous token in its grace period: exp and previous.
	if a, got = f.introspect(t, apache, url.Values{"token": {f.prev.Reveal()}}); got["exp"] != float64(t0.Add(time.Hour).Unix()) || got["previous"] != true {
		t.Fatalf("previous token: %s, want exp %d and previous", a.body, t0.Add(time.Hour).Unix())
	}
	// client_secret_post authenticates too.
	if a, got = f.introspect(t, "", url.Values{"token": {f.current.Reveal()}, "client_id": {"apache"}, "client_secret": {gatewaySecret}}); got["active"] != true {
		t.Fatalf("client_secret_post: %d %s, want active", a.code, a.body)
	}
	// A client limited to a catalog learns only its scopes.
	billing := basic("billing-gw", "billing-secret-0123456789")
	if a, got = f.introspect(t, billing, url.Values{"token": {f.current.Reveal()}}); got["scope"] != "crm.objects.deals.write" || got["aud"] != "billing-gw" {
		t.Fatalf("client limited to billing: %s, want only crm.objects.deals.write", a.body)
	}

	// Every token that does not work: {"active": false} and nothing else.
	f.clock.SetTime(t0.Add(2 * time.Hour)) // the previous token has expired
	suspended := mustNew(t)
	s := app("team-a", "paused", suspended, nil, time.Time{}, nil)
	s.Spec.Suspend = true
	f.ix.Set(s)
	only := mustNew(t)
	contacts := app("team-a", "contacts-only", only, nil, time.Time{}, nil)
	contacts.Spec.Scopes = []string{"crm.objects.contacts.read"}
	f.ix.Set(contacts)
	f.tokens = append(f.tokens, suspended.Reveal(), only.Reveal())
	for _, tc := range []struct{ name, auth, token string }{
		{"expired", apache, f.prev.Reveal()},
		{"unknown", apache, mustNew(t).Reveal()},
		{"malformed", apache, "hello"},
		{"suspended", apache, suspended.Reveal()},
		{"none of the client's catalogs' scopes", billing, only.Reveal()},
	} {
		a, _ := f.introspect(t, tc.auth, url.Values{"token": {tc.token}})
		if a.code != 200 || string(a.body) != "{\"active\":false}\n" {
			t.Errorf("%s: %d %s, want 200 {\"active\":false}", tc.name, a.code, a.body)
		}
	}

	// Introspections are in the call log, and are not calls of the app.
	var logged []calllog.Entry
	for _, e := range f.calls.all() {
		if e.Method == calllog.MethodIntrospect {
			logged = append(logged, e)
		}
	}
	if len(logged) != 7 || logged[0].Code != 200 || logged[0].App != "crm" || logged[0].Path != PathIntrospect {
		t.Fatalf("call log: %d introspections %+v, want 7 (none for the unknown and the malformed token), the first allowed for crm", len(logged), logged)
	}
	if e := logged[len(logged)-1]; e.Code != 401 || e.Reason != "client_catalogs" || e.App != "contacts-only" {
		t.Errorf("last entry %+v, want 401 client_catalogs for contacts-only", e)
	}
	if u := f.usage.take()[(&App{Namespace: "team-a", Name: "crm"}).Key()]; u != nil {
		t.Errorf("introspections counted as calls of the app: %+v", u.pending)
	}
}

func TestIntrospectionRefusesClients(t *testing.T) {
	f, path := oauthFixture(t)
	form := url.Values{"token": {f.current.Reveal()}}
	for _, tc := range []struct {
		name, auth string
		form       url.Values
		code       int
		error      string
	}{
		{"no client", "", form, 401, "invalid_client"},
		{"a wrong secret", basic("apache", "apache-secret-wrong-0000"), form, 401, "invalid_client"},
		{"an unknown client", basic("nginx", gatewaySecret), form, 401, "invalid_client"},
		{"a Bearer token as the client", "Bearer " + f.current.Reveal(), form, 401, "invalid_client"},
		{"two methods", basic("apache", gatewaySecret), url.Values{"token": form["token"], "client_id": {"apache"}, "client_secret": {gatewaySecret}}, 401, "invalid_client"},
		{"no token", basic("apache", gatewaySecret), url.Values{}, 400, "invalid_request"},
	} {
		f.clock.Step(time.Second) // a second of its own: the limit is not what answers
		a, got := f.introspect(t, tc.auth, tc.form)
		if a.code != tc.code || got["error"] != tc.error || got["error_description"] == "" {
			t.Errorf("%s: %d %s, want %d %s with a description", tc.name, a.code, a.body, tc.code, tc.error)
		}
		if tc.code == 401 && a.header.Get("WWW-Authenticate") != `Basic realm="privateapps"` {
			t.Errorf("%s: WWW-Authenticate %q", tc.name, a.header.Get("WWW-Authenticate"))
		}
	}
	// The token in the URL, or as JSON: refused before anything is read.
	a := f.send(t, http.MethodPost, PathIntrospect+"?token="+f.current.Reveal(), basic("apache", gatewaySecret), nil,
		map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
	if a.code != 400 || !strings.Contains(string(a.body), "not in the URL") {
		t.Errorf("token in the URL: %d %s, want 400", a.code, a.body)
	}
	a = f.send(t, http.MethodPost, PathIntrospect, basic("apache", gatewaySecret), []byte(`{"token":"x"}`), map[string]string{"Content-Type": "application/json"})
	if a.code != 400 || !strings.Contains(string(a.body), "x-www-form-urlencoded") {
		t.Errorf("JSON body: %d %s, want 400 naming the form encoding", a.code, a.body)
	}
	if a = f.do(t, http.MethodGet, PathIntrospect, "", nil); a.code != 405 {
		t.Errorf("GET: %d, want 405", a.code)
	}

	// Unauthenticated callers count against the source's limit (5 a second
	// here): past it, 429.
	f.clock.SetTime(t0.Add(time.Minute))
	var codes []int
	for range 6 {
		a, _ := f.introspect(t, basic("apache", "apache-secret-wrong-0000"), form)
		codes = append(codes, a.code)
	}
	if fmt.Sprint(codes) != "[401 401 401 401 401 429]" {
		t.Errorf("wrong secrets from one source in one second: %v, want the 6th refused 429", codes)
	}
	// A declared client is not limited.
	for range 5 {
		if a, got := f.introspect(t, basic("apache", gatewaySecret), form); got["active"] != true {
			t.Fatalf("a declared client past the unauthenticated limit: %d %s", a.code, a.body)
		}
	}

	// The file changes: the new secret works within a second, the old one
	// no longer; a file that no longer parses keeps the clients in force.
	writeClients(t, path, "clients:\n- id: apache\n  secret: apache-secret-rotated-0000\n")
	time.Sleep(1100 * time.Millisecond)
	f.clock.SetTime(t0.Add(2 * time.Minute))
	if _, got := f.introspect(t, basic("apache", "apache-secret-rotated-0000"), form); got["active"] != true {
		t.Fatalf("the rotated secret is not taken: %v", got)
	}
	if a, _ := f.introspect(t, basic("apache", gatewaySecret), form); a.code != 401 {
		t.Fatalf("the old secret still works after the file changed: %d", a.code)
	}
	writeClients(t, path, "clients:\n- id: apache\n  secret: short\n")
	time.Sleep(1100 * time.Millisecond)
	if _, got := f.introspect(t, basic("apache", "apache-secret-rotated-0000"), form); got["active"] != true {
		t.Fatalf("a broken file took the clients in force away: %v", got)
	}
}

func TestParseIntrospectionClients(t *testing.T) {
	for _, tc := range []struct{ name, file, want string }{
		{"a short secret", "clients:\n- id: a\n  secret: short\n", "at least 16"},
		{"no way to authenticate", "clients:\n- id: a\n", "neither a secret nor certificate"},
		{"twice", "clients:\n- id: a\n  secret: 0123456789abcdef\n- id: a\n  secret: 0123456789abcdef\n", "declared twice"},
		{"a colon", "clients:\n- id: 'a:b'\n  secret: 0123456789abcdef\n", "without ':'"},
		{"an unknown field", "clients:\n- id: a\n  secrte: 0123456789abcdef\n", "unknown field"},
	} {
		if _, err := ParseIntrospectionClients([]byte(tc.file)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
	// Every problem at once, and no secret in the message.
	_, err := ParseIntrospectionClients([]byte("clients:\n- id: a\n  secret: tiny-secret\n- id: b\n"))
	if err == nil || !strings.Contains(err.Error(), `"a"`) || !strings.Contains(err.Error(), `"b"`) || strings.Contains(err.Error(), "tiny-secret") {
		t.Errorf("two problems: %v, want both clients named and no secret", err)
	}
}

func TestOAuthMetadata(t *testing.T) {
	f, _ := oauthFixture(t)
	f.catalogs.use(t, crmCatalog)
	a := f.do(t, http.MethodGet, PathOAuthMetadata, "", nil)
	var got OAuthMetadata
	if err := json.Unmarshal(a.body, &got); a.code != 200 || err != nil {
		t.Fatalf("metadata: %d %s", a.code, a.body)
	}
	if got.Issuer != "https://tokens.example.com" || got.IntrospectionEndpoint != "https://tokens.example.com/oauth2/introspect" ||
		strings.Join(got.IntrospectionAuthMethods, " ") != "client_secret_basic client_secret_post tls_client_auth" ||
		got.ResponseTypesSupported == nil || len(got.ScopesSupported) != len(crmCatalog.Scopes) {
		t.Fatalf("metadata: %+v", got)
	}
	// Without --token-service-issuer, the Host the request came by.
	f.service.Issuer = ""
	if a = f.do(t, http.MethodGet, PathOAuthMetadata, "", nil); !strings.Contains(string(a.body), `"issuer":"http://token-service.test:8443"`) {
		t.Fatalf("derived issuer: %s", a.body)
	}
}

// jsonEqual compares a decoded JSON object with want.
func jsonEqual(got, want map[string]any) bool {
	a, _ := json.Marshal(got)
	b, _ := json.Marshal(want)
	return string(a) == string(b)
}
