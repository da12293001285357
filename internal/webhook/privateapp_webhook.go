// Package webhook holds the admission webhooks: they give `kubectl apply` a
// clear refusal up front. The controllers stay authoritative: the cap, for
// one, holds in the PrivateApp controller even when a webhook is bypassed.
package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/catalog"
)

// +kubebuilder:webhook:path=/mutate-privateapps-dev-v1alpha1-privateapp,mutating=true,failurePolicy=fail,sideEffects=None,groups=privateapps.dev,resources=privateapps,verbs=create;update,versions=v1alpha1,name=mprivateapp.privateapps.dev,admissionReviewVersions=v1
// +kubebuilder:webhook:path=/validate-privateapps-dev-v1alpha1-privateapp,mutating=false,failurePolicy=fail,sideEffects=None,groups=privateapps.dev,resources=privateapps,verbs=create;update,versions=v1alpha1,name=vprivateapp.privateapps.dev,admissionReviewVersions=v1

// PrivateAppWebhook sets who installed an app and refuses what the
// controller would not honour.
type PrivateAppWebhook struct {
	// Reader lists a namespace's apps for the cap.
	Reader client.Reader
	// MaxAppsPerNamespace is the cap.
	MaxAppsPerNamespace int
	// Catalogs, when any APICatalog exists, say which scopes apps may ask
	// for.
	Catalogs Catalogs
}

// Catalogs gives the API catalogs in force (a catalogfeed.Feed).
type Catalogs interface {
	Current() *catalog.Set
	Wait(ctx context.Context) bool
}

// SetupWithManager registers both webhooks of PrivateApp.
func (w *PrivateAppWebhook) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewWebhookManagedBy(mgr, &v1alpha1.PrivateApp{}).WithDefaulter(w).WithValidator(w).Complete()
}

// Default records the requesting user: as the app's installer when it is
// created, and as who changed it when an update changes its spec (for the
// activity log). A value the user supplied is overwritten.
func (w *PrivateAppWebhook) Default(ctx context.Context, app *v1alpha1.PrivateApp) error {
	req, err := admission.RequestFromContext(ctx)
	if err != nil {
		return err
	}
	if app.Annotations == nil {
		app.Annotations = map[string]string{}
	}
	switch req.Operation {
	case admissionv1.Create:
		app.Annotations[v1alpha1.InstalledByAnnotation] = req.UserInfo.Username
	case admissionv1.Update:
		old := &v1alpha1.PrivateApp{}
		if err := json.Unmarshal(req.OldObject.Raw, old); err != nil {
			return fmt.Errorf("reading the app as it was: %w", err)
		}
		if !equality.Semantic.DeepEqual(old.Spec, app.Spec) {
			app.Annotations[v1alpha1.ChangedByAnnotation] = req.UserInfo.Username
		}
	}
	return nil
}

// ValidateCreate refuses an app past the namespace cap and scopes no
// APICatalog offers.
func (w *PrivateAppWebhook) ValidateCreate(ctx context.Context, app *v1alpha1.PrivateApp) (admission.Warnings, error) {
	errs := w.validateScopes(ctx, nil, app)
	var apps v1alpha1.PrivateAppList
	if err := w.Reader.List(ctx, &apps, client.InNamespace(app.Namespace)); err != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("listing the apps of namespace %q: %w", app.Namespace, err))
	}
	count := 0
	for _, a := range apps.Items {
		if a.DeletionTimestamp.IsZero() {
			count++
		}
	}
	if count >= w.MaxAppsPerNamespace {
		errs = append(errs, field.Forbidden(field.NewPath("metadata", "namespace"), fmt.Sprintf(
			"namespace %q already has %d private apps and the limit is %d; delete an app or ask the cluster admin to raise the limit",
			app.Namespace, count, w.MaxAppsPerNamespace)))
	}
	return nil, invalid(app.Name, errs)
}

// ValidateUpdate keeps who installed the app, and checks the scopes an edit
// adds. A scope the app already holds is never refused, so narrowing a
// catalog cannot block suspending, editing or deleting an app.
func (w *PrivateAppWebhook) ValidateUpdate(ctx context.Context, oldApp, app *v1alpha1.PrivateApp) (admission.Warnings, error) {
	errs := w.validateScopes(ctx, oldApp, app)
	if oldApp.Annotations[v1alpha1.InstalledByAnnotation] != app.Annotations[v1alpha1.InstalledByAnnotation] {
		errs = append(errs, field.Forbidden(field.NewPath("metadata", "annotations").Key(v1alpha1.InstalledByAnnotation),
			"who installed the app is recorded at creation and cannot be changed"))
	}
	if oldApp.Annotations[v1alpha1.ChangedByAnnotation] != app.Annotations[v1alpha1.ChangedByAnnotation] &&
		equality.Semantic.DeepEqual(oldApp.Spec, app.Spec) {
		errs = append(errs, field.Forbidden(field.NewPath("metadata", "annotations").Key(v1alpha1.ChangedByAnnotation),
			"who last changed the app is recorded when its spec changes and cannot be set otherwise"))
	}
	if oldApp.Spec.SecretName != app.Spec.SecretName {
		errs = append(errs, field.Forbidden(field.NewPath("spec", "secretName"),
			"secretName is immutable: delete and re-create the app to move its token"))
	}
	return nil, invalid(app.Name, errs)
}

// ValidateDelete allows every delete.
func (w *PrivateAppWebhook) ValidateDelete(context.Context, *v1alpha1.PrivateApp) (admission.Warnings, error) {
	return nil, nil
}

// validateScopes refuses the scopes app adds to oldApp (all of them on
// create) that no APICatalog in force offers, naming the three closest.
func (w *PrivateAppWebhook) validateScopes(ctx context.Context, oldApp, app *v1alpha1.PrivateApp) field.ErrorList {
	if w.Catalogs == nil || !w.Catalogs.Wait(ctx) {
		return nil
	}
	set := w.Catalogs.Current()
	if !set.Enabled() {
		return nil
	}
	var errs field.ErrorList
	for i, s := range app.Spec.Scopes {
		if set.Offers(s) || oldApp != nil && slices.Contains(oldApp.Spec.Scopes, s) {
			continue
		}
		hint := "no APICatalog in force offers any scope"
		if offered := set.OfferedScopes(); len(offered) > 0 {
			hint = "the closest offered scopes are " + strings.Join(closest(s, offered, 3), ", ")
		}
		errs = append(errs, field.Invalid(field.NewPath("spec", "scopes").Index(i), s, fmt.Sprintf(
			"no APICatalog offers this scope; %s (kubectl get apicatalogs -o yaml lists them all)", hint)))
	}
	return errs
}

func invalid(name string, errs field.ErrorList) error {
	if len(errs) == 0 {
		return nil
	}
	return apierrors.NewInvalid(v1alpha1.GroupVersion.WithKind("PrivateApp").GroupKind(), name, errs)
}

// closest returns the n catalog scopes nearest to s by edit distance.
func closest(s string, catalog []string, n int) []string {
	sorted := slices.Clone(catalog)
	sort.SliceStable(sorted, func(i, j int) bool { return distance(s, sorted[i]) < distance(s, sorted[j]) })
	return sorted[:min(n, len(sorted))]
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
