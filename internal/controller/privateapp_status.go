package controller

import (
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
)

const (
	metav1True  = metav1.ConditionTrue
	metav1False = metav1.ConditionFalse

	// maxActivity bounds status.activity; the oldest entries drop off.
	maxActivity = 20
	// maxEventNote is the events.k8s.io limit on an Event's note.
	maxEventNote = 1024
)

// appScope carries one reconcile of one app: the object, the status it
// started from, the time it runs at, and the Events to send once the status
// that records them is written.
type appScope struct {
	app  *v1alpha1.PrivateApp
	base *v1alpha1.PrivateApp
	now  time.Time
	// skipStatus is set when the cached app is older than the API server's
	// and its status must not be written; the newer version is on its way.
	skipStatus bool
	events     []pendingEvent
}

type pendingEvent struct {
	eventType, reason, note string
}

// record appends an activity entry and queues the matching Event.
func (s *appScope) record(t v1alpha1.ActivityType, user, eventType, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.app.Status.Activity = append(s.app.Status.Activity, v1alpha1.ActivityEntry{
		Type: t, Time: metav1.NewTime(s.now), User: user, Message: msg,
	})
	if n := len(s.app.Status.Activity); n > maxActivity {
		s.app.Status.Activity = slices.Clone(s.app.Status.Activity[n-maxActivity:])
	}
	s.event(eventType, string(t), msg)
}

// event queues an Event that is not an activity entry.
func (s *appScope) event(eventType, reason, note string) {
	s.events = append(s.events, pendingEvent{eventType: eventType, reason: reason, note: note})
}

func (s *appScope) emitEvents(rec events.EventRecorder) {
	if rec == nil {
		return
	}
	for _, e := range s.events {
		note := e.note
		if len(note) > maxEventNote {
			note = note[:maxEventNote]
		}
		rec.Eventf(s.app, nil, e.eventType, e.reason, "Reconcile", "%s", note)
	}
	s.events = nil
}

// setReady sets the Ready condition; an Event goes out when the reason of a
// not-ready state changes, so that a waiting or broken app is visible in
// `kubectl get events` once, not on every resync.
func setReady(s *appScope, status metav1.ConditionStatus, reason, msg string) {
	app := s.app
	prev := meta.FindStatusCondition(app.Status.Conditions, v1alpha1.ConditionReady)
	if status == metav1False && reason != v1alpha1.ReasonSuspended && reason != v1alpha1.ReasonTokenExpired &&
		(prev == nil || prev.Reason != reason) {
		s.event(corev1.EventTypeWarning, reason, msg)
	}
	meta.SetStatusCondition(&app.Status.Conditions, metav1.Condition{
		Type:               v1alpha1.ConditionReady,
		Status:             status,
		Reason:             reason,
		Message:            msg,
		ObservedGeneration: app.Generation,
		LastTransitionTime: metav1.NewTime(s.now),
	})
}

func readyReason(app *v1alpha1.PrivateApp) string {
	if c := meta.FindStatusCondition(app.Status.Conditions, v1alpha1.ConditionReady); c != nil {
		return c.Reason
	}
	return ""
}

// expirePreviousToken drops the previous token once its grace period is over.
// The token service refuses it by its expiry time already; this makes status
// and the Secret say so.
func expirePreviousToken(s *appScope) {
	t := s.app.Status.Token
	if t == nil || t.Previous == nil || s.now.Before(t.Previous.ExpiresAt.Time) {
		return
	}
	t.Previous = nil
	s.record(v1alpha1.ActivityOldTokenExpired, OperatorUser, corev1.EventTypeNormal,
		"The previous token's grace period is over; only the current token works now")
}

// applyTokenLifetime sets the current token's expiry from spec.tokenLifetime.
// An expiry that has passed is final: lengthening the lifetime afterwards
// does not bring the token back.
func applyTokenLifetime(s *appScope) {
	t := s.app.Status.Token
	if t == nil || tokenExpired(t, s.now) {
		return
	}
	if lt := s.app.Spec.TokenLifetime; lt != nil {
		exp := metav1.NewTime(t.IssuedAt.Add(lt.Duration))
		t.ExpiresAt = &exp
	} else {
		t.ExpiresAt = nil
	}
}

func tokenExpired(t *v1alpha1.TokenStatus, now time.Time) bool {
	return t.ExpiresAt != nil && !now.Before(t.ExpiresAt.Time)
}

// trackScopes records a change of scopes. The token stays; the token service
// reads the new scopes from the spec.
func trackScopes(s *appScope) {
	want := slices.Sorted(slices.Values(s.app.Spec.Scopes))
	had := s.app.Status.Scopes
	s.app.Status.Scopes = want
	if had == nil || slices.Equal(had, want) {
		return
	}
	var added, removed []string
	for _, sc := range want {
		if !slices.Contains(had, sc) {
			added = append(added, sc)
		}
	}
	for _, sc := range had {
		if !slices.Contains(want, sc) {
			removed = append(removed, sc)
		}
	}
	s.record(v1alpha1.ActivityScopesChanged, s.app.Annotations[v1alpha1.ChangedByAnnotation], corev1.EventTypeNormal,
		"Scopes changed: added [%s], removed [%s]; the token is unchanged",
		strings.Join(added, " "), strings.Join(removed, " "))
}

// setScopesOffered sets the ScopesOffered condition while any APICatalog
// exists, and warns once when an app comes to hold a scope none offers. The
// app stays Ready: its token keeps working for the scopes still offered.
func (r *PrivateAppReconciler) setScopesOffered(s *appScope) {
	app := s.app
	if r.Catalogs == nil || !r.Catalogs.Current().Enabled() {
		meta.RemoveStatusCondition(&app.Status.Conditions, v1alpha1.ConditionScopesOffered)
		return
	}
	set := r.Catalogs.Current()
	var missing []string
	for _, sc := range app.Status.Scopes {
		if !set.Offers(sc) {
			missing = append(missing, sc)
		}
	}
	cond := metav1.Condition{
		Type: v1alpha1.ConditionScopesOffered, Status: metav1True, Reason: v1alpha1.ReasonAllScopesOffered,
		Message: "An APICatalog in force offers every scope in spec.scopes", ObservedGeneration: app.Generation,
		LastTransitionTime: metav1.NewTime(s.now),
	}
	if len(missing) > 0 {
		cond.Status, cond.Reason = metav1False, v1alpha1.ReasonScopesNotOffered
		cond.Message = fmt.Sprintf("No APICatalog in force offers %s, so the token service grants them no more; "+
			"the app keeps working for its other scopes. Remove them from spec.scopes, or ask the platform team to offer them in an APICatalog",
			strings.Join(missing, ", "))
		if prev := meta.FindStatusCondition(app.Status.Conditions, v1alpha1.ConditionScopesOffered); prev == nil || prev.Message != cond.Message {
			s.event(corev1.EventTypeWarning, v1alpha1.ReasonScopesNotOffered, cond.Message)
		}
	}
	meta.SetStatusCondition(&app.Status.Conditions, cond)
}

// setConnection derives the connection state and the Ready condition of an
// app that has a token, and records the transitions.
func setConnection(s *appScope) {
	app := s.app
	was := app.Status.Connection
	t := app.Status.Token
	defer func() {
		switch app.Status.Connection {
		case v1alpha1.ConnectionDisconnected, v1alpha1.ConnectionExpired:
			// Suspended then expired is one episode: it began at the first.
			if app.Status.DisconnectedAt == nil {
				at := metav1.NewTime(s.now)
				app.Status.DisconnectedAt = &at
			}
		default:
			app.Status.DisconnectedAt = nil
		}
	}()
	switch {
	case tokenExpired(t, s.now):
		app.Status.Connection = v1alpha1.ConnectionExpired
		setReady(s, metav1False, v1alpha1.ReasonTokenExpired, fmt.Sprintf(
			"The token expired at %s (spec.tokenLifetime %s); create a TokenRotation to issue a new one",
			t.ExpiresAt.UTC().Format(time.RFC3339), app.Spec.TokenLifetime.Duration))
		if was != v1alpha1.ConnectionExpired {
			s.record(v1alpha1.ActivityTokenExpired, OperatorUser, corev1.EventTypeWarning,
				"The token reached its lifetime and is refused from now on")
		}
	case app.Spec.Suspend:
		app.Status.Connection = v1alpha1.ConnectionDisconnected
		setReady(s, metav1False, v1alpha1.ReasonSuspended,
			"spec.suspend is true: the app's tokens are refused until it is set to false")
		if was != v1alpha1.ConnectionDisconnected {
			s.record(v1alpha1.ActivityDisconnected, app.Annotations[v1alpha1.ChangedByAnnotation], corev1.EventTypeNormal,
				"The app was disconnected (spec.suspend: true); its tokens are refused")
		}
	default:
		app.Status.Connection = v1alpha1.ConnectionConnected
		setReady(s, metav1True, v1alpha1.ReasonTokenIssued, fmt.Sprintf(
			"The token issued at %s is in Secret %q", t.IssuedAt.UTC().Format(time.RFC3339), app.Status.SecretName))
		if was == v1alpha1.ConnectionDisconnected {
			s.record(v1alpha1.ActivityReconnected, app.Annotations[v1alpha1.ChangedByAnnotation], corev1.EventTypeNormal,
				"The app was reconnected (spec.suspend: false); its token works again")
		}
	}
}

// nextDeadline is how long until a token of the app expires, for RequeueAfter;
// zero when none will.
func nextDeadline(s *appScope) time.Duration {
	t := s.app.Status.Token
	if t == nil {
		return 0
	}
	var next time.Duration
	consider := func(at *metav1.Time) {
		if at == nil {
			return
		}
		if d := at.Sub(s.now); d > 0 && (next == 0 || d < next) {
			next = d
		}
	}
	consider(t.ExpiresAt)
	if t.Previous != nil {
		consider(&t.Previous.ExpiresAt)
	}
	return next
}
