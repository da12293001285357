package controller

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/notify"
)

// Event reasons on an AppNotification.
const (
	EventDelivered      = "Delivered"
	EventDeliveryFailed = "DeliveryFailed"
)

// LoadDirectory reads the namespace's own directory ConfigMap when it has
// one, and the cluster-wide one otherwise, and says which it used. A missing
// cluster-wide directory is an empty one: the webhook still works without it.
func LoadDirectory(ctx context.Context, reader client.Reader, ch *notify.Channels, namespace string) (*notify.Directory, string, error) {
	try := func(ns, name string) (*notify.Directory, string, bool, error) {
		cm := &corev1.ConfigMap{}
		if err := reader.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, cm); err != nil {
			if apierrors.IsNotFound(err) {
				return nil, "", false, nil
			}
			return nil, "", false, fmt.Errorf("reading directory ConfigMap %s/%s: %w", ns, name, err)
		}
		src := fmt.Sprintf("ConfigMap %s/%s", ns, name)
		data, ok := cm.Data[notify.DirectoryKey]
		if !ok {
			return nil, src, false, fmt.Errorf("%s has no key %q", src, notify.DirectoryKey)
		}
		d, err := notify.ParseDirectory([]byte(data))
		if err != nil {
			return nil, src, false, fmt.Errorf("%s: %w", src, err)
		}
		return d, src, true, nil
	}
	if d, src, ok, err := try(namespace, notify.NamespaceDirectoryName); ok || err != nil {
		return d, src, err
	}
	if ch == nil || ch.DirectoryNamespace == "" {
		return &notify.Directory{}, "no directory", nil
	}
	d, src, ok, err := try(ch.DirectoryNamespace, ch.DirectoryName)
	if !ok && err == nil {
		return &notify.Directory{}, fmt.Sprintf("ConfigMap %s/%s (not found)", ch.DirectoryNamespace, ch.DirectoryName), nil
	}
	return d, src, err
}

// resolution is who a notification reaches, and which directory said so.
type resolution struct {
	notify.Resolution
	source string
}

func resolve(d *notify.Directory, source string, n *v1alpha1.AppNotification) resolution {
	rc := n.Spec.Recipients
	return resolution{Resolution: d.Resolve(string(rc.Kind), rc.Users, rc.Teams), source: source}
}

// deliveryOutcome is what one attempt at one delivery did.
type deliveryOutcome struct {
	id, app       string
	event         v1alpha1.NotificationEvent
	reminder      int32
	served        []string
	failed        map[string]error
	postponeUntil *time.Time
}

// sendDue sends the pending deliveries that are due, oldest first. After a
// delivery fails, the rest wait for its retry instead of each timing out
// against the same dead server.
func (r *AppNotificationReconciler) sendDue(ctx context.Context, n *v1alpha1.AppNotification,
	apps []v1alpha1.PrivateApp, res resolution, now, wallNow time.Time) []deliveryOutcome {
	var outcomes []deliveryOutcome
	var stopped *time.Time
	for i := range n.Status.Deliveries {
		d := &n.Status.Deliveries[i]
		if !isDue(d, now) {
			continue
		}
		if stopped != nil || len(outcomes) == deliveriesPerReconcile {
			if stopped != nil {
				outcomes = append(outcomes, deliveryOutcome{id: d.ID, postponeUntil: stopped})
			}
			continue
		}
		o := r.send(ctx, n, d, apps, res, wallNow)
		outcomes = append(outcomes, o)
		if len(o.failed) > 0 {
			retryAt := now.Add(retryDelay(d.Attempts + 1))
			stopped = &retryAt
		}
	}
	return outcomes
}

func (r *AppNotificationReconciler) send(ctx context.Context, n *v1alpha1.AppNotification, d *v1alpha1.Delivery,
	apps []v1alpha1.PrivateApp, res resolution, wallNow time.Time) deliveryOutcome {
	o := deliveryOutcome{id: d.ID, app: d.App, event: d.Event, reminder: d.Reminder, failed: map[string]error{}}
	msg := notification(n, d, apps)
	defer countDeliveries(o)
	if m := r.Channels.Mailer; m != nil {
		var to []notify.Recipient
		for _, rc := range res.Recipients {
			if !slices.Contains(d.SentTo, rc.User) {
				to = append(to, rc)
			}
		}
		failed := m.Send(ctx, wallNow, msg, to)
		for _, rc := range to {
			if err := failed[rc.User]; err != nil {
				o.failed[rc.User] = err
			} else {
				o.served = append(o.served, rc.User)
			}
		}
	}
	if w := r.Channels.Webhook; w != nil && !slices.Contains(d.SentTo, v1alpha1.WebhookRecipient) {
		if err := w.Send(ctx, wallNow, msg, res.Recipients); err != nil {
			o.failed[v1alpha1.WebhookRecipient] = err
		} else {
			o.served = append(o.served, v1alpha1.WebhookRecipient)
		}
	}
	for _, chat := range r.Channels.Chats {
		if slices.Contains(d.SentTo, chat.Recipient()) {
			continue
		}
		if err := chat.Send(ctx, msg); err != nil {
			o.failed[chat.Recipient()] = err
		} else {
			o.served = append(o.served, chat.Recipient())
		}
	}
	return o
}

// deliveriesTotal counts delivery attempts per recipient by channel and
// result: what the dashboard draws and the DeliveriesFailing alert watches.
var deliveriesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "privateapps_notification_deliveries_total",
	Help: "Notification deliveries to one recipient, by channel (email, webhook, chat) and result (sent, failed); a retry counts again.",
}, []string{"channel", "result"})

func init() {
	for _, ch := range []string{"email", "webhook", "chat"} {
		for _, res := range []string{"sent", "failed"} {
			deliveriesTotal.WithLabelValues(ch, res)
		}
	}
}

// NotificationCollectors are the metrics of notification deliveries.
func NotificationCollectors() []prometheus.Collector { return []prometheus.Collector{deliveriesTotal} }

func recipientChannel(recipient string) string {
	switch {
	case recipient == v1alpha1.WebhookRecipient:
		return "webhook"
	case strings.HasPrefix(recipient, notify.ChatRecipientPrefix):
		return "chat"
	}
	return "email"
}

func countDeliveries(o deliveryOutcome) {
	for _, rc := range o.served {
		deliveriesTotal.WithLabelValues(recipientChannel(rc), "sent").Inc()
	}
	for rc := range o.failed {
		deliveriesTotal.WithLabelValues(recipientChannel(rc), "failed").Inc()
	}
}

// notification is the message for a delivery, with what the app's status
// says now (an uninstalled app is known by its name only).
func notification(n *v1alpha1.AppNotification, d *v1alpha1.Delivery, apps []v1alpha1.PrivateApp) notify.Notification {
	msg := notify.Notification{
		ID: d.ID, Event: string(d.Event), Reminder: int(d.Reminder), Time: d.Time.UTC(),
		App:    notify.App{Namespace: n.Namespace, Name: d.App, UID: d.AppUID},
		Source: notify.Source{Namespace: n.Namespace, Name: n.Name},
	}
	for i := range apps {
		a := &apps[i]
		if a.Name != d.App || string(a.UID) != d.AppUID {
			continue
		}
		msg.App.DisplayName = a.Spec.DisplayName
		msg.App.InstalledBy = a.Status.InstalledBy
		msg.App.Connection = string(a.Status.Connection)
	}
	for _, w := range n.Status.Apps {
		if w.Name == d.App && w.UID == d.AppUID && w.DisconnectedAt != nil && d.Event == v1alpha1.EventAppDisconnected {
			since := w.DisconnectedAt.UTC()
			msg.DisconnectedSince = &since
		}
	}
	return msg
}

func retryDelay(attempts int32) time.Duration {
	d := firstRetryDelay
	for i := int32(1); i < attempts && d < maxRetryDelay; i++ {
		d *= 2
	}
	return min(d, maxRetryDelay)
}

// applyOutcomes records attempts in status. It runs on the freshest copy of
// the notification, so it finds deliveries by id.
func applyOutcomes(n *v1alpha1.AppNotification, outcomes []deliveryOutcome, now time.Time) {
	for _, o := range outcomes {
		i := slices.IndexFunc(n.Status.Deliveries, func(d v1alpha1.Delivery) bool { return d.ID == o.id })
		if i < 0 {
			continue
		}
		d := &n.Status.Deliveries[i]
		if o.postponeUntil != nil {
			at := metav1.NewTime(*o.postponeUntil)
			d.NextAttemptAt = &at
			continue
		}
		d.Attempts++
		for _, u := range o.served {
			if !slices.Contains(d.SentTo, u) {
				d.SentTo = append(d.SentTo, u)
			}
		}
		if len(o.failed) == 0 {
			d.State, d.NextAttemptAt = v1alpha1.DeliverySent, nil
			d.Message = fmt.Sprintf("Sent to %s", describeRecipients(d.SentTo))
			t := metav1.NewTime(now)
			n.Status.LastDeliveryTime = &t
			continue
		}
		d.Message = truncate(fmt.Sprintf("Attempt %d failed: %s", d.Attempts, describeFailures(o.failed)), 1024)
		if d.Attempts >= maxDeliveryAttempts {
			d.State, d.NextAttemptAt = v1alpha1.DeliveryFailed, nil
			continue
		}
		at := metav1.NewTime(now.Add(retryDelay(d.Attempts)))
		d.NextAttemptAt = &at
	}
	trimDeliveries(n)
}

func describeRecipients(sentTo []string) string {
	if len(sentTo) == 0 {
		return "nobody (no recipients resolved)"
	}
	return strings.Join(sentTo, ", ")
}

func describeFailures(failed map[string]error) string {
	// Recipients that failed the same way (a dead server) are listed once.
	byErr := map[string][]string{}
	for who, err := range failed {
		byErr[err.Error()] = append(byErr[err.Error()], who)
	}
	var parts []string
	for msg, who := range byErr {
		sort.Strings(who)
		parts = append(parts, fmt.Sprintf("%s: %s", strings.Join(who, ", "), msg))
	}
	sort.Strings(parts)
	return strings.Join(parts, "; ")
}

// emit sends the Event for one attempt.
func (o deliveryOutcome) emit(rec events.EventRecorder, n *v1alpha1.AppNotification) {
	if rec == nil || o.postponeUntil != nil {
		return
	}
	what := fmt.Sprintf("%s of app %s", o.event, o.app)
	if o.reminder > 0 {
		what = fmt.Sprintf("%s (reminder %d)", what, o.reminder)
	}
	i := slices.IndexFunc(n.Status.Deliveries, func(d v1alpha1.Delivery) bool { return d.ID == o.id })
	if len(o.failed) == 0 {
		note := fmt.Sprintf("%s sent to %s (id %s)", what, describeRecipients(o.served), o.id)
		rec.Eventf(n, nil, corev1.EventTypeNormal, EventDelivered, "Deliver", "%s", truncate(note, maxEventNote))
		return
	}
	next := "it will not be retried"
	if i >= 0 {
		d := n.Status.Deliveries[i]
		if d.State == v1alpha1.DeliveryPending && d.NextAttemptAt != nil {
			next = fmt.Sprintf("attempt %d of %d failed, retrying at %s", d.Attempts, maxDeliveryAttempts,
				d.NextAttemptAt.UTC().Format(time.RFC3339))
		} else if d.State == v1alpha1.DeliveryFailed {
			next = fmt.Sprintf("gave up after %d attempts", d.Attempts)
		}
	}
	note := fmt.Sprintf("%s not delivered to %s; %s (id %s)", what, describeFailures(o.failed), next, o.id)
	rec.Eventf(n, nil, corev1.EventTypeWarning, EventDeliveryFailed, "Deliver", "%s", truncate(note, maxEventNote))
}

// setNotificationReady says whether the notification reaches everyone it
// names, and why not.
func setNotificationReady(n *v1alpha1.AppNotification, now time.Time, configured bool, dirErr error, res resolution) {
	status, reason, msg := metav1.ConditionTrue, v1alpha1.ReasonDelivering, ""
	switch {
	case !configured:
		status, reason = metav1.ConditionFalse, v1alpha1.ReasonNotConfigured
		msg = "The operator has no SMTP server, webhook or chat configured (--notifications-config); " +
			"notifications are recorded in status.deliveries as Failed, not sent; those after one is configured are sent"
	case dirErr != nil:
		status, reason = metav1.ConditionFalse, v1alpha1.ReasonDirectoryInvalid
		msg = truncate(dirErr.Error()+"; fix the directory and deliveries resume within a minute", 1024)
	case len(res.UnknownUsers) > 0 || len(res.UnknownTeams) > 0:
		status, reason = metav1.ConditionFalse, v1alpha1.ReasonUnknownRecipients
		var parts []string
		if len(res.UnknownUsers) > 0 {
			parts = append(parts, "users "+strings.Join(res.UnknownUsers, ", "))
		}
		if len(res.UnknownTeams) > 0 {
			parts = append(parts, "teams "+strings.Join(res.UnknownTeams, ", "))
		}
		msg = truncate(fmt.Sprintf("Not in the directory (%s): %s; add them there or remove them from spec.recipients. "+
			"The other recipients are still served", res.source, strings.Join(parts, "; ")), 1024)
	case len(res.Recipients) == 0 && n.Spec.Recipients.Kind != v1alpha1.RecipientsSpecific:
		status, reason = metav1.ConditionFalse, v1alpha1.ReasonNoRecipients
		msg = fmt.Sprintf("Recipients %s resolve to nobody in the directory (%s); add users (and superAdmins) there",
			n.Spec.Recipients.Kind, res.source)
	}
	if status == metav1.ConditionTrue {
		if d := latestAttempted(n); d != nil && d.State != v1alpha1.DeliverySent && d.Attempts > 0 {
			status, reason, msg = metav1.ConditionFalse, v1alpha1.ReasonDeliveryFailing, truncate(fmt.Sprintf(
				"Delivery %s (%s of app %s) is %s: %s", d.ID, d.Event, d.App, strings.ToLower(string(d.State)), d.Message), 1024)
		} else {
			msg = fmt.Sprintf("Recipients resolve to %s (%s)", describeUsers(res), res.source)
		}
	}
	meta.SetStatusCondition(&n.Status.Conditions, metav1.Condition{
		Type: v1alpha1.ConditionReady, Status: status, Reason: reason, Message: msg, ObservedGeneration: n.Generation,
		LastTransitionTime: metav1.NewTime(now),
	})
}

func describeUsers(res resolution) string {
	if len(res.Recipients) == 0 {
		return "nobody by email"
	}
	return truncate(res.String(), 512)
}

// latestAttempted is the newest delivery that was tried at least once.
func latestAttempted(n *v1alpha1.AppNotification) *v1alpha1.Delivery {
	for i := len(n.Status.Deliveries) - 1; i >= 0; i-- {
		if d := &n.Status.Deliveries[i]; d.Attempts > 0 {
			return d
		}
	}
	return nil
}

// uninstallsNotRecorded names the AppNotifications that owe app's uninstall
// a delivery and do not show one yet. The AppNotification controller records
// it while the PrivateApp finalizer holds the app, which waits for this list
// to be empty, so an uninstall is never missed.
func uninstallsNotRecorded(ctx context.Context, reader client.Reader, app *v1alpha1.PrivateApp) ([]string, error) {
	var list v1alpha1.AppNotificationList
	if err := reader.List(ctx, &list, client.InNamespace(app.Namespace)); err != nil {
		return nil, fmt.Errorf("listing the AppNotifications of namespace %q: %w", app.Namespace, err)
	}
	var waiting []string
	for i := range list.Items {
		n := &list.Items[i]
		if owesUninstall(n, app.Name) && !slices.ContainsFunc(n.Status.Deliveries, func(d v1alpha1.Delivery) bool {
			return d.Event == v1alpha1.EventAppUninstalled && d.AppUID == string(app.UID)
		}) {
			waiting = append(waiting, n.Name)
		}
	}
	return waiting, nil
}

// owesUninstall says whether n reports the uninstall of the named app.
func owesUninstall(n *v1alpha1.AppNotification, app string) bool {
	return n.Spec.Event == v1alpha1.EventAppUninstalled && watched(n, app) && n.DeletionTimestamp.IsZero()
}
