package tokenservice

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/privateapps-dev/privateapp-operator/internal/calllog"
	"github.com/privateapps-dev/privateapp-operator/internal/catalog"
)

// CallLog takes the token service's decisions for the call log; Add must
// not block (calllog.Queue drops when it is full).
type CallLog interface {
	Add(calllog.Entry)
}

// callIDs makes correlation ids for checks that bring none: a random
// prefix per process and a counter, unique across replicas and cheap.
var callIDs = struct {
	prefix string
	n      atomic.Uint64
}{prefix: randomHex(6) + "-"}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// callID is the correlation id of a check: the gateway's request id
// (nginx $request_id, Envoy's x-request-id), so the gateway's access log
// and the token service's decision meet in one call-log entry, or one of
// the token service's own. A request id that is not plain text is
// replaced, never echoed.
func callID(r *checkRequest) string {
	if gatewayNamed(r) {
		return r.requestID.value
	}
	return newCallID()
}

// gatewayNamed reports whether the gateway's request id is the call's id.
func gatewayNamed(r *checkRequest) bool {
	return r.requestID.n == 1 && validRequestID(r.requestID.value)
}

// newCallID is the token service's own id: one allocation.
func newCallID() string {
	var buf [32]byte
	b := append(buf[:0], callIDs.prefix...)
	return string(strconv.AppendUint(b, callIDs.n.Add(1), 36))
}

func validRequestID(s string) bool {
	if s == "" || len(s) > calllog.MaxIDLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}

// decision is what a check decided, for the call log.
type decision struct {
	code   int
	app    *App
	route  *catalog.Target
	reason string
	id     string
}

// logCheck hands a check's decision to the call log. Calls of no known app
// (no token, a malformed or unknown one) are not an app's: the refusal
// metrics count them.
func (s *Service) logCheck(r *checkRequest, d decision, at time.Time) {
	if s.Calls == nil || d.app == nil {
		return
	}
	if d.id == "" {
		// An allowed check: its id is made only when it is logged.
		d.id = callID(r)
	}
	method, host, target := loggedRequest(r)
	path, query, _ := strings.Cut(target, "?")
	e := calllog.Entry{
		ID: d.id, Time: at, Namespace: d.app.Namespace, App: d.app.Name, Method: method, Host: host, Path: path, Query: query,
		Code: d.code, DecidedBy: calllog.DecidedByTokenService, Reason: d.reason, Source: calllog.SourceGateway,
		Final: d.code != statusOK,
	}
	if d.route != nil {
		e.Route, e.RecordType, e.RecordAction = d.route.ID, d.route.RecordType, d.route.RecordAction
	}
	if d.code == statusOK {
		e.Reason = calllog.ReasonAllowed
		if gatewayNamed(r) {
			// Only a call the gateway named can meet its report.
			e.Gateway = reportingGateway(r)
		}
	}
	s.Calls.Add(e)
}

// reportingGateway is the gateway parameter of the check URL: the name of
// a gateway that reports its calls from its access log, so that the call
// log waits for that report (calllog.GatewayReports). In path-prefix mode
// the query is the client's, and names nothing; a name that is not plain
// text is ignored.
func reportingGateway(r *checkRequest) string {
	if r.query == "" || prefixMode(r) {
		return ""
	}
	for rest := r.query; rest != ""; {
		var part string
		part, rest, _ = strings.Cut(rest, "&")
		if name, ok := strings.CutPrefix(part, "gateway="); ok && len(name) <= calllog.MaxGatewayLength && validRequestID(name) {
			return name
		}
	}
	return ""
}

// loggedRequest reads the original request for the log, from the first
// place originOf reads it from, without originOf's checks: a check those
// refuse is logged as the gateway sent it.
func loggedRequest(r *checkRequest) (method, host, target string) {
	if prefixMode(r) {
		raw := r.uri
		if i := strings.Index(raw, PathCheck); i >= 0 {
			raw = raw[i+len(PathCheck):]
		}
		return r.method, r.host, raw
	}
	if u := r.originalURL.value; u != "" {
		method = cmp.Or(r.originalMethod.value, r.method)
		if rest, ok := strings.CutPrefix(u, "https://"); ok {
			u = rest
		} else if rest, ok := strings.CutPrefix(u, "http://"); ok {
			u = rest
		} else {
			return method, r.host, u
		}
		host, path, found := strings.Cut(u, "/")
		if !found {
			return method, host, "/"
		}
		return method, host, "/" + path
	}
	if u := r.forwardedURI.value; u != "" {
		return cmp.Or(r.forwardedMethod.value, r.method), r.forwardedHost.value, u
	}
	return r.method, "", ""
}

// logTokenReview logs the authentication of an app by the kube-apiserver:
// 200 when the token was good, else 401 (what the API server answers the
// client). The API calls themselves come from the audit webhook.
func (s *Service) logTokenReview(v verdict, at time.Time) {
	if s.Calls == nil || v.match.App == nil {
		return
	}
	e := calllog.Entry{
		ID: newCallID(), Time: at, Namespace: v.match.App.Namespace, App: v.match.App.Name,
		Method: calllog.MethodTokenReview, Path: PathTokenReview, Code: statusOK, DecidedBy: calllog.DecidedByTokenService,
		Reason: calllog.ReasonAllowed, Source: calllog.SourceKubernetes, Final: true,
	}
	if v.status != statusOK {
		e.Code, e.Reason = statusUnauthorized, v.reason
	}
	s.Calls.Add(e)
}
