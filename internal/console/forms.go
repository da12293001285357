package console

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
)

// scopePattern is what the PrivateApp API accepts as a scope.
var scopePattern = regexp.MustCompile(`^[a-z][a-z0-9-]*(\.[a-z][a-z0-9-]*)*\.(read|write)$`)

// appForm is the create and edit form: basic info and the scope picker.
type appForm struct {
	Editing bool
	// Generation is the spec's generation the form was drawn from: a
	// save refuses when the app changed meanwhile.
	Generation                              int64
	Name, DisplayName, Description, LogoURL string
	// Areas are the catalogs' scopes, grouped; Other are scopes the app
	// holds that no catalog offers, and the free-text scopes field.
	Areas      []area
	Other      string
	CatalogErr string
	Errors     map[string]string
}

// area is one part of the API with its read and write scopes (an area a
// catalog names may hold several of each).
type area struct {
	Name        string
	Read, Write []*pick
}

type pick struct {
	Scope, Description string
	Checked            bool
}

func (c *Console) catalogs(ctx context.Context) ([]v1alpha1.APICatalog, error) {
	var l v1alpha1.APICatalogList
	if err := c.c.List(ctx, &l); err != nil {
		return nil, err
	}
	slices.SortFunc(l.Items, func(a, b v1alpha1.APICatalog) int { return cmp.Compare(a.Name, b.Name) })
	return l.Items, nil
}

func catalogError(err error) string {
	if apierrors.IsForbidden(err) {
		return "Your user may not read the API catalogs, so the scopes they offer cannot be listed; type scopes instead. " +
			"A cluster admin can bind the privateapps-catalog-reader ClusterRole to you."
	}
	return "The API catalogs could not be read: " + err.Error()
}

// areaOf is a scope's area: the catalog's, or its name without .read/.write.
func areaOf(s v1alpha1.CatalogScope) string {
	if s.Area != "" {
		return s.Area
	}
	return strings.TrimSuffix(strings.TrimSuffix(s.Name, ".read"), ".write")
}

// picker groups the catalogs' scopes into areas, with the app's checked.
func picker(catalogs []v1alpha1.APICatalog, have map[string]bool) ([]area, []string) {
	byArea := map[string]*area{}
	offered := map[string]bool{}
	for _, cat := range catalogs {
		for _, s := range cat.Spec.Scopes {
			if offered[s.Name] {
				continue
			}
			offered[s.Name] = true
			name := areaOf(s)
			a := byArea[name]
			if a == nil {
				a = &area{Name: name}
				byArea[name] = a
			}
			p := &pick{Scope: s.Name, Description: s.Description, Checked: have[s.Name]}
			if strings.HasSuffix(s.Name, ".write") {
				a.Write = append(a.Write, p)
			} else {
				a.Read = append(a.Read, p)
			}
		}
	}
	var areas []area
	for _, a := range byArea {
		areas = append(areas, *a)
	}
	slices.SortFunc(areas, func(a, b area) int { return cmp.Compare(a.Name, b.Name) })
	var other []string
	for s := range have {
		if !offered[s] {
			other = append(other, s)
		}
	}
	slices.Sort(other)
	return areas, other
}

func (c *Console) formFor(ctx context.Context, app *v1alpha1.PrivateApp, editing bool) appForm {
	f := appForm{Editing: editing, Errors: map[string]string{}}
	have := map[string]bool{}
	if app != nil {
		f.Name, f.DisplayName, f.Description, f.LogoURL = app.Name, app.Spec.DisplayName, app.Spec.Description, app.Spec.LogoURL
		f.Generation = app.Generation
		for _, s := range app.Spec.Scopes {
			have[s] = true
		}
	}
	catalogs, err := c.catalogs(ctx)
	if err != nil {
		f.CatalogErr = catalogError(err)
	}
	var other []string
	f.Areas, other = picker(catalogs, have)
	f.Other = strings.Join(other, " ")
	return f
}

// readForm reads the posted form into f and the app's spec fields, and
// says what is wrong with each field.
func (c *Console) readForm(r *http.Request, f *appForm) []string {
	if !f.Editing {
		f.Name = strings.TrimSpace(r.PostFormValue("name"))
	}
	f.DisplayName = strings.TrimSpace(r.PostFormValue("displayName"))
	f.Description = strings.TrimSpace(strings.ReplaceAll(r.PostFormValue("description"), "\r\n", "\n"))
	f.LogoURL = strings.TrimSpace(r.PostFormValue("logoURL"))
	f.Other = strings.TrimSpace(r.PostFormValue("other"))
	var scopes []string
	seen := map[string]bool{}
	add := func(s string) {
		if s != "" && !seen[s] {
			seen[s] = true
			scopes = append(scopes, s)
		}
	}
	for _, s := range r.PostForm["scope"] {
		add(s)
	}
	var bad []string
	for s := range strings.FieldsSeq(strings.ReplaceAll(f.Other, ",", " ")) {
		if !scopePattern.MatchString(s) {
			bad = append(bad, s)
		}
		add(s)
	}
	for _, a := range f.Areas {
		for _, p := range append(slices.Clone(a.Read), a.Write...) {
			p.Checked = seen[p.Scope]
		}
	}
	f.Errors = map[string]string{}
	if !f.Editing {
		if errs := validation.IsDNS1123Subdomain(f.Name); f.Name == "" || len(errs) > 0 {
			f.Errors["name"] = "The name is the app's Kubernetes name: lower-case letters, digits, '-' and '.', starting and ending with a letter or digit, e.g. billing-sync."
		}
	}
	switch {
	case f.DisplayName == "":
		f.Errors["displayName"] = "Give the name people see, e.g. Billing sync."
	case len(f.DisplayName) > 128 || strings.ContainsFunc(f.DisplayName, isControl):
		f.Errors["displayName"] = "The display name is one line of at most 128 characters."
	}
	if len(f.Description) > 1024 || strings.ContainsFunc(f.Description, func(r rune) bool { return isControl(r) && r != '\n' && r != '\t' }) {
		f.Errors["description"] = "The description is at most 1024 characters of text."
	}
	if f.LogoURL != "" {
		if u, err := url.Parse(f.LogoURL); err != nil || u.Scheme != "https" || u.Host == "" {
			f.Errors["logoURL"] = "The logo URL must be an https:// address, e.g. https://example.com/logo.png."
		}
	}
	if len(bad) > 0 {
		f.Errors["scopes"] = fmt.Sprintf("Not a scope: %s. A scope is read or write access to one area, e.g. crm.objects.contacts.read.", strings.Join(bad, ", "))
	} else if len(scopes) == 0 {
		f.Errors["scopes"] = "Pick at least one scope: the token grants only what the scopes say."
	} else if len(scopes) > 100 {
		f.Errors["scopes"] = "An app holds at most 100 scopes."
	}
	return scopes
}

func isControl(r rune) bool { return r < 0x20 || r >= 0x7f && r <= 0x9f }

func (c *Console) newApp(w http.ResponseWriter, r *http.Request) {
	ns, ok := c.ns(w, r)
	if !ok {
		return
	}
	c.render(w, r, "form", page{Title: "Create a private app", Namespace: ns, Menu: "apps",
		Kubectl: "kubectl apply -n " + ns + " -f app.yaml   # a PrivateApp", Data: c.formFor(r.Context(), nil, false)})
}

func (c *Console) createApp(w http.ResponseWriter, r *http.Request) {
	ns, ok := c.ns(w, r)
	if !ok {
		return
	}
	f := c.formFor(r.Context(), nil, false)
	scopes := c.readForm(r, &f)
	p := page{Title: "Create a private app", Namespace: ns, Menu: "apps", Data: f}
	if len(f.Errors) > 0 {
		c.badInput(w, r, "form", p)
		return
	}
	app := &v1alpha1.PrivateApp{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: f.Name},
		Spec: v1alpha1.PrivateAppSpec{DisplayName: f.DisplayName, Description: f.Description, LogoURL: f.LogoURL, Scopes: scopes}}
	if err := c.c.Create(r.Context(), app); err != nil {
		if apierrors.IsAlreadyExists(err) {
			f.Errors["name"] = fmt.Sprintf("An app named %s exists in %s already; pick another name.", f.Name, ns)
			p.Data = f
			c.badInput(w, r, "form", p)
			return
		}
		c.fail(w, r, ns, "create the app", err)
		return
	}
	seeOther(w, r, appURL(ns, app.Name, "created"))
}

func (c *Console) editApp(w http.ResponseWriter, r *http.Request) {
	app, ok := c.getApp(w, r)
	if !ok {
		return
	}
	c.render(w, r, "form", page{Title: "Edit " + displayName(app), Namespace: app.Namespace, Menu: "apps",
		Kubectl: fmt.Sprintf("kubectl edit privateapp -n %s %s", app.Namespace, app.Name), Data: c.formFor(r.Context(), app, true)})
}

func (c *Console) saveApp(w http.ResponseWriter, r *http.Request) {
	app, ok := c.getApp(w, r)
	if !ok {
		return
	}
	if !sameGeneration(r, app.Generation) {
		changedMeanwhile(c, w, app.Namespace, "The app", appURL(app.Namespace, app.Name, "")+"/edit")
		return
	}
	f := c.formFor(r.Context(), app, true)
	scopes := c.readForm(r, &f)
	if len(f.Errors) > 0 {
		c.badInput(w, r, "form", page{Title: "Edit " + displayName(app), Namespace: app.Namespace, Menu: "apps", Data: f})
		return
	}
	// A merge patch of the fields on the form, on the version read just
	// now, which has the generation the form was drawn from: an edit made
	// elsewhere since the form was opened is not overwritten.
	patch, _ := json.Marshal(map[string]any{
		"metadata": map[string]any{"resourceVersion": app.ResourceVersion},
		"spec": map[string]any{"displayName": f.DisplayName, "description": nullIfEmpty(f.Description),
			"logoURL": nullIfEmpty(f.LogoURL), "scopes": scopes},
	})
	if err := c.c.Patch(r.Context(), app, client.RawPatch(types.MergePatchType, patch)); err != nil {
		c.fail(w, r, app.Namespace, "save the app", err)
		return
	}
	seeOther(w, r, appURL(app.Namespace, app.Name, "saved"))
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// held lists the app's scopes with the routes each lets it call.
func held(scopes []string, catalogs []v1alpha1.APICatalog) []heldScope {
	var out []heldScope
	for _, s := range scopes {
		h := heldScope{Name: s}
		for _, cat := range catalogs {
			for _, cs := range cat.Spec.Scopes {
				if cs.Name == s {
					h.Offered = true
					if h.Description == "" {
						h.Description = cs.Description
					}
				}
			}
			for _, rt := range cat.Spec.Routes {
				if slices.Contains(rt.Scopes, s) {
					var methods []string
					for _, m := range rt.Methods {
						methods = append(methods, string(m))
					}
					h.Routes = append(h.Routes, scopeRoute{Catalog: cat.Name, Route: rt.Name, Methods: strings.Join(methods, " "), Path: rt.Path})
				}
			}
		}
		out = append(out, h)
	}
	return out
}

// rotation dialog

type rotateView struct {
	App *v1alpha1.PrivateApp
	// Rotation is the one in its grace period, if any.
	Rotation *v1alpha1.TokenRotation
	Error    string
	Grace    string
}

func (c *Console) graceRotation(ctx context.Context, app *v1alpha1.PrivateApp) (*v1alpha1.TokenRotation, error) {
	t := app.Status.Token
	if t == nil || t.Previous == nil || t.Previous.Rotation == "" {
		return nil, nil
	}
	r := &v1alpha1.TokenRotation{}
	if err := c.c.Get(ctx, client.ObjectKey{Namespace: app.Namespace, Name: t.Previous.Rotation}, r); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, err
	}
	return r, nil
}

func (c *Console) rotateDialog(w http.ResponseWriter, r *http.Request) {
	app, ok := c.getApp(w, r)
	if !ok {
		return
	}
	rot, err := c.graceRotation(r.Context(), app)
	if err != nil {
		c.fail(w, r, app.Namespace, "read the rotation in its grace period", err)
		return
	}
	c.render(w, r, "rotate", page{Title: "Rotate the token of " + displayName(app), Namespace: app.Namespace, Menu: "apps",
		Kubectl: fmt.Sprintf("kubectl privateapp -n %s rotate %s --later   # or --now", app.Namespace, app.Name),
		Data:    rotateView{App: app, Rotation: rot, Grace: "7"}})
}

// rotate creates a TokenRotation: Immediate ("rotate and expire now") or
// Delayed with the chosen grace in days.
func (c *Console) rotate(w http.ResponseWriter, r *http.Request) {
	app, ok := c.getApp(w, r)
	if !ok {
		return
	}
	v := rotateView{App: app, Grace: strings.TrimSpace(r.PostFormValue("grace"))}
	rot := &v1alpha1.TokenRotation{ObjectMeta: metav1.ObjectMeta{Namespace: app.Namespace, GenerateName: app.Name + "-"},
		Spec: v1alpha1.TokenRotationSpec{AppName: app.Name}}
	done := "rotated"
	switch r.PostFormValue("strategy") {
	case "now":
		rot.Spec.Strategy = v1alpha1.RotationImmediate
	case "later":
		rot.Spec.Strategy, done = v1alpha1.RotationDelayed, "rotating"
		var days int
		if _, err := fmt.Sscanf(v.Grace, "%d", &days); err != nil || days < 1 || days > 90 || fmt.Sprint(days) != v.Grace {
			v.Error = "The grace period is a whole number of days from 1 to 90 (7 is HubSpot's)."
			c.badInput(w, r, "rotate", page{Title: "Rotate the token of " + displayName(app), Namespace: app.Namespace, Menu: "apps", Data: v})
			return
		}
		rot.Spec.GracePeriod = &metav1.Duration{Duration: time.Duration(days) * 24 * time.Hour}
	default:
		v.Error = "Choose how to rotate: rotate and expire now, or rotate later."
		c.badInput(w, r, "rotate", page{Title: "Rotate the token of " + displayName(app), Namespace: app.Namespace, Menu: "apps", Data: v})
		return
	}
	if err := c.c.Create(r.Context(), rot); err != nil {
		c.fail(w, r, app.Namespace, "rotate the token", err)
		return
	}
	seeOther(w, r, appURL(app.Namespace, app.Name, done))
}

// rotationAction ends or cancels the grace period of the app's rotation.
func (c *Console) rotationAction(w http.ResponseWriter, r *http.Request) {
	app, ok := c.getApp(w, r)
	if !ok {
		return
	}
	field, done := "", ""
	switch r.PathValue("action") {
	case "expire-now":
		field, done = "expireOldTokenNow", "expired"
	case "cancel":
		field, done = "cancel", "cancelled"
	default:
		http.NotFound(w, r)
		return
	}
	rot, err := c.graceRotation(r.Context(), app)
	if err != nil {
		c.fail(w, r, app.Namespace, "read the rotation in its grace period", err)
		return
	}
	if rot == nil || rot.Name != r.PostFormValue("rotation") {
		c.renderCode(w, http.StatusConflict, "message", page{Title: "No grace period", Namespace: app.Namespace, Menu: "apps",
			Message: app.Name + " has no longer the rotation in its grace period that the page showed (it ended, or another rotation replaced it); nothing changed.",
			Fix:     "The app's page shows its tokens now."})
		return
	}
	p := client.RawPatch(types.MergePatchType, []byte(`{"spec":{"`+field+`":true}}`))
	if err := c.c.Patch(r.Context(), rot, p); err != nil {
		c.fail(w, r, app.Namespace, "change the rotation "+rot.Name, err)
		return
	}
	seeOther(w, r, appURL(app.Namespace, app.Name, done))
}

// sameGeneration reports whether the form was drawn from the object's
// current spec (its hidden generation field). Status writes do not change
// the generation, so only a change of the spec refuses a save.
func sameGeneration(r *http.Request, generation int64) bool {
	return r.PostFormValue("generation") == strconv.FormatInt(generation, 10)
}

// changedMeanwhile answers a form drawn from an older spec.
func changedMeanwhile(c *Console, w http.ResponseWriter, ns, what, again string) {
	c.renderCode(w, http.StatusConflict, "message", page{Title: "Changed meanwhile", Namespace: ns,
		Message: what + " changed since this form was opened (someone edited it elsewhere); your changes were not saved, so theirs stay.",
		Fix:     "Open the form again to see the current settings: " + again})
}
