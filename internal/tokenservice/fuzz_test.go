package tokenservice

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzRequests sends arbitrary Authorization headers, query strings and
// bodies to every endpoint: the service must never panic, never answer 5xx,
// always answer errors in the JSON shape, and never echo the input back.
func FuzzRequests(f *testing.F) {
	fx := newFixture(f)
	handler := fx.srv.Config.Handler
	for _, seed := range []struct{ auth, query, body string }{
		{"Bearer " + fx.current.String(), "?scope=crm.objects.contacts.read", ""},
		{"Bearer pat_", "?scope=%zz", `{"tokenKey":"pat_x"}`},
		{"bearer\t" + fx.prev.String(), "", `{"tokenKey":` + "\x00"},
		{"", "", `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"pat_abc"}}`},
	} {
		f.Add(seed.auth, seed.query, seed.body)
	}
	f.Fuzz(func(t *testing.T, auth, query, body string) {
		for _, ep := range []struct{ method, path string }{
			{http.MethodGet, PathCheck}, {http.MethodPost, PathAccessTokenInfo}, {http.MethodPost, PathTokenReview},
		} {
			req := httptest.NewRequest(ep.method, "/", bytes.NewReader([]byte(body)))
			req.URL.Path, req.URL.RawQuery = ep.path, strings.TrimPrefix(query, "?")
			req.Header.Set("Authorization", auth)
			rec := httptest.NewRecorder()
			handler.ServeHTTP(rec, req)
			if rec.Code >= 500 {
				t.Fatalf("%s %s answered %d", ep.method, ep.path, rec.Code)
			}
			out, _ := io.ReadAll(rec.Body)
			if rec.Code >= 400 && !bytes.HasPrefix(out, []byte(`{"status":"error"`)) {
				t.Fatalf("%s answered %d without the JSON error shape", ep.path, rec.Code)
			}
			for _, in := range []string{auth, body} {
				if tok := strings.TrimSpace(in); len(tok) >= 12 && strings.HasPrefix(tok, "pat_") && bytes.Contains(out, []byte(tok)) {
					t.Fatal("the answer echoes a token-like input")
				}
			}
		}
	})
}
