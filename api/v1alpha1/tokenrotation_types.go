package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// RotationStrategy says what happens to the old token.
// +kubebuilder:validation:Enum=Immediate;Delayed
type RotationStrategy string

const (
	// RotationImmediate revokes every token the app has, at once; for a
	// leaked token.
	RotationImmediate RotationStrategy = "Immediate"
	// RotationDelayed keeps the old token working for gracePeriod.
	RotationDelayed RotationStrategy = "Delayed"
)

// RotationPhase is where a rotation is.
// +kubebuilder:validation:Enum=Pending;GracePeriod;Completed;Cancelled;Superseded;Failed
type RotationPhase string

// Phases of a TokenRotation.
const (
	RotationPending     RotationPhase = "Pending"
	RotationGracePeriod RotationPhase = "GracePeriod"
	RotationCompleted   RotationPhase = "Completed"
	RotationCancelled   RotationPhase = "Cancelled"
	RotationSuperseded  RotationPhase = "Superseded"
	RotationFailed      RotationPhase = "Failed"
)

// Reasons of the Ready condition of a TokenRotation.
const (
	// ReasonAppNotFound: the app does not exist (yet).
	ReasonAppNotFound = "AppNotFound"
	// ReasonAppHasNoToken: the app has no token to rotate yet.
	ReasonAppHasNoToken = "AppHasNoToken"
	// ReasonRotationInProgress: another Delayed rotation holds the grace period.
	ReasonRotationInProgress = "RotationInProgress"
	// ReasonGracePeriod: the new token is in place and the old one still works.
	ReasonGracePeriod = "GracePeriod"
	// ReasonCompleted: only the new token works.
	ReasonCompleted = "Completed"
	// ReasonCancelled: the old token is back and the new one is revoked.
	ReasonCancelled = "Cancelled"
	// ReasonSuperseded: an Immediate rotation revoked the tokens of this one.
	ReasonSuperseded = "Superseded"
	// ReasonCannotCancel: the old token's text is no longer in the Secret.
	ReasonCannotCancel = "CannotCancel"
)

// Labels on TokenRotations the operator creates for spec.rotation.
const (
	// AutomaticRotationLabel marks a TokenRotation created on schedule.
	AutomaticRotationLabel = "privateapps.dev/automatic"
)

// TokenRotationSpec asks for a new token for an app.
// +kubebuilder:validation:XValidation:rule="self.appName == oldSelf.appName && self.strategy == oldSelf.strategy && ((has(self.gracePeriod) && has(oldSelf.gracePeriod) && self.gracePeriod == oldSelf.gracePeriod) || (!has(self.gracePeriod) && !has(oldSelf.gracePeriod)))",message="appName, strategy and gracePeriod are immutable; to rotate again create a new TokenRotation"
// +kubebuilder:validation:XValidation:rule="self.strategy == 'Delayed' || (!has(self.gracePeriod) && !has(self.expireOldTokenNow) && !has(self.cancel))",message="gracePeriod, expireOldTokenNow and cancel apply to strategy Delayed only"
// +kubebuilder:validation:XValidation:rule="!(has(self.expireOldTokenNow) && self.expireOldTokenNow && has(self.cancel) && self.cancel)",message="set either expireOldTokenNow (keep the new token) or cancel (go back to the old token), not both"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.expireOldTokenNow) || !oldSelf.expireOldTokenNow || (has(self.expireOldTokenNow) && self.expireOldTokenNow)",message="expireOldTokenNow cannot be undone once set"
// +kubebuilder:validation:XValidation:rule="!has(oldSelf.cancel) || !oldSelf.cancel || (has(self.cancel) && self.cancel)",message="cancel cannot be undone once set"
type TokenRotationSpec struct {
	// appName is the PrivateApp, in the same namespace, whose token rotates.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	AppName string `json:"appName"`

	// strategy is Immediate (the old token stops working now; for a leaked
	// token) or Delayed (the old token keeps working for gracePeriod).
	// +required
	Strategy RotationStrategy `json:"strategy"`

	// gracePeriod is how long the old token keeps working with strategy
	// Delayed. Defaults to 168h (7 days).
	// +optional
	// +kubebuilder:validation:Type=string
	// +kubebuilder:validation:Pattern=`^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$`
	GracePeriod *metav1.Duration `json:"gracePeriod,omitempty"`

	// expireOldTokenNow true, during the grace period, revokes the old token
	// now and completes the rotation.
	// +optional
	ExpireOldTokenNow bool `json:"expireOldTokenNow,omitempty"`

	// cancel true, during the grace period, puts the old token back as the
	// app's token and revokes the new one.
	// +optional
	Cancel bool `json:"cancel,omitempty"`
}

// TokenRotationStatus is where the rotation is.
type TokenRotationStatus struct {
	// observedGeneration is the spec generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// phase is Pending, GracePeriod, Completed, Cancelled, Superseded or Failed.
	// +optional
	Phase RotationPhase `json:"phase,omitempty"`
	// rotatedAt is when the new token was issued.
	// +optional
	RotatedAt *metav1.Time `json:"rotatedAt,omitempty"`
	// oldTokenExpiresAt is when the old token stops working (Delayed only).
	// +optional
	OldTokenExpiresAt *metav1.Time `json:"oldTokenExpiresAt,omitempty"`
	// completedAt is when the rotation reached a final phase.
	// +optional
	CompletedAt *metav1.Time `json:"completedAt,omitempty"`
	// conditions: Ready is True once the new token is in place.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// TokenRotation replaces an app's token, at once or with a grace period.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=tokrot,categories=privateapps-all
// +kubebuilder:printcolumn:name="App",type=string,JSONPath=`.spec.appName`
// +kubebuilder:printcolumn:name="Strategy",type=string,JSONPath=`.spec.strategy`
// +kubebuilder:printcolumn:name="Phase",type=string,JSONPath=`.status.phase`
// +kubebuilder:printcolumn:name="Old Token Expires",type=string,JSONPath=`.status.oldTokenExpiresAt`,description="When the old token stops working (UTC): a time to come, so not an age"
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type TokenRotation struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec says which app and how.
	// +required
	Spec TokenRotationSpec `json:"spec"`
	// status is what the operator reports.
	// +optional
	Status TokenRotationStatus `json:"status,omitempty"`
}

// TokenRotationList is a list of TokenRotations.
// +kubebuilder:object:root=true
type TokenRotationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []TokenRotation `json:"items"`
}

func init() {
	SchemeBuilder.Register(&TokenRotation{}, &TokenRotationList{})
}
