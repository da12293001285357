package controller

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
)

// Ready comes from what the phases recorded, in one place.
func TestSetReadyCondition(t *testing.T) {
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	issued := metav1.NewTime(now.Add(-time.Hour))
	token := &v1alpha1.TokenStatus{Digest: "sha256:00", IssuedAt: issued, ExpiresAt: &issued}
	ready := func(reason string) []metav1.Condition {
		return []metav1.Condition{{Type: v1alpha1.ConditionReady, Status: metav1False, Reason: reason}}
	}
	tests := []struct {
		name       string
		connection v1alpha1.ConnectionState
		token      *v1alpha1.TokenStatus
		was        []metav1.Condition
		slot       *capDecision
		err        error
		want       metav1.ConditionStatus
		reason     string
	}{
		{"connected", v1alpha1.ConnectionConnected, token, nil, nil, nil, metav1True, v1alpha1.ReasonTokenIssued},
		{"suspended", v1alpha1.ConnectionDisconnected, token, nil, nil, nil, metav1False, v1alpha1.ReasonSuspended},
		{"expired", v1alpha1.ConnectionExpired, token, nil, nil, nil, metav1False, v1alpha1.ReasonTokenExpired},
		{"Secret of someone else", v1alpha1.ConnectionError, nil, nil, nil, nil, metav1False, v1alpha1.ReasonSecretConflict},
		{"waiting for a slot", v1alpha1.ConnectionPending, nil, nil, &capDecision{holders: 20, position: 2}, nil, metav1False, v1alpha1.ReasonAppLimitExceeded},
		{"waiting for the ranking to settle keeps Ready", v1alpha1.ConnectionPending, nil, ready(v1alpha1.ReasonReconcileError), nil, nil,
			metav1False, v1alpha1.ReasonReconcileError},
		{"new app settling has no Ready yet", "", nil, nil, nil, nil, "", ""},
		{"an error says so", v1alpha1.ConnectionConnected, token, nil, nil, errors.New("boom"), metav1False, v1alpha1.ReasonReconcileError},
		{"a conflict is not an error to show", v1alpha1.ConnectionConnected, token, ready(v1alpha1.ReasonSuspended),
			nil, apierrors.NewConflict(schema.GroupResource{}, "crm", errors.New("changed")), metav1False, v1alpha1.ReasonSuspended},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app := &v1alpha1.PrivateApp{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "crm"},
				Spec:   v1alpha1.PrivateAppSpec{TokenLifetime: &metav1.Duration{Duration: time.Hour}},
				Status: v1alpha1.PrivateAppStatus{Connection: tt.connection, Token: tt.token, Conditions: tt.was}}
			s := newAppScope(app, now)
			s.slot, s.maxApps = tt.slot, 20
			setReadyCondition(s, tt.err)
			var got metav1.ConditionStatus
			var reason string
			if c := meta.FindStatusCondition(app.Status.Conditions, v1alpha1.ConditionReady); c != nil {
				got, reason = c.Status, c.Reason
			}
			if got != tt.want || reason != tt.reason {
				t.Errorf("Ready = %s/%s, want %s/%s", got, reason, tt.want, tt.reason)
			}
		})
	}
}

// Events tell what changed in status, once.
func TestStatusEvents(t *testing.T) {
	at := metav1.NewTime(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	installed := v1alpha1.ActivityEntry{Type: v1alpha1.ActivityInstalled, Time: at, Message: "installed"}
	repaired := v1alpha1.ActivityEntry{Type: v1alpha1.ActivitySecretRepaired, Time: at, Message: "repaired"}
	readyFalse := func(reason string) metav1.Condition {
		return metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1False, Reason: reason, Message: reason + " message"}
	}
	notOffered := func(msg string) metav1.Condition {
		return metav1.Condition{Type: v1alpha1.ConditionScopesOffered, Status: metav1False, Reason: v1alpha1.ReasonScopesNotOffered, Message: msg}
	}
	tests := []struct {
		name          string
		before, after v1alpha1.PrivateAppStatus
		want          []pendingEvent
	}{
		{"nothing changed", v1alpha1.PrivateAppStatus{Activity: []v1alpha1.ActivityEntry{installed}},
			v1alpha1.PrivateAppStatus{Activity: []v1alpha1.ActivityEntry{installed}}, nil},
		{"each new activity entry", v1alpha1.PrivateAppStatus{Activity: []v1alpha1.ActivityEntry{installed}},
			v1alpha1.PrivateAppStatus{Activity: []v1alpha1.ActivityEntry{installed, repaired}},
			[]pendingEvent{{corev1.EventTypeWarning, string(v1alpha1.ActivitySecretRepaired), "repaired"}}},
		{"Ready false for a new reason", v1alpha1.PrivateAppStatus{}, v1alpha1.PrivateAppStatus{Conditions: []metav1.Condition{readyFalse(v1alpha1.ReasonAppLimitExceeded)}},
			[]pendingEvent{{corev1.EventTypeWarning, v1alpha1.ReasonAppLimitExceeded, "AppLimitExceeded message"}}},
		{"Ready false for the same reason again", v1alpha1.PrivateAppStatus{Conditions: []metav1.Condition{readyFalse(v1alpha1.ReasonReconcileError)}},
			v1alpha1.PrivateAppStatus{Conditions: []metav1.Condition{readyFalse(v1alpha1.ReasonReconcileError)}}, nil},
		{"suspended has its activity entry instead", v1alpha1.PrivateAppStatus{},
			v1alpha1.PrivateAppStatus{Conditions: []metav1.Condition{readyFalse(v1alpha1.ReasonSuspended)}}, nil},
		{"scopes newly not offered", v1alpha1.PrivateAppStatus{Conditions: []metav1.Condition{notOffered("a")}},
			v1alpha1.PrivateAppStatus{Conditions: []metav1.Condition{notOffered("b")}},
			[]pendingEvent{{corev1.EventTypeWarning, v1alpha1.ReasonScopesNotOffered, "b"}}},
		{"a rotation refused", v1alpha1.PrivateAppStatus{},
			v1alpha1.PrivateAppStatus{Rotations: []v1alpha1.RotationRecord{{Name: "r", Phase: v1alpha1.RotationFailed, Message: "why"}}},
			[]pendingEvent{{corev1.EventTypeWarning, v1alpha1.ReasonRotationInProgress, `TokenRotation "r" refused: why`}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := cmp.Diff(tt.want, statusEvents(&tt.before, &tt.after), cmp.AllowUnexported(pendingEvent{})); d != "" {
				t.Errorf("events (-want +got):\n%s", d)
			}
		})
	}
}
