package webhook

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
)

// +kubebuilder:webhook:path=/validate-privateapps-dev-v1alpha1-tokenrotation,mutating=false,failurePolicy=fail,sideEffects=None,groups=privateapps.dev,resources=tokenrotations,verbs=create;update,versions=v1alpha1,name=vtokenrotation.privateapps.dev,admissionReviewVersions=v1

// TokenRotationWebhook refuses rotations the controller would fail.
type TokenRotationWebhook struct {
	Reader client.Reader
}

// SetupWithManager registers the webhook.
func (w *TokenRotationWebhook) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewWebhookManagedBy(mgr, &v1alpha1.TokenRotation{}).WithValidator(w).Complete()
}

// ValidateCreate refuses a rotation of an unknown app, and a second Delayed
// rotation while one is in its grace period.
func (w *TokenRotationWebhook) ValidateCreate(ctx context.Context, rot *v1alpha1.TokenRotation) (admission.Warnings, error) {
	app := &v1alpha1.PrivateApp{}
	if err := w.Reader.Get(ctx, client.ObjectKey{Namespace: rot.Namespace, Name: rot.Spec.AppName}, app); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, rotationInvalid(rot.Name, field.NotFound(field.NewPath("spec", "appName"), fmt.Sprintf(
				"%s (no PrivateApp of that name in namespace %s; create the app first)", rot.Spec.AppName, rot.Namespace)))
		}
		return nil, apierrors.NewInternalError(err)
	}
	if rot.Spec.Strategy != v1alpha1.RotationDelayed {
		return nil, nil
	}
	if app.Status.Token == nil || app.Status.Token.Previous == nil {
		return nil, nil
	}
	if prev := app.Status.Token.Previous; prev != nil {
		holder := "a Secret repair"
		how := "wait until then or use strategy Immediate"
		if prev.Rotation != "" {
			holder = fmt.Sprintf("TokenRotation %q", prev.Rotation)
			how = fmt.Sprintf("set expireOldTokenNow: true or cancel: true on %s, wait, or use strategy Immediate", prev.Rotation)
		}
		return nil, rotationInvalid(rot.Name, field.Forbidden(field.NewPath("spec", "strategy"), fmt.Sprintf(
			"app %s is in the grace period of %s until %s; %s", app.Name, holder, prev.ExpiresAt.UTC().Format("2006-01-02T15:04:05Z"), how)))
	}
	return nil, nil
}

// ValidateUpdate allows the grace-period actions only during the grace
// period; CEL already refuses every other change.
func (w *TokenRotationWebhook) ValidateUpdate(_ context.Context, oldRot, rot *v1alpha1.TokenRotation) (admission.Warnings, error) {
	var errs field.ErrorList
	if oldRot.Status.Phase == v1alpha1.RotationGracePeriod {
		return nil, nil
	}
	spec := field.NewPath("spec")
	if rot.Spec.ExpireOldTokenNow && !oldRot.Spec.ExpireOldTokenNow {
		errs = append(errs, field.Forbidden(spec.Child("expireOldTokenNow"), fmt.Sprintf("the rotation is %s, not in its grace period", phaseOf(oldRot))))
	}
	if rot.Spec.Cancel && !oldRot.Spec.Cancel {
		errs = append(errs, field.Forbidden(spec.Child("cancel"), fmt.Sprintf("the rotation is %s, not in its grace period", phaseOf(oldRot))))
	}
	if len(errs) == 0 {
		return nil, nil
	}
	return nil, rotationInvalid(rot.Name, errs...)
}

// ValidateDelete allows every delete.
func (w *TokenRotationWebhook) ValidateDelete(context.Context, *v1alpha1.TokenRotation) (admission.Warnings, error) {
	return nil, nil
}

func phaseOf(rot *v1alpha1.TokenRotation) string {
	if rot.Status.Phase == "" {
		return "not started"
	}
	return string(rot.Status.Phase)
}

func rotationInvalid(name string, errs ...*field.Error) error {
	return apierrors.NewInvalid(v1alpha1.GroupVersion.WithKind("TokenRotation").GroupKind(), name, errs)
}
