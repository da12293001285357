package controller

import (
	"testing"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
)

// Every state a manager killed between two token writes can leave, and the
// step that completes it.
func TestNextTokenStep(t *testing.T) {
	recorded := &v1alpha1.TokenStatus{Digest: "sha256:current"}
	pending := &v1alpha1.TokenStatus{Digest: "sha256:current",
		Pending: &v1alpha1.PendingTokenStatus{Digest: "sha256:new", Rotation: "r"}}
	ours := secretFacts{exists: true, ours: true, typed: true}
	with := func(f secretFacts, mutate func(*secretFacts)) secretFacts { mutate(&f); return f }
	tests := []struct {
		name   string
		status *v1alpha1.TokenStatus
		secret secretFacts
		want   tokenStep
	}{
		{"new app", nil, secretFacts{}, stepIssueFirst},
		{"killed after writing the first token, before recording it", nil, ours, stepReplaceUnrecorded},
		{"a Secret of the app's name someone else made", nil, secretFacts{exists: true, typed: true}, stepSecretConflict},
		{"someone else's Secret, token recorded", recorded, secretFacts{exists: true, typed: true, holdsCurrent: true}, stepSecretConflict},
		{"killed after recording a pending token, before the Secret", pending, with(ours, func(f *secretFacts) { f.holdsCurrent = true }), stepDropPending},
		{"pending token, Secret deleted meanwhile", pending, secretFacts{}, stepDropPending},
		{"killed after writing the pending token into the Secret", pending, with(ours, func(f *secretFacts) { f.holdsPending = true }), stepFinishPending},
		{"in sync", recorded, with(ours, func(f *secretFacts) { f.holdsCurrent = true }), stepInSync},
		{"Secret deleted out of band", recorded, secretFacts{}, stepRepair},
		{"token edited out of band, or a replacement killed before recording it", recorded, ours, stepRepair},
		{"Secret of another type", recorded, with(ours, func(f *secretFacts) { f.typed, f.holdsCurrent = false, true }), stepRecreateSecret},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nextTokenStep(tt.status, tt.secret); got != tt.want {
				t.Errorf("nextTokenStep = %d, want %d", got, tt.want)
			}
		})
	}
}
