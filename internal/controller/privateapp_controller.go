package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	kerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/catalog"
)

const (
	// Finalizer lets the operator record an app's uninstall and remove its
	// Secret before the app goes.
	Finalizer = "privateapps.dev/uninstall"
	// OperatorUser is the activity user of what the operator does on its own.
	OperatorUser = "privateapp-operator"
	// DefaultGracePeriod is how long an old token keeps working when nothing
	// else is said: after a delayed rotation, or after a Secret repair.
	DefaultGracePeriod = 168 * time.Hour
	// DefaultMaxAppsPerNamespace is the app cap: at most 20 apps of a namespace hold tokens.
	DefaultMaxAppsPerNamespace = 20
	// uninstallRecordingBound is how long a deleted app waits for its
	// AppUninstalled notification to be recorded before it goes anyway.
	uninstallRecordingBound = 2 * time.Minute
	// uninstallRecheck is how often a deleted app looks again when no
	// AppNotification update woke it.
	uninstallRecheck = 5 * time.Second
	// EventUninstallNotRecorded says an app went without its uninstall
	// notification.
	EventUninstallNotRecorded = "UninstallNotRecorded"
	// PrivateAppFieldOwner is the field manager of the PrivateApp
	// controller's writes: every field of PrivateApp status but usage and
	// lastActivityTime, which the token service owns.
	PrivateAppFieldOwner = "privateapp-controller"
)

// PrivateAppReconciler issues each PrivateApp's token into its Secret and
// keeps the Secret, the app's status and the namespace's app cap in line.
//
// # Order of writes
//
// The token exists in two places: its text in the Secret and its digest in
// status. Every change writes the Secret first and status second, and status
// is written with optimistic locking, so a process killed between the two
// leaves one of these states, each of which the next reconcile completes:
//
//   - first token: the Secret holds a token, status has none. That token was
//     never recorded, so it never worked: it is replaced by a fresh one.
//     Nothing found in a Secret is adopted, so a token planted by someone
//     who may create Secrets but not read them is never trusted.
//   - repair: the Secret holds a token whose digest status lacks. It is
//     replaced like any out-of-band edit, and the token status knows stays
//     valid for the grace period.
//   - rotation: status first records the new token's digest as pending
//     (privateapp_rotation.go), so the next reconcile finishes or drops it.
//   - old token expiry: previous-token is gone from the Secret but status
//     still lists it; status drops it, and the token service already refuses
//     it by its expiry time.
//
// nextTokenStep (privateapp_tokensteps.go) tells these states apart, from
// status and the Secret alone, and names the step each one needs.
//
// Decisions that replace a token are taken on the app as the API server has
// it, not on a cached copy that may lag behind a write this controller just
// made.
type PrivateAppReconciler struct {
	client.Client
	// APIReader reads from the API server, bypassing the cache.
	APIReader client.Reader
	Recorder  events.EventRecorder
	// Clock drives token lifetimes and grace periods.
	Clock clock.PassiveClock
	// WallClock is compared with creationTimestamp, which the API server
	// stamps from its own clock; it stays the real clock in tests that fake
	// Clock.
	WallClock clock.PassiveClock
	// MaxAppsPerNamespace is the app cap; apps past it wait for a slot.
	MaxAppsPerNamespace int
	// GracePeriod is how long the old token stays valid after a repair.
	GracePeriod time.Duration
	// MaxConcurrentReconciles bounds parallel reconciles (default 1).
	MaxConcurrentReconciles int
	// NewQueue, when set, builds the controller's work queue; tests pass one
	// whose delays run on their fake clock.
	NewQueue func(string, workqueue.TypedRateLimiter[reconcile.Request]) workqueue.TypedRateLimitingInterface[reconcile.Request]
	// Catalogs, when set, are the API catalogs in force: apps holding a
	// scope none offers get the ScopesOffered condition, and every app is
	// looked at again when the catalogs change.
	Catalogs CatalogSource
	// IDs, when set, gives each app its HubSpot-style numbers (hubId, appId,
	// installedByUserId in status).
	IDs IDRegistry
}

// CatalogSource gives the API catalogs in force (a catalogfeed.Feed).
type CatalogSource interface {
	Current() *catalog.Set
	// Wait blocks until the catalogs are first compiled.
	Wait(ctx context.Context) bool
	// Subscribe sends an event after every compile.
	Subscribe() <-chan event.GenericEvent
}

// +kubebuilder:rbac:groups=privateapps.dev,resources=privateapps,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=privateapps.dev,resources=privateapps/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=privateapps.dev,resources=privateapps/finalizers,verbs=update
// +kubebuilder:rbac:groups=privateapps.dev,resources=tokenrotations,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups=privateapps.dev,resources=appnotifications,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// The namespace's UID names its account in the id registry; the registry's
// ConfigMap is written under a Role of the operator's namespace
// (config/rbac/leader_election_role.yaml), not cluster-wide.
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get
// The metrics endpoint asks the kube-apiserver who a scraper is and whether
// it may read /metrics (internal/command, --metrics-secure).
// +kubebuilder:rbac:groups=authentication.k8s.io,resources=tokenreviews,verbs=create
// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create

// Reconcile brings one PrivateApp's Secret and status in line with its spec.
func (r *PrivateAppReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, retErr error) {
	app := &v1alpha1.PrivateApp{}
	if err := r.Get(ctx, req.NamespacedName, app); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !app.DeletionTimestamp.IsZero() {
		return r.reconcileDelete(ctx, app)
	}
	if !controllerutil.ContainsFinalizer(app, Finalizer) {
		base := app.DeepCopy()
		controllerutil.AddFinalizer(app, Finalizer)
		return ctrl.Result{}, r.Patch(ctx, app, client.MergeFrom(base))
	}

	// Until the catalogs are compiled every scope would look unoffered.
	if r.Catalogs != nil && !r.Catalogs.Wait(ctx) {
		return ctrl.Result{}, ctx.Err()
	}
	s := newAppScope(app, r.Clock.Now())
	defer func() {
		if errors.Is(retErr, errCacheBehind) {
			// Status from a stale copy would be refused; the newer
			// version's event brings the app back.
			result, retErr = ctrl.Result{}, nil
			return
		}
		setReadyCondition(s, retErr)
		if err := r.patchStatus(ctx, s); err != nil {
			retErr = kerrors.NewAggregate([]error{retErr, err})
			return
		}
		s.emitEvents(r.Recorder)
	}()
	return r.reconcileNormal(ctx, s)
}

func (r *PrivateAppReconciler) reconcileNormal(ctx context.Context, s *appScope) (ctrl.Result, error) {
	app := s.app
	if app.Status.InstalledBy == "" {
		app.Status.InstalledBy = app.Annotations[v1alpha1.InstalledByAnnotation]
	}
	idsMissing := r.assignIDs(ctx, s)
	app.Status.SecretName = app.TokenSecretName()

	if app.Status.Token == nil {
		res, issued, err := r.ensureFirstToken(ctx, s)
		if err != nil || !issued {
			return res, err
		}
	} else {
		secret, err := r.getTokenSecret(ctx, app)
		if err != nil {
			return ctrl.Result{}, err
		}
		switch nextTokenStep(app.Status.Token, secretFactsOf(secret, app)) {
		case stepSecretConflict:
			return r.secretConflict(s), nil
		case stepFinishPending:
			finishPending(s)
		case stepDropPending:
			app.Status.Token.Pending = nil
		}
		expirePreviousToken(s)
		rotations, err := r.rotationsOf(ctx, app)
		if err != nil {
			return ctrl.Result{}, err
		}
		forgetReportedRotations(app, rotations)
		// Rotations start from a Secret that holds the current token; a
		// Secret that needs repair is repaired first, and its update event
		// brings the rotations back.
		if nextTokenStep(app.Status.Token, secretFactsOf(secret, app)) == stepInSync {
			if secret, err = r.reconcileRotations(ctx, s, secret, rotations); err != nil {
				return ctrl.Result{}, err
			}
		}
		if err := r.ensureSecret(ctx, s, secret); err != nil {
			return ctrl.Result{}, err
		}
		applyTokenLifetime(s)
		next, err := r.scheduleRotation(ctx, s, rotations)
		if err != nil {
			return ctrl.Result{}, err
		}
		trackScopes(s)
		r.setScopesOffered(s)
		setConnection(s)
		return ctrl.Result{RequeueAfter: minPositive(minPositive(next, nextDeadline(s)), idsMissing)}, nil
	}

	applyTokenLifetime(s)
	trackScopes(s)
	r.setScopesOffered(s)
	setConnection(s)
	return ctrl.Result{RequeueAfter: minPositive(nextDeadline(s), idsMissing)}, nil
}

func minPositive(a, b time.Duration) time.Duration {
	if a <= 0 || (b > 0 && b < a) {
		return b
	}
	return a
}

// patchStatus writes status once per reconcile, and only when it changed.
func (r *PrivateAppReconciler) patchStatus(ctx context.Context, s *appScope) error {
	s.app.Status.ObservedGeneration = s.app.Generation
	if equality.Semantic.DeepEqual(s.base.Status, s.app.Status) {
		return nil
	}
	return r.Status().Patch(ctx, s.app, client.MergeFromWithOptions(s.base, client.MergeFromWithOptimisticLock{}))
}

// reconcileDelete records the uninstall, waits for the AppNotifications
// that report it to record it too, removes the Secret (so the token is gone
// even where no garbage collector runs) and lets the app go.
func (r *PrivateAppReconciler) reconcileDelete(ctx context.Context, app *v1alpha1.PrivateApp) (ctrl.Result, error) {
	if !controllerutil.ContainsFinalizer(app, Finalizer) {
		return ctrl.Result{}, nil
	}
	if n := len(app.Status.Activity); n == 0 || app.Status.Activity[n-1].Type != v1alpha1.ActivityUninstalled {
		s := newAppScope(app, r.Clock.Now())
		s.record(v1alpha1.ActivityUninstalled, "",
			"The app was deleted; its tokens are revoked and its Secret %q is removed", app.TokenSecretName())
		if err := r.patchStatus(ctx, s); err != nil {
			return ctrl.Result{}, err
		}
		s.emitEvents(r.Recorder)
	}
	waiting, err := uninstallsNotRecorded(ctx, r.Client, app)
	if err == nil && len(waiting) > 0 {
		err = fmt.Errorf("AppNotification %s has not recorded it", strings.Join(waiting, ", "))
	}
	if err != nil {
		// Notifications never hold an app (and its namespace) in
		// Terminating: the app waits a while for its uninstall to be
		// recorded (their status updates wake it), then goes without it,
		// and the Event says which notice was missed.
		if since := r.WallClock.Since(app.DeletionTimestamp.Time); since < uninstallRecordingBound {
			log.FromContext(ctx).V(1).Info("waiting for the uninstall notification to be recorded", "reason", err.Error())
			return ctrl.Result{RequeueAfter: min(uninstallRecheck, uninstallRecordingBound-since)}, nil
		}
		r.Recorder.Eventf(app, nil, corev1.EventTypeWarning, EventUninstallNotRecorded, "Delete", "%s", truncate(fmt.Sprintf(
			"The app is removed without its AppUninstalled notification, which could not be recorded for %s: %v",
			uninstallRecordingBound, err), maxEventNote))
		log.FromContext(ctx).Error(err, "removing the app without recording its uninstall notification")
	}
	if err := r.deleteTokenSecret(ctx, app); err != nil {
		return ctrl.Result{}, err
	}
	base := app.DeepCopy()
	controllerutil.RemoveFinalizer(app, Finalizer)
	return ctrl.Result{}, client.IgnoreNotFound(r.Patch(ctx, app, client.MergeFrom(base)))
}

// SetupWithManager registers the controller: it watches apps and the Secrets
// they own, and wakes the apps waiting for a slot when an app goes.
func (r *PrivateAppReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.WallClock == nil {
		r.WallClock = clock.RealClock{}
	}
	if r.GracePeriod == 0 {
		r.GracePeriod = DefaultGracePeriod
	}
	r.Client = client.WithFieldOwner(r.Client, PrivateAppFieldOwner)
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &v1alpha1.TokenRotation{}, rotationAppField,
		func(o client.Object) []string { return []string{o.(*v1alpha1.TokenRotation).Spec.AppName} }); err != nil {
		return err
	}
	opts := controller.Options{MaxConcurrentReconciles: r.MaxConcurrentReconciles, NewQueue: r.NewQueue}
	b := ctrl.NewControllerManagedBy(mgr)
	if r.Catalogs != nil {
		b = b.WatchesRawSource(source.Channel(r.Catalogs.Subscribe(), handler.EnqueueRequestsFromMapFunc(r.allApps)))
	}
	return b.
		For(&v1alpha1.PrivateApp{}).
		Owns(&corev1.Secret{}).
		Watches(&v1alpha1.TokenRotation{}, handler.EnqueueRequestsFromMapFunc(rotationToApp)).
		Watches(&v1alpha1.AppNotification{}, handler.EnqueueRequestsFromMapFunc(r.appsBeingUninstalled)).
		Watches(&v1alpha1.PrivateApp{},
			handler.EnqueueRequestsFromMapFunc(r.appsWaitingForSlot),
			builder.WithPredicates(slotsChanged())).
		WithOptions(opts).
		Named("privateapp").
		Complete(r)
}

// slotsChanged passes the app events that change who holds a slot under the
// cap: an app going away frees one, an app getting its token takes one (and
// moves the waiting apps up in line).
func slotsChanged() predicate.Funcs {
	return predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return true },
		UpdateFunc: func(e event.UpdateEvent) bool {
			oldApp, okOld := e.ObjectOld.(*v1alpha1.PrivateApp)
			newApp, okNew := e.ObjectNew.(*v1alpha1.PrivateApp)
			if !okOld || !okNew {
				return false
			}
			return (oldApp.DeletionTimestamp.IsZero() && !newApp.DeletionTimestamp.IsZero()) ||
				(oldApp.Status.Token == nil && newApp.Status.Token != nil)
		},
	}
}

func (r *PrivateAppReconciler) appsWaitingForSlot(ctx context.Context, obj client.Object) []reconcile.Request {
	var apps v1alpha1.PrivateAppList
	// Read only: the cache's objects themselves, not copies (every event
	// of a namespace's app lists the namespace).
	if err := r.List(ctx, &apps, client.InNamespace(obj.GetNamespace()), client.UnsafeDisableDeepCopy); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for i := range apps.Items {
		a := &apps.Items[i]
		// Every app without a token, not only those already marked as
		// waiting: one may be ranking itself on the list this event changed.
		if a.Status.Token == nil && a.DeletionTimestamp.IsZero() {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(a)})
		}
	}
	return reqs
}

func (r *PrivateAppReconciler) allApps(ctx context.Context, _ client.Object) []reconcile.Request {
	var apps v1alpha1.PrivateAppList
	if err := r.List(ctx, &apps, client.UnsafeDisableDeepCopy); err != nil {
		return nil
	}
	reqs := make([]reconcile.Request, len(apps.Items))
	for i := range apps.Items {
		reqs[i] = reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&apps.Items[i])}
	}
	return reqs
}

// appsBeingUninstalled wakes the deleted apps an uninstall notification
// reports on, which wait for it to record them.
func (r *PrivateAppReconciler) appsBeingUninstalled(ctx context.Context, obj client.Object) []reconcile.Request {
	n, ok := obj.(*v1alpha1.AppNotification)
	if !ok || n.Spec.Event != v1alpha1.EventAppUninstalled {
		return nil
	}
	var apps v1alpha1.PrivateAppList
	if err := r.List(ctx, &apps, client.InNamespace(n.Namespace), client.UnsafeDisableDeepCopy); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	for i := range apps.Items {
		if a := &apps.Items[i]; !a.DeletionTimestamp.IsZero() && watched(n, a.Name) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(a)})
		}
	}
	return reqs
}

func rotationToApp(_ context.Context, obj client.Object) []reconcile.Request {
	rot, ok := obj.(*v1alpha1.TokenRotation)
	if !ok {
		return nil
	}
	return []reconcile.Request{{NamespacedName: client.ObjectKey{Namespace: rot.Namespace, Name: rot.Spec.AppName}}}
}
