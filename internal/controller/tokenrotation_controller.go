package controller

import (
	"context"
	"fmt"

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

// TokenRotationReconciler reports on the TokenRotations the PrivateApp
// reconciler cannot act on yet: those whose app does not exist or has no
// token. Applying a rotation changes the app's token, so that is the
// PrivateApp reconciler's work alone; one writer of token state keeps the
// order of writes in one place.
type TokenRotationReconciler struct {
	client.Client
	Clock clock.PassiveClock
}

// Reconcile sets Pending with the reason a rotation waits, or finishes a
// rotation whose app was deleted.
func (r *TokenRotationReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	rot := &v1alpha1.TokenRotation{}
	if err := r.Get(ctx, req.NamespacedName, rot); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if isFinal(rot.Status.Phase) {
		return ctrl.Result{}, nil
	}
	now := r.Clock.Now()
	base := rot.DeepCopy()

	app := &v1alpha1.PrivateApp{}
	err := r.Get(ctx, client.ObjectKey{Namespace: rot.Namespace, Name: rot.Spec.AppName}, app)
	switch {
	case apierrors.IsNotFound(err) || (err == nil && !app.DeletionTimestamp.IsZero()):
		if rot.Status.Phase == v1alpha1.RotationGracePeriod {
			t := metav1.NewTime(now)
			rot.Status.Phase, rot.Status.CompletedAt, rot.Status.OldTokenExpiresAt = v1alpha1.RotationCompleted, &t, &t
			setRotationReady(&rot.Status, now, metav1.ConditionTrue, v1alpha1.ReasonCompleted,
				"The app was deleted; every one of its tokens is revoked")
			break
		}
		rot.Status.Phase = v1alpha1.RotationPending
		setRotationReady(&rot.Status, now, metav1.ConditionFalse, v1alpha1.ReasonAppNotFound, fmt.Sprintf(
			"PrivateApp %q does not exist in namespace %q; the rotation runs when it does", rot.Spec.AppName, rot.Namespace))
	case err != nil:
		return ctrl.Result{}, err
	case app.Status.Token == nil:
		rot.Status.Phase = v1alpha1.RotationPending
		why := readyReason(app)
		if why == "" {
			why = "its token is being issued"
		}
		setRotationReady(&rot.Status, now, metav1.ConditionFalse, v1alpha1.ReasonAppHasNoToken, fmt.Sprintf(
			"PrivateApp %q has no token to rotate yet (%s); the rotation runs once it has one", rot.Spec.AppName, why))
	default:
		return ctrl.Result{}, nil
	}
	rot.Status.ObservedGeneration = rot.Generation
	if equality.Semantic.DeepEqual(base.Status, rot.Status) {
		return ctrl.Result{}, nil
	}
	return ctrl.Result{}, r.Status().Patch(ctx, rot, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
}

// SetupWithManager watches rotations, and apps so that a rotation's wait
// ends when its app appears or gets its token. It relies on the
// spec.appName index the PrivateApp controller registers.
func (r *TokenRotationReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
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
