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

// Ready condition reasons of an AppNotification.
const (
	// ReasonDelivering: every recipient is known and deliveries go out.
	ReasonDelivering = "Delivering"
	// ReasonUnknownRecipients: users or teams are not in the directory; the
	// others are still served.
	ReasonUnknownRecipients = "UnknownRecipients"
	// ReasonDeliveryFailing: the last attempt of a delivery failed; it is
	// retried with backoff.
	ReasonDeliveryFailing = "DeliveryFailing"
	// ReasonNotConfigured: the operator has neither SMTP nor a webhook
	// configured; notifications are recorded and wait.
	ReasonNotConfigured = "NotConfigured"
	// ReasonDirectoryInvalid: a recipients directory cannot be read.
	ReasonDirectoryInvalid = "DirectoryInvalid"
	// ReasonNoRecipients: the recipients resolve to nobody (no superAdmins
	// or no users in the directory).
	ReasonNoRecipients = "NoRecipients"
)

// DeliveryState is where a delivery stands.
// +kubebuilder:validation:Enum=Pending;Sent;Failed
type DeliveryState string

// Delivery states.
const (
	// DeliveryPending: not yet sent to every recipient; tried again at
	// nextAttemptAt.
	DeliveryPending DeliveryState = "Pending"
	// DeliverySent: every recipient was served.
	DeliverySent DeliveryState = "Sent"
	// DeliveryFailed: retries are exhausted; the recipients in sentTo got
	// it, the others did not.
	DeliveryFailed DeliveryState = "Failed"
)

// WebhookRecipient is the name under which a delivery to the configured
// JSON webhook is listed in sentTo.
const WebhookRecipient = "webhook"

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
	// activeSince is when the operator started watching for this
	// notification; apps installed or disconnected before it are not
	// reported.
	// +optional
	ActiveSince *metav1.Time `json:"activeSince,omitempty"`
	// lastDeliveryTime is when a delivery last succeeded.
	// +optional
	LastDeliveryTime *metav1.Time `json:"lastDeliveryTime,omitempty"`
	// deliveries are the most recent notifications, oldest first. Finished
	// ones drop off past 50; pending ones stay until they finish.
	// +optional
	// +listType=atomic
	// +kubebuilder:validation:MaxItems=200
	Deliveries []Delivery `json:"deliveries,omitempty"`
	// apps is what the operator has already notified about each watched app,
	// so that nothing is sent twice across restarts.
	// +optional
	// +listType=map
	// +listMapKey=name
	// +kubebuilder:validation:MaxItems=1000
	Apps []NotifiedApp `json:"apps,omitempty"`
}

// NotifiedApp is the notification state of one app.
type NotifiedApp struct {
	// name of the PrivateApp.
	// +required
	// +kubebuilder:validation:MaxLength=253
	Name string `json:"name"`
	// uid of the PrivateApp; an app deleted and created again under the same
	// name is a new app.
	// +required
	// +kubebuilder:validation:MaxLength=64
	UID string `json:"uid"`
	// installed is true once the app's install was handled (notified, or
	// installed before this notification existed).
	// +optional
	Installed bool `json:"installed,omitempty"`
	// disconnectedAt is the start of the disconnect episode already
	// notified; empty while the app is connected.
	// +optional
	DisconnectedAt *metav1.Time `json:"disconnectedAt,omitempty"`
	// reminders sent so far in this disconnect episode.
	// +optional
	Reminders int32 `json:"reminders,omitempty"`
}

// Delivery is one notification to its recipients.
type Delivery struct {
	// id identifies the notification; it is the same on every retry, so a
	// receiver can de-duplicate on it.
	// +required
	// +kubebuilder:validation:MaxLength=128
	ID string `json:"id"`
	// app the notification is about.
	// +required
	// +kubebuilder:validation:MaxLength=253
	App string `json:"app"`
	// appUID is the uid of the app.
	// +optional
	// +kubebuilder:validation:MaxLength=64
	AppUID string `json:"appUID,omitempty"`
	// event it reports.
	// +required
	Event NotificationEvent `json:"event"`
	// reminder is 0 for the first notice of a disconnect and n for the n-th
	// reminder.
	// +optional
	Reminder int32 `json:"reminder,omitempty"`
	// time of the app event (for a reminder, when it fell due).
	// +required
	Time metav1.Time `json:"time"`
	// state is Pending, Sent or Failed.
	// +optional
	State DeliveryState `json:"state,omitempty"`
	// attempts made so far.
	// +optional
	Attempts int32 `json:"attempts,omitempty"`
	// nextAttemptAt is when a pending delivery is tried again.
	// +optional
	NextAttemptAt *metav1.Time `json:"nextAttemptAt,omitempty"`
	// sentTo are the recipients served so far: user names from the
	// directory, "webhook" for the JSON webhook and "chat:<name>" for a
	// chat webhook. A retry serves only the others.
	// +optional
	// +listType=set
	// +kubebuilder:validation:MaxItems=500
	// +kubebuilder:validation:items:MaxLength=253
	SentTo []string `json:"sentTo,omitempty"`
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
// +kubebuilder:printcolumn:name="Last Delivery",type=date,JSONPath=`.status.lastDeliveryTime`
// +kubebuilder:printcolumn:name="Reason",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].reason`,priority=1
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
type AppNotification struct {
	metav1.TypeMeta `json:",inline"`
	// metadata is the standard object metadata.
	// +optional
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
