package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// NotificationEvent is the app lifecycle event a notification is about.
// +kubebuilder:validation:Enum=AppInstalled;AppDisconnected;AppUninstalled
type NotificationEvent string

// Notification events.
const (
	EventAppInstalled    NotificationEvent = "AppInstalled"
	EventAppDisconnected NotificationEvent = "AppDisconnected"
	EventAppUninstalled  NotificationEvent = "AppUninstalled"
)

// ReminderFrequency is how often a disconnected app is reported again.
// +kubebuilder:validation:Enum=Hourly;Daily;Weekly;Monthly
type ReminderFrequency string

// Reminder frequencies.
const (
	ReminderHourly  ReminderFrequency = "Hourly"
	ReminderDaily   ReminderFrequency = "Daily"
	ReminderWeekly  ReminderFrequency = "Weekly"
	ReminderMonthly ReminderFrequency = "Monthly"
)

// RecipientKind says who receives a notification.
// +kubebuilder:validation:Enum=SuperAdmins;Everyone;Specific
type RecipientKind string

// Recipient kinds.
const (
	RecipientsSuperAdmins RecipientKind = "SuperAdmins"
	RecipientsEveryone    RecipientKind = "Everyone"
	RecipientsSpecific    RecipientKind = "Specific"
)

// AppNotificationSpec says which app events to tell whom.
// +kubebuilder:validation:XValidation:rule="self.event != 'AppDisconnected' || (has(self.apps) && size(self.apps) > 0)",message="apps is required for event AppDisconnected: name the apps to watch"
// +kubebuilder:validation:XValidation:rule="!has(self.reminder) || self.event == 'AppDisconnected'",message="reminder applies to event AppDisconnected only"
type AppNotificationSpec struct {
	// event is AppInstalled, AppDisconnected or AppUninstalled.
	// +required
	Event NotificationEvent `json:"event"`

	// apps are the PrivateApps in this namespace the notification is about.
	// Required for AppDisconnected; empty means every app for the others.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:items:MaxLength=253
	Apps []string `json:"apps,omitempty"`

	// reminder, for AppDisconnected only, repeats the notification Hourly,
	// Daily, Weekly or Monthly while the app stays disconnected.
	// +optional
	Reminder ReminderFrequency `json:"reminder,omitempty"`

	// recipients says who is told.
	// +required
	Recipients Recipients `json:"recipients"`
}

// Recipients of a notification.
// +kubebuilder:validation:XValidation:rule="self.kind == 'Specific' ? ((has(self.users) && size(self.users) > 0) || (has(self.teams) && size(self.teams) > 0)) : (!has(self.users) && !has(self.teams))",message="recipients.users and recipients.teams are for kind Specific, which needs at least one of them"
type Recipients struct {
	// kind is SuperAdmins, Everyone, or Specific (the users and teams below).
	// +required
	Kind RecipientKind `json:"kind"`

	// users to notify, by user name in the operator's directory.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:items:MaxLength=253
	Users []string `json:"users,omitempty"`

	// teams to notify, by team name in the operator's directory.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=100
	// +kubebuilder:validation:items:MaxLength=253
	Teams []string `json:"teams,omitempty"`
}

// AppNotificationStatus reports deliveries.
type AppNotificationStatus struct {
	// observedGeneration is the spec generation this status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// conditions: Ready says whether every recipient could be resolved and
	// served.
	// +optional
	// +listType=map
	// +listMapKey=type
	// +kubebuilder:validation:MaxItems=8
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// lastDeliveryTime is when a delivery last succeeded.
	// +optional
	LastDeliveryTime *metav1.Time `json:"lastDeliveryTime,omitempty"`
	// deliveries are the most recent notifications, newest last.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=50
	Deliveries []Delivery `json:"deliveries,omitempty"`
}

// Delivery is one notification to its recipients.
type Delivery struct {
	// id identifies the notification; a receiver can de-duplicate on it.
	// +required
	// +kubebuilder:validation:MaxLength=128
	ID string `json:"id"`
	// app the notification is about.
	// +required
	// +kubebuilder:validation:MaxLength=253
	App string `json:"app"`
	// event it reports.
	// +required
	Event NotificationEvent `json:"event"`
	// time of the app event.
	// +required
	Time metav1.Time `json:"time"`
	// state is Pending, Sent or Failed.
	// +optional
	// +kubebuilder:validation:MaxLength=32
	State string `json:"state,omitempty"`
	// attempts made so far.
	// +optional
	Attempts int32 `json:"attempts,omitempty"`
	// message says what happened on the last attempt.
	// +optional
	// +kubebuilder:validation:MaxLength=1024
	Message string `json:"message,omitempty"`
}

// AppNotification tells people when apps are installed, disconnected or
// removed.
// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:shortName=appnotif,categories=privateapps-all
// +kubebuilder:printcolumn:name="Event",type=string,JSONPath=`.spec.event`
// +kubebuilder:printcolumn:name="Recipients",type=string,JSONPath=`.spec.recipients.kind`
// +kubebuilder:printcolumn:name="Reminder",type=string,JSONPath=`.spec.reminder`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type AppNotification struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec says what to tell whom.
	// +required
	Spec AppNotificationSpec `json:"spec"`
	// status reports deliveries.
	// +optional
	Status AppNotificationStatus `json:"status,omitempty"`
}

// AppNotificationList is a list of AppNotifications.
// +kubebuilder:object:root=true
type AppNotificationList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []AppNotification `json:"items"`
}

func init() {
	SchemeBuilder.Register(&AppNotification{}, &AppNotificationList{})
}
