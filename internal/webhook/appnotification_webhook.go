package webhook

import (
	"context"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/controller"
	"github.com/privateapps-dev/privateapp-operator/internal/notify"
)

// +kubebuilder:webhook:path=/validate-privateapps-dev-v1alpha1-appnotification,mutating=false,failurePolicy=fail,sideEffects=None,groups=privateapps.dev,resources=appnotifications,verbs=create;update,versions=v1alpha1,name=vappnotification.privateapps.dev,admissionReviewVersions=v1

// AppNotificationWebhook checks what CEL cannot: the apps and recipients a
// notification names against the namespace's apps and the directory. Both
// may legitimately come later (an app applied in the same kubectl apply, a
// directory being updated), so these are warnings that kubectl prints, not
// refusals; the notification's Ready condition keeps saying what is wrong.
type AppNotificationWebhook struct {
	Reader   client.Reader
	Channels *notify.Channels
}

// SetupWithManager registers the webhook.
func (w *AppNotificationWebhook) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewWebhookManagedBy(mgr, &v1alpha1.AppNotification{}).WithValidator(w).Complete()
}

// ValidateCreate warns about unknown apps and recipients.
func (w *AppNotificationWebhook) ValidateCreate(ctx context.Context, n *v1alpha1.AppNotification) (admission.Warnings, error) {
	return w.warnings(ctx, n)
}

// ValidateUpdate warns about unknown apps and recipients.
func (w *AppNotificationWebhook) ValidateUpdate(ctx context.Context, _, n *v1alpha1.AppNotification) (admission.Warnings, error) {
	return w.warnings(ctx, n)
}

// ValidateDelete allows every delete.
func (w *AppNotificationWebhook) ValidateDelete(context.Context, *v1alpha1.AppNotification) (admission.Warnings, error) {
	return nil, nil
}

func (w *AppNotificationWebhook) warnings(ctx context.Context, n *v1alpha1.AppNotification) (admission.Warnings, error) {
	var warns admission.Warnings
	var missing []string
	for _, name := range n.Spec.Apps {
		if err := w.Reader.Get(ctx, client.ObjectKey{Namespace: n.Namespace, Name: name}, &v1alpha1.PrivateApp{}); err != nil {
			if !apierrors.IsNotFound(err) {
				return nil, apierrors.NewInternalError(err)
			}
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		warns = append(warns, fmt.Sprintf("spec.apps: no PrivateApp %s in namespace %s yet; the notification applies to it once it exists",
			strings.Join(missing, ", "), n.Namespace))
	}
	dir, source, err := controller.LoadDirectory(ctx, w.Reader, w.Channels, n.Namespace)
	if err != nil {
		return append(warns, fmt.Sprintf("recipients cannot be checked: %v", err)), nil
	}
	rc := n.Spec.Recipients
	res := dir.Resolve(string(rc.Kind), rc.Users, rc.Teams)
	if len(res.UnknownUsers) > 0 {
		warns = append(warns, fmt.Sprintf("spec.recipients.users: %s not in the directory (%s); they get nothing until added there",
			strings.Join(res.UnknownUsers, ", "), source))
	}
	if len(res.UnknownTeams) > 0 {
		warns = append(warns, fmt.Sprintf("spec.recipients.teams: %s not in the directory (%s); they get nothing until added there",
			strings.Join(res.UnknownTeams, ", "), source))
	}
	if len(res.Recipients) == 0 && len(res.UnknownUsers) == 0 && len(res.UnknownTeams) == 0 {
		warns = append(warns, fmt.Sprintf("spec.recipients: %s resolves to nobody in the directory (%s)", rc.Kind, source))
	}
	return warns, nil
}
