package controller

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
)

// tokenStep is the next thing the token needs, decided from what status
// records and what the Secret holds, and nothing else. The token lives in
// both and every change writes one then the other, so a manager killed
// between two writes leaves one of these states; each has its step, which
// completes the change without trusting anything the Secret holds that
// status did not record first (the crash states above PrivateAppReconciler).
type tokenStep int

const (
	// stepIssueFirst: no token recorded and no Secret: issue the first
	// token, Secret first and status second, when the cap allows.
	stepIssueFirst tokenStep = iota
	// stepSecretConflict: the Secret of the app's name is someone else's;
	// it is left alone.
	stepSecretConflict
	// stepReplaceUnrecorded: the app's Secret holds a token status never
	// recorded (killed after writing it): that token never worked and is
	// replaced by a fresh one, never adopted.
	stepReplaceUnrecorded
	// stepFinishPending: a change status recorded as pending reached the
	// Secret: it is made current, as its rotation asked.
	stepFinishPending
	// stepDropPending: a change status recorded as pending never reached
	// the Secret: it is dropped (the rotation runs again with a fresh token).
	stepDropPending
	// stepRecreateSecret: the Secret's type is not the token type, which a
	// Secret cannot change: it is deleted, and repaired on the next pass.
	stepRecreateSecret
	// stepRepair: the Secret is gone or holds a token status does not know
	// (deleted or edited out of band): a new token is issued, and the one
	// status knows stays valid for the grace period.
	stepRepair
	// stepInSync: the Secret holds the current token: rotations may run,
	// and only its labels, annotations and keys may need a write.
	stepInSync
)

// secretFacts is what the Secret of the app's name holds, for the token.
type secretFacts struct {
	exists, ours, typed bool
	// holdsCurrent and holdsPending: its token key holds the token whose
	// digest status records as current, or as pending.
	holdsCurrent, holdsPending bool
}

func secretFactsOf(secret *corev1.Secret, app *v1alpha1.PrivateApp) secretFacts {
	if secret == nil {
		return secretFacts{}
	}
	f := secretFacts{exists: true, ours: isOwnedBy(secret, app), typed: secret.Type == v1alpha1.SecretType}
	if t := app.Status.Token; t != nil {
		f.holdsCurrent = holdsToken(secret, t.Digest)
		f.holdsPending = t.Pending != nil && holdsToken(secret, t.Pending.Digest)
	}
	return f
}

// nextTokenStep is the step for the token status t (nil: none recorded)
// and the Secret sec.
func nextTokenStep(t *v1alpha1.TokenStatus, sec secretFacts) tokenStep {
	switch {
	case sec.exists && !sec.ours:
		return stepSecretConflict
	case t == nil && sec.exists:
		return stepReplaceUnrecorded
	case t == nil:
		return stepIssueFirst
	case t.Pending != nil && sec.holdsPending:
		return stepFinishPending
	case t.Pending != nil:
		return stepDropPending
	case sec.exists && !sec.typed:
		return stepRecreateSecret
	case !sec.exists || !sec.holdsCurrent:
		return stepRepair
	default:
		return stepInSync
	}
}
