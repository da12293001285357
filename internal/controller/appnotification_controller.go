package controller

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/notify"
)

// AppNotificationFieldOwner is the field manager of AppNotification status.
const AppNotificationFieldOwner = "appnotification-controller"

const (
	// maxFinishedDeliveries is how many sent or failed deliveries status
	// keeps.
	maxFinishedDeliveries = 50
	// maxPendingDeliveries is how many deliveries may wait at once; past
	// it the oldest are given up, so that status stays far below the
	// CRD's 200 and the newest notices still go out. Together with
	// maxFinishedDeliveries it bounds status.deliveries at 150.
	maxPendingDeliveries = 100
	// maxDeliveryAttempts is when a delivery is given up as Failed.
	maxDeliveryAttempts = 12
	// firstRetryDelay doubles on every failed attempt, up to maxRetryDelay:
	// 30 s, 1 m, 2 m, ... 1 h; twelve attempts span about six hours.
	firstRetryDelay = 30 * time.Second
	maxRetryDelay   = time.Hour
	// deliveriesPerReconcile bounds the work one reconcile does; the rest
	// follow in the next one.
	deliveriesPerReconcile = 10
	// recheckDelay is how soon a notification that cannot send (nothing
	// configured, bad directory) looks again; the directory is read, not
	// watched.
	recheckDelay = time.Minute
)

// AppNotificationReconciler turns app lifecycle changes into deliveries and
// sends them.
//
// # Exactly once per recipient
//
// A notification is first recorded in status as a Pending delivery with a
// stable id, and only then sent; after each attempt the recipients served
// are added to its sentTo, and a retry serves only the others. The one
// window left is a crash between a mail server accepting a message and
// status recording it: that recipient gets the message again, with the same
// Message-ID (and the webhook the same delivery id), so it can be folded.
//
// Installs and disconnects are read from the apps' status; uninstalls from
// apps being deleted, which the PrivateApp finalizer holds until every
// notification that owes the uninstall shows it recorded, so none is missed.
// status.apps remembers what was already reported per app, so restarts and
// resyncs send nothing twice. This controller is the only writer of
// AppNotification status.
type AppNotificationReconciler struct {
	client.Client
	// APIReader reads the directory ConfigMaps and fresh copies on
	// conflict, bypassing the cache.
	APIReader client.Reader
	Recorder  events.EventRecorder
	// Clock drives reminders and retries.
	Clock clock.PassiveClock
	// WallClock stamps what leaves the cluster (the mail's Date, the
	// webhook's signed timestamp), which receivers compare with their own
	// clocks; it stays the real clock in tests that fake Clock.
	WallClock clock.PassiveClock
	// Channels are the configured mail server and webhook.
	Channels *notify.Channels
	// MaxConcurrentReconciles bounds parallel reconciles (default 1).
	MaxConcurrentReconciles int
	// NewQueue, when set, builds the controller's work queue.
	NewQueue func(string, workqueue.TypedRateLimiter[reconcile.Request]) workqueue.TypedRateLimitingInterface[reconcile.Request]
}

// +kubebuilder:rbac:groups=privateapps.dev,resources=appnotifications,verbs=get;list;watch
// +kubebuilder:rbac:groups=privateapps.dev,resources=appnotifications/status,verbs=get;update;patch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get

// Reconcile records the notifications one AppNotification owes and sends
// those that are due.
func (r *AppNotificationReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	n := &v1alpha1.AppNotification{}
	if err := r.Get(ctx, req.NamespacedName, n); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !n.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, nil
	}
	now := r.Clock.Now()
	var apps v1alpha1.PrivateAppList
	if err := r.List(ctx, &apps, client.InNamespace(n.Namespace)); err != nil {
		return ctrl.Result{}, err
	}
	n, err := r.updateStatus(ctx, n, func(n *v1alpha1.AppNotification) { observeApps(n, apps.Items, now) })
	if err != nil {
		return ctrl.Result{}, ignoreConflict(err)
	}

	dir, source, dirErr := LoadDirectory(ctx, r.APIReader, r.Channels, n.Namespace)
	var res resolution
	if dirErr == nil {
		res = resolve(dir, source, n)
	}
	var outcomes []deliveryOutcome
	if dirErr == nil && r.configured() && hasDue(n, now) {
		// What is due is decided on the object as the API server has it:
		// a cached copy that lags behind the last attempt's status write
		// would send the same delivery twice.
		fresh := &v1alpha1.AppNotification{}
		if err := r.APIReader.Get(ctx, req.NamespacedName, fresh); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
		n = fresh
		// Deliveries under way finish even when the manager is stopping:
		// one cut off after the receiver got it would be sent again after
		// the restart. Each channel's own timeout bounds them.
		sendCtx, cancelSend := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		outcomes = r.sendDue(sendCtx, n, apps.Items, res, now, r.WallClock.Now())
		cancelSend()
	}
	// What was sent is recorded even when the manager is stopping, for the
	// same reason.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	n, err = r.updateStatus(wctx, n, func(n *v1alpha1.AppNotification) {
		applyOutcomes(n, outcomes, now)
		if !r.configured() {
			// Nothing can send them: keeping them would only grow status
			// and flood people with stale notices once a channel appears.
			for i := range n.Status.Deliveries {
				if d := &n.Status.Deliveries[i]; d.State == v1alpha1.DeliveryPending {
					giveUp(d, "Not sent: the operator has no SMTP server, webhook or chat configured (--notifications-config)")
				}
			}
			trimDeliveries(n)
		}
		setNotificationReady(n, now, r.configured(), dirErr, res)
	})
	if err != nil {
		// The deliveries were made; a conflict retried inside updateStatus
		// already, so what is left is a real failure, logged by the caller.
		return ctrl.Result{}, err
	}
	for _, o := range outcomes {
		o.emit(r.Recorder, n)
	}
	if dirErr != nil || !r.configured() {
		return ctrl.Result{RequeueAfter: recheckDelay}, nil
	}
	return ctrl.Result{RequeueAfter: nextWake(n, now)}, nil
}

func (r *AppNotificationReconciler) configured() bool {
	return r.Channels != nil && (r.Channels.Mailer != nil || r.Channels.Webhook != nil || len(r.Channels.Chats) > 0)
}

// updateStatus applies mutate to the notification and writes status when it
// changed. On a conflict (the cache lagged behind this controller's own last
// write) it reads the object again and applies mutate to that, so nothing
// recorded is lost.
func (r *AppNotificationReconciler) updateStatus(ctx context.Context, n *v1alpha1.AppNotification,
	mutate func(*v1alpha1.AppNotification)) (*v1alpha1.AppNotification, error) {
	for attempt := 0; ; attempt++ {
		updated := n.DeepCopy()
		mutate(updated)
		updated.Status.ObservedGeneration = updated.Generation
		if equality.Semantic.DeepEqual(n.Status, updated.Status) {
			return n, nil
		}
		err := r.Status().Update(ctx, updated)
		if err == nil {
			return updated, nil
		}
		if !apierrors.IsConflict(err) || attempt == 4 {
			return n, err
		}
		fresh := &v1alpha1.AppNotification{}
		if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(n), fresh); err != nil {
			return n, err
		}
		n = fresh
	}
}

func ignoreConflict(err error) error {
	if apierrors.IsConflict(err) {
		return nil
	}
	return err
}

// observeApps records the deliveries the apps' current state calls for.
func observeApps(n *v1alpha1.AppNotification, apps []v1alpha1.PrivateApp, now time.Time) {
	if n.Status.ActiveSince == nil {
		since := metav1.NewTime(now)
		n.Status.ActiveSince = &since
	}
	byName := map[string]*v1alpha1.PrivateApp{}
	for i := range apps {
		byName[apps[i].Name] = &apps[i]
	}
	// Forget apps that are gone: a new app under the same name starts over.
	n.Status.Apps = slices.DeleteFunc(n.Status.Apps, func(w v1alpha1.NotifiedApp) bool {
		a := byName[w.Name]
		return a == nil || string(a.UID) != w.UID
	})
	switch n.Spec.Event {
	case v1alpha1.EventAppInstalled:
		for i := range apps {
			if watched(n, apps[i].Name) {
				observeInstall(n, &apps[i])
			}
		}
	case v1alpha1.EventAppDisconnected:
		for _, name := range n.Spec.Apps {
			if a := byName[name]; a != nil {
				observeDisconnect(n, a, now)
			}
		}
	case v1alpha1.EventAppUninstalled:
		for i := range apps {
			if watched(n, apps[i].Name) {
				observeUninstall(n, &apps[i])
			}
		}
	}
	trimDeliveries(n)
}

// watched says whether the notification is about the named app.
func watched(n *v1alpha1.AppNotification, app string) bool {
	return len(n.Spec.Apps) == 0 || slices.Contains(n.Spec.Apps, app)
}

func notifiedApp(n *v1alpha1.AppNotification, a *v1alpha1.PrivateApp) *v1alpha1.NotifiedApp {
	for i := range n.Status.Apps {
		if n.Status.Apps[i].Name == a.Name {
			return &n.Status.Apps[i]
		}
	}
	n.Status.Apps = append(n.Status.Apps, v1alpha1.NotifiedApp{Name: a.Name, UID: string(a.UID)})
	return &n.Status.Apps[len(n.Status.Apps)-1]
}

func observeInstall(n *v1alpha1.AppNotification, a *v1alpha1.PrivateApp) {
	at := a.Status.InstalledAt
	if at == nil {
		return
	}
	w := notifiedApp(n, a)
	if w.Installed {
		return
	}
	w.Installed = true
	if at.Before(n.Status.ActiveSince) {
		return
	}
	addDelivery(n, v1alpha1.Delivery{App: a.Name, AppUID: string(a.UID), Event: v1alpha1.EventAppInstalled, Time: *at})
}

// observeUninstall records the uninstall of an app that is being deleted
// while the PrivateApp finalizer holds it, which waits for this record; the
// delivery's id comes from the deletion, so it is recorded once.
func observeUninstall(n *v1alpha1.AppNotification, a *v1alpha1.PrivateApp) {
	if a.DeletionTimestamp.IsZero() || !controllerutil.ContainsFinalizer(a, Finalizer) {
		return
	}
	addDelivery(n, v1alpha1.Delivery{App: a.Name, AppUID: string(a.UID), Event: v1alpha1.EventAppUninstalled, Time: *a.DeletionTimestamp})
}

func observeDisconnect(n *v1alpha1.AppNotification, a *v1alpha1.PrivateApp, now time.Time) {
	since := a.Status.DisconnectedAt
	w := notifiedApp(n, a)
	if since == nil {
		// Connected again: the episode is over.
		w.DisconnectedAt, w.Reminders = nil, 0
		return
	}
	if w.DisconnectedAt == nil || !w.DisconnectedAt.Equal(since) {
		w.DisconnectedAt, w.Reminders = since.DeepCopy(), 0
		addDelivery(n, v1alpha1.Delivery{App: a.Name, AppUID: string(a.UID), Event: v1alpha1.EventAppDisconnected, Time: *since})
		if n.Spec.Reminder != "" {
			// Reminders count from the first notice; any that would have
			// fallen due before this notification watched are not owed.
			w.Reminders = clampInt32(notify.RemindersDue(reminderStart(n, w), notify.Frequency(n.Spec.Reminder), now))
		}
	}
	if n.Spec.Reminder == "" {
		return
	}
	start, freq := reminderStart(n, w), notify.Frequency(n.Spec.Reminder)
	// Every reminder that fell due is sent, even several after downtime:
	// each has its own number and id, so there are no gaps and no repeats.
	for k := int(w.Reminders) + 1; !notify.ReminderDue(start, freq, k).After(now); k++ {
		w.Reminders = clampInt32(k)
		addDelivery(n, v1alpha1.Delivery{App: a.Name, AppUID: string(a.UID), Event: v1alpha1.EventAppDisconnected,
			Reminder: clampInt32(k), Time: metav1.NewTime(notify.ReminderDue(start, freq, k))})
	}
}

// reminderStart is what reminders count from: the disconnect, or when the
// notification started watching if that was later.
func reminderStart(n *v1alpha1.AppNotification, w *v1alpha1.NotifiedApp) time.Time {
	if n.Status.ActiveSince != nil && w.DisconnectedAt.Before(n.Status.ActiveSince) {
		return n.Status.ActiveSince.Time
	}
	return w.DisconnectedAt.Time
}

// addDelivery appends a pending delivery under its stable id, once, and
// keeps status.deliveries bounded (see boundDeliveries).
func addDelivery(n *v1alpha1.AppNotification, d v1alpha1.Delivery) bool {
	d.ID = notify.NotificationID(string(n.UID), d.AppUID, string(d.Event), d.Time.Time, int(d.Reminder))
	if slices.ContainsFunc(n.Status.Deliveries, func(x v1alpha1.Delivery) bool { return x.ID == d.ID }) {
		return false
	}
	d.State = v1alpha1.DeliveryPending
	n.Status.Deliveries = append(n.Status.Deliveries, d)
	boundDeliveries(n)
	return true
}

// giveUp ends a pending delivery as Failed.
func giveUp(d *v1alpha1.Delivery, message string) {
	d.State, d.NextAttemptAt, d.Message = v1alpha1.DeliveryFailed, nil, message
}

// boundDeliveries gives up the oldest pending deliveries past
// maxPendingDeliveries and trims the finished ones, so that no number of
// apps, uninstalls or reminders can push status past what the CRD allows
// (a write that failed validation would stop the PrivateApp finalizer).
func boundDeliveries(n *v1alpha1.AppNotification) {
	pending := 0
	for _, d := range n.Status.Deliveries {
		if d.State == v1alpha1.DeliveryPending {
			pending++
		}
	}
	for i := 0; pending > maxPendingDeliveries && i < len(n.Status.Deliveries); i++ {
		if d := &n.Status.Deliveries[i]; d.State == v1alpha1.DeliveryPending {
			giveUp(d, fmt.Sprintf("Not sent: more than %d notifications were waiting, and the oldest are given up so the newest go out", maxPendingDeliveries))
			pending--
		}
	}
	trimDeliveries(n)
}

// trimDeliveries drops the oldest finished deliveries past the limit.
func trimDeliveries(n *v1alpha1.AppNotification) {
	finished := 0
	for _, d := range n.Status.Deliveries {
		if d.State != v1alpha1.DeliveryPending {
			finished++
		}
	}
	drop := finished - maxFinishedDeliveries
	if drop <= 0 {
		return
	}
	n.Status.Deliveries = slices.DeleteFunc(n.Status.Deliveries, func(d v1alpha1.Delivery) bool {
		if drop > 0 && d.State != v1alpha1.DeliveryPending {
			drop--
			return true
		}
		return false
	})
}

// hasDue says whether a pending delivery is due.
func hasDue(n *v1alpha1.AppNotification, now time.Time) bool {
	return slices.ContainsFunc(n.Status.Deliveries, func(d v1alpha1.Delivery) bool { return isDue(&d, now) })
}

// isDue says whether a delivery is pending and its next attempt has come.
func isDue(d *v1alpha1.Delivery, now time.Time) bool {
	return d.State == v1alpha1.DeliveryPending && (d.NextAttemptAt == nil || !d.NextAttemptAt.After(now))
}

// nextWake is when the notification has something to do next: a retry or
// a reminder falling due.
func nextWake(n *v1alpha1.AppNotification, now time.Time) time.Duration {
	var next time.Duration
	consider := func(at time.Time) {
		d := at.Sub(now)
		if d <= 0 {
			d = time.Millisecond
		}
		if next == 0 || d < next {
			next = d
		}
	}
	for _, d := range n.Status.Deliveries {
		if d.State == v1alpha1.DeliveryPending {
			if d.NextAttemptAt == nil {
				consider(now)
			} else {
				consider(d.NextAttemptAt.Time)
			}
		}
	}
	if n.Spec.Reminder != "" {
		for i := range n.Status.Apps {
			w := &n.Status.Apps[i]
			if w.DisconnectedAt != nil {
				consider(notify.ReminderDue(reminderStart(n, w), notify.Frequency(n.Spec.Reminder), int(w.Reminders)+1))
			}
		}
	}
	return next
}

// SetupWithManager registers the controller: it watches notifications and
// the apps in their namespaces.
func (r *AppNotificationReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Clock == nil {
		r.Clock = clock.RealClock{}
	}
	if r.WallClock == nil {
		r.WallClock = clock.RealClock{}
	}
	if r.APIReader == nil {
		r.APIReader = mgr.GetAPIReader()
	}
	r.Client = client.WithFieldOwner(r.Client, AppNotificationFieldOwner)
	opts := controller.Options{MaxConcurrentReconciles: r.MaxConcurrentReconciles, NewQueue: r.NewQueue}
	return ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.AppNotification{}).
		Watches(&v1alpha1.PrivateApp{}, handler.EnqueueRequestsFromMapFunc(r.notificationsOfApp)).
		WithOptions(opts).
		Named("appnotification").
		Complete(r)
}

func (r *AppNotificationReconciler) notificationsOfApp(ctx context.Context, obj client.Object) []reconcile.Request {
	var list v1alpha1.AppNotificationList
	if err := r.List(ctx, &list, client.InNamespace(obj.GetNamespace()), client.UnsafeDisableDeepCopy); err != nil {
		return nil
	}
	var reqs []reconcile.Request
	deleting := obj.GetDeletionTimestamp() != nil
	for i := range list.Items {
		n := &list.Items[i]
		if (n.Spec.Event != v1alpha1.EventAppUninstalled || deleting) && watched(n, obj.GetName()) {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(n)})
		}
	}
	return reqs
}

// clampInt32 converts a count for an int32 status field, saturating
// instead of wrapping.
func clampInt32(n int) int32 { return int32(min(max(n, math.MinInt32), math.MaxInt32)) } //nolint:gosec // G115: clamped
