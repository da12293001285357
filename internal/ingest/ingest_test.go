package ingest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/privateapps-dev/privateapp-operator/internal/calllog"
	"github.com/privateapps-dev/privateapp-operator/internal/certs/certstest"
)

// testSecrets: gateways' is a-shared-secret-of-some-length.
var testSecrets = map[Sender][]byte{SenderGateway: []byte("a-shared-secret-of-some-length"),
	SenderAudit: []byte("the-audit-webhooks-secret"), SenderTokenService: []byte("the-token-services-secret")}

func TestParseAccessLine(t *testing.T) {
	key := []byte("0123456789abcdef")
	ok := `{"key":"0123456789abcdef","time":"1764000000.250","id":"r1","namespace":"team-a","app":"crm","method":"get","host":"api.example.com","uri":"/crm/v3/objects/contacts/1?a=b","status":"502","duration":"0.050"}`
	e, err := ParseAccessLine([]byte(ok), key)
	if err != nil {
		t.Fatal(err)
	}
	want := calllog.Entry{ID: "r1", Time: time.Unix(1764000000, 200e6).UTC(), Namespace: "team-a", App: "crm", Method: "GET", Host: "api.example.com",
		Path: "/crm/v3/objects/contacts/1", Query: "a=b", Code: 502, DecidedBy: calllog.DecidedByUpstream, Latency: 50 * time.Millisecond,
		Source: calllog.SourceGateway, Final: true}
	if e != want {
		t.Errorf("parsed\n%+v\nwant\n%+v", e, want)
	}
	for _, c := range []struct{ name, line, reason string }{
		{"not JSON", `status=200`, DropMalformed},
		{"wrong key", strings.Replace(ok, "0123456789abcdef", "0123456789abcdeX", 1), DropBadKey},
		{"no key", strings.Replace(ok, `"key":"0123456789abcdef",`, "", 1), DropBadKey},
		{"a refused call names no app", strings.Replace(ok, `"app":"crm"`, `"app":""`, 1), DropNoApp},
		{"status not a code", strings.Replace(ok, `"status":"502"`, `"status":"abc"`, 1), DropMalformed},
		{"status out of range", strings.Replace(ok, `"status":"502"`, `"status":"999"`, 1), DropMalformed},
		{"time not a time", strings.Replace(ok, `"time":"1764000000.250"`, `"time":"yesterday"`, 1), DropMalformed},
		{"negative duration", strings.Replace(ok, `"duration":"0.050"`, `"duration":"-1"`, 1), DropMalformed},
		{"no id", strings.Replace(ok, `"id":"r1"`, `"id":""`, 1), DropMalformed},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseAccessLine([]byte(c.line), key)
			if err == nil || Reason(err) != c.reason {
				t.Errorf("got %v (%s), want a drop for %s", err, Reason(err), c.reason)
			}
		})
	}
	// RFC 3339 time and numbers without quotes, as other gateways log them.
	e, err = ParseAccessLine([]byte(`{"time":"2026-11-24T10:00:00.5Z","id":"x","namespace":"n","app":"a","method":"POST","uri":"/p","status":201,"duration":1.5}`), nil)
	if err != nil || !e.Time.Equal(time.Date(2026, 11, 24, 9, 59, 59, 0, time.UTC)) || e.Code != 201 || e.Latency != 1500*time.Millisecond {
		t.Errorf("RFC 3339 line: %+v, %v", e, err)
	}
}

func TestAuditEntry(t *testing.T) {
	at := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	ev := auditv1.Event{
		AuditID: "audit-1", Stage: auditv1.StageResponseComplete, RequestURI: "/apis/apps/v1/namespaces/default/deployments?limit=5", Verb: "list",
		User:                     authnv1.UserInfo{Username: "privateapp:default:deployer"},
		ObjectRef:                &auditv1.ObjectReference{Resource: "deployments", APIGroup: "apps", Namespace: "default"},
		ResponseStatus:           &metav1.Status{Code: 403},
		RequestReceivedTimestamp: metav1.NewMicroTime(at), StageTimestamp: metav1.NewMicroTime(at.Add(3 * time.Millisecond)),
	}
	e, ok := AuditEntry(&ev)
	want := calllog.Entry{ID: "audit-1", Time: at, Namespace: "default", App: "deployer", Method: "GET", Path: "/apis/apps/v1/namespaces/default/deployments",
		Query: "limit=5", Route: "kubernetes/list deployments.apps", Code: 403, DecidedBy: calllog.DecidedByAPIServer, Latency: 3 * time.Millisecond,
		Source: calllog.SourceKubernetes, Final: true}
	if !ok || e != want {
		t.Errorf("entry\n%+v\nwant\n%+v", e, want)
	}
	odd := ev
	odd.ResponseStatus = &metav1.Status{Code: 9999}
	if e, ok := AuditEntry(&odd); !ok || e.Code != 500 {
		t.Errorf("an audit event with status code 9999 is logged with %d (%v), want 500 as for one without a code", e.Code, ok)
	}
	other := ev
	other.User.Username = "system:serviceaccount:default:x"
	if _, ok := AuditEntry(&other); ok {
		t.Error("another user's event was taken")
	}
	started := ev
	started.Stage = auditv1.StageRequestReceived
	if _, ok := AuditEntry(&started); ok {
		t.Error("a RequestReceived event was taken: the call would be logged before its code is known")
	}
	for _, tt := range []struct {
		verb, resource, group, sub, uri string
		wantType, wantAction            string
	}{
		{"create", "configmaps", "", "", "/api/v1/namespaces/default/configmaps", "configmaps", "Created"},
		{"patch", "deployments", "apps", "", "/apis/apps/v1/namespaces/default/deployments/web", "deployments.apps", "Updated"},
		{"update", "deployments", "apps", "scale", "/apis/apps/v1/namespaces/default/deployments/web/scale", "deployments.apps", "Updated"},
		{"delete", "secrets", "", "", "/api/v1/namespaces/default/secrets/x", "secrets", "Deleted"},
		{"deletecollection", "pods", "", "", "/api/v1/namespaces/default/pods", "pods", "Deleted"},
		{"create", "pods", "", "eviction", "/api/v1/namespaces/default/pods/p/eviction", "", ""},
		{"create", "configmaps", "", "", "/api/v1/namespaces/default/configmaps?dryRun=All", "", ""},
		{"create", "configmaps", "", "", "/api/v1/namespaces/default/configmaps?dry%52un=All", "", ""},
		{"create", "configmaps", "", "", "/api/v1/namespaces/default/configmaps?fieldManager=x&xdryRun=1", "configmaps", "Created"},
		{"create", "configmaps", "", "", "/api/v1/namespaces/default/configmaps?fieldManager=dryRun%3D", "configmaps", "Created"},
		{"get", "configmaps", "", "", "/api/v1/namespaces/default/configmaps/x", "", ""},
		{"list", "configmaps", "", "", "/api/v1/namespaces/default/configmaps", "", ""},
	} {
		ev := ev
		ev.Verb, ev.RequestURI = tt.verb, tt.uri
		ev.ObjectRef = &auditv1.ObjectReference{Resource: tt.resource, APIGroup: tt.group, Subresource: tt.sub}
		e, _ := AuditEntry(&ev)
		if e.RecordType != tt.wantType || e.RecordAction != tt.wantAction {
			t.Errorf("%s %s: record %q %q, want %q %q", tt.verb, tt.uri, e.RecordType, e.RecordAction, tt.wantType, tt.wantAction)
		}
	}
}

type collected struct {
	mu sync.Mutex
	e  []calllog.Entry
}

func (c *collected) Add(e calllog.Entry) { c.mu.Lock(); c.e = append(c.e, e); c.mu.Unlock() }

type apps map[string]bool

func (a apps) Exists(_ context.Context, ns, name string) bool { return a[ns+"/"+name] }

func TestServer(t *testing.T) {
	got := &collected{}
	now := time.Unix(1764000000, 0)
	srv := &Server{Log: got, Apps: apps{"team-a/crm": true}, Secrets: testSecrets, MaxEntries: 3, MaxBody: 4096,
		Window: Window{Clock: clocktesting.NewFakePassiveClock(now)}}
	ts := httptest.NewTLSServer(srv.Handler())
	defer ts.Close()
	post := func(path, auth, body string) (int, Result) {
		req, _ := http.NewRequest(http.MethodPost, ts.URL+path, strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var r Result
		_ = json.NewDecoder(resp.Body).Decode(&r)
		return resp.StatusCode, r
	}
	line := `{"time":1764000000.1,"id":"%s","namespace":"team-a","app":"%s","method":"GET","uri":"/x","status":200}`
	lines := strings.Join([]string{
		strings.Replace(strings.Replace(line, "%s", "1", 1), "%s", "crm", 1),
		strings.Replace(strings.Replace(line, "%s", "2", 1), "%s", "ghost", 1),
		"{not json",
	}, "\n")
	if code, _ := post(PathAccessLog, "", lines); code != 401 {
		t.Errorf("no credentials: %d, want 401", code)
	}
	if code, _ := post(PathAccessLog, "Bearer a-shared-secret-of-some-lengtX", lines); code != 401 {
		t.Errorf("a wrong secret: %d, want 401", code)
	}
	code, res := post(PathAccessLog, "Bearer a-shared-secret-of-some-length", lines)
	if code != 200 || res.Accepted != 1 || res.Dropped[DropUnknownApp] != 1 || res.Dropped[DropMalformed] != 1 {
		t.Errorf("a batch of a known app, an unknown one and a bad line: %d %+v", code, res)
	}
	if code, _ := post(PathAccessLog, "Bearer a-shared-secret-of-some-length", strings.Repeat("{}\n", 10)); code != http.StatusRequestEntityTooLarge {
		t.Errorf("more lines than a batch may hold: %d, want 413", code)
	}
	if code, _ := post(PathCalls, "Bearer the-token-services-secret", strings.Repeat("x", 5000)); code != http.StatusRequestEntityTooLarge {
		t.Errorf("a body over the limit: %d, want 413", code)
	}
	body, _ := json.Marshal(auditv1.EventList{Items: []auditv1.Event{{AuditID: "a", Stage: auditv1.StageResponseComplete, Verb: "get",
		RequestURI: "/api/v1/namespaces/team-a/pods", User: authnv1.UserInfo{Username: "privateapp:team-a:crm"}, ResponseStatus: &metav1.Status{Code: 200},
		RequestReceivedTimestamp: metav1.NewMicroTime(now)}}})
	if code, res := post(PathAudit, "Bearer the-audit-webhooks-secret", string(body)); code != 200 || res.Accepted != 1 {
		t.Errorf("an audit batch: %d %+v", code, res)
	}
	// A token-service batch whose code is no HTTP status: dropped, the rest kept.
	calls := `[{"id":"c1","time":"2025-11-24T16:00:00Z","namespace":"team-a","app":"crm","method":"GET","path":"/x","code":200,"decidedBy":"token-service","source":"gateway"},` +
		`{"id":"c2","time":"2025-11-24T16:00:00Z","namespace":"team-a","app":"crm","method":"GET","path":"/x","code":70000,"decidedBy":"token-service","source":"gateway"}]`
	if code, res := post(PathCalls, "Bearer the-token-services-secret", calls); code != 200 || res.Accepted != 1 || res.Dropped[DropMalformed] != 1 {
		t.Errorf("a calls batch with a code of 70000: %d %+v, want one accepted and one dropped as malformed", code, res)
	}
	if n := len(got.e); n != 3 {
		t.Errorf("%d entries reached the log, want 3", n)
	}
	// Times a sender chooses: an hour ahead would head every list and
	// never be dropped; 31 days back is past what the log keeps.
	at := func(t time.Time) string {
		return fmt.Sprintf(`{"time":%d,"id":"w","namespace":"team-a","app":"crm","method":"GET","uri":"/x","status":200}`, t.Unix())
	}
	lines = strings.Join([]string{at(now.Add(time.Hour)), at(now.Add(-31 * 24 * time.Hour)), at(now.Add(time.Minute))}, "\n")
	if code, res := post(PathAccessLog, "Bearer a-shared-secret-of-some-length", lines); code != 200 || res.Accepted != 1 || res.Dropped[DropOutOfWindow] != 2 {
		t.Errorf("lines an hour ahead, 31 days back and a minute ahead: %d %+v, want the last accepted and two out_of_window", code, res)
	}
}

// TestEachSenderItsOwnCredential: a kind's secret or client certificate
// opens its own endpoint and no other, so the gateways' secret (in clear in
// every syslog datagram) cannot post audit events or token-service
// decisions; and a token-service batch cannot claim answers that are the
// kube-apiserver's or an upstream's.
func TestEachSenderItsOwnCredential(t *testing.T) {
	got := &collected{}
	now := time.Now()
	srv := &Server{Log: got, Apps: apps{"team-a/crm": true}, Secrets: testSecrets}
	ca, err := certstest.NewCA("privateapps-test-ca")
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	ts := httptest.NewUnstartedServer(srv.Handler())
	ts.TLS = &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: pool}
	ts.StartTLS()
	defer ts.Close()
	clientWith := func(cn string) *http.Client {
		c, key, err := ca.Issue(cn, nil, x509.ExtKeyUsageClientAuth)
		if err != nil {
			t.Fatal(err)
		}
		pair, err := tls.X509KeyPair(certstest.PEM(c), key)
		if err != nil {
			t.Fatal(err)
		}
		tr := ts.Client().Transport.(*http.Transport).Clone()
		tr.TLSClientConfig.Certificates = []tls.Certificate{pair}
		return &http.Client{Transport: tr}
	}
	access := fmt.Sprintf(`{"time":%d,"id":"g1","namespace":"team-a","app":"crm","method":"GET","uri":"/x","status":200}`, now.Unix())
	audit, _ := json.Marshal(auditv1.EventList{Items: []auditv1.Event{{AuditID: "a1", Stage: auditv1.StageResponseComplete, Verb: "get",
		RequestURI: "/api/v1/namespaces/team-a/pods", User: authnv1.UserInfo{Username: "privateapp:team-a:crm"}, ResponseStatus: &metav1.Status{Code: 200},
		RequestReceivedTimestamp: metav1.NewMicroTime(now)}}})
	calls := fmt.Sprintf(`[{"id":"c1","time":%q,"namespace":"team-a","app":"crm","method":"GET","path":"/x","code":403,`+
		`"decidedBy":"token-service","reason":"missing_scope","source":"gateway","final":true}]`, now.UTC().Format(time.RFC3339))
	bodies := map[Sender]string{SenderGateway: access, SenderAudit: string(audit), SenderTokenService: calls}
	paths := map[Sender]string{SenderGateway: PathAccessLog, SenderAudit: PathAudit, SenderTokenService: PathCalls}
	post := func(c *http.Client, path, auth, body string) int {
		req, _ := http.NewRequest(http.MethodPost, ts.URL+path, strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		return resp.StatusCode
	}
	for _, endpoint := range Senders {
		for _, credential := range Senders {
			want := http.StatusUnauthorized
			if endpoint == credential {
				want = http.StatusOK
			}
			if code := post(ts.Client(), paths[endpoint], string(testSecrets[credential]), bodies[endpoint]); code != want {
				t.Errorf("%s with the %s secret: %d, want %d", paths[endpoint], credential, code, want)
			}
			if endpoint != credential {
				want = http.StatusForbidden
			}
			if code := post(clientWith(string(credential)), paths[endpoint], "", bodies[endpoint]); code != want {
				t.Errorf("%s with a client certificate for %s: %d, want %d", paths[endpoint], credential, code, want)
			}
		}
	}
	if code := post(clientWith("privateapp-insights.privateapp-system.svc"), PathCalls, "", calls); code != http.StatusForbidden {
		t.Errorf("a certificate of the CA that names no sender kind: %d, want 403", code)
	}
	if n := len(got.e); n != 6 {
		t.Errorf("%d entries reached the log, want 6 (each endpoint's batch twice)", n)
	}
	// What a token-service replica cannot have decided.
	forged := []string{
		`"decidedBy":"kube-apiserver","source":"kubernetes","method":"GET"`,
		`"decidedBy":"upstream","source":"gateway","method":"GET"`,
		`"decidedBy":"token-service","source":"kubernetes","method":"GET"`,
		`"decidedBy":"token-service","source":"gateway","method":"TOKENREVIEW"`,
	}
	for _, f := range forged {
		body := fmt.Sprintf(`[{"id":"f","time":%q,"namespace":"team-a","app":"crm","path":"/x","code":200,%s,"final":true}]`, now.UTC().Format(time.RFC3339), f)
		req, _ := http.NewRequest(http.MethodPost, ts.URL+PathCalls, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer the-token-services-secret")
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var r Result
		_ = json.NewDecoder(resp.Body).Decode(&r)
		_ = resp.Body.Close()
		if r.Accepted != 0 || r.Dropped[DropWrongSender] != 1 {
			t.Errorf("a token-service entry with %s: %+v, want it dropped as %s", f, r, DropWrongSender)
		}
	}
	review := fmt.Sprintf(`[{"id":"r","time":%q,"namespace":"team-a","app":"crm","method":"TOKENREVIEW","path":"/apis/authentication.k8s.io/v1/tokenreviews",`+
		`"code":200,"decidedBy":"token-service","reason":"allowed","source":"kubernetes","final":true}]`, now.UTC().Format(time.RFC3339))
	if code := post(ts.Client(), PathCalls, "the-token-services-secret", review); code != http.StatusOK || len(got.e) != 7 {
		t.Errorf("a TokenReview the token service answered: %d, %d entries, want it kept", code, len(got.e))
	}
}

func TestCheckSecrets(t *testing.T) {
	if err := CheckSecrets(testSecrets); err != nil {
		t.Errorf("three different secrets: %v", err)
	}
	if err := CheckSecrets(map[Sender][]byte{SenderGateway: []byte("a-shared-secret-of-some-length")}); err != nil {
		t.Errorf("the gateways' secret alone: %v", err)
	}
	err := CheckSecrets(map[Sender][]byte{SenderGateway: []byte("short"), SenderAudit: []byte("the-same-secret-twice"),
		SenderTokenService: []byte("the-same-secret-twice")})
	for _, want := range []string{"the gateway secret holds 5 characters", "the audit and token-service secrets are the same"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("a short secret and a shared one: %v, want it to say %q", err, want)
		}
	}
}
