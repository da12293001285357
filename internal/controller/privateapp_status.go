package controller

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
// started from, the time it runs at, and the facts the phases found that
// status does not hold itself.
type appScope struct {
	app *v1alpha1.PrivateApp
	// base is what the next status patch is computed against; it moves on
	// after each write.
	base *v1alpha1.PrivateApp
	// before is the status the reconcile started from: Events say what
	// changed since.
	before v1alpha1.PrivateAppStatus
	now    time.Time
	// slot is the app's place in line while it waits for a slot under the
	// namespace's cap.
	slot *capDecision
	// maxApps is the cap slot was decided under.
	maxApps int
}

func newAppScope(app *v1alpha1.PrivateApp, now time.Time) *appScope {
	return &appScope{app: app, base: app.DeepCopy(), before: *app.Status.DeepCopy(), now: now}
}

// errCacheBehind ends a reconcile that found the cached app older than the
// API server's: nothing is written, and the newer version's event brings the
// app back.
var errCacheBehind = errors.New("the cached app is older than the API server's")

type pendingEvent struct {
	eventType, reason, note string
}

// record appends an activity entry; its Event goes out once status holds it.
func (s *appScope) record(t v1alpha1.ActivityType, user, format string, args ...any) {
	s.app.Status.Activity = append(s.app.Status.Activity, v1alpha1.ActivityEntry{
		Type: t, Time: metav1.NewTime(s.now), User: user, Message: fmt.Sprintf(format, args...),
	})
	if n := len(s.app.Status.Activity); n > maxActivity {
		s.app.Status.Activity = slices.Clone(s.app.Status.Activity[n-maxActivity:])
	}
}

// emitEvents sends the Events of what changed in status since s.before.
func (s *appScope) emitEvents(rec events.EventRecorder) {
	evs := statusEvents(&s.before, &s.app.Status)
	s.before = *s.app.Status.DeepCopy()
	if rec == nil {
		return
	}
	for _, e := range evs {
		rec.Eventf(s.app, nil, e.eventType, e.reason, "Reconcile", "%s", truncate(e.note, maxEventNote))
	}
}

// statusEvents are the Events that tell what changed from before to after:
// each new activity entry; Ready turning false for a new reason (a waiting
// or broken app shows in `kubectl get events` once, not on every resync; a
// suspended or expired app has its activity entry); a new ScopesOffered
// warning; a rotation refused.
func statusEvents(before, after *v1alpha1.PrivateAppStatus) []pendingEvent {
	var evs []pendingEvent
	for _, a := range newActivity(before.Activity, after.Activity) {
		t := corev1.EventTypeNormal
		if a.Type == v1alpha1.ActivityTokenExpired || a.Type == v1alpha1.ActivitySecretRepaired {
			t = corev1.EventTypeWarning
		}
		evs = append(evs, pendingEvent{eventType: t, reason: string(a.Type), note: a.Message})
	}
	was := meta.FindStatusCondition(before.Conditions, v1alpha1.ConditionReady)
	if c := meta.FindStatusCondition(after.Conditions, v1alpha1.ConditionReady); c != nil && c.Status == metav1False &&
		c.Reason != v1alpha1.ReasonSuspended && c.Reason != v1alpha1.ReasonTokenExpired && (was == nil || was.Reason != c.Reason) {
		evs = append(evs, pendingEvent{eventType: corev1.EventTypeWarning, reason: c.Reason, note: c.Message})
	}
	was = meta.FindStatusCondition(before.Conditions, v1alpha1.ConditionScopesOffered)
	if c := meta.FindStatusCondition(after.Conditions, v1alpha1.ConditionScopesOffered); c != nil && c.Status == metav1False &&
		(was == nil || was.Message != c.Message) {
		evs = append(evs, pendingEvent{eventType: corev1.EventTypeWarning, reason: v1alpha1.ReasonScopesNotOffered, note: c.Message})
	}
	for _, rec := range after.Rotations {
		if rec.Phase != v1alpha1.RotationFailed || slices.ContainsFunc(before.Rotations, func(b v1alpha1.RotationRecord) bool {
			return b.Name == rec.Name && b.Phase == v1alpha1.RotationFailed
		}) {
			continue
		}
		evs = append(evs, pendingEvent{eventType: corev1.EventTypeWarning, reason: v1alpha1.ReasonRotationInProgress,
			note: fmt.Sprintf("TokenRotation %q refused: %s", rec.Name, rec.Message)})
	}
	return evs
}

// newActivity is what after appends to before: the entries after before's
// newest one.
func newActivity(before, after []v1alpha1.ActivityEntry) []v1alpha1.ActivityEntry {
	if len(before) == 0 {
		return after
	}
	last := before[len(before)-1]
	for i := len(after) - 1; i >= 0; i-- {
		if equality.Semantic.DeepEqual(after[i], last) {
			return after[i+1:]
		}
	}
	return after
}

// setReadyCondition sets the Ready condition, once per reconcile, from what
// the phases recorded: the connection state, the app's place in line, and
// the reconcile's error. A reconcile that recorded nothing new about them
// (it waits for the ranking to settle) leaves Ready as it was.
func setReadyCondition(s *appScope, err error) {
	app := s.app
	status := metav1False
	var reason, msg string
	switch t := app.Status.Token; {
	case err != nil:
		// A conflict means the cache lagged behind a write; the retry sees it.
		if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
			return
		}
		reason, msg = v1alpha1.ReasonReconcileError, err.Error()
	case app.Status.Connection == v1alpha1.ConnectionError:
		reason, msg = v1alpha1.ReasonSecretConflict, fmt.Sprintf(
			"Secret %q in namespace %q exists and does not belong to this app, so the operator leaves it alone; "+
				"delete that Secret, or re-create this app with another spec.secretName",
			app.TokenSecretName(), app.Namespace)
	case app.Status.Connection == v1alpha1.ConnectionPending:
		if s.slot == nil {
			return
		}
		reason, msg = v1alpha1.ReasonAppLimitExceeded, fmt.Sprintf(
			"Namespace %q has %d private apps with tokens and the limit is %d; this app is number %d in line and gets "+
				"its token when a slot frees (delete an app, or ask the cluster admin to raise the limit)",
			app.Namespace, s.slot.holders, s.maxApps, s.slot.position)
	case t == nil:
		return
	case app.Status.Connection == v1alpha1.ConnectionExpired:
		lifetime := ""
		if app.Spec.TokenLifetime != nil {
			lifetime = app.Spec.TokenLifetime.Duration.String()
		}
		reason, msg = v1alpha1.ReasonTokenExpired, fmt.Sprintf(
			"The token expired at %s (spec.tokenLifetime %s); create a TokenRotation to issue a new one",
			t.ExpiresAt.UTC().Format(time.RFC3339), lifetime)
	case app.Status.Connection == v1alpha1.ConnectionDisconnected:
		reason, msg = v1alpha1.ReasonSuspended, "spec.suspend is true: the app's tokens are refused until it is set to false"
	case app.Status.Connection == v1alpha1.ConnectionConnected:
		status, reason, msg = metav1True, v1alpha1.ReasonTokenIssued, fmt.Sprintf(
			"The token issued at %s is in Secret %q", t.IssuedAt.UTC().Format(time.RFC3339), app.Status.SecretName)
	default:
		return
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
	s.record(v1alpha1.ActivityOldTokenExpired, OperatorUser,
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
	s.record(v1alpha1.ActivityScopesChanged, s.app.Annotations[v1alpha1.ChangedByAnnotation],
		"Scopes changed: added [%s], removed [%s]; the token is unchanged",
		strings.Join(added, " "), strings.Join(removed, " "))
}

// setScopesOffered sets the ScopesOffered condition while any APICatalog
// exists (statusEvents warns once when an app comes to hold a scope none
// offers). The app stays Ready: its token keeps working for the scopes still
// offered.
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
	}
	meta.SetStatusCondition(&app.Status.Conditions, cond)
}

// setConnection derives the connection state of an app that has a token,
// and records the transitions.
func setConnection(s *appScope) {
	app := s.app
	was := app.Status.Connection
	switch {
	case tokenExpired(app.Status.Token, s.now):
		app.Status.Connection = v1alpha1.ConnectionExpired
		if was != v1alpha1.ConnectionExpired {
			s.record(v1alpha1.ActivityTokenExpired, OperatorUser, "The token reached its lifetime and is refused from now on")
		}
	case app.Spec.Suspend:
		app.Status.Connection = v1alpha1.ConnectionDisconnected
		if was != v1alpha1.ConnectionDisconnected {
			s.record(v1alpha1.ActivityDisconnected, app.Annotations[v1alpha1.ChangedByAnnotation],
				"The app was disconnected (spec.suspend: true); its tokens are refused")
		}
	default:
		app.Status.Connection = v1alpha1.ConnectionConnected
		if was == v1alpha1.ConnectionDisconnected {
			s.record(v1alpha1.ActivityReconnected, app.Annotations[v1alpha1.ChangedByAnnotation],
				"The app was reconnected (spec.suspend: false); its token works again")
		}
	}
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
