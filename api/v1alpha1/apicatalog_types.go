package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ScopeAccess says whether a scope reads or writes its area.
// +kubebuilder:validation:Enum=Read;Write
type ScopeAccess string

// Scope accesses.
const (
	ScopeRead  ScopeAccess = "Read"
	ScopeWrite ScopeAccess = "Write"
)

// HTTPMethod is a method a route matches.
// +kubebuilder:validation:Enum=GET;HEAD;POST;PUT;PATCH;DELETE;OPTIONS
type HTTPMethod string

// RecordAction is what a successful call does to a record, for record
// insights.
// +kubebuilder:validation:Enum=Created;Updated;Deleted;Merged
type RecordAction string

// Record actions.
const (
	RecordCreated RecordAction = "Created"
	RecordUpdated RecordAction = "Updated"
	RecordDeleted RecordAction = "Deleted"
	RecordMerged  RecordAction = "Merged"
)

// UnmatchedRequestPolicy is what the token service does with a request that
// no route matches.
// +kubebuilder:validation:Enum=Refuse;Allow
type UnmatchedRequestPolicy string

// Unmatched request policies.
const (
	// UnmatchedRefuse answers 403: no route covers the request.
	UnmatchedRefuse UnmatchedRequestPolicy = "Refuse"
	// UnmatchedAllow lets any valid token through, needing no scope.
	UnmatchedAllow UnmatchedRequestPolicy = "Allow"
)

// Reasons of the Ready condition of an APICatalog.
const (
	// ReasonInForce: the token service matches requests against the
	// catalog's routes, and apps may ask for its scopes.
	ReasonInForce = "InForce"
	// ReasonInvalid: something CEL validation cannot see is wrong (a path
	// template, a scope a route names); the catalog is not in force.
	ReasonInvalid = "Invalid"
	// ReasonRouteConflict: a route matches the same requests as a route of
	// an older catalog, neither is more specific, and they need different
	// things; the catalog is set aside until that is fixed.
	ReasonRouteConflict = "RouteConflict"
)

// APICatalogSpec describes one API the platform offers: the scopes apps may
// ask for and which of them each route needs.
type APICatalogSpec struct {
	// description says what the API is and who runs it.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Description string `json:"description,omitempty"`

	// hosts are the host names the API is served at, e.g. api.example.com,
	// compared without the port and ignoring case. Routes without hosts of
	// their own apply to these. Empty means any host.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?$`
	Hosts []string `json:"hosts,omitempty"`

	// pathPrefix is the part of the URL space the catalog speaks for, e.g.
	// /crm: every route lies under it, and unmatchedRequests applies to the
	// requests below it that no route matches. Empty means all paths.
	// +optional
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^/`
	PathPrefix string `json:"pathPrefix,omitempty"`

	// unmatchedRequests is what the token service does with a request under
	// hosts and pathPrefix that no route (of any catalog) matches: Refuse
	// (the default) answers 403 naming the method and path, Allow lets any
	// valid token through. Where several catalogs cover a request, the one
	// with hosts, then the longest pathPrefix, decides; Refuse wins a tie.
	// +optional
	UnmatchedRequests UnmatchedRequestPolicy `json:"unmatchedRequests,omitempty"`

	// scopes are the scopes the API offers. When any catalog exists, apps
	// may ask only for scopes some catalog offers.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=500
	Scopes []CatalogScope `json:"scopes,omitempty"`

	// routes say which scopes each call needs. A request matches the most
	// specific route: a literal segment wins over {name}, which wins over
	// {name...}; a route with hosts wins over the same template without.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=2000
	Routes []CatalogRoute `json:"routes,omitempty"`
}

// CatalogScope is one scope an API offers: read or write access to one area.
// +kubebuilder:validation:XValidation:rule="!has(self.access) || (self.access == 'Read') == self.name.endsWith('.read')",message="access must agree with the scope name: Read for a name ending in .read, Write for .write"
type CatalogScope struct {
	// name of the scope, e.g. crm.objects.contacts.read; it ends in .read or
	// .write.
	// +required
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[a-z][a-z0-9-]*(\.[a-z][a-z0-9-]*)*\.(read|write)$`
	Name string `json:"name"`

	// description says what the scope lets an app do, as a scope picker
	// shows it.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Description string `json:"description,omitempty"`

	// access is Read or Write; it follows from the name's suffix when unset.
	// +optional
	Access ScopeAccess `json:"access,omitempty"`

	// area is the part of the API the scope covers, e.g. "CRM / Contacts",
	// for grouping scopes in a picker.
	// +optional
	// +kubebuilder:validation:MaxLength=128
	Area string `json:"area,omitempty"`
}

// CatalogRoute is a set of calls that need the same scopes.
type CatalogRoute struct {
	// name identifies the route in messages, Events and the call log, e.g.
	// deals-get. Unique within the catalog.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`
	Name string `json:"name"`

	// description says what the calls do.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	Description string `json:"description,omitempty"`

	// methods the route matches, e.g. [GET, POST]. A HEAD request that no
	// HEAD route matches is checked against the GET routes, as upstreams
	// answer it with their GET handler.
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=7
	Methods []HTTPMethod `json:"methods"`

	// path is a template of the request path: literal segments, {name} for
	// any one non-empty segment, and {name...} as the last segment for the
	// rest of the path (zero or more segments), e.g.
	// /crm/v3/objects/contacts/{id} or /files/v3/{path...}. Requests are
	// matched after percent-decoding, collapsing // and resolving . and ..;
	// a trailing slash is part of the path.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^/`
	Path string `json:"path"`

	// hosts the route applies to; empty means the catalog's hosts (or any
	// host when the catalog names none).
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=16
	// +kubebuilder:validation:items:MaxLength=253
	// +kubebuilder:validation:items:Pattern=`^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?$`
	Hosts []string `json:"hosts,omitempty"`

	// scopes a call needs, all of them; each must be one the catalog offers.
	// Empty means any valid token.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=20
	// +kubebuilder:validation:items:MaxLength=128
	Scopes []string `json:"scopes,omitempty"`

	// record, when set, is what a successful call counts as in record
	// insights: the record type and the action.
	// +optional
	Record *RouteRecord `json:"record,omitempty"`
}

// RouteRecord is what a successful call of a route does to a record.
type RouteRecord struct {
	// type of record, e.g. contacts or deals.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=63
	// +kubebuilder:validation:Pattern=`^[a-z][a-z0-9_.-]*$`
	Type string `json:"type"`

	// action is Created, Updated, Deleted or Merged.
	// +required
	Action RecordAction `json:"action"`
}

// APICatalogStatus reports whether the catalog is in force.
type APICatalogStatus struct {
	// observedGeneration is the spec generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// conditions: Ready is True when the catalog is in force; False with
	// reason Invalid or RouteConflict says what to fix.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// scopesInForce is how many of the catalog's scopes apps may ask for.
	// +optional
	ScopesInForce int32 `json:"scopesInForce"`

	// routesInForce is how many of the catalog's routes the token service
	// matches requests against.
	// +optional
	RoutesInForce int32 `json:"routesInForce"`

	// conflicts are routes of this catalog that conflict with routes of
	// another (or of this one), the first 20.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=20
	Conflicts []RouteConflict `json:"conflicts,omitempty"`
}

// RouteConflict is a route that matches a request another route also
// matches, where neither is more specific and they need different things.
type RouteConflict struct {
	// route of this catalog.
	// +required
	// +kubebuilder:validation:MaxLength=63
	Route string `json:"route"`

	// otherCatalog is the catalog of the other route.
	// +required
	// +kubebuilder:validation:MaxLength=253
	OtherCatalog string `json:"otherCatalog"`

	// otherRoute is the other route.
	// +required
	// +kubebuilder:validation:MaxLength=63
	OtherRoute string `json:"otherRoute"`

	// example is a request both match, e.g. "GET /crm/v3/objects/deals/x".
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	Example string `json:"example,omitempty"`
}

// APICatalog describes one API the platform offers: its scopes and which of
// them each route needs. The token service matches every /v1/check against
// the routes of the catalogs in force, whichever gateway sends it.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=apicat,categories=privateapps-all
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Scopes",type=integer,JSONPath=`.status.scopesInForce`
// +kubebuilder:printcolumn:name="Routes",type=integer,JSONPath=`.status.routesInForce`
// +kubebuilder:printcolumn:name="Prefix",type=string,JSONPath=`.spec.pathPrefix`
// +kubebuilder:printcolumn:name="Unmatched",type=string,JSONPath=`.spec.unmatchedRequests`,priority=1
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type APICatalog struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the API's description.
	// +required
	Spec APICatalogSpec `json:"spec"`
	// status says whether the catalog is in force.
	// +optional
	Status APICatalogStatus `json:"status,omitempty"`
}

// APICatalogList is a list of APICatalogs.
// +kubebuilder:object:root=true
type APICatalogList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []APICatalog `json:"items"`
}

func init() {
	SchemeBuilder.Register(&APICatalog{}, &APICatalogList{})
}
