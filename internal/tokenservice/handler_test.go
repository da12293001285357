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

	"github.com/privateapps-dev/privateapp-operator/internal/ratelimit"
	"github.com/privateapps-dev/privateapp-operator/internal/token"
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
		t.Fatalf("%q: %v", token.Redact(request), err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{code: resp.StatusCode, header: resp.Header, body: b}
}

// TestRawRequests sends what gateways and attackers send, byte for byte
// (duplicate and lower-case headers, absolute-form and encoded targets,
// method overrides, odd paths, oversized bodies and headers, bad Host
// headers), to the service on its listener: each gets the answer it
// should, errors in the JSON shape, and none echoes a token.
func TestRawRequests(t *testing.T) {
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
	const contacts = "crm/contacts-get"
	tests := []struct {
		name, request string
		code          int
		// body is part of the answer's body; route, when set, its
		// X-PrivateApp-Route; id, when set, the correlation id the call
		// log records.
		body, route, id string
	}{
		{name: "allowed, nginx", request: get(PathCheck, auth+nginx), code: 200, route: contacts},
		{name: "allowed, with the gateway's request id", request: get(PathCheck, auth+nginx+"X-Request-Id: req-42\r\n"), code: 200, route: contacts, id: "req-42"},
		{name: "lower-case header names", request: get(PathCheck, "authorization: Bearer "+tok+"\r\nx-original-method: GET\r\nx-original-url: https://api.example.com/crm/v3/objects/contacts/7\r\n"), code: 200, route: contacts},
		{name: "a request id that is not plain text", request: get(PathCheck, auth+"X-Request-Id: a b\r\n"), code: 403, body: `"category":"NO_ROUTE"`},
		{name: "two request ids", request: get(PathCheck, nginx+"X-Request-Id: one\r\nX-Request-Id: two\r\n"), code: 401, body: "no Bearer token"},
		{name: "two X-Original-URL", request: get(PathCheck, auth+nginx+"x-original-url: /crm/v3/objects/deals/1\r\n"), code: 403, body: "X-Original-Url 2 times"},
		{name: "two Authorization headers: the first counts", request: get(PathCheck, auth+"Authorization: Bearer pat_x\r\n"+nginx), code: 200, route: contacts},
		{name: "a method override", request: get(PathCheck, auth+nginx+"X-HTTP-Method-Override: DELETE\r\n"), code: 403, body: "X-Http-Method-Override"},
		{name: "Envoy's path prefix", request: get(PathCheck+"/crm/v3/objects/contacts/7?archived=true", auth), code: 200, route: contacts},
		{name: "Envoy's path prefix with a token in the query", request: get(PathCheck+"/crm/v3/objects/contacts/7?t="+tok, auth), code: 200, route: contacts},
		{name: "an encoded /v1/check", request: get("/v1/%63heck", auth+nginx), code: 200, route: contacts},
		{name: "an encoded separator after /v1/check", request: get("/v1/check%2Fcrm/v3/objects/contacts/7", auth), code: 403, body: "not percent-encoded"},
		{name: "an absolute-form target", request: get("http://token-service.test:8443"+PathCheck+"?scope=crm.objects.contacts.read", auth+nginx), code: 200, route: contacts},
		{name: "scopes in an encoded query", request: get(PathCheck+"?scope=crm.objects.contacts.read&scope=crm%2Eobjects.deals.read", auth+nginx), code: 403,
			body: "requires: crm.objects.deals.read"},
		{name: "a query that does not parse", request: get(PathCheck+"?scope=%zz", auth+nginx), code: 403, body: "does not parse"},
		{name: "no token", request: get(PathCheck, nginx), code: 401, body: "no Bearer token"},
		{name: "a token in the Authorization header's wrong form", request: get(PathCheck, "Authorization: Basic "+tok+"\r\n"), code: 401, body: "no Bearer token"},
		{name: "an unknown path", request: get("/oauth/v1/x", auth), code: 404, body: "no such endpoint"},
		{name: "an odd path is answered, not redirected", request: get("//oauth/v2/private-apps/get/access-token-info", ""), code: 404, body: "no such endpoint"},
		{name: "a dot segment is answered, not redirected", request: get("/apis/../oauth/v2/private-apps/get/access-token-info", ""), code: 404, body: "no such endpoint"},
		{name: "access-token-info", request: post(PathAccessTokenInfo, `{"tokenKey":"`+tok+`"}`), code: 200, body: `"name":"crm"`},
		{name: "access-token-info by GET", request: get(PathAccessTokenInfo, ""), code: 405, body: "takes POST"},
		{name: "access-token-info with a body over the limit", request: post(PathAccessTokenInfo, `{"tokenKey":"`+strings.Repeat("a", maxBody)+`"}`), code: 413,
			body: "over 16384 bytes"},
		{name: "access-token-info with a body far over the limit", request: post(PathAccessTokenInfo, `{"tokenKey":"`+strings.Repeat("a", 5*maxBody)+`"}`), code: 413,
			body: "over 16384 bytes"},
		{name: "TokenReview", request: post(PathTokenReview, `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"`+tok+`"}}`), code: 200,
			body: `"authenticated":true`},
		{name: "TokenReview by GET", request: get(PathTokenReview, ""), code: 405, body: "takes POST"},
		{name: "daily usage", request: get(PathDailyUsage, auth), code: 200, body: `"name":"private-apps-api-calls-daily"`},
		{name: "HTTP/1.0", request: "GET " + PathCheck + " HTTP/1.0\r\nHost: token-service.test:8443\r\n" + auth + nginx + "\r\n", code: 200, route: contacts},
		{name: "a target that does not parse", request: get(PathCheck+"/%zz", auth), code: 400, body: "request target is not a valid URI"},
		{name: "a control character in a check's query", request: get(PathCheck+"?scope=\x12", auth), code: 400, body: "not valid HTTP/1.1"},
		{name: "a control character in another path's query", request: get(PathAccessTokenInfo+"?\x12", auth), code: 400, body: "not valid HTTP/1.1"},
		{name: "a Host with user info", request: "GET " + PathCheck + "/crm/v3/objects/contacts/7 HTTP/1.1\r\nHost: x@api.example.com\r\n" + auth + "Connection: close\r\n\r\n",
			code: 400, body: "Host header is not a valid host"},
		{name: "Envoy's path prefix with a Host in capitals", request: "GET " + PathCheck + "/crm/v3/objects/contacts/7 HTTP/1.1\r\nHost: API.Example.com\r\n" + auth + "Connection: close\r\n\r\n",
			code: 200, route: contacts},
		{name: "two Host headers", request: "GET " + PathCheck + "/crm/v3/objects/contacts/7 HTTP/1.1\r\nHost: a.example.com\r\nHost: b.example.com\r\n" + auth + "Connection: close\r\n\r\n",
			code: 400, body: `"status":"error"`},
		{name: "Content-Length and chunked at once", request: "POST " + PathTokenReview + " HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n",
			code: 400, body: `"category":"VALIDATION_ERROR"`},
		{name: "headers over 32 KiB", request: get(PathCheck, auth+"X-Big: "+strings.Repeat("b", 40<<10)+"\r\n"), code: 431, body: "headers are over 32768 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := rawRequest(t, f.url, tt.request)
			f.assertNoToken(t, a)
			if a.code != tt.code || !strings.Contains(string(a.body), tt.body) {
				t.Fatalf("%d %s; want %d with %q", a.code, a.body, tt.code, tt.body)
			}
			if a.code >= 400 {
				errorBody(t, a)
			}
			if got := a.header.Get(HeaderRoute); got != tt.route {
				t.Errorf("%s %q, want %q", HeaderRoute, got, tt.route)
			}
			var ids []string
			for _, e := range f.calls.take() {
				ids = append(ids, e.ID)
			}
			if tt.id != "" && (len(ids) != 1 || ids[0] != tt.id) {
				t.Errorf("call-log ids %q, want one entry with the id %q", ids, tt.id)
			}
			for _, id := range ids {
				if strings.Contains(id, " ") || id == "one" || id == "two" {
					t.Errorf("the call log took the id %q, which the gateway did not send once as plain text", id)
				}
			}
		})
	}
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

// TestHandlerSurvivesAPanic: fasthttp does not recover a handler's panic;
// Handler does, answering 500 without the request's details, and the
// listener serves on.
func TestHandlerSurvivesAPanic(t *testing.T) {
	f := newFixture(t)
	broken := *f.service
	broken.Usage = nil // Record on a nil Usage panics
	f.serve(t, &broken)
	a := f.do(t, http.MethodGet, PathCheck, "Bearer "+f.current.Reveal(), nil)
	if a.code != http.StatusInternalServerError || errorBody(t, a).Message != "the token service failed on this request" {
		t.Fatalf("%d %s", a.code, a.body)
	}
	if a := f.do(t, http.MethodGet, PathCheck, "", nil); a.code != http.StatusUnauthorized {
		t.Fatalf("the next request: %d %s", a.code, a.body)
	}
}

// TestCheckAnswerHeaders: an allowed check's answer carries the rate-limit
// and identity headers, each once, spelled as Go's HTTP clients spell them
// (X-Privateapp-Namespace), with no Server header and no body; the bytes
// as they come off the connection.
func TestCheckAnswerHeaders(t *testing.T) {
	f := newFixture(t)
	conn, err := net.Dial("tcp", strings.TrimPrefix(f.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nConnection: close\r\n\r\n", PathCheck, f.current.Reveal())
	raw, _ := io.ReadAll(conn)
	head, body, _ := strings.Cut(string(raw), "\r\n\r\n")
	lines := strings.Split(head, "\r\n")
	var names []string
	for _, l := range lines[1:] {
		name, _, _ := strings.Cut(l, ": ")
		if name != "Date" && name != "Content-Length" && name != "Connection" {
			names = append(names, name)
		}
	}
	want := []string{"X-Ratelimit-Limit", "X-Ratelimit-Remaining", "X-Ratelimit-Interval-Milliseconds", "X-Ratelimit-Daily", "X-Ratelimit-Daily-Remaining",
		"X-Privateapp-Namespace", "X-Privateapp-Name", "X-Privateapp-Id", "X-Privateapp-User", "X-Privateapp-Scopes"}
	if lines[0] != "HTTP/1.1 200 OK" || strings.Join(names, ",") != strings.Join(want, ",") || body != "" {
		t.Fatalf("answer:\n%s\nwant 200 with the headers %q and no body", head, want)
	}
}

// TestCheckAllocations: an allowed check through the handler allocates
// what reading the request and deciding need (the target, the token's
// header value, the call's counters), and nothing for the answer's ten
// headers.
func TestCheckAllocations(t *testing.T) {
	f := newFixture(t)
	limits := DefaultLimits()
	limits.Editions["professional"] = EditionLimits{PerTenSeconds: 1 << 40, PerDay: 1 << 40}
	s := &Service{Index: f.ix, Limiter: ratelimit.New(), Limits: limits, Usage: f.usage, Clock: f.clock,
		Accounts: labels{"team-a": {"professional", ""}}}
	h := s.Handler()
	var req fasthttp.Request
	req.SetRequestURI(PathCheck + "?scope=crm.objects.contacts.read")
	req.Header.Set("Authorization", "Bearer "+f.current.Reveal())
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, nil, nil)
	allocs := testing.AllocsPerRun(200, func() {
		ctx.Response.Reset()
		h(&ctx)
	})
	if code := ctx.Response.StatusCode(); code != http.StatusOK || allocs > 4 {
		t.Fatalf("status %d, %.1f allocations a check; want 200 and at most 4", code, allocs)
	}
}
