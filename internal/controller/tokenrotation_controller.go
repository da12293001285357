package controller

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
)

// TokenRotationFieldOwner is the field manager of TokenRotation status.
const TokenRotationFieldOwner = "tokenrotation-controller"

// TokenRotationReconciler writes every TokenRotation's status, and is its
// only writer. Applying a rotation changes the app's token, so that is the
// PrivateApp reconciler's work alone (one writer of token state keeps the
// order of writes in one place); it records how each rotation went in the
// app's status.rotations, and this reconciler reports that on the rotation,
// along with why a rotation waits.
type TokenRotationReconciler struct {
	client.Client
	Clock clock.PassiveClock
}

// +kubebuilder:rbac:groups=privateapps.dev,resources=tokenrotations/status,verbs=get;update;patch

// Reconcile writes the status rotationStatus computes.
func (r *TokenRotationReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	rot := &v1alpha1.TokenRotation{}
	if err := r.Get(ctx, req.NamespacedName, rot); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if isFinal(rot.Status.Phase) {
		return ctrl.Result{}, nil
	}
	app := &v1alpha1.PrivateApp{}
	switch err := r.Get(ctx, client.ObjectKey{Namespace: rot.Namespace, Name: rot.Spec.AppName}, app); {
	case apierrors.IsNotFound(err):
		app = nil
	case err != nil:
		return ctrl.Result{}, err
	}
	st := rotationStatus(rot, app, r.Clock.Now())
	if equality.Semantic.DeepEqual(rot.Status, st) {
		return ctrl.Result{}, nil
	}
	base := rot.DeepCopy()
	rot.Status = st
	return ctrl.Result{}, r.Status().Patch(ctx, rot, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
}

// rotationStatus is the status of rot given its app (nil when it does not
// exist) at now: how the app's status.rotations says it went, or why it
// waits. A rotation waiting its turn behind another keeps its status.
func rotationStatus(rot *v1alpha1.TokenRotation, app *v1alpha1.PrivateApp, now time.Time) v1alpha1.TokenRotationStatus {
	st := *rot.Status.DeepCopy()
	if isFinal(st.Phase) {
		return st
	}
	var rec *v1alpha1.RotationRecord
	if app != nil {
		rec = findRotationRecord(app.Status.Rotations, rot)
	}
	switch {
	case app == nil || !app.DeletionTimestamp.IsZero():
		if st.Phase == v1alpha1.RotationGracePeriod {
			t := metav1.NewTime(now)
			st.Phase, st.CompletedAt, st.OldTokenExpiresAt = v1alpha1.RotationCompleted, &t, &t
			setRotationReady(&st, now, metav1.ConditionTrue, v1alpha1.ReasonCompleted,
				"The app was deleted; every one of its tokens is revoked")
			break
		}
		st.Phase = v1alpha1.RotationPending
		setRotationReady(&st, now, metav1.ConditionFalse, v1alpha1.ReasonAppNotFound, fmt.Sprintf(
			"PrivateApp %q does not exist in namespace %q; the rotation runs when it does", rot.Spec.AppName, rot.Namespace))
	case rec != nil:
		st.Phase = rec.Phase
		for _, t := range []struct{ to, from **metav1.Time }{
			{&st.RotatedAt, &rec.RotatedAt}, {&st.OldTokenExpiresAt, &rec.OldTokenExpiresAt}, {&st.CompletedAt, &rec.CompletedAt},
		} {
			if *t.from != nil {
				*t.to = (*t.from).DeepCopy()
			}
		}
		ready := metav1.ConditionTrue
		if rec.Phase == v1alpha1.RotationFailed {
			ready = metav1.ConditionFalse
		}
		// Ready changed when the app's controller decided, not when this
		// report runs.
		decided := now
		if at := cmp.Or(rec.CompletedAt, rec.RotatedAt); at != nil {
			decided = at.Time
		}
		setRotationReady(&st, decided, ready, rec.Reason, rec.Message)
	case app.Status.Token == nil:
		st.Phase = v1alpha1.RotationPending
		why := readyReason(app)
		if why == "" {
			why = "its token is being issued"
		}
		setRotationReady(&st, now, metav1.ConditionFalse, v1alpha1.ReasonAppHasNoToken, fmt.Sprintf(
			"PrivateApp %q has no token to rotate yet (%s); the rotation runs once it has one", rot.Spec.AppName, why))
	default:
		return st
	}
	st.ObservedGeneration = rot.Generation
	for i := range st.Conditions {
		st.Conditions[i].ObservedGeneration = rot.Generation
	}
	return st
}

// SetupWithManager watches rotations, and apps: a rotation's status follows
// its app's. It relies on the spec.appName index the PrivateApp controller
// registers.
func (r *TokenRotationReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	r.Client = client.WithFieldOwner(r.Client, TokenRotationFieldOwner)
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.TokenRotation{}).
		Watches(&v1alpha1.PrivateApp{}, handler.EnqueueRequestsFromMapFunc(r.rotationsOfApp)).
		Named("tokenrotation").
		Complete(r)
}

func (r *TokenRotationReconciler) rotationsOfApp(ctx context.Context, obj client.Object) []reconcile.Request {
	var list v1alpha1.TokenRotationList
	if err := r.List(ctx, &list, client.InNamespace(obj.GetNamespace()), client.MatchingFields{rotationAppField: obj.GetName()},
		client.UnsafeDisableDeepCopy); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for _, rot := range list.Items {
		if !isFinal(rot.Status.Phase) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&rot)})
		}
	}
	return reqs
}
