package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Who decided a call's code.
const (
	DecidedByTokenService = "token-service"
	DecidedByUpstream     = "upstream"
	DecidedByAPIServer    = "kube-apiserver"
)

// Call is one API call of one private app, from the call log: a gateway
// call checked by the token service, an authentication by the
// kube-apiserver, or a Kubernetes API call from its audit webhook. Its name
// is the call's correlation id. Read-only: `kubectl get calls`.
// +kubebuilder:object:root=true
type Call struct {
	metav1.TypeMeta `json:",inline"`
	// metadata.name is the correlation id (the gateway's request id, the
	// audit ID, or the token service's), metadata.namespace the app's.
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// time is when the call was made, UTC, to the millisecond.
	Time metav1.MicroTime `json:"time"`
	// app is the PrivateApp that made the call.
	App string `json:"app"`
	// method is the HTTP method (TOKENREVIEW for an authentication by the
	// kube-apiserver).
	Method string `json:"method"`
	// host is the Host the client called, where known.
	// +optional
	Host string `json:"host,omitempty"`
	// path is the request path as sent, with tokens redacted.
	Path string `json:"path"`
	// query is the query string, with sensitive values redacted.
	// +optional
	Query string `json:"query,omitempty"`
	// route is the APICatalog route the call matched, "catalog/route".
	// +optional
	Route string `json:"route,omitempty"`
	// code is the HTTP status code the client got.
	Code int32 `json:"code"`
	// decidedBy says who decided the code: token-service (it refused the
	// call, or allowed it and no gateway reported the upstream's answer),
	// upstream (the gateway reported it) or kube-apiserver.
	DecidedBy string `json:"decidedBy"`
	// reason says why the token service refused the call (missing_scope,
	// no_route, rate_limit_app, expired, ...), "allowed", or
	// "no_gateway_report": it allowed the call for a gateway that reports
	// its calls, and that gateway's report did not arrive in time, so the
	// code is the token service's 200 and what the client got is unknown.
	// +optional
	Reason string `json:"reason,omitempty"`
	// latency is how long the answer took, where known.
	// +optional
	Latency *metav1.Duration `json:"latency,omitempty"`
	// source is where the call came in: gateway or kubernetes.
	Source string `json:"source"`
	// gateway is the gateway that reports the call from its access log, as
	// its check URL names it (gateway=<name>); empty when none does.
	// +optional
	Gateway string `json:"gateway,omitempty"`
}

// CallList is a page of calls, newest first.
// +kubebuilder:object:root=true
type CallList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Call `json:"items"`
}

// RequestURL is the call's path with its query, as the call log lists it.
func (c *Call) RequestURL() string {
	if c.Query == "" {
		return c.Path
	}
	return c.Path + "?" + c.Query
}

// Decision is who decided the call's code, with the reason when it is not
// "allowed" (token-service: missing_scope).
func (c *Call) Decision() string {
	if c.Reason != "" && c.Reason != "allowed" {
		return c.DecidedBy + ": " + c.Reason
	}
	return c.DecidedBy
}
