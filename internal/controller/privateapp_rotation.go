package controller

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/token"
)

// rotationAppField indexes TokenRotations by spec.appName.
const rotationAppField = "spec.appName"

// maxAutomaticRotations is how many schedule-made TokenRotations an app
// keeps; older finished ones are deleted.
const maxAutomaticRotations = 5

// Rotations change the token in three writes, like the first issue, with one
// more in front: status records the pending token's digest, then the Secret
// gets its text, then status makes it current. A restart after the first
// write finds the Secret without the pending token and drops it (the rotation
// runs again with a fresh token); after the second it finds the Secret with
// it and finishes. Either way nothing in the Secret is ever adopted on trust.

// finishPending makes current a token change that a restart interrupted
// after it reached the Secret.
func finishPending(s *appScope) {
	t := s.app.Status.Token
	p := t.Pending
	t.Pending = nil
	promote(s, p)
}

// promote makes a pending token current, as the rotation that started it
// asked.
func promote(s *appScope, p *v1alpha1.PendingTokenStatus) {
	t := s.app.Status.Token
	old := *t
	if p.Cancel {
		t.Digest, t.Rotation, t.Previous, t.ExpiresAt = old.Previous.Digest, "", nil, nil
		t.IssuedAt = p.At
		if old.Previous.IssuedAt != nil {
			t.IssuedAt = *old.Previous.IssuedAt
		}
		s.record(v1alpha1.ActivityRotationCancelled, "",
			"TokenRotation %q was cancelled: the previous token is current again and the new one is revoked", p.Rotation)
		return
	}
	*t = v1alpha1.TokenStatus{Digest: p.Digest, IssuedAt: p.At, Rotation: p.Rotation}
	if p.PreviousExpiresAt != nil && !tokenExpired(&old, s.now) {
		until := p.PreviousExpiresAt.Time
		if old.ExpiresAt != nil && old.ExpiresAt.Time.Before(until) {
			until = old.ExpiresAt.Time
		}
		issued := old.IssuedAt
		t.Previous = &v1alpha1.PreviousTokenStatus{
			Digest: old.Digest, IssuedAt: &issued, ExpiresAt: metav1.NewTime(until),
			Reason: v1alpha1.PreviousReasonDelayedRotation, Rotation: p.Rotation,
		}
		s.record(v1alpha1.ActivityTokenRotated, "",
			"TokenRotation %q issued a new token; the previous one works until %s", p.Rotation, until.UTC().Format(time.RFC3339))
		return
	}
	s.record(v1alpha1.ActivityTokenRotated, "",
		"TokenRotation %q issued a new token; every earlier token is revoked", p.Rotation)
}

// rotationsOf returns the app's TokenRotations, oldest first.
func (r *PrivateAppReconciler) rotationsOf(ctx context.Context, app *v1alpha1.PrivateApp) ([]v1alpha1.TokenRotation, error) {
	var list v1alpha1.TokenRotationList
	if err := r.List(ctx, &list, client.InNamespace(app.Namespace), client.MatchingFields{rotationAppField: app.Name}); err != nil {
		return nil, fmt.Errorf("listing the app's TokenRotations: %w", err)
	}
	slices.SortFunc(list.Items, func(a, b v1alpha1.TokenRotation) int {
		if c := a.CreationTimestamp.Compare(b.CreationTimestamp.Time); c != 0 {
			return c
		}
		return cmp.Compare(a.Name, b.Name)
	})
	return list.Items, nil
}

func isFinal(p v1alpha1.RotationPhase) bool {
	switch p {
	case v1alpha1.RotationCompleted, v1alpha1.RotationCancelled, v1alpha1.RotationSuperseded, v1alpha1.RotationFailed:
		return true
	}
	return false
}

// reconcileRotations applies the app's TokenRotations one at a time, oldest
// first, and records how each went in the app's status.rotations, which the
// TokenRotation controller reports on the rotation. secret is the app's
// Secret, holding the current token. It returns the Secret as it is after any
// write.
func (r *PrivateAppReconciler) reconcileRotations(ctx context.Context, s *appScope, secret *corev1.Secret, rotations []v1alpha1.TokenRotation) (*corev1.Secret, error) {
	t := s.app.Status.Token
	for i := range rotations {
		rot := &rotations[i]
		phase := rotationPhase(s.app, rot)
		if isFinal(phase) {
			continue
		}
		if phase == v1alpha1.RotationGracePeriod {
			if t.Previous == nil || t.Previous.Rotation != rot.Name {
				// Its end was not recorded before a restart: the current
				// token says how it ended.
				s.finishRotation(rot, endedPhase(rot, t), t.Rotation)
				continue
			}
			switch {
			case rot.Spec.Cancel:
				return r.cancelRotation(ctx, s, secret, rot)
			case rot.Spec.ExpireOldTokenNow:
				t.Previous = nil
				s.record(v1alpha1.ActivityOldTokenExpired, "",
					"TokenRotation %q ended its grace period early (expireOldTokenNow); the previous token is revoked", rot.Name)
				s.finishRotation(rot, v1alpha1.RotationCompleted, "")
			}
			continue
		}
		// Pending or new.
		if t.Rotation == rot.Name {
			// Applied, but not recorded before a restart.
			s.markApplied(rot, t)
			return secret, nil
		}
		if len(s.app.Status.Rotations) >= maxUnreportedRotations {
			// The TokenRotation controller is behind; its reports wake the app.
			return secret, nil
		}
		return r.applyRotation(ctx, s, secret, rot)
	}
	return secret, nil
}

// maxUnreportedRotations bounds status.rotations (the CRD allows 16): no
// rotation starts while this many wait to be reported on their own status.
const maxUnreportedRotations = 8

// rotationPhase is how far rot got, as the app's status records it; a
// rotation in its grace period before status.rotations existed is recorded
// from its own status.
func rotationPhase(app *v1alpha1.PrivateApp, rot *v1alpha1.TokenRotation) v1alpha1.RotationPhase {
	if rec := findRotationRecord(app.Status.Rotations, rot); rec != nil {
		return rec.Phase
	}
	if rot.Status.Phase == v1alpha1.RotationGracePeriod {
		rec := v1alpha1.RotationRecord{Name: rot.Name, UID: string(rot.UID), Phase: rot.Status.Phase,
			RotatedAt: rot.Status.RotatedAt, OldTokenExpiresAt: rot.Status.OldTokenExpiresAt}
		if c := meta.FindStatusCondition(rot.Status.Conditions, v1alpha1.ConditionReady); c != nil {
			rec.Reason, rec.Message = c.Reason, c.Message
		}
		app.Status.Rotations = append(app.Status.Rotations, rec)
	}
	return rot.Status.Phase
}

// findRotationRecord is the record of rot in records, nil when there is none.
func findRotationRecord(records []v1alpha1.RotationRecord, rot *v1alpha1.TokenRotation) *v1alpha1.RotationRecord {
	for i := range records {
		if rec := &records[i]; rec.Name == rot.Name && (rec.UID == "" || rec.UID == string(rot.UID)) {
			return rec
		}
	}
	return nil
}

// forgetReportedRotations drops the records of rotations that are gone or
// whose own status shows their end: nothing is left to report.
func forgetReportedRotations(app *v1alpha1.PrivateApp, rotations []v1alpha1.TokenRotation) {
	app.Status.Rotations = slices.DeleteFunc(app.Status.Rotations, func(rec v1alpha1.RotationRecord) bool {
		i := slices.IndexFunc(rotations, func(rot v1alpha1.TokenRotation) bool {
			return rot.Name == rec.Name && (rec.UID == "" || rec.UID == string(rot.UID))
		})
		return i < 0 || isFinal(rotations[i].Status.Phase)
	})
	if len(app.Status.Rotations) == 0 {
		app.Status.Rotations = nil
	}
}

// endedPhase is the final phase of a rotation whose grace period is over.
func endedPhase(rot *v1alpha1.TokenRotation, t *v1alpha1.TokenStatus) v1alpha1.RotationPhase {
	switch {
	case t.Rotation == rot.Name:
		return v1alpha1.RotationCompleted
	case rot.Spec.Cancel:
		return v1alpha1.RotationCancelled
	default:
		return v1alpha1.RotationSuperseded
	}
}

func (r *PrivateAppReconciler) applyRotation(ctx context.Context, s *appScope, secret *corev1.Secret, rot *v1alpha1.TokenRotation) (*corev1.Secret, error) {
	t := s.app.Status.Token
	delayed := rot.Spec.Strategy == v1alpha1.RotationDelayed
	if delayed && t.Previous != nil && !s.now.Before(t.Previous.ExpiresAt.Time) {
		// The other grace period is over; let it end first.
		return secret, nil
	}
	if delayed && t.Previous != nil {
		s.failRotation(rot, holderMessage(t.Previous))
		return secret, nil
	}
	tok, err := token.New()
	if err != nil {
		return secret, err
	}
	p := &v1alpha1.PendingTokenStatus{Digest: tok.Digest().String(), Rotation: rot.Name, At: metav1.NewTime(s.now)}
	data := map[string][]byte{v1alpha1.SecretTokenKey: []byte(tok.Reveal())}
	if delayed && !tokenExpired(t, s.now) {
		grace := DefaultGracePeriod
		if rot.Spec.GracePeriod != nil {
			grace = rot.Spec.GracePeriod.Duration
		}
		until := metav1.NewTime(s.now.Add(grace))
		p.PreviousExpiresAt = &until
		data[v1alpha1.SecretPreviousTokenKey] = secret.Data[v1alpha1.SecretTokenKey]
	}
	superseded := t.Previous
	written, err := r.swapToken(ctx, s, secret, p, data, tok)
	if err != nil {
		return secret, err
	}
	s.markApplied(rot, s.app.Status.Token)
	if superseded != nil && superseded.Rotation != "" {
		s.supersede(superseded.Rotation, rot.Name)
	}
	return written, nil
}

func holderMessage(prev *v1alpha1.PreviousTokenStatus) string {
	until := prev.ExpiresAt.UTC().Format(time.RFC3339)
	if prev.Rotation != "" {
		return fmt.Sprintf("TokenRotation %q is in its grace period until %s; set expireOldTokenNow: true (keep the new token) "+
			"or cancel: true (go back to the old one) on it, or wait, then create this rotation again; "+
			"an Immediate rotation is always allowed", prev.Rotation, until)
	}
	return fmt.Sprintf("the token replaced by a Secret repair stays valid until %s; wait until then and create this rotation "+
		"again, or use strategy Immediate, which is always allowed", until)
}

func (r *PrivateAppReconciler) cancelRotation(ctx context.Context, s *appScope, secret *corev1.Secret, rot *v1alpha1.TokenRotation) (*corev1.Secret, error) {
	t := s.app.Status.Token
	prevText := secret.Data[v1alpha1.SecretPreviousTokenKey]
	old, err := token.Parse(string(prevText))
	if err != nil || old.Digest().String() != t.Previous.Digest {
		s.rotationCondition(rot, v1alpha1.ReasonCannotCancel,
			"cancel cannot put the old token back: its text is no longer in the Secret's previous-token key; "+
				"set expireOldTokenNow: true instead, or let the grace period end")
		return secret, nil
	}
	p := &v1alpha1.PendingTokenStatus{Digest: t.Previous.Digest, Rotation: rot.Name, At: metav1.NewTime(s.now), Cancel: true}
	written, err := r.swapToken(ctx, s, secret, p, map[string][]byte{v1alpha1.SecretTokenKey: prevText}, old)
	if err != nil {
		return secret, err
	}
	s.finishRotation(rot, v1alpha1.RotationCancelled, "")
	return written, nil
}

// swapToken records p as pending, writes data into the Secret, and promotes p.
func (r *PrivateAppReconciler) swapToken(ctx context.Context, s *appScope, secret *corev1.Secret, p *v1alpha1.PendingTokenStatus, data map[string][]byte, tok token.Token) (*corev1.Secret, error) {
	s.app.Status.Token.Pending = p
	if err := r.patchStatus(ctx, s); err != nil {
		return secret, fmt.Errorf("recording the pending token: %w", err)
	}
	s.base = s.app.DeepCopy()

	want := desiredSecret(s.app, secret)
	want.Data = data
	want.Annotations[IssuedAtAnnotation] = p.At.UTC().Format(time.RFC3339Nano)
	if err := r.Update(ctx, want); err != nil {
		// Status still says pending; the next reconcile drops it.
		return secret, fmt.Errorf("writing the new token into Secret %q: %w", want.Name, redact(err, tok))
	}
	s.app.Status.Token.Pending = nil
	promote(s, p)
	return want, nil
}

// updateRotation changes the app's record of the named rotation, adding it
// if there is none.
func (s *appScope) updateRotation(name string, uid types.UID, mutate func(*v1alpha1.RotationRecord)) {
	recs := &s.app.Status.Rotations
	i := slices.IndexFunc(*recs, func(rec v1alpha1.RotationRecord) bool { return rec.Name == name })
	if i < 0 {
		*recs = append(*recs, v1alpha1.RotationRecord{Name: name, UID: string(uid)})
		i = len(*recs) - 1
	}
	mutate(&(*recs)[i])
}

func (s *appScope) markApplied(rot *v1alpha1.TokenRotation, t *v1alpha1.TokenStatus) {
	rotatedAt := t.IssuedAt
	if t.Previous != nil && t.Previous.Rotation == rot.Name {
		expires := t.Previous.ExpiresAt
		s.updateRotation(rot.Name, rot.UID, func(rec *v1alpha1.RotationRecord) {
			rec.Phase, rec.RotatedAt, rec.OldTokenExpiresAt = v1alpha1.RotationGracePeriod, &rotatedAt, &expires
			rec.Reason, rec.Message = v1alpha1.ReasonGracePeriod, fmt.Sprintf(
				"The new token is in the Secret; the old one also works until %s. Set expireOldTokenNow: true to end "+
					"this now, or cancel: true to go back to the old token", expires.UTC().Format(time.RFC3339))
		})
		return
	}
	s.updateRotation(rot.Name, rot.UID, func(rec *v1alpha1.RotationRecord) {
		rec.RotatedAt = &rotatedAt
	})
	s.finishRotation(rot, v1alpha1.RotationCompleted, "")
}

func (s *appScope) finishRotation(rot *v1alpha1.TokenRotation, phase v1alpha1.RotationPhase, by string) {
	var reason, msg string
	switch phase {
	case v1alpha1.RotationCompleted:
		reason, msg = v1alpha1.ReasonCompleted, "Only the new token works"
	case v1alpha1.RotationCancelled:
		reason, msg = v1alpha1.ReasonCancelled, "The old token is current again; the token this rotation issued is revoked"
	case v1alpha1.RotationSuperseded:
		reason, msg = v1alpha1.ReasonSuperseded, "A Secret repair replaced the app's tokens and ended this rotation's grace period"
		if by != "" {
			msg = fmt.Sprintf("Immediate TokenRotation %q revoked every token this rotation left valid", by)
		}
	}
	s.endRotation(rot.Name, rot.UID, phase, reason, msg)
}

func (s *appScope) supersede(name, by string) {
	s.endRotation(name, "", v1alpha1.RotationSuperseded, v1alpha1.ReasonSuperseded,
		fmt.Sprintf("Immediate TokenRotation %q revoked every token this rotation left valid", by))
}

// endRotation records a rotation's final phase; a grace period it left
// running ends now.
func (s *appScope) endRotation(name string, uid types.UID, phase v1alpha1.RotationPhase, reason, msg string) {
	now := metav1.NewTime(s.now)
	s.updateRotation(name, uid, func(rec *v1alpha1.RotationRecord) {
		rec.Phase, rec.CompletedAt = phase, &now
		if rec.OldTokenExpiresAt != nil && rec.OldTokenExpiresAt.After(s.now) {
			rec.OldTokenExpiresAt = &now
		}
		rec.Reason, rec.Message = reason, msg
	})
}

func (s *appScope) failRotation(rot *v1alpha1.TokenRotation, msg string) {
	now := metav1.NewTime(s.now)
	s.updateRotation(rot.Name, rot.UID, func(rec *v1alpha1.RotationRecord) {
		rec.Phase, rec.CompletedAt = v1alpha1.RotationFailed, &now
		rec.Reason, rec.Message = v1alpha1.ReasonRotationInProgress, msg
	})
}

func (s *appScope) rotationCondition(rot *v1alpha1.TokenRotation, reason, msg string) {
	s.updateRotation(rot.Name, rot.UID, func(rec *v1alpha1.RotationRecord) {
		rec.Reason, rec.Message = reason, msg
	})
}

// scheduleRotation creates the next automatic rotation when spec.rotation
// says it is due, and says how long until the next one otherwise.
func (r *PrivateAppReconciler) scheduleRotation(ctx context.Context, s *appScope, rotations []v1alpha1.TokenRotation) (time.Duration, error) {
	app := s.app
	pol := app.Spec.Rotation
	t := app.Status.Token
	if pol == nil || t == nil || tokenExpired(t, s.now) {
		return 0, nil
	}
	for _, rot := range rotations {
		if !isFinal(rot.Status.Phase) {
			return 0, nil // one at a time; this one's end wakes the app
		}
	}
	due := t.IssuedAt.Add(pol.Interval.Duration)
	if t.Previous != nil && t.Previous.ExpiresAt.After(due) {
		due = t.Previous.ExpiresAt.Time
	}
	if wait := due.Sub(s.now); wait > 0 {
		return wait, nil
	}
	name := fmt.Sprintf("%s-auto-%d", truncate(app.Name, 200), due.Unix())
	rot := &v1alpha1.TokenRotation{
		ObjectMeta: metav1.ObjectMeta{
			Namespace: app.Namespace, Name: name,
			Labels:          map[string]string{v1alpha1.AppNameLabel: app.Name, v1alpha1.AutomaticRotationLabel: "true"},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(app, v1alpha1.GroupVersion.WithKind("PrivateApp"))},
		},
		Spec: v1alpha1.TokenRotationSpec{AppName: app.Name, Strategy: v1alpha1.RotationDelayed, GracePeriod: pol.GracePeriod},
	}
	if err := r.Create(ctx, rot); err != nil && !apierrors.IsAlreadyExists(err) {
		return 0, fmt.Errorf("creating the scheduled TokenRotation %q: %w", name, err)
	}
	return 0, r.pruneAutomaticRotations(ctx, rotations)
}

// pruneAutomaticRotations keeps the newest finished schedule-made rotations.
func (r *PrivateAppReconciler) pruneAutomaticRotations(ctx context.Context, rotations []v1alpha1.TokenRotation) error {
	var auto []v1alpha1.TokenRotation
	for _, rot := range rotations {
		if rot.Labels[v1alpha1.AutomaticRotationLabel] == "true" && isFinal(rot.Status.Phase) {
			auto = append(auto, rot)
		}
	}
	for i := 0; i < len(auto)-(maxAutomaticRotations-1); i++ {
		if err := r.Delete(ctx, &auto[i]); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("deleting old TokenRotation %q: %w", auto[i].Name, err)
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func setRotationReady(st *v1alpha1.TokenRotationStatus, now time.Time, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&st.Conditions, metav1.Condition{
		Type: v1alpha1.ConditionReady, Status: status, Reason: reason, Message: msg, LastTransitionTime: metav1.NewTime(now),
	})
}
