package controller

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/token"
)

const (
	// IssuedAtAnnotation on the token Secret says when its token was issued.
	IssuedAtAnnotation = "privateapps.dev/token-issued-at"

	// conflictRecheck is how often an app whose Secret name is taken looks
	// again: the cache holds only the operator's own Secrets, so the removal
	// of someone else's Secret brings no event.
	conflictRecheck = 30 * time.Second
	// rankSettle is how long after an app's creation second the cap waits
	// before ranking it, so that every app created in the same second (which
	// may rank before it by name) is in the list the ranking reads from the
	// API server: a margin for clock skew and for creates still in flight.
	rankSettle = 500 * time.Millisecond
)

// getTokenSecret returns the app's Secret, or nil when there is none.
func (r *PrivateAppReconciler) getTokenSecret(ctx context.Context, app *v1alpha1.PrivateApp) (*corev1.Secret, error) {
	key := types.NamespacedName{Namespace: app.Namespace, Name: app.TokenSecretName()}
	secret := &corev1.Secret{}
	err := r.Get(ctx, key, secret)
	if apierrors.IsNotFound(err) {
		// The cache holds only Secrets labelled as the operator's. Ask the API
		// server about a Secret of that name someone else made, one of ours
		// whose labels were removed, or one the cache has not seen yet.
		err = r.APIReader.Get(ctx, key, secret)
	}
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading Secret %q: %w", key.Name, err)
	}
	return secret, nil
}

func isOwnedBy(secret *corev1.Secret, app *v1alpha1.PrivateApp) bool {
	return metav1.IsControlledBy(secret, app)
}

// secretConflict records that the app's Secret belongs to someone else
// (setReadyCondition says what to do about it).
func (r *PrivateAppReconciler) secretConflict(s *appScope) ctrl.Result {
	s.app.Status.Connection = v1alpha1.ConnectionError
	return ctrl.Result{RequeueAfter: conflictRecheck}
}

// ensureFirstToken gives an app without a token its first one, when the cap
// allows. issued reports whether the app now has a token. New apps are the
// common case, so the Secret is read from the API server only when creating
// it finds one there already.
func (r *PrivateAppReconciler) ensureFirstToken(ctx context.Context, s *appScope) (res ctrl.Result, issued bool, err error) {
	app := s.app
	secret := &corev1.Secret{}
	switch err := r.Get(ctx, client.ObjectKey{Namespace: app.Namespace, Name: app.TokenSecretName()}, secret); {
	case apierrors.IsNotFound(err):
		secret = nil
	case err != nil:
		return ctrl.Result{}, false, fmt.Errorf("reading Secret %q: %w", app.TokenSecretName(), err)
	}
	if step := nextTokenStep(nil, secretFactsOf(secret, app)); step != stepIssueFirst {
		return r.replaceUnrecorded(ctx, s, secret, step)
	}

	granted, res, err := r.waitForSlot(ctx, s)
	if err != nil || !granted {
		return res, false, err
	}
	tok, err := token.New()
	if err != nil {
		return ctrl.Result{}, false, err
	}
	err = r.writeToken(ctx, app, nil, tok, s.now)
	if apierrors.IsAlreadyExists(err) {
		// Someone else's Secret, one of ours without its labels, or one the
		// cache has not seen yet.
		if secret, err = r.getTokenSecret(ctx, app); err != nil || secret == nil {
			return ctrl.Result{}, false, err
		}
		return r.replaceUnrecorded(ctx, s, secret, nextTokenStep(nil, secretFactsOf(secret, app)))
	}
	if err != nil {
		return ctrl.Result{}, false, err
	}
	recordInstall(s, tok.Digest(), s.now)
	return ctrl.Result{}, true, nil
}

// replaceUnrecorded handles a Secret that exists before the app has a token
// in status (step): someone else's is left alone; the app's own was written
// by a reconcile killed before recording the digest, and that token never
// worked, so it is replaced rather than adopted, and a token planted by
// someone who may create Secrets but not read them is never trusted.
func (r *PrivateAppReconciler) replaceUnrecorded(ctx context.Context, s *appScope, secret *corev1.Secret, step tokenStep) (ctrl.Result, bool, error) {
	if step == stepSecretConflict {
		return r.secretConflict(s), false, nil
	}
	d, written, err := r.writeFreshToken(ctx, s, secret)
	if !written {
		return ctrl.Result{}, false, err
	}
	recordInstall(s, d, s.now)
	return ctrl.Result{}, true, nil
}

// writeFreshToken writes a new token into the app's Secret, once the cached
// app is confirmed to be the API server's current one: a cache that has not
// yet seen this controller's own status write looks like a Secret that needs
// a new token. written is false when nothing was written; then the reconcile
// either failed or waits for the newer app, whose event brings it back.
func (r *PrivateAppReconciler) writeFreshToken(ctx context.Context, s *appScope, secret *corev1.Secret) (token.Digest, bool, error) {
	fresh, err := r.isFresh(ctx, s.app)
	if err != nil {
		return token.Digest{}, false, err
	}
	if !fresh {
		return token.Digest{}, false, errCacheBehind
	}
	tok, err := token.New()
	if err != nil {
		return token.Digest{}, false, err
	}
	if err := r.writeToken(ctx, s.app, secret, tok, s.now); err != nil {
		return token.Digest{}, false, err
	}
	return tok.Digest(), true, nil
}

func recordInstall(s *appScope, d token.Digest, issuedAt time.Time) {
	app := s.app
	app.Status.Token = &v1alpha1.TokenStatus{Digest: d.String(), IssuedAt: metav1.NewTime(issuedAt)}
	if app.Status.InstalledAt == nil {
		at := metav1.NewTime(issuedAt)
		app.Status.InstalledAt = &at
		s.record(v1alpha1.ActivityInstalled, app.Status.InstalledBy,
			"The app was installed; its token is in Secret %q", app.TokenSecretName())
	}
}

// waitForSlot applies the namespace cap on an app that has no token: granted
// says whether it may take one now, and res how to wait when it may not.
func (r *PrivateAppReconciler) waitForSlot(ctx context.Context, s *appScope) (granted bool, res ctrl.Result, err error) {
	app := s.app
	settled := app.CreationTimestamp.Add(time.Second + rankSettle)
	if wait := settled.Sub(r.WallClock.Now()); wait > 0 {
		// Status stays as it is for this second and a half at most: writing
		// Pending now would cost every new app one more API write.
		return false, ctrl.Result{RequeueAfter: wait}, nil
	}

	// The ranking must see every app, and this app as it is now: list from
	// the API server rather than the cache.
	var apps v1alpha1.PrivateAppList
	if err := r.APIReader.List(ctx, &apps, client.InNamespace(app.Namespace)); err != nil {
		return false, ctrl.Result{}, fmt.Errorf("listing the apps of namespace %q: %w", app.Namespace, err)
	}
	entries := make([]capEntry, 0, len(apps.Items))
	for i := range apps.Items {
		a := &apps.Items[i]
		if a.Name == app.Name && a.ResourceVersion != app.ResourceVersion {
			return false, ctrl.Result{}, errCacheBehind
		}
		entries = append(entries, capEntry{
			name:     a.Name,
			created:  a.CreationTimestamp.Time,
			hasToken: a.Status.Token != nil,
			excluded: !a.DeletionTimestamp.IsZero() ||
				(a.Status.Token == nil && readyReason(a) == v1alpha1.ReasonSecretConflict),
		})
	}
	d := decideSlot(entries, app.Name, r.MaxAppsPerNamespace)
	if d.granted {
		return true, ctrl.Result{}, nil
	}
	app.Status.Connection = v1alpha1.ConnectionPending
	s.slot, s.maxApps = &d, r.MaxAppsPerNamespace
	return false, ctrl.Result{}, nil
}

// ensureSecret keeps the Secret of an app that has a token in line with
// status: the right token, type, labels and annotations; a Secret that was
// deleted or whose token was changed gets a new token.
func (r *PrivateAppReconciler) ensureSecret(ctx context.Context, s *appScope, secret *corev1.Secret) error {
	app := s.app
	switch nextTokenStep(app.Status.Token, secretFactsOf(secret, app)) {
	case stepRecreateSecret:
		// The type of a Secret cannot be changed: remove it, and re-create it
		// with a new token on the next pass.
		return client.IgnoreNotFound(r.Delete(ctx, secret, client.Preconditions{UID: &secret.UID, ResourceVersion: &secret.ResourceVersion}))
	case stepRepair:
		return r.repairToken(ctx, s, secret)
	}
	want := desiredSecret(app, secret)
	if secretUpToDate(secret, want) {
		return nil
	}
	if err := r.Update(ctx, want); err != nil {
		return fmt.Errorf("updating Secret %q: %w", want.Name, err)
	}
	return nil
}

// holdsToken reports whether the Secret's token key holds the token with
// this digest.
func holdsToken(secret *corev1.Secret, digest string) bool {
	return holdsDigest(secret.Data[v1alpha1.SecretTokenKey], digest)
}

// repairToken issues a new token into a Secret that was deleted or whose
// token was changed out of band. The old token's text cannot be recovered,
// so it stays valid for the grace period, as in a delayed rotation, unless it
// had expired already.
func (r *PrivateAppReconciler) repairToken(ctx context.Context, s *appScope, secret *corev1.Secret) error {
	app := s.app
	d, written, err := r.writeFreshToken(ctx, s, secret)
	if !written {
		return err
	}
	old := app.Status.Token
	app.Status.Token = &v1alpha1.TokenStatus{Digest: d.String(), IssuedAt: metav1.NewTime(s.now)}
	what := "deleted"
	if secret != nil {
		what = "changed"
	}
	if tokenExpired(old, s.now) {
		s.record(v1alpha1.ActivitySecretRepaired, OperatorUser,
			"Secret %q was %s outside the operator; a new token was issued (the old one had expired)", app.TokenSecretName(), what)
		return nil
	}
	until := s.now.Add(r.GracePeriod)
	if old.ExpiresAt != nil && old.ExpiresAt.Before(&metav1.Time{Time: until}) {
		until = old.ExpiresAt.Time
	}
	issued := old.IssuedAt
	app.Status.Token.Previous = &v1alpha1.PreviousTokenStatus{
		Digest: old.Digest, IssuedAt: &issued, ExpiresAt: metav1.NewTime(until), Reason: v1alpha1.PreviousReasonSecretRepaired,
	}
	s.record(v1alpha1.ActivitySecretRepaired, OperatorUser,
		"Secret %q was %s outside the operator; a new token was issued and the previous one stays valid until %s",
		app.TokenSecretName(), what, until.UTC().Format(time.RFC3339))
	return nil
}

// isFresh reports whether the cached app is the API server's current one.
func (r *PrivateAppReconciler) isFresh(ctx context.Context, app *v1alpha1.PrivateApp) (bool, error) {
	live := &v1alpha1.PrivateApp{}
	if err := r.APIReader.Get(ctx, client.ObjectKeyFromObject(app), live); err != nil {
		return false, fmt.Errorf("reading the app from the API server: %w", err)
	}
	return live.ResourceVersion == app.ResourceVersion, nil
}

// writeToken puts tok into the app's Secret, creating the Secret if needed.
// Errors never carry the token.
func (r *PrivateAppReconciler) writeToken(ctx context.Context, app *v1alpha1.PrivateApp, existing *corev1.Secret, tok token.Token, now time.Time) error {
	var secret *corev1.Secret
	if existing == nil {
		secret = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: app.Namespace, Name: app.TokenSecretName()}}
	} else {
		secret = existing.DeepCopy()
	}
	secret.Data = map[string][]byte{v1alpha1.SecretTokenKey: []byte(tok.Reveal())}
	secret.Annotations = map[string]string{IssuedAtAnnotation: now.UTC().Format(time.RFC3339Nano)}
	secret = desiredSecret(app, secret)
	var err error
	if existing == nil {
		err = r.Create(ctx, secret)
	} else {
		err = r.Update(ctx, secret)
	}
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("writing the token into Secret %q: %w", secret.Name, redact(err, tok))
	}
	return err
}

// desiredSecret returns a copy of secret with the type, owner, labels,
// annotations and keys the app calls for. The operator owns the Secret's
// labels and annotations: others' keys are removed; add them through
// spec.secretTemplate.
func desiredSecret(app *v1alpha1.PrivateApp, secret *corev1.Secret) *corev1.Secret {
	want := secret.DeepCopy()
	want.Type = v1alpha1.SecretType

	labels := map[string]string{}
	annotations := map[string]string{}
	if t := app.Spec.SecretTemplate; t != nil {
		maps.Copy(labels, t.Labels)
		maps.Copy(annotations, t.Annotations)
	}
	labels[v1alpha1.AppNameLabel] = app.Name
	labels[v1alpha1.ManagedByLabel] = v1alpha1.ManagedByValue
	if at, ok := secret.Annotations[IssuedAtAnnotation]; ok {
		annotations[IssuedAtAnnotation] = at
	}
	want.Labels = labels
	want.Annotations = annotations

	data := map[string][]byte{v1alpha1.SecretTokenKey: secret.Data[v1alpha1.SecretTokenKey]}
	if p := app.Status.Token; p != nil && p.Previous != nil {
		if prev, ok := secret.Data[v1alpha1.SecretPreviousTokenKey]; ok && holdsDigest(prev, p.Previous.Digest) {
			data[v1alpha1.SecretPreviousTokenKey] = prev
		}
	}
	want.Data = data
	want.StringData = nil

	want.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(app, v1alpha1.GroupVersion.WithKind("PrivateApp"))}
	return want
}

// holdsDigest reports whether text is a well-formed token with this digest.
func holdsDigest(text []byte, digest string) bool {
	tok, err := token.Parse(string(text))
	return err == nil && tok.Digest().String() == digest
}

func secretUpToDate(have, want *corev1.Secret) bool {
	return have.Type == want.Type &&
		maps.Equal(have.Labels, want.Labels) &&
		maps.Equal(have.Annotations, want.Annotations) &&
		maps.EqualFunc(have.Data, want.Data, func(a, b []byte) bool { return string(a) == string(b) }) &&
		equality.Semantic.DeepEqual(have.OwnerReferences, want.OwnerReferences)
}

// deleteTokenSecret removes the app's Secret if the app owns it.
func (r *PrivateAppReconciler) deleteTokenSecret(ctx context.Context, app *v1alpha1.PrivateApp) error {
	secret, err := r.getTokenSecret(ctx, app)
	if err != nil || secret == nil || !isOwnedBy(secret, app) {
		return err
	}
	err = r.Delete(ctx, secret, client.Preconditions{UID: &secret.UID})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting Secret %q: %w", secret.Name, err)
	}
	return nil
}

// redact removes the token's text from an API error, in case the server
// echoed any of the object back.
func redact(err error, tok token.Token) error {
	msg := err.Error()
	if !strings.Contains(msg, tok.Reveal()) {
		return err
	}
	return errors.New(strings.ReplaceAll(msg, tok.Reveal(), "[redacted]"))
}
