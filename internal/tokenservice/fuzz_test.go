package tokenservice

import (
	"bytes"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/privateapps-dev/privateapp-operator/internal/calllog"
	"github.com/privateapps-dev/privateapp-operator/internal/token"
)

// tokenShaped matches what a secret scanner would take for a token.
var tokenShaped = regexp.MustCompile(`(?i)pat_[0-9a-z]{8,}`)

// FuzzRequests sends arbitrary Authorization headers, query strings,
// bodies and original requests (Envoy's path after /v1/check, nginx's
// X-Original-URL) to every endpoint, with an API catalog in force: the
// service must never panic, never answer 5xx, always answer errors in the
// JSON shape, and never echo a token back, in its answers or its call
// log. The handler is driven directly: a listener would refuse most of
// what the fuzzer makes before the handler saw it.
func FuzzRequests(f *testing.F) {
	fx := newFixture(f)
	fx.catalogs.use(f, crmCatalog)
	h := fx.service.Handler()
	for _, seed := range []struct{ auth, query, body, original string }{
		{"Bearer " + fx.current.Reveal(), "?scope=crm.objects.contacts.read", "", "/crm/v3/objects/contacts/1"},
		{"Bearer pat_", "?scope=%zz", `{"tokenKey":"pat_x"}`, "/crm/v3/objects/products/%2e%2e/deals/1"},
		{"bearer\t" + fx.prev.Reveal(), "", `{"tokenKey":` + "\x00", "//crm/../../x"},
		{"", "", `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"pat_abc"}}`, "http://h:1/a%2Fb?c"},
		{"Bearer " + fx.current.Reveal(), "?scope=pat_Q1w2E3r4T5y6", "", "/crm/v3/pat_abcdefgh12345678/x"},
		{"Bearer " + fx.current.Reveal(), "", "", "https://user:pat_Q1w2E3r4T5y6@api.example.com/crm/v3/pat%5Fabcdefgh12345678/x?a=1;q=pat%5FQ1w2E3r4T5y6"},
	} {
		f.Add(seed.auth, seed.query, seed.body, seed.original)
	}
	check := func(t *testing.T, path string, code int, out []byte, inputs ...string) {
		if code >= 500 {
			t.Fatalf("%s answered %d", path, code)
		}
		if code >= 400 && !bytes.HasPrefix(out, []byte(`{"status":"error"`)) {
			t.Fatalf("%s answered %d without the JSON error shape", path, code)
		}
		// Every token-shaped piece of every input, wherever it sits.
		for _, in := range inputs {
			for _, tok := range tokenShaped.FindAllString(in, -1) {
				if bytes.Contains(out, []byte(tok)) {
					t.Fatal("the answer echoes a token-like input")
				}
			}
		}
	}
	redactor := calllog.NewRedactor()
	// What the call log keeps of the checks: nothing token-shaped, as sent
	// or percent-decoded (a server reads pat%5F... as pat_...).
	logged := func(t *testing.T) {
		for _, e := range fx.calls.take() {
			e = redactor.Entry(e)
			for _, v := range []string{e.Path, e.Query, e.Host, e.Method} {
				dec, err := url.PathUnescape(strings.ReplaceAll(v, "+", " "))
				if tokenShaped.MatchString(v) || err == nil && tokenShaped.MatchString(dec) {
					t.Fatalf("the call log keeps a token-like %q", token.Redact(v))
				}
			}
		}
	}
	f.Fuzz(func(t *testing.T, auth, query, body, original string) {
		for _, ep := range []struct{ method, path string }{
			{http.MethodGet, PathCheck}, {http.MethodGet, PathCheck + "/" + strings.TrimPrefix(original, "/")},
			{http.MethodPost, PathAccessTokenInfo}, {http.MethodPost, PathTokenReview},
		} {
			var fr fasthttp.Request
			fr.Header.SetMethod(ep.method)
			fr.SetRequestURI(ep.path + "?" + strings.TrimPrefix(query, "?"))
			fr.Header.Set("Authorization", auth)
			fr.Header.Set("X-Original-URL", original)
			fr.SetBodyString(body)
			var ctx fasthttp.RequestCtx
			ctx.Init(&fr, nil, nil)
			h(&ctx)
			check(t, ep.path, ctx.Response.StatusCode(), ctx.Response.Body(), auth, query, body, original)
			logged(t)
		}
	})
}
