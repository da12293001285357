package v1alpha1

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// SecretType is the type of every Secret that holds a PrivateApp token.
const SecretType corev1.SecretType = "privateapps.dev/access-token" //nolint:gosec // G101: a Secret type, not a credential

// Keys of the token Secret.
const (
	// SecretTokenKey holds the app's current token.
	SecretTokenKey = "token"
	// SecretPreviousTokenKey holds the previous token while it is still valid
	// during a delayed rotation.
	SecretPreviousTokenKey = "previous-token"
)

// Reasons of the Ready condition of a PrivateApp.
const (
	// ReasonTokenIssued: the app has a valid token in its Secret.
	ReasonTokenIssued = "TokenIssued"
	// ReasonSuspended: spec.suspend is true; the app's tokens are refused.
	ReasonSuspended = "Suspended"
	// ReasonAppLimitExceeded: the namespace already has as many apps with
	// tokens as its limit allows; the app gets a token when a slot frees.
	ReasonAppLimitExceeded = "AppLimitExceeded"
	// ReasonSecretConflict: a Secret of the app's secretName exists and does
	// not belong to the app; the operator leaves it alone.
	ReasonSecretConflict = "SecretConflict"
	// ReasonTokenExpired: the token is older than spec.tokenLifetime.
	ReasonTokenExpired = "TokenExpired"
	// ReasonReconcileError: the operator could not reach the state the spec
	// asks for; the message says why and the operator keeps retrying.
	ReasonReconcileError = "ReconcileError"
)

// ConditionScopesOffered is set on a PrivateApp while any APICatalog
// exists: True when a catalog in force offers every scope in spec.scopes;
// False names the scopes none offers, which the token service no longer
// grants. It does not change Ready: the app keeps working for the rest.
const ConditionScopesOffered = "ScopesOffered"

// Reasons of the ScopesOffered condition.
const (
	ReasonAllScopesOffered = "AllScopesOffered"
	ReasonScopesNotOffered = "ScopesNotOffered"
)

// ConnectionState is what `kubectl get privateapps` shows as STATUS.
// +kubebuilder:validation:Enum=Pending;Connected;Disconnected;Expired;Error
type ConnectionState string

// Connection states of a PrivateApp.
const (
	// ConnectionPending: no token has been issued yet (new app, or waiting
	// for a slot under the namespace's app limit).
	ConnectionPending ConnectionState = "Pending"
	// ConnectionConnected: the app has a token that works.
	ConnectionConnected ConnectionState = "Connected"
	// ConnectionDisconnected: spec.suspend is true; its tokens are refused.
	ConnectionDisconnected ConnectionState = "Disconnected"
	// ConnectionExpired: the token is older than spec.tokenLifetime.
	ConnectionExpired ConnectionState = "Expired"
	// ConnectionError: the operator cannot issue or keep the token (for
	// example a Secret conflict); the Ready condition says why.
	ConnectionError ConnectionState = "Error"
)

// PrivateAppSpec is what a team declares about its integration.
// +kubebuilder:validation:XValidation:rule="has(self.secretName) == has(oldSelf.secretName) && (!has(self.secretName) || self.secretName == oldSelf.secretName)",message="secretName is immutable: the token lives in the Secret named when the app was created; delete and re-create the app to move it"
type PrivateAppSpec struct {
	// displayName is the app's name as people see it, e.g. "Billing sync":
	// one line, without control characters (it reaches mails, chat and
	// terminals).
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=128
	// +kubebuilder:validation:Pattern=`^[^\x00-\x1f\x7f-\x9f]*$`
	DisplayName string `json:"displayName"`

	// description says what the app does and who owns it: lines of text,
	// without control characters other than tabs and line breaks.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	// +kubebuilder:validation:Pattern=`^[^\x00-\x08\x0b-\x1f\x7f-\x9f]*$`
	Description string `json:"description,omitempty"`

	// logoURL is an https:// address of the app's logo.
	// +optional
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="self.startsWith('https://') && isURL(self)",message="logoURL must be an https:// URL, e.g. https://example.com/logo.png"
	LogoURL string `json:"logoURL,omitempty"`

	// scopes are the accesses the app's token grants, each read or write
	// access to one area, e.g. crm.objects.contacts.read or
	// crm.schemas.companies.write. Editing scopes keeps the token; the token
	// service applies the new set at once. The cluster admin may restrict
	// scopes to a catalog.
	// +required
	// +listType=set
	// +kubebuilder:validation:MinItems=1
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:items:MaxLength=128
	// +kubebuilder:validation:items:Pattern=`^[a-z][a-z0-9-]*(\.[a-z][a-z0-9-]*)*\.(read|write)$`
	Scopes []string `json:"scopes"`

	// secretName is the Secret in the app's namespace that receives the
	// token. Defaults to "<app name>-token". Immutable.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`
	SecretName string `json:"secretName,omitempty"`

	// secretTemplate holds labels and annotations to put on the token Secret,
	// e.g. for a secret-sync tool. The operator's own labels win on conflict.
	// +optional
	SecretTemplate *SecretTemplate `json:"secretTemplate,omitempty"`

	// suspend true disconnects the app: its tokens are refused until suspend
	// is false again (reconnect), when the same token works again.
	// +optional
	Suspend bool `json:"suspend,omitempty"`

	// rotation turns on automatic rotation of the token.
	// +optional
	Rotation *RotationPolicy `json:"rotation,omitempty"`

	// tokenLifetime, when set, is how long a token works after it is issued,
	// e.g. 2160h. Past it the token is refused and the app shows Expired
	// until a TokenRotation issues a new one. Shortening it applies to the
	// current token at once; an expired token stays expired.
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1m')",message="tokenLifetime must be at least 1m, e.g. 2160h for 90 days"
	TokenLifetime *metav1.Duration `json:"tokenLifetime,omitempty"`
}

// SecretTemplate is metadata for the token Secret.
type SecretTemplate struct {
	// labels to put on the token Secret.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	Labels map[string]string `json:"labels,omitempty"`

	// annotations to put on the token Secret.
	// +optional
	// +kubebuilder:validation:MaxProperties=64
	Annotations map[string]string `json:"annotations,omitempty"`
}

// RotationPolicy asks the operator to rotate the token on a schedule.
// +kubebuilder:validation:XValidation:rule="!has(self.gracePeriod) || duration(self.gracePeriod) < duration(self.interval)",message="rotation.gracePeriod must be shorter than rotation.interval, or two old tokens would be valid at once"
type RotationPolicy struct {
	// interval is the time between rotations, e.g. 4320h (six months, the
	// recommended value).
	// +required
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	// +kubebuilder:validation:XValidation:rule="duration(self) >= duration('1h')",message="rotation.interval must be at least 1h, e.g. 4320h for six months"
	Interval metav1.Duration `json:"interval"`

	// gracePeriod is how long the previous token keeps working after each
	// automatic rotation. Defaults to 168h (7 days).
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	GracePeriod *metav1.Duration `json:"gracePeriod,omitempty"`
}

// PrivateAppStatus is what the operator reports about an app.
type PrivateAppStatus struct {
	// observedGeneration is the spec generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`

	// connection is Pending, Connected, Disconnected, Expired or Error.
	// +optional
	Connection ConnectionState `json:"connection,omitempty"`

	// conditions: Ready says whether the app has a working token, and why not.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`

	// disconnectedAt is when the app last went Disconnected or Expired; it
	// is cleared when the app is connected again. AppDisconnected
	// notifications and their reminders count from it.
	// +optional
	DisconnectedAt *metav1.Time `json:"disconnectedAt,omitempty"`

	// installedAt is when the app got its first token.
	// +optional
	InstalledAt *metav1.Time `json:"installedAt,omitempty"`

	// installedBy is the Kubernetes user who created the app.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	InstalledBy string `json:"installedBy,omitempty"`

	// hubId is the account's number, as HubSpot's API shows it: one per
	// namespace, the same for every app in it, for the namespace's life.
	// +optional
	// +kubebuilder:validation:Minimum=1
	HubID int64 `json:"hubId,omitempty"`

	// appId is the app's number, as HubSpot's API shows it; it never
	// changes and is never given to another app.
	// +optional
	// +kubebuilder:validation:Minimum=1
	AppID int64 `json:"appId,omitempty"`

	// installedByUserId is the number of the user in installedBy (HubSpot's
	// userId), the same for every app the user installs.
	// +optional
	// +kubebuilder:validation:Minimum=1
	InstalledByUserID int64 `json:"installedByUserId,omitempty"`

	// lastActivityTime is when the token service last accepted a call with
	// one of the app's tokens.
	// +optional
	LastActivityTime *metav1.Time `json:"lastActivityTime,omitempty"`

	// secretName is the Secret that holds the token.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	SecretName string `json:"secretName,omitempty"`

	// scopes are the scopes in force, as last applied by the operator.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:items:MaxLength=128
	Scopes []string `json:"scopes,omitempty"`

	// token describes the current token (and the previous one during a
	// grace period) by SHA-256 digest. It never holds a token.
	// +optional
	Token *TokenStatus `json:"token,omitempty"`

	// usage counts the calls made with the app's tokens.
	// +optional
	Usage *UsageStatus `json:"usage,omitempty"`

	// rotations records what the operator did with each of the app's
	// TokenRotations whose own status does not show it yet: the
	// TokenRotation controller reports it there, and the entry goes once it
	// has. The operator applies rotations, and the order of its token writes
	// holds only if it alone decides how each went.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=16
	Rotations []RotationRecord `json:"rotations,omitempty"`

	// activity lists the most recent lifecycle events, oldest first.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=20
	Activity []ActivityEntry `json:"activity,omitempty"`
}

// TokenStatus identifies tokens without revealing them.
type TokenStatus struct {
	// digest is "sha256:" followed by the hex SHA-256 of the current token.
	// +required
	// +kubebuilder:validation:MaxLength=71
	Digest string `json:"digest"`

	// issuedAt is when the current token was issued.
	// +required
	IssuedAt metav1.Time `json:"issuedAt"`

	// expiresAt is when the current token stops working, if it has a lifetime.
	// +optional
	ExpiresAt *metav1.Time `json:"expiresAt,omitempty"`

	// rotation is the TokenRotation that issued the current token, if any.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Rotation string `json:"rotation,omitempty"`

	// previous is the token that keeps working during a grace period.
	// +optional
	Previous *PreviousTokenStatus `json:"previous,omitempty"`

	// pending is a token change in flight: recorded before the Secret is
	// written, so that an operator restart between the two writes finishes
	// the change instead of mistaking it for an edit. A pending token is not
	// valid.
	// +optional
	Pending *PendingTokenStatus `json:"pending,omitempty"`
}

// PendingTokenStatus is a token change that a rotation has started.
type PendingTokenStatus struct {
	// digest of the token being written into the Secret.
	// +required
	// +kubebuilder:validation:MaxLength=71
	Digest string `json:"digest"`

	// rotation is the TokenRotation making the change.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Rotation string `json:"rotation"`

	// at is when the change started; the new token's issue time.
	// +required
	At metav1.Time `json:"at"`

	// cancel is true when the change puts the previous token back.
	// +optional
	Cancel bool `json:"cancel,omitempty"`

	// previousExpiresAt, for a delayed rotation, is when the token being
	// replaced stops working; unset, it stops at once.
	// +optional
	PreviousExpiresAt *metav1.Time `json:"previousExpiresAt,omitempty"`
}

// PreviousTokenStatus is a token that is still valid until expiresAt.
type PreviousTokenStatus struct {
	// digest is "sha256:" followed by the hex SHA-256 of the previous token.
	// +required
	// +kubebuilder:validation:MaxLength=71
	Digest string `json:"digest"`

	// issuedAt is when the previous token was issued.
	// +optional
	IssuedAt *metav1.Time `json:"issuedAt,omitempty"`

	// expiresAt is when the previous token stops working. The token service
	// refuses it from this instant, whatever the operator is doing.
	// +required
	ExpiresAt metav1.Time `json:"expiresAt"`

	// reason says why two tokens are valid: DelayedRotation, or
	// SecretRepaired when the Secret was deleted or edited out of band.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Reason string `json:"reason,omitempty"`

	// rotation is the TokenRotation whose grace period keeps this token
	// valid, for reason DelayedRotation.
	// +optional
	// +kubebuilder:validation:MaxLength=253
	Rotation string `json:"rotation,omitempty"`
}

// RotationRecord is how one TokenRotation of the app went, as the operator
// applied it.
type RotationRecord struct {
	// name of the TokenRotation.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`

	// uid of the TokenRotation: one deleted and created again under the same
	// name is another rotation.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	UID string `json:"uid,omitempty"`

	// phase the rotation reached: GracePeriod, Completed, Cancelled,
	// Superseded or Failed.
	// +required
	Phase RotationPhase `json:"phase"`

	// rotatedAt is when the rotation's token was issued.
	// +optional
	RotatedAt *metav1.Time `json:"rotatedAt,omitempty"`

	// oldTokenExpiresAt is when the token it replaced stops working.
	// +optional
	OldTokenExpiresAt *metav1.Time `json:"oldTokenExpiresAt,omitempty"`

	// completedAt is when it reached a final phase.
	// +optional
	CompletedAt *metav1.Time `json:"completedAt,omitempty"`

	// reason of the rotation's Ready condition.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	Reason string `json:"reason,omitempty"`

	// message of the rotation's Ready condition.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
}

// Reasons a previous token is valid.
const (
	PreviousReasonDelayedRotation = "DelayedRotation"
	PreviousReasonSecretRepaired  = "SecretRepaired"
)

// UsageStatus counts calls made with an app's tokens.
type UsageStatus struct {
	// callsToday is the number of calls accepted today (UTC).
	// +optional
	CallsToday int64 `json:"callsToday,omitempty"`
	// refusedToday is the number of calls refused today (UTC) by rate limits
	// or because the app was disconnected.
	// +optional
	RefusedToday int64 `json:"refusedToday,omitempty"`
	// limitPer10s is the app's limit of calls per 10-second window.
	// +optional
	LimitPer10s int64 `json:"limitPer10s,omitempty"`
	// dailyLimit is the account's (namespace's) limit of calls per UTC day.
	// +optional
	DailyLimit int64 `json:"dailyLimit,omitempty"`
	// daily holds one entry per UTC day for the last 30 days, oldest first.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=30
	Daily []DailyUsage `json:"daily,omitempty"`
}

// DailyUsage is one UTC day of calls.
type DailyUsage struct {
	// date is the UTC day, YYYY-MM-DD.
	// +required
	// +kubebuilder:validation:Pattern=`^[0-9]{4}-[0-9]{2}-[0-9]{2}$`
	Date string `json:"date"`
	// calls accepted that day.
	// +optional
	Calls int64 `json:"calls,omitempty"`
	// refused calls that day (rate limits, or the app disconnected).
	// +optional
	Refused int64 `json:"refused,omitempty"`
}

// ActivityType names a lifecycle event of an app.
// +kubebuilder:validation:Enum=Installed;Disconnected;Reconnected;ScopesChanged;TokenRotated;OldTokenExpired;RotationCancelled;TokenExpired;SecretRepaired;Uninstalled
type ActivityType string

// Activity types, also used as the reasons of the matching Events.
const (
	ActivityInstalled         ActivityType = "Installed"
	ActivityDisconnected      ActivityType = "Disconnected"
	ActivityReconnected       ActivityType = "Reconnected"
	ActivityScopesChanged     ActivityType = "ScopesChanged"
	ActivityTokenRotated      ActivityType = "TokenRotated"
	ActivityOldTokenExpired   ActivityType = "OldTokenExpired"
	ActivityRotationCancelled ActivityType = "RotationCancelled"
	ActivityTokenExpired      ActivityType = "TokenExpired"
	ActivitySecretRepaired    ActivityType = "SecretRepaired"
	ActivityUninstalled       ActivityType = "Uninstalled"
)

// ActivityEntry is one lifecycle event of an app.
type ActivityEntry struct {
	// type of the event.
	// +required
	Type ActivityType `json:"type"`
	// time of the event.
	// +required
	Time metav1.Time `json:"time"`
	// user who caused it, when known; "privateapp-operator" for what the
	// operator did on its own.
	// +optional
	// +kubebuilder:validation:MaxLength=512
	User string `json:"user,omitempty"`
	// message says what happened.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
}

// PrivateApp is an integration that gets a scoped access token in a Secret.
// +kubebuilder:object:root=true
// +kubebuilder:validation:XValidation:rule="has(self.spec.secretName) || size(self.metadata.name) <= 247",message="the default secretName \"<name>-token\" would be longer than 253 characters: set spec.secretName or use a shorter name"
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=papp,categories=privateapps-all
// +kubebuilder:printcolumn:name="Status",type=string,JSONPath=`.status.connection`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Scopes",type=string,JSONPath=`.spec.scopes`,priority=0
// +kubebuilder:printcolumn:name="Calls Today",type=integer,JSONPath=`.status.usage.callsToday`
// +kubebuilder:printcolumn:name="Last Activity",type=date,JSONPath=`.status.lastActivityTime`
// +kubebuilder:printcolumn:name="Installed By",type=string,JSONPath=`.status.installedBy`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="App ID",type=integer,JSONPath=`.status.appId`,priority=1
// +kubebuilder:printcolumn:name="Hub ID",type=integer,JSONPath=`.status.hubId`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type PrivateApp struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is what the team declares.
	// +required
	Spec PrivateAppSpec `json:"spec"`
	// status is what the operator reports.
	// +optional
	Status PrivateAppStatus `json:"status,omitempty"`
}

// PrivateAppList is a list of PrivateApps.
// +kubebuilder:object:root=true
type PrivateAppList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []PrivateApp `json:"items"`
}

// DefaultSecretName is the Secret an app's token goes to when spec.secretName
// is not set.
func DefaultSecretName(appName string) string { return appName + "-token" }

// UsageOn is the app's calls and refusals on the UTC day of t, from
// status.usage.daily (status.usage.callsToday still holds an earlier day's
// count until the day's first call is flushed); zero when none is recorded.
func (a *PrivateApp) UsageOn(t time.Time) DailyUsage {
	day := t.UTC().Format(time.DateOnly)
	if a.Status.Usage != nil {
		for _, d := range a.Status.Usage.Daily {
			if d.Date == day {
				return d
			}
		}
	}
	return DailyUsage{Date: day}
}

// CallsByDay is the app's calls on each of the days UTC days up to the day
// of now, oldest first, with the days (YYYY-MM-DD); zero for a day
// status.usage.daily does not hold.
func (a *PrivateApp) CallsByDay(now time.Time, days int) (dates []string, calls []int64) {
	byDay := map[string]int64{}
	if a.Status.Usage != nil {
		for _, d := range a.Status.Usage.Daily {
			byDay[d.Date] = d.Calls
		}
	}
	for i := days - 1; i >= 0; i-- {
		d := now.UTC().AddDate(0, 0, -i).Format(time.DateOnly)
		dates = append(dates, d)
		calls = append(calls, byDay[d])
	}
	return dates, calls
}

// TokenSecretName is the Secret that holds the app's token: the one recorded
// in status once the operator has written it, so that a spec edit that
// bypassed validation cannot move the token.
func (a *PrivateApp) TokenSecretName() string {
	switch {
	case a.Status.SecretName != "":
		return a.Status.SecretName
	case a.Spec.SecretName != "":
		return a.Spec.SecretName
	default:
		return DefaultSecretName(a.Name)
	}
}

// HoldsTokenOf reports whether s is a token Secret the operator wrote for
// a: of SecretType and controlled by a. Whoever may create PrivateApps may
// point spec.secretName at any Secret of the namespace (a ServiceAccount's
// token, say); tools that show "the app's token" show only this one.
func (a *PrivateApp) HoldsTokenOf(s *corev1.Secret) bool {
	return s.Type == SecretType && metav1.IsControlledBy(s, a)
}

func init() {
	SchemeBuilder.Register(&PrivateApp{}, &PrivateAppList{})
}
