package ingest

import (
	"net/http"
	"net/url"
	"strings"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"

	"github.com/privateapps-dev/privateapp-operator/internal/calllog"
)

// UserPrefix starts the username the token service gives an app's token
// in a TokenReview: privateapp:<namespace>:<name>.
const UserPrefix = "privateapp:"

// verbMethods is the HTTP method of each Kubernetes verb.
var verbMethods = map[string]string{
	"get": http.MethodGet, "list": http.MethodGet, "watch": http.MethodGet,
	"create": http.MethodPost, "update": http.MethodPut, "patch": http.MethodPatch,
	"delete": http.MethodDelete, "deletecollection": http.MethodDelete,
}

// AuditEntry turns an audit event of an app's request into a call-log
// entry. ok is false for events of other users and for stages that do not
// end a request (the audit policy in the docs sends only those that do).
func AuditEntry(ev *auditv1.Event) (e calllog.Entry, ok bool) {
	rest, found := strings.CutPrefix(ev.User.Username, UserPrefix)
	if !found {
		return calllog.Entry{}, false
	}
	ns, name, found := strings.Cut(rest, ":")
	if !found || ns == "" || name == "" {
		return calllog.Entry{}, false
	}
	if ev.Stage != auditv1.StageResponseComplete && ev.Stage != auditv1.StagePanic {
		return calllog.Entry{}, false
	}
	code := http.StatusInternalServerError
	if ev.ResponseStatus != nil && calllog.ValidCode(int(ev.ResponseStatus.Code)) {
		code = int(ev.ResponseStatus.Code)
	}
	method := verbMethods[ev.Verb]
	if method == "" {
		method = strings.ToUpper(ev.Verb)
	}
	path, query, _ := strings.Cut(ev.RequestURI, "?")
	e = calllog.Entry{
		ID: string(ev.AuditID), Time: ev.RequestReceivedTimestamp.Time, Namespace: ns, App: name, Method: method,
		Path: path, Query: query, Route: kubernetesRoute(ev), Code: code, DecidedBy: calllog.DecidedByAPIServer,
		Source: calllog.SourceKubernetes, Final: true,
	}
	e.RecordType, e.RecordAction = kubernetesRecord(ev)
	if !ev.StageTimestamp.IsZero() && !ev.RequestReceivedTimestamp.IsZero() {
		e.Latency = ev.StageTimestamp.Sub(ev.RequestReceivedTimestamp.Time)
	}
	return e, true
}

// dryRun reports whether a request asked for a dry run, reading its query
// as the kube-apiserver does (net/url, escapes decoded, pairs that do not
// parse ignored): a request that names dryRun and succeeds ran dry, since
// the API server refuses any value but All.
func dryRun(requestURI string) bool {
	_, rawQuery, _ := strings.Cut(requestURI, "?")
	q, _ := url.ParseQuery(rawQuery)
	return q.Has("dryRun")
}

// kubernetesRecord is what a Kubernetes API call does to a record, for
// record insights: the resource (with its group, as kubectl names it) is
// the record type; create is Created, update and patch Updated (also of a
// subresource such as status or scale: the object changes), delete and
// deletecollection Deleted. Creating a subresource (an eviction, a token)
// creates no record of the resource, and a dry run changes nothing.
func kubernetesRecord(ev *auditv1.Event) (recordType, action string) {
	if ev.ObjectRef == nil || ev.ObjectRef.Resource == "" || dryRun(ev.RequestURI) {
		return "", ""
	}
	switch ev.Verb {
	case "create":
		if ev.ObjectRef.Subresource != "" {
			return "", ""
		}
		action = calllog.RecordCreated
	case "update", "patch":
		action = calllog.RecordUpdated
	case "delete", "deletecollection":
		action = calllog.RecordDeleted
	default:
		return "", ""
	}
	recordType = ev.ObjectRef.Resource
	if ev.ObjectRef.APIGroup != "" {
		recordType += "." + ev.ObjectRef.APIGroup
	}
	return recordType, action
}

// kubernetesRoute names what a Kubernetes API call did, the way a catalog
// route names a gateway call: kubernetes/<verb> <resource>[.<group>][/<subresource>].
func kubernetesRoute(ev *auditv1.Event) string {
	if ev.ObjectRef == nil || ev.ObjectRef.Resource == "" {
		return "kubernetes/" + ev.Verb
	}
	r := ev.ObjectRef.Resource
	if ev.ObjectRef.APIGroup != "" {
		r += "." + ev.ObjectRef.APIGroup
	}
	if ev.ObjectRef.Subresource != "" {
		r += "/" + ev.ObjectRef.Subresource
	}
	return "kubernetes/" + ev.Verb + " " + r
}
