package tokenservice

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// tokenShaped matches what a secret scanner would take for a token.
var tokenShaped = regexp.MustCompile(`(?i)pat_[0-9a-z]{8,}`)

// FuzzRequests sends arbitrary Authorization headers, query strings,
// bodies and original requests (Envoy's path after /v1/check, nginx's
// X-Original-URL) to every endpoint, with an API catalog in force: the
// service must never panic, never answer 5xx, always answer errors in the
// JSON shape, and never echo a token back.
func FuzzRequests(f *testing.F) {
	fx := newFixture(f)
	fx.catalogs.use(f, crmCatalog)
	handler := fx.srv.Config.Handler
	for _, seed := range []struct{ auth, query, body, original string }{
		{"Bearer " + fx.current.Reveal(), "?scope=crm.objects.contacts.read", "", "/crm/v3/objects/contacts/1"},
		{"Bearer pat_", "?scope=%zz", `{"tokenKey":"pat_x"}`, "/crm/v3/objects/products/%2e%2e/deals/1"},
		{"bearer\t" + fx.prev.Reveal(), "", `{"tokenKey":` + "\x00", "//crm/../../x"},
		{"", "", `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"pat_abc"}}`, "http://h:1/a%2Fb?c"},
		{"Bearer " + fx.current.Reveal(), "?scope=pat_Q1w2E3r4T5y6", "", "/crm/v3/pat_abcdefgh12345678/x"},
	} {
		f.Add(seed.auth, seed.query, seed.body, seed.original)
	}
	f.Fuzz(func(t *testing.T, auth, query, body, original string) {
		for _, ep := range []struct{ method, path string }{
			{http.MethodGet, PathCheck}, {http.MethodGet, PathCheck + "/" + strings.TrimPrefix(original, "/")},
			{http.MethodPost, PathAccessTokenInfo}, {http.MethodPost, PathTokenReview},
		} {
			req := httptest.NewRequest(ep.method, "/", bytes.NewReader([]byte(body)))
			req.URL.Path, req.URL.RawQuery = ep.path, strings.TrimPrefix(query, "?")
			req.Header.Set("Authorization", auth)
			req.Header.Set("X-Original-URL", original)
			rec := httptest.NewRecorder()
			handler.ServeHTTP(rec, req)
			if rec.Code >= 500 {
				t.Fatalf("%s %s answered %d", ep.method, ep.path, rec.Code)
			}
			out, _ := io.ReadAll(rec.Body)
			if rec.Code >= 400 && !bytes.HasPrefix(out, []byte(`{"status":"error"`)) {
				t.Fatalf("%s answered %d without the JSON error shape", ep.path, rec.Code)
			}
			// Every token-shaped piece of every input, wherever it sits.
			for _, in := range []string{auth, query, body, original} {
				for _, tok := range tokenShaped.FindAllString(in, -1) {
					if bytes.Contains(out, []byte(tok)) {
						t.Fatal("the answer echoes a token-like input")
					}
				}
			}
		}
	})
}
