package console

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// page is what the layout needs; Data is the page's own.
type page struct {
	Title     string
	Namespace string
	// Menu is the left-hand menu's current entry: home, apps, insights or
	// notifications.
	Menu string
	// Kubectl is the command that does what the page does.
	Kubectl string
	// Notice is a line about what just happened (from a redirect's "done").
	Notice string
	// Message and Fix are an error page's text and what to do about it.
	Message, Fix string
	Data         any
}

var funcs = template.FuncMap{
	"utc": func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
	"date": func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format(time.DateOnly)
	},
	"orDash": func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	},
	"join": strings.Join,
	"has":  slices.Contains[[]string],
	// logo is an https logo URL, or "" (no image) for anything else: the
	// API server admits only https, and the console never loads another
	// scheme.
	"logo": func(u string) string {
		if strings.HasPrefix(u, "https://") {
			return u
		}
		return ""
	},
}

// parsePages parses each page with the layout.
func parsePages() (map[string]*template.Template, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if base == "layout" || base == "parts" {
			continue
		}
		t, err := template.New(base).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/parts.html", n)
		if err != nil {
			return nil, fmt.Errorf("console: parsing %s: %w", n, err)
		}
		pages[base] = t
	}
	return pages, nil
}

// render writes a page with 200.
func (c *Console) render(w http.ResponseWriter, _ *http.Request, name string, p page) {
	c.renderCode(w, http.StatusOK, name, p)
}

// renderCode writes a page with code; a template that fails gives a plain
// 500, never a half-written page.
func (c *Console) renderCode(w http.ResponseWriter, code int, name string, p page) {
	t, ok := c.pages[name]
	if !ok {
		http.Error(w, "no such page: "+name, http.StatusInternalServerError)
		return
	}
	var b bytes.Buffer
	if err := t.ExecuteTemplate(&b, "layout", p); err != nil {
		c.log.Printf("rendering %s: %v", name, err)
		http.Error(w, "the page could not be drawn; the console's output says why", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(b.Bytes())
}

// fail shows what the API server said and what to do about it.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, ns, what string, err error) {
	p := page{Title: "Could not " + what, Namespace: ns, Message: fmt.Sprintf("Could not %s: %v", what, err)}
	code := http.StatusBadGateway
	var status apierrors.APIStatus
	switch {
	case apierrors.IsForbidden(err):
		code = http.StatusForbidden
		p.Fix = forbiddenFix(ns)
	case apierrors.IsNotFound(err):
		code = http.StatusNotFound
		p.Fix = fmt.Sprintf("It may have been deleted. The private apps of %s: kubectl privateapp -n %s", ns, ns)
	case apierrors.IsInvalid(err), apierrors.IsBadRequest(err), apierrors.IsConflict(err), apierrors.IsAlreadyExists(err):
		code = http.StatusUnprocessableEntity
		p.Fix = "Go back, change what the message names, and try again."
	case errors.As(err, &status):
		code = int(status.Status().Code)
		if code < 400 || code > 599 {
			code = http.StatusBadGateway
		}
	}
	if code == http.StatusBadGateway {
		c.log.Printf("%s %s: %s: %v", r.Method, r.URL.Path, what, err)
	}
	c.renderCode(w, code, "message", p)
}

// forbiddenFix names the binding to ask for. The built-in roles include
// the operator's: edit can create, rotate and delete apps, view can read.
func forbiddenFix(ns string) string {
	return fmt.Sprintf("Your Kubernetes user may not do this in namespace %s. Ask a cluster admin for a binding, e.g. "+
		"kubectl create rolebinding privateapps-YOU -n %s --clusterrole=edit --user=YOU (view reads only; admin also manages notifications).", ns, ns)
}

// badInput answers a form that cannot be used, saying what to change.
func (c *Console) badInput(w http.ResponseWriter, r *http.Request, name string, p page) {
	c.renderCode(w, http.StatusUnprocessableEntity, name, p)
}

// seeOther redirects to a path of the console's own: every caller builds
// it from checked names (a namespace is a DNS label, an app's name is the
// API server's), and a path that could leave the console is refused.
func seeOther(w http.ResponseWriter, r *http.Request, path string) {
	if !strings.HasPrefix(path, "/") || strings.HasPrefix(path, "//") || strings.HasPrefix(path, "/\\") {
		http.Error(w, "refusing to redirect off the console", http.StatusInternalServerError)
		return
	}
	http.Redirect(w, r, path, http.StatusSeeOther) //nolint:gosec // a path of the console's own, checked above
}
