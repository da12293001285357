package tokenservice

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// rawRequest sends request bytes as they are, on a connection of their
// own, and reads the answer.
func rawRequest(t *testing.T, base, request string) answer {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%q: %v", request, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{code: resp.StatusCode, header: resp.Header, body: b}
}

// TestEnginesAnswerAlike sends what gateways and attackers send, byte for
// byte (duplicate and lower-case headers, absolute-form and encoded
// targets, method overrides, odd paths, oversized bodies), to the net/http
// server and to its fasthttp twin: the answers are the same, status,
// headers and body. Requests net/http refuses before any handler (a target
// that does not parse, headers over the limit) get the same status from
// both, and a JSON error from fasthttp.
func TestEnginesAnswerAlike(t *testing.T) {
	f := newFixture(t)
	f.catalogs.use(t, crmCatalog)
	tok := f.current.Reveal()
	auth := "Authorization: Bearer " + tok + "\r\n"
	get := func(target, headers string) string {
		return "GET " + target + " HTTP/1.1\r\nHost: token-service.test:8443\r\n" + headers + "Connection: close\r\n\r\n"
	}
	post := func(path, body string) string {
		return fmt.Sprintf("POST %s HTTP/1.1\r\nHost: token-service.test:8443\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
			path, len(body), body)
	}
	nginx := "X-Original-Method: GET\r\nX-Original-URL: https://api.example.com/crm/v3/objects/contacts/7\r\n"
	tests := []struct {
		name, request string
		statusOnly    bool
	}{
		{name: "allowed, nginx", request: get(PathCheck, auth+nginx)},
		{name: "allowed, with the gateway's request id", request: get(PathCheck, auth+nginx+"X-Request-Id: req-42\r\n")},
		{name: "lower-case header names", request: get(PathCheck, strings.ToLower(auth+nginx))},
		{name: "a request id that is not plain text", request: get(PathCheck, auth+"X-Request-Id: a b\r\n")},
		{name: "two request ids", request: get(PathCheck, nginx+"X-Request-Id: one\r\nX-Request-Id: two\r\n")},
		{name: "two X-Original-URL", request: get(PathCheck, auth+nginx+"x-original-url: /crm/v3/objects/deals/1\r\n")},
		{name: "two Authorization headers: the first counts", request: get(PathCheck, auth+"Authorization: Bearer pat_x\r\n"+nginx)},
		{name: "a method override", request: get(PathCheck, auth+nginx+"X-HTTP-Method-Override: DELETE\r\n")},
		{name: "Envoy's path prefix", request: get(PathCheck+"/crm/v3/objects/contacts/7?archived=true", auth)},
		{name: "Envoy's path prefix with a token in the query", request: get(PathCheck+"/crm/v3/objects/contacts/7?t="+tok, auth)},
		{name: "an encoded /v1/check", request: get("/v1/%63heck", auth+nginx)},
		{name: "an encoded separator after /v1/check", request: get("/v1/check%2Fcrm/v3/objects/contacts/7", auth)},
		{name: "an absolute-form target", request: get("http://token-service.test:8443"+PathCheck+"?scope=crm.objects.contacts.read", auth+nginx)},
		{name: "scopes in an encoded query", request: get(PathCheck+"?scope=crm.objects.contacts.read&scope=crm%2Eobjects.deals.read", auth+nginx)},
		{name: "a query that does not parse", request: get(PathCheck+"?scope=%zz", auth+nginx)},
		{name: "no token", request: get(PathCheck, nginx)},
		{name: "a token in the Authorization header's wrong form", request: get(PathCheck, "Authorization: Basic "+tok+"\r\n")},
		{name: "an unknown path", request: get("/oauth/v1/x", auth)},
		{name: "an odd path is answered, not redirected", request: get("//oauth/v2/private-apps/get/access-token-info", "")},
		{name: "a dot segment is answered, not redirected", request: get("/apis/../oauth/v2/private-apps/get/access-token-info", "")},
		{name: "access-token-info", request: post(PathAccessTokenInfo, `{"tokenKey":"`+tok+`"}`)},
		{name: "access-token-info by GET", request: get(PathAccessTokenInfo, "")},
		{name: "access-token-info with a body over the limit", request: post(PathAccessTokenInfo, `{"tokenKey":"`+strings.Repeat("a", maxBody)+`"}`)},
		{name: "access-token-info with a body over fasthttp's limit", request: post(PathAccessTokenInfo, `{"tokenKey":"`+strings.Repeat("a", 5*maxBody)+`"}`)},
		{name: "TokenReview", request: post(PathTokenReview, `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"`+tok+`"}}`)},
		{name: "daily usage", request: get(PathDailyUsage, auth)},
		{name: "HTTP/1.0", request: "GET " + PathCheck + " HTTP/1.0\r\nHost: token-service.test:8443\r\n" + auth + nginx + "\r\n"},
		{name: "a target that does not parse", request: get(PathCheck+"/%zz", auth), statusOnly: true},
		{name: "a control character in a check's query", request: get(PathCheck+"?scope=\x12", auth), statusOnly: true},
		{name: "a control character in another path's query", request: get(PathAccessTokenInfo+"?\x12", auth), statusOnly: true},
		{name: "a Host with user info", request: "GET " + PathCheck + "/crm/v3/objects/contacts/7 HTTP/1.1\r\nHost: x@api.example.com\r\n" + auth + "Connection: close\r\n\r\n", statusOnly: true},
		{name: "Envoy's path prefix with a Host in capitals", request: "GET " + PathCheck + "/crm/v3/objects/contacts/7 HTTP/1.1\r\nHost: API.Example.com\r\n" + auth + "Connection: close\r\n\r\n"},
		{name: "two Host headers", request: "GET " + PathCheck + "/crm/v3/objects/contacts/7 HTTP/1.1\r\nHost: a.example.com\r\nHost: b.example.com\r\n" + auth + "Connection: close\r\n\r\n", statusOnly: true},
		{name: "Content-Length and chunked at once", request: "POST " + PathTokenReview + " HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n", statusOnly: true},
		{name: "headers over 32 KiB", request: get(PathCheck, auth+"X-Big: "+strings.Repeat("b", 40<<10)+"\r\n"), statusOnly: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := rawRequest(t, f.srv.URL, tt.request), rawRequest(t, f.fast, tt.request)
			f.assertNoToken(t, a)
			f.assertNoToken(t, b)
			if tt.statusOnly {
				if a.code != b.code || !strings.HasPrefix(string(b.body), `{"status":"error"`) {
					t.Fatalf("net/http %d, fasthttp %d %s", a.code, b.code, b.body)
				}
				return
			}
			if a.code >= 500 {
				t.Fatalf("%d %s", a.code, a.body)
			}
			if diff := answerDiff(a, b, !strings.Contains(tt.request, "X-Request-Id: req-42")); diff != "" {
				t.Fatalf("fasthttp answers otherwise than net/http: %s", diff)
			}
		})
	}
	if a, b := f.calls.take(), f.twinCalls.take(); len(a) == 0 || entriesDiff(a, b, true) != "" {
		t.Fatalf("call logs differ: %s", entriesDiff(a, b, true))
	}
}

// TestFastServerLimits: the fasthttp listener cuts off a client that sends
// headers but never its body, as the net/http one does (TestServerLimits).
func TestFastServerLimits(t *testing.T) {
	t.Parallel()
	assertCutsOffStalledBody(t, newFixture(t).fast)
}

// assertCutsOffStalledBody sends headers that announce a body and never
// sends it: the server at base must close the connection well before 15 s.
func assertCutsOffStalledBody(t *testing.T, base string) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{", PathAccessTokenInfo)
	start := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, _ = io.Copy(io.Discard, conn) // returns when the server closes the connection
	if held := time.Since(start); held > 15*time.Second {
		t.Fatalf("a client that never sends its body held the connection %s", held)
	}
}

// TestFastHandlerSurvivesAPanic: fasthttp does not recover a handler's
// panic; FastHandler does, answering 500 without the request's details.
func TestFastHandlerSurvivesAPanic(t *testing.T) {
	f := newFixture(t)
	broken := *f.server
	broken.Usage = nil // Record on a nil Usage panics
	h := broken.FastHandler()
	var req fasthttp.Request
	req.SetRequestURI(PathCheck)
	req.Header.Set("Authorization", "Bearer "+f.current.Reveal())
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, nil, nil)
	h(&ctx)
	if code := ctx.Response.StatusCode(); code != http.StatusInternalServerError || strings.Contains(string(ctx.Response.Body()), f.current.Reveal()) {
		t.Fatalf("%d %s", code, ctx.Response.Body())
	}
}
