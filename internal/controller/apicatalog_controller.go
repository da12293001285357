package controller

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/catalog"
	"github.com/privateapps-dev/privateapp-operator/internal/catalogfeed"
)

// maxConflicts bounds status.conflicts.
const maxConflicts = 20

// APICatalogReconciler reports in each APICatalog's status whether it is in
// force: it compiles every catalog the way the token service does, so the
// status says what the token service enforces. A change of any catalog
// reconciles them all, since a conflict involves two.
type APICatalogReconciler struct {
	client.Client
	Recorder events.EventRecorder
	Clock    clock.PassiveClock
}

// +kubebuilder:rbac:groups=privateapps.dev,resources=apicatalogs,verbs=get;list;watch
// +kubebuilder:rbac:groups=privateapps.dev,resources=apicatalogs/status,verbs=get;update;patch

// Reconcile writes one catalog's status.
func (r *APICatalogReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var list v1alpha1.APICatalogList
	if err := r.List(ctx, &list); err != nil {
		return ctrl.Result{}, err
	}
	_, results := catalogfeed.Compile(list.Items)
	var cat *v1alpha1.APICatalog
	for i := range list.Items {
		if list.Items[i].Name == req.Name {
			cat = &list.Items[i]
		}
	}
	if cat == nil || !cat.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	var res catalog.Result
	for _, x := range results {
		if x.Name == cat.Name {
			res = x
		}
	}
	base := cat.DeepCopy()
	prev := meta.FindStatusCondition(cat.Status.Conditions, v1alpha1.ConditionReady)
	status, reason, msg := catalogReady(res)
	st := &cat.Status
	st.ObservedGeneration = cat.Generation
	st.ScopesInForce, st.RoutesInForce = clampInt32(res.Scopes), clampInt32(res.Routes)
	st.Conflicts = nil
	for _, c := range res.Conflicts[:min(len(res.Conflicts), maxConflicts)] {
		st.Conflicts = append(st.Conflicts, v1alpha1.RouteConflict{Route: c.Route, OtherCatalog: c.OtherCatalog, OtherRoute: c.OtherRoute, Example: truncate(c.Example, 2048)})
	}
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{
		Type: v1alpha1.ConditionReady, Status: status, Reason: reason, Message: msg,
		ObservedGeneration: cat.Generation, LastTransitionTime: metav1.NewTime(r.Clock.Now()),
	})
	if equality.Semantic.DeepEqual(base.Status, cat.Status) {
		return ctrl.Result{}, nil
	}
	if err := r.Status().Patch(ctx, cat, client.MergeFrom(base)); err != nil {
		return ctrl.Result{}, err
	}
	if r.Recorder != nil && (prev == nil || prev.Reason != reason || prev.Message != msg) {
		kind := corev1.EventTypeNormal
		if status != metav1.ConditionTrue || len(res.Conflicts) > 0 {
			kind = corev1.EventTypeWarning
		}
		r.Recorder.Eventf(cat, nil, kind, reason, "Compile", "%s", truncate(msg, maxEventNote))
	}
	return ctrl.Result{}, nil
}

// catalogReady is the Ready condition of a compiled catalog.
func catalogReady(res catalog.Result) (metav1.ConditionStatus, string, string) {
	switch {
	case len(res.Problems) > 0:
		var b strings.Builder
		for i, p := range res.Problems {
			if i == 5 {
				fmt.Fprintf(&b, " (and %d more)", len(res.Problems)-5)
				break
			}
			if i > 0 {
				b.WriteString("; ")
			}
			b.WriteString(p.Field + ": " + p.Message)
		}
		return metav1.ConditionFalse, v1alpha1.ReasonInvalid, truncate(b.String(), 4000) +
			". The catalog is not in force: none of its routes or scopes apply until it is fixed"
	case !res.InForce:
		return metav1.ConditionFalse, v1alpha1.ReasonRouteConflict, truncate(res.Conflicts[0].Message, 3000) + fmt.Sprintf(
			" (%d conflicts, listed in status.conflicts). The catalog is set aside: none of its routes or scopes apply until the conflicts are resolved",
			len(res.Conflicts))
	}
	msg := fmt.Sprintf("The token service matches requests against its %d routes and apps may ask for its %d scopes", res.Routes, res.Scopes)
	if len(res.Conflicts) > 0 {
		msg += "; a newer catalog conflicts with it and is set aside: " + truncate(res.Conflicts[0].Message, 3000)
	}
	return metav1.ConditionTrue, v1alpha1.ReasonInForce, msg
}

// SetupWithManager registers the controller.
func (r *APICatalogReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.APICatalog{}).
		Watches(&v1alpha1.APICatalog{}, handler.EnqueueRequestsFromMapFunc(r.allCatalogs),
			builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		Named("apicatalog").
		Complete(r)
}

func (r *APICatalogReconciler) allCatalogs(ctx context.Context, _ client.Object) []reconcile.Request {
	var list v1alpha1.APICatalogList
	if err := r.List(ctx, &list); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, len(list.Items))
	for i, c := range list.Items {
		reqs[i] = reconcile.Request{NamespacedName: client.ObjectKey{Name: c.Name}}
	}
	return reqs
}
