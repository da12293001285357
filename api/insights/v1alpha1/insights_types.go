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
	// metadata is the row's: its name is "<day>.<record type>", with
	// ".<app>" after it in the per-app view.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// day is the UTC day, YYYY-MM-DD.
	// +required
	// +kubebuilder:validation:MinLength=10
	// +kubebuilder:validation:MaxLength=10
	Day string `json:"day,omitempty"`
	// app is the PrivateApp; absent when the row sums every app of the
	// namespace.
	// +optional
	App *string `json:"app,omitempty"`
	// recordType is the record type the calls acted on.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	RecordType string `json:"recordType,omitempty"`
	// created counts the records successful calls created; absent when
	// the list was filtered to another action.
	// +optional
	Created *int64 `json:"created,omitempty"`
	// updated counts the records updated, as created does.
	// +optional
	Updated *int64 `json:"updated,omitempty"`
	// deleted counts the records deleted, as created does.
	// +optional
	Deleted *int64 `json:"deleted,omitempty"`
	// merged counts the records merged, as created does.
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
	// metadata is the row's: its name is "<app>.<reason>", or
	// "account.<reason>" for the account's.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// app is the PrivateApp; absent for a row about the account
	// (namespace).
	// +optional
	App *string `json:"app,omitempty"`
	// reason is Expired, Disconnected, Error, WaitingForSlot,
	// ScopesNotOffered, TokenExpiring, GracePeriodEnding, RateLimited or
	// AccountNearDailyLimit.
	// +required
	// +kubebuilder:validation:Enum=Expired;Disconnected;Error;WaitingForSlot;ScopesNotOffered;TokenExpiring;GracePeriodEnding;RateLimited;AccountNearDailyLimit
	Reason string `json:"reason,omitempty"`
	// message says what is wrong.
	// +required
	// +kubebuilder:validation:MinLength=1
	Message string `json:"message,omitempty"`
	// action is what to do, as a command where one does it.
	// +required
	// +kubebuilder:validation:MinLength=1
	Action string `json:"action,omitempty"`
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
	// metadata is the row's: its name is the day, with ".<app>" after it
	// in the per-app view.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// day is the UTC day, YYYY-MM-DD.
	// +required
	// +kubebuilder:validation:MinLength=10
	// +kubebuilder:validation:MaxLength=10
	Day string `json:"day,omitempty"`
	// app is the PrivateApp; absent when the row sums the namespace's
	// apps.
	// +optional
	App *string `json:"app,omitempty"`
	// calls the rate limits let through that day.
	// +required
	// +kubebuilder:validation:Minimum=0
	Calls *int64 `json:"calls,omitempty"`
	// refused calls that day (rate limits, or the app disconnected).
	// +required
	// +kubebuilder:validation:Minimum=0
	Refused *int64 `json:"refused,omitempty"`
	// dailyLimit is the account's limit of calls per UTC day, as it is
	// now; absent while no app of the account has been called.
	// +optional
	DailyLimit *int64 `json:"dailyLimit,omitempty"`
}

// APIUsageList is API usage, oldest day first.
// +kubebuilder:object:root=true
type APIUsageList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []APIUsage `json:"items"`
}
