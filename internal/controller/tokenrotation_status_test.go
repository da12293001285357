package controller

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
)

// rotationStatus is the TokenRotation's status as its app records it.
func TestRotationStatus(t *testing.T) {
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *metav1.Time { t := metav1.NewTime(now.Add(d)); return &t }
	rotation := func(phase v1alpha1.RotationPhase) *v1alpha1.TokenRotation {
		return &v1alpha1.TokenRotation{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "r", UID: "uid-r", Generation: 2},
			Spec:       v1alpha1.TokenRotationSpec{AppName: "crm", Strategy: v1alpha1.RotationDelayed},
			Status:     v1alpha1.TokenRotationStatus{Phase: phase},
		}
	}
	app := func(records ...v1alpha1.RotationRecord) *v1alpha1.PrivateApp {
		return &v1alpha1.PrivateApp{
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "crm"},
			Status: v1alpha1.PrivateAppStatus{
				Token:     &v1alpha1.TokenStatus{Digest: "sha256:00", IssuedAt: *at(-time.Hour)},
				Rotations: records,
			},
		}
	}
	deleted := app()
	deleted.DeletionTimestamp = at(0)
	noToken := app()
	noToken.Status.Token = nil

	type want struct {
		phase                   v1alpha1.RotationPhase
		ready                   metav1.ConditionStatus
		reason                  string
		rotatedAt, oldExpiresAt *metav1.Time
		completedAt             *metav1.Time
	}
	tests := []struct {
		name string
		rot  *v1alpha1.TokenRotation
		app  *v1alpha1.PrivateApp
		want want
	}{
		{"no app yet", rotation(""), nil, want{phase: v1alpha1.RotationPending, ready: metav1.ConditionFalse, reason: v1alpha1.ReasonAppNotFound}},
		{"app without a token", rotation(""), noToken, want{phase: v1alpha1.RotationPending, ready: metav1.ConditionFalse, reason: v1alpha1.ReasonAppHasNoToken}},
		{"waiting its turn keeps its status", rotation(""), app(), want{}},
		{"in its grace period", rotation(""), app(v1alpha1.RotationRecord{Name: "r", UID: "uid-r", Phase: v1alpha1.RotationGracePeriod,
			RotatedAt: at(-time.Minute), OldTokenExpiresAt: at(time.Hour), Reason: v1alpha1.ReasonGracePeriod}),
			want{phase: v1alpha1.RotationGracePeriod, ready: metav1.ConditionTrue, reason: v1alpha1.ReasonGracePeriod,
				rotatedAt: at(-time.Minute), oldExpiresAt: at(time.Hour)}},
		{"cannot cancel stays in its grace period", rotation(v1alpha1.RotationGracePeriod), app(v1alpha1.RotationRecord{Name: "r",
			Phase: v1alpha1.RotationGracePeriod, Reason: v1alpha1.ReasonCannotCancel}),
			want{phase: v1alpha1.RotationGracePeriod, ready: metav1.ConditionTrue, reason: v1alpha1.ReasonCannotCancel}},
		{"completed", rotation(""), app(v1alpha1.RotationRecord{Name: "r", Phase: v1alpha1.RotationCompleted,
			RotatedAt: at(-time.Minute), CompletedAt: at(-time.Minute), Reason: v1alpha1.ReasonCompleted}),
			want{phase: v1alpha1.RotationCompleted, ready: metav1.ConditionTrue, reason: v1alpha1.ReasonCompleted, rotatedAt: at(-time.Minute), completedAt: at(-time.Minute)}},
		{"refused", rotation(""), app(v1alpha1.RotationRecord{Name: "r", Phase: v1alpha1.RotationFailed,
			CompletedAt: at(0), Reason: v1alpha1.ReasonRotationInProgress}),
			want{phase: v1alpha1.RotationFailed, ready: metav1.ConditionFalse, reason: v1alpha1.ReasonRotationInProgress, completedAt: at(0)}},
		{"another rotation's record of the same name", rotation(""), app(v1alpha1.RotationRecord{Name: "r", UID: "uid-old",
			Phase: v1alpha1.RotationCompleted, Reason: v1alpha1.ReasonCompleted}), want{}},
		{"app deleted during the grace period", rotation(v1alpha1.RotationGracePeriod), deleted,
			want{phase: v1alpha1.RotationCompleted, ready: metav1.ConditionTrue, reason: v1alpha1.ReasonCompleted, oldExpiresAt: at(0), completedAt: at(0)}},
		{"a final phase is final", rotation(v1alpha1.RotationCancelled), app(v1alpha1.RotationRecord{Name: "r", Phase: v1alpha1.RotationGracePeriod}),
			want{phase: v1alpha1.RotationCancelled}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := rotationStatus(tt.rot, tt.app, now)
			got := want{phase: st.Phase, rotatedAt: st.RotatedAt, oldExpiresAt: st.OldTokenExpiresAt, completedAt: st.CompletedAt}
			if c := meta.FindStatusCondition(st.Conditions, v1alpha1.ConditionReady); c != nil {
				got.ready, got.reason = c.Status, c.Reason
				if c.ObservedGeneration != tt.rot.Generation {
					t.Errorf("condition observedGeneration = %d, want %d", c.ObservedGeneration, tt.rot.Generation)
				}
				if st.CompletedAt != nil && !c.LastTransitionTime.Equal(st.CompletedAt) {
					t.Errorf("Ready changed at %v, want when the rotation ended, %v", c.LastTransitionTime, st.CompletedAt)
				}
			}
			if d := cmp.Diff(tt.want, got, cmp.AllowUnexported(want{})); d != "" {
				t.Errorf("status (-want +got):\n%s", d)
			}
		})
	}
}
