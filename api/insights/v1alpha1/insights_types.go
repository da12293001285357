package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RecordInsight is what apps did to one record type on one UTC day: how
// many records their successful calls created, updated, deleted and
// merged. Counted from the call log: gateway calls whose APICatalog route
// names a record type and action, and Kubernetes API calls (the resource
// is the record type). Read-only: `kubectl get recordinsights`.
// +kubebuilder:object:root=true
type RecordInsight struct {
	metav1.TypeMeta `json:",inline"`
	// metadata.name is "<day>.<record type>", with ".<app>" after it in
	// the per-app view.
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// day is the UTC day, YYYY-MM-DD.
	Day string `json:"day"`
	// app is the PrivateApp; empty when the row sums every app of the
	// namespace.
	// +optional
	App string `json:"app,omitempty"`
	// recordType is the record type the calls acted on.
	RecordType string `json:"recordType"`
	// created, updated, deleted and merged count the successful calls of
	// each action; absent when the list was filtered to another action.
	// +optional
	Created *int64 `json:"created,omitempty"`
	// +optional
	Updated *int64 `json:"updated,omitempty"`
	// +optional
	Deleted *int64 `json:"deleted,omitempty"`
	// +optional
	Merged *int64 `json:"merged,omitempty"`
}

// RecordInsightList is record insights, oldest day first.
// +kubebuilder:object:root=true
type RecordInsightList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []RecordInsight `json:"items"`
}

// Reasons an app (or its account) needs attention.
const (
	AttentionExpired          = "Expired"
	AttentionDisconnected     = "Disconnected"
	AttentionError            = "Error"
	AttentionWaitingForSlot   = "WaitingForSlot"
	AttentionScopesNotOffered = "ScopesNotOffered"
	AttentionTokenExpiring    = "TokenExpiring"
	AttentionGracePeriodEnds  = "GracePeriodEnding"
	AttentionRateLimited      = "RateLimited"
	AttentionAccountNearLimit = "AccountNearDailyLimit"
)

// NeedsAttention is one reason one app, or its account, needs a person
// now, with what to do about it. Read-only: `kubectl get needsattention`.
// +kubebuilder:object:root=true
type NeedsAttention struct {
	metav1.TypeMeta `json:",inline"`
	// metadata.name is "<app>.<reason>", or "account.<reason>" for the
	// account's.
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// app is the PrivateApp; empty for a row about the account
	// (namespace).
	// +optional
	App string `json:"app,omitempty"`
	// reason is Expired, Disconnected, Error, WaitingForSlot,
	// ScopesNotOffered, TokenExpiring, GracePeriodEnding, RateLimited or
	// AccountNearDailyLimit.
	Reason string `json:"reason"`
	// message says what is wrong.
	Message string `json:"message"`
	// action is what to do, as a command where one does it.
	Action string `json:"action"`
	// since is when it began, where known; for an end that is coming
	// (TokenExpiring, GracePeriodEnding), when it comes.
	// +optional
	Since *metav1.Time `json:"since,omitempty"`
}

// NeedsAttentionList is the apps that need attention, most urgent first.
// +kubebuilder:object:root=true
type NeedsAttentionList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []NeedsAttention `json:"items"`
}

// APIUsage is one UTC day of API calls of an app, or of every app of a
// namespace (its account), against the account's daily limit: the numbers
// PrivateApp.status.usage holds, per day. Read-only: `kubectl get apiusage`.
// +kubebuilder:object:root=true
type APIUsage struct {
	metav1.TypeMeta `json:",inline"`
	// metadata.name is the day, with ".<app>" after it in the per-app
	// view.
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// day is the UTC day, YYYY-MM-DD.
	Day string `json:"day"`
	// app is the PrivateApp; empty when the row sums the namespace's apps.
	// +optional
	App string `json:"app,omitempty"`
	// calls the rate limits let through that day.
	Calls int64 `json:"calls"`
	// refused calls that day (rate limits, or the app disconnected).
	Refused int64 `json:"refused"`
	// dailyLimit is the account's limit of calls per UTC day, as it is
	// now.
	// +optional
	DailyLimit int64 `json:"dailyLimit,omitempty"`
}

// APIUsageList is API usage, oldest day first.
// +kubebuilder:object:root=true
type APIUsageList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []APIUsage `json:"items"`
}
