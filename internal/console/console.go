// Package console is the web console of kubectl privateapp ui: HubSpot's
// private-apps and connected-apps pages, served on loopback to one user's
// browser. It reads and writes what the plugin reads and writes (PrivateApps,
// TokenRotations, AppNotifications, the app Secrets and the insights API)
// with that user's own client, so RBAC and the audit log see the person;
// it decides nothing itself.
//
// It holds the user's cluster credentials, so it admits only its own Host
// names (DNS rebinding), only a browser that opened the one-time login link
// (an HttpOnly, SameSite=Strict session cookie), and only same-origin state
// changes (every change is a POST behind http.CrossOriginProtection). Pages
// run no inline script and may not be framed.
package console

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// CookiePrefix begins the session cookie's name; each console adds a
// random part, since a browser sends the cookies of 127.0.0.1 to every
// port: two consoles (two kubeconfigs, two namespaces) in one browser keep
// their own sessions.
const CookiePrefix = "privateapp-console-"

// contentSecurityPolicy: scripts and styles only from the console itself,
// no inline script, no framing, forms post only to the console. Logos are
// the one thing from elsewhere: https images.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// WhoAmI is the user's name as the API server knows it ("" when it does
// not say); "my apps" are the apps it installed.
type WhoAmI func(ctx context.Context) string

// Access reports whether the user may do verb on resource (of group) in
// namespace, on the object name ("" for any, or a create); the console
// shows what they may not do as disabled.
type Access func(ctx context.Context, namespace, group, resource, verb, name string) bool

// Options configure a console.
type Options struct {
	// Client acts as the user.
	Client client.Client
	// Namespace is the one the console opens in (the kubeconfig's).
	Namespace string
	// Hosts are the host:port values the browser may use to reach the
	// console (127.0.0.1:PORT, localhost:PORT, ...); any other Host header
	// is refused.
	Hosts []string
	// Access answers what the user may do; SelfSubjectAccessReviews when nil.
	Access Access
	// WhoAmI names the user; a SelfSubjectReview when nil.
	WhoAmI WhoAmI
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Log gets one line per failed request to the cluster (never a token).
	Log *log.Logger
}

// Console is the web console's handler.
type Console struct {
	c         client.Client
	namespace string
	hosts     map[string]bool
	access    Access
	whoAmI    WhoAmI
	now       func() time.Time
	log       *log.Logger
	pages     map[string]*template.Template
	handler   http.Handler

	mu          sync.Mutex
	loginSecret string // "" once used
	usedSecret  string
	session     string
	cookie      string
}

// New makes a console and its one-time login secret.
func New(o Options) (*Console, error) {
	if o.Client == nil || o.Namespace == "" || len(o.Hosts) == 0 {
		return nil, errors.New("console: a client, a namespace and the allowed hosts are required")
	}
	c := &Console{c: o.Client, namespace: o.Namespace, hosts: map[string]bool{}, access: o.Access, now: o.Now, log: o.Log,
		loginSecret: randomString(), session: randomString(), cookie: CookiePrefix + randomString()[:8]}
	for _, h := range o.Hosts {
		c.hosts[strings.ToLower(h)] = true
	}
	if c.access == nil {
		c.access = c.selfSubjectAccess
	}
	if c.whoAmI = o.WhoAmI; c.whoAmI == nil {
		c.whoAmI = c.selfSubjectReview
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = log.New(discard{}, "", 0)
	}
	var err error
	if c.pages, err = parsePages(); err != nil {
		return nil, err
	}
	c.handler = c.routes()
	return c, nil
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func randomString() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// LoginPath is the path of the one-time link that opens the console: it
// works once, and sets the session cookie.
func (c *Console) LoginPath() string { return "/login?secret=" + c.loginSecret }

// ServeHTTP checks the Host, sets the headers every answer carries, and
// then lets only the logged-in browser in.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	if !c.hosts[strings.ToLower(r.Host)] {
		// Another name that resolves to loopback (DNS rebinding) gets
		// nothing, not even the login page.
		http.Error(w, "this console answers only on the address kubectl privateapp ui printed", http.StatusMisdirectedRequest)
		return
	}
	c.handler.ServeHTTP(w, r)
}

// login exchanges the one-time secret for the session cookie.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	given := r.URL.Query().Get("secret")
	c.mu.Lock()
	ok := c.loginSecret != "" && subtle.ConstantTimeCompare([]byte(given), []byte(c.loginSecret)) == 1
	again := c.usedSecret != "" && subtle.ConstantTimeCompare([]byte(given), []byte(c.usedSecret)) == 1
	if ok {
		c.loginSecret, c.usedSecret = "", c.loginSecret
	}
	c.mu.Unlock()
	if again {
		// Someone has the link: a second tab of the user, or not.
		c.log.Printf("the sign-in link was used again after it signed a browser in; if that was not you, stop the console (Ctrl-C) now")
	}
	if !ok {
		w.Header().Set("Cache-Control", "no-store")
		c.renderCode(w, http.StatusForbidden, "message", page{Title: "Sign-in link not valid", Message: "This sign-in link is not valid or was used already: " +
			"each link works once. Stop kubectl privateapp ui and start it again for a new link."})
		return
	}
	// Not Secure: the console speaks plain HTTP on loopback, where no one
	// else sees the traffic.
	http.SetCookie(w, &http.Cookie{Name: c.cookie, Value: c.session, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode}) //nolint:gosec // see above
	// The redirect takes the secret out of the address bar and history.
	seeOther(w, r, "/")
}

// signedIn lets a request through only with the session cookie.
func (c *Console) signedIn(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ck, err := r.Cookie(c.cookie)
		if err != nil || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(c.session)) != 1 {
			w.Header().Set("Cache-Control", "no-store")
			c.renderCode(w, http.StatusUnauthorized, "message", page{Title: "Not signed in", Message: "Open the link kubectl privateapp ui printed in this browser. " +
				"Each link works once; start kubectl privateapp ui again for a new one."})
			return
		}
		// Pages show cluster data: the browser keeps none of it.
		w.Header().Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

func (c *Console) routes() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	mux.HandleFunc("GET /login", c.login)

	app := http.NewServeMux()
	app.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		seeOther(w, r, "/n/"+c.namespace+"/")
	})
	app.HandleFunc("GET /namespace", c.switchNamespace)
	app.HandleFunc("GET /n/{ns}/{$}", c.home)
	app.HandleFunc("GET /n/{ns}/apps", c.appList)
	app.HandleFunc("GET /n/{ns}/new-app", c.newApp)
	app.HandleFunc("POST /n/{ns}/apps", c.createApp)
	app.HandleFunc("GET /n/{ns}/apps/{name}", c.appPage)
	app.HandleFunc("POST /n/{ns}/apps/{name}/token", c.showToken)
	app.HandleFunc("GET /n/{ns}/apps/{name}/rotate", c.rotateDialog)
	app.HandleFunc("POST /n/{ns}/apps/{name}/rotate", c.rotate)
	app.HandleFunc("POST /n/{ns}/apps/{name}/rotation/{action}", c.rotationAction)
	app.HandleFunc("POST /n/{ns}/apps/{name}/connection", c.setConnection)
	app.HandleFunc("GET /n/{ns}/apps/{name}/edit", c.editApp)
	app.HandleFunc("POST /n/{ns}/apps/{name}/edit", c.saveApp)
	app.HandleFunc("GET /n/{ns}/apps/{name}/logs", c.appLogs)
	app.HandleFunc("GET /n/{ns}/apps/{name}/delete", c.deleteDialog)
	app.HandleFunc("POST /n/{ns}/apps/{name}/delete", c.deleteApp)
	app.HandleFunc("GET /n/{ns}/insights", c.connectionInsights)
	app.HandleFunc("GET /n/{ns}/notifications", c.notifications)
	app.HandleFunc("GET /n/{ns}/new-notification", c.wizard)
	app.HandleFunc("POST /n/{ns}/new-notification", c.wizard)
	app.HandleFunc("GET /n/{ns}/notifications/{name}", c.notification)
	app.HandleFunc("POST /n/{ns}/notifications/{name}", c.notification)
	app.HandleFunc("POST /n/{ns}/notifications/{name}/delete", c.deleteNotification)
	mux.Handle("/", c.signedIn(app))

	// Every state change is a POST; a POST from another origin (another
	// site, or a page of another local server) is refused before it
	// reaches a handler.
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		c.renderCode(w, http.StatusForbidden, "message", page{Title: "Refused", Message: "A request from another site or origin tried to change something here; it was refused."})
	}))
	return cop.Handler(mux)
}

// selfSubjectAccess asks the API server, as the user.
func (c *Console) selfSubjectAccess(ctx context.Context, namespace, group, resource, verb, name string) bool {
	r := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: namespace, Group: group, Resource: resource, Verb: verb, Name: name}}}
	if err := c.c.Create(ctx, r); err != nil {
		// Unknown: let the user try, and show the API server's answer.
		return true
	}
	return r.Status.Allowed
}

// selfSubjectReview asks the API server who the user is.
func (c *Console) selfSubjectReview(ctx context.Context) string {
	r := &authenticationv1.SelfSubjectReview{}
	if err := c.c.Create(ctx, r); err != nil {
		return ""
	}
	return r.Status.UserInfo.Username
}

// Serve serves the console on l until ctx ends.
func (c *Console) Serve(ctx context.Context, l net.Listener) error {
	srv := &http.Server{Handler: c, ReadHeaderTimeout: 10 * time.Second, ErrorLog: c.log}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving the console: %w", err)
	}
	return nil
}
