package webhook

import (
	"context"
	"fmt"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/catalog"
	"github.com/privateapps-dev/privateapp-operator/internal/catalogfeed"
)

// +kubebuilder:webhook:path=/validate-privateapps-dev-v1alpha1-apicatalog,mutating=false,failurePolicy=fail,sideEffects=None,groups=privateapps.dev,resources=apicatalogs,verbs=create;update;delete,versions=v1alpha1,name=vapicatalog.privateapps.dev,admissionReviewVersions=v1

// APICatalogWebhook refuses a catalog the token service would not put in
// force: a path template that does not parse, a route that names a scope
// the catalog does not offer, routes that conflict with each other or with
// another catalog's. It warns when a change stops offering scopes that apps
// hold.
type APICatalogWebhook struct {
	// Reader lists catalogs and apps from the API server.
	Reader client.Reader
}

// SetupWithManager registers the webhook.
func (w *APICatalogWebhook) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewWebhookManagedBy(mgr, &v1alpha1.APICatalog{}).WithValidator(w).Complete()
}

// ValidateCreate checks a new catalog.
func (w *APICatalogWebhook) ValidateCreate(ctx context.Context, c *v1alpha1.APICatalog) (admission.Warnings, error) {
	return w.validate(ctx, nil, c)
}

// ValidateUpdate checks an edited catalog.
func (w *APICatalogWebhook) ValidateUpdate(ctx context.Context, old, c *v1alpha1.APICatalog) (admission.Warnings, error) {
	return w.validate(ctx, old, c)
}

// ValidateDelete allows every delete, and warns about apps that hold scopes
// only this catalog offered.
func (w *APICatalogWebhook) ValidateDelete(ctx context.Context, c *v1alpha1.APICatalog) (admission.Warnings, error) {
	var list v1alpha1.APICatalogList
	if err := w.Reader.List(ctx, &list); err != nil {
		return nil, nil
	}
	others := slices.DeleteFunc(list.Items, func(o v1alpha1.APICatalog) bool { return o.Name == c.Name })
	set, _ := catalogfeed.Compile(others)
	if !set.Enabled() {
		return nil, nil // no catalog is left: every scope may be asked for
	}
	return w.unofferedWarnings(ctx, c, scopeNames(c), set), nil
}

func (w *APICatalogWebhook) validate(ctx context.Context, old, c *v1alpha1.APICatalog) (admission.Warnings, error) {
	var list v1alpha1.APICatalogList
	if err := w.Reader.List(ctx, &list); err != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("listing APICatalogs: %w", err))
	}
	res, set := catalogfeed.Check(list.Items, c)
	var errs field.ErrorList
	for _, p := range res.Problems {
		errs = append(errs, field.Invalid(field.NewPath(p.Field), field.OmitValueType{}, p.Message))
	}
	for _, cf := range res.Conflicts {
		errs = append(errs, field.Forbidden(field.NewPath("spec", "routes").Key(cf.Route), cf.Message))
	}
	if len(errs) > 0 {
		return nil, apierrors.NewInvalid(v1alpha1.GroupVersion.WithKind("APICatalog").GroupKind(), c.Name, errs)
	}
	var dropped []string
	if old != nil {
		now := scopeNames(c)
		for _, s := range scopeNames(old) {
			if !slices.Contains(now, s) {
				dropped = append(dropped, s)
			}
		}
	}
	return w.unofferedWarnings(ctx, c, dropped, set), nil
}

// unofferedWarnings names the apps that hold one of scopes where set no
// longer offers it.
func (w *APICatalogWebhook) unofferedWarnings(ctx context.Context, c *v1alpha1.APICatalog, scopes []string, set *catalog.Set) admission.Warnings {
	var gone []string
	for _, s := range scopes {
		if !set.Offers(s) {
			gone = append(gone, s)
		}
	}
	if len(gone) == 0 {
		return nil
	}
	var apps v1alpha1.PrivateAppList
	if err := w.Reader.List(ctx, &apps); err != nil {
		return admission.Warnings{fmt.Sprintf("could not list the apps that may hold %s: %v", strings.Join(gone, ", "), err)}
	}
	var holders []string
	for _, a := range apps.Items {
		for _, s := range a.Spec.Scopes {
			if slices.Contains(gone, s) {
				holders = append(holders, fmt.Sprintf("%s/%s (%s)", a.Namespace, a.Name, s))
			}
		}
	}
	if len(holders) == 0 {
		return nil
	}
	more := ""
	if len(holders) > 10 {
		more = fmt.Sprintf(" and %d more", len(holders)-10)
		holders = holders[:10]
	}
	return admission.Warnings{fmt.Sprintf(
		"after this change of APICatalog %s no catalog offers scopes that apps hold: %s%s; the token service stops granting them "+
			"and those apps show the condition ScopesOffered=False", c.Name, strings.Join(holders, ", "), more)}
}

func scopeNames(c *v1alpha1.APICatalog) []string {
	out := make([]string, len(c.Spec.Scopes))
	for i, s := range c.Spec.Scopes {
		out[i] = s.Name
	}
	return out
}
