package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/test/framework"
)

// consoleProcess is a running kubectl privateapp ui and its sign-in link.
type consoleProcess struct {
	base, link string
}

// startConsole runs the built plugin's ui with args and reads the link it
// prints.
func startConsole(t *testing.T, ctx context.Context, plugin string, args ...string) consoleProcess {
	t.Helper()
	port := strings.TrimPrefix(freeAddress(t), "127.0.0.1:")
	cmd := exec.Command(plugin, append(args, "ui", "--no-browser", "--port", port)...)
	out, err := cmd.StdoutPipe()
	must(t, err)
	cmd.Stderr = os.Stderr
	must(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := regexp.MustCompile(`http://\S+/login\?secret=\S+`).FindString(sc.Text()); m != "" {
				found <- m
			}
		}
	}()
	select {
	case link := <-found:
		return consoleProcess{base: "http://127.0.0.1:" + port, link: link}
	case <-ctx.Done():
		t.Fatal("kubectl privateapp ui printed no sign-in link")
	case <-time.After(30 * time.Second):
		t.Fatal("kubectl privateapp ui printed no sign-in link in 30 s")
	}
	return consoleProcess{}
}

// TestWebConsole drives Debian's Chromium, headless, through the console
// of the built plugin against a real API server, the manager (controllers,
// token service, call log, insights API) and nginx: create an app with two
// scopes picked through the search, show and copy its token and use it,
// rotate later then expire now, rotate later then cancel, filter the Logs
// tab, create a notification through the wizard, delete with a wrong name
// then the right one, a POST from another origin, and a user bound to one
// namespace. The token appears in no page but the show-token answer. With
// CONSOLE_SCREENSHOTS=dir it saves screenshots of the main pages there
// (make console-screenshots: docs/images/console).
func TestWebConsole(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("this test drives a real Chromium: install Debian's chromium (hack/test-deps.sh does)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s := startCallLogStack(t, ctx, "/v1/check", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			w.WriteHeader(http.StatusCreated)
		}
	}))
	root := repoRoot(t)
	plugin := commands(t).Path(framework.Plugin)
	s.kubectl("apply", "-f", filepath.Join(root, "config", "samples", "privateapps_v1alpha1_apicatalog.yaml"))
	_, other := createReadyApp(t, ctx, s.c, "default", "reporting", "crm.objects.contacts.read")
	waitUntil(t, ctx, "the catalog is in force", func() bool { return s.call(http.MethodGet, other, "/crm/v3/objects/contacts/1", nil) == 200 })
	shots := os.Getenv("CONSOLE_SCREENSHOTS")

	con := startConsole(t, ctx, plugin, "--kubeconfig", s.adminKubeconfig, "-n", "default")
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox,
		chromedp.Flag("disable-background-networking", true), chromedp.WindowSize(1280, 1000))
	actx, stopAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer stopAlloc()
	bctx, stopBrowser := chromedp.NewContext(actx)
	defer stopBrowser()

	// pages keeps every page the browser showed but the token's.
	var pages []string
	run := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(bctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	html := func() string {
		t.Helper()
		h := browserValue(t, bctx, "reading the page", chromedp.OuterHTML(chromedp.CSS("html")))
		pages = append(pages, h)
		return h
	}
	shot := func(name string) {
		t.Helper()
		if shots == "" {
			return
		}
		png := browserValue(t, bctx, "a screenshot", chromedp.CaptureScreenshot())
		must(t, os.MkdirAll(shots, 0o755))
		must(t, os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644))
	}
	open := func(path string) string {
		t.Helper()
		run("opening "+path, chromedp.Navigate(con.base+path), chromedp.WaitVisible(chromedp.CSS("h1")))
		return html()
	}
	// submit clicks a form's button and waits until the page it leads to
	// has loaded (the page before may have the same elements).
	submit := func(button string) {
		t.Helper()
		browserValue(t, bctx, "marking the page", chromedp.Evaluate[bool](`window.consoleTestOld = true`))
		run("clicking "+button, chromedp.Click(chromedp.CSS(button)))
		waitUntil(t, ctx, "the page after "+button+" has loaded", func() bool {
			v, err := chromedp.Run(bctx, chromedp.Evaluate[bool](`window.consoleTestOld !== true && document.readyState === "complete"`))
			return err == nil && v
		})
	}
	// until reloads path until the page contains want.
	until := func(path, want string) string {
		t.Helper()
		var h string
		waitUntil(t, ctx, path+" shows "+want, func() bool {
			h = open(path)
			return strings.Contains(h, want)
		})
		return h
	}

	// Sign in: the link lands on the connected-apps page.
	run("signing in", chromedp.Navigate(con.link), chromedp.WaitVisible(chromedp.CSS("h1")))
	if h := html(); !strings.Contains(h, "Needs attention") || !strings.Contains(h, "reporting") {
		t.Fatalf("after sign-in the home page lacks what it shows:\n%s", h)
	}

	// Create an app with two scopes picked through the search.
	open("/n/default/new-app")
	run("filling in the new app",
		chromedp.SendKeys(chromedp.CSS("#name"), "invoices"),
		chromedp.SendKeys(chromedp.CSS("#displayName"), "Invoice sync"),
		chromedp.SendKeys(chromedp.CSS("#description"), "Pushes invoices from billing."),
		chromedp.SendKeys(chromedp.CSS("#scope-search"), "contacts"))
	dealsHidden := browserValue(t, bctx, "searching the scopes", chromedp.Evaluate[bool](`document.querySelector('tr[data-search^="CRM / Deals"]').hidden`))
	contactsHidden := browserValue(t, bctx, "searching the scopes", chromedp.Evaluate[bool](`document.querySelector('tr[data-search^="CRM / Contacts"]').hidden`))
	if !dealsHidden || contactsHidden {
		t.Errorf("searching the scopes for contacts: deals hidden %v, contacts hidden %v", dealsHidden, contactsHidden)
	}
	shot("create-app")
	run("picking contacts read, then invoices write",
		chromedp.Click(chromedp.CSS(`input[value="crm.objects.contacts.read"]`)),
		setField("#scope-search", ""),
		chromedp.SendKeys(chromedp.CSS("#scope-search"), "invoices"),
		chromedp.Click(chromedp.CSS(`input[value="crm.objects.invoices.write"]`)),
		chromedp.Click(chromedp.CSS(`form button.primary`)),
		chromedp.WaitVisible(chromedp.CSS(".notice")))
	app := &v1alpha1.PrivateApp{}
	must(t, s.c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "invoices"}, app))
	if strings.Join(app.Spec.Scopes, ",") != "crm.objects.contacts.read,crm.objects.invoices.write" || app.Spec.DisplayName != "Invoice sync" {
		t.Fatalf("the app the console made: %+v", app.Spec)
	}
	until("/n/default/apps/invoices", "status-Connected")

	// Show the token, copy it, and use it.
	for _, name := range []string{"clipboard-read", "clipboard-write"} {
		if _, err := chromedp.CallBrowser(bctx, browser.SetPermission, browser.SetPermissionParams{
			Permission: &browser.PermissionDescriptor{Name: name}, Setting: browser.PermissionSettingGranted, Origin: con.base}); err != nil {
			t.Fatalf("granting %s: %v", name, err)
		}
	}
	run("showing the token",
		chromedp.Click(chromedp.CSS(`form[action$="/token"] button`)),
		chromedp.WaitVisible(chromedp.CSS("#token-value")))
	tok := browserValue(t, bctx, "reading the token", chromedp.Value(chromedp.CSS("#token-value")))
	run("copying the token", chromedp.Click(chromedp.CSS("#copy-token")), chromedp.Sleep(300*time.Millisecond))
	status := browserValue(t, bctx, "reading the copy status", chromedp.Text(chromedp.CSS("#copy-status")))
	copied := browserValue(t, bctx, "reading the clipboard", chromedp.Evaluate[string](`navigator.clipboard.readText()`, chromedp.EvalAwaitPromise))
	if tok == "" || tok != appToken(t, ctx, s.c, app) {
		t.Fatal("the show-token page does not hold the app's token")
	}
	if copied != tok || status != "Copied." {
		t.Errorf("Copy: the clipboard holds the token %v, the page says %q", copied == tok, status)
	}
	tokens := []string{tok, other}
	if code := s.call(http.MethodGet, tok, "/crm/v3/objects/contacts/1", nil); code != 200 {
		t.Fatalf("the token shown, in a check through nginx: %d", code)
	}

	// Rotate later, then expire the old token now.
	rotate := func() {
		t.Helper()
		open("/n/default/apps/invoices/rotate")
		shot("rotate")
		run("rotating later", setField("#grace", "7"),
			chromedp.Click(chromedp.CSS(`input[value="later"]`)), chromedp.Click(chromedp.CSS(`form button.primary`)),
			chromedp.WaitVisible(chromedp.CSS(".notice")))
		until("/n/default/apps/invoices", "is in its grace period")
		must(t, s.c.Get(ctx, client.ObjectKeyFromObject(app), app))
		tokens = append(tokens, appToken(t, ctx, s.c, app))
	}
	rotate()
	shot("app")
	old := tok
	tok = appToken(t, ctx, s.c, app)
	if s.call(http.MethodGet, old, "/crm/v3/objects/contacts/1", nil) != 200 || s.call(http.MethodGet, tok, "/crm/v3/objects/contacts/1", nil) != 200 {
		t.Fatal("during the grace period both tokens work")
	}
	run("expiring the old token now", chromedp.Click(chromedp.CSS(`form[action$="/rotation/expire-now"] button`)),
		chromedp.WaitVisible(chromedp.CSS(".notice")))
	if h := html(); !strings.Contains(h, "The old token no longer works.") {
		t.Errorf("after Expire old token now the page does not say so")
	}
	waitUntil(t, ctx, "the old token is refused", func() bool { return s.call(http.MethodGet, old, "/crm/v3/objects/contacts/1", nil) == 401 })

	// Rotate later, then cancel: the token before the rotation is the
	// app's again, the new one is refused.
	before := tok
	rotate()
	newTok := appToken(t, ctx, s.c, app)
	run("cancelling the rotation", chromedp.Click(chromedp.CSS(`form[action$="/rotation/cancel"] button`)),
		chromedp.WaitVisible(chromedp.CSS(".notice")))
	waitUntil(t, ctx, "the new token is refused and the one before works", func() bool {
		return s.call(http.MethodGet, newTok, "/crm/v3/objects/contacts/1", nil) == 401 &&
			s.call(http.MethodGet, before, "/crm/v3/objects/contacts/1", nil) == 200
	})
	tok = before

	// The Logs tab: refused calls (a scope the app lacks), then a URL.
	for range 3 {
		if code := s.call(http.MethodGet, tok, "/crm/v3/objects/deals/9", nil); code != 403 {
			t.Fatalf("GET deals without the scope: %d", code)
		}
	}
	until("/n/default/apps/invoices/logs", "/crm/v3/objects/deals/9")
	run("filtering to 4xx", setField(`select[name="response"]`, "4xx"))
	submit(`.filters button`)
	codes := browserValue(t, bctx, "reading the codes", chromedp.Evaluate[[]string](`[...document.querySelectorAll('table.calls tbody tr td:nth-child(3)')].map(td => td.textContent)`))
	if len(codes) < 3 {
		t.Errorf("the 4xx filter shows %d calls, want the 3 refused", len(codes))
	}
	for _, c := range codes {
		if !strings.HasPrefix(c, "4") {
			t.Errorf("the 4xx filter shows a %s", c)
		}
	}
	shot("logs")
	html()
	run("searching by URL", setField(`select[name="response"]`, ""),
		chromedp.SendKeys(chromedp.CSS(`input[name="url"]`), "contacts/1"))
	submit(`.filters button`)
	urls := browserValue(t, bctx, "reading the URLs", chromedp.Evaluate[[]string](`[...document.querySelectorAll('table.calls tbody tr td.url')].map(td => td.textContent)`))
	if len(urls) == 0 {
		t.Error("the URL search finds none of the contacts/1 calls")
	}
	for _, u := range urls {
		if !strings.Contains(u, "contacts/1") {
			t.Errorf("the URL search for contacts/1 shows %s", u)
		}
	}
	html()

	// Connection insights.
	open("/n/default/insights")
	shot("insights")

	// A notification through the wizard.
	open("/n/default/notifications")
	run("the wizard",
		chromedp.Click(chromedp.CSS(`a[href="/n/default/new-notification"]`)), chromedp.WaitVisible(chromedp.CSS("#name")),
		chromedp.SendKeys(chromedp.CSS("#name"), "invoices-down"), chromedp.Click(chromedp.CSS(`button[name="next"]`)),
		chromedp.WaitVisible(chromedp.CSS(`input[value="AppDisconnected"]`)),
		chromedp.Click(chromedp.CSS(`input[value="AppDisconnected"]`)), setField("#reminder", "Daily"),
		chromedp.Click(chromedp.CSS(`button[name="next"]`)),
		chromedp.WaitVisible(chromedp.CSS(`input[name="app"][value="invoices"]`)))
	shot("notification-wizard")
	run("the wizard's last steps",
		chromedp.Click(chromedp.CSS(`input[name="app"][value="invoices"]`)), chromedp.Click(chromedp.CSS(`button[name="next"]`)),
		chromedp.WaitVisible(chromedp.CSS(`input[value="Specific"]`)),
		chromedp.Click(chromedp.CSS(`input[value="Specific"]`)), chromedp.SendKeys(chromedp.CSS("#users"), "alice@example.com"),
		chromedp.Click(chromedp.CSS(`button[name="next"]`)), chromedp.WaitVisible(chromedp.CSS(`dl`)),
		chromedp.Click(chromedp.CSS(`button[name="next"]`)), chromedp.WaitVisible(chromedp.CSS(".notice")))
	note := &v1alpha1.AppNotification{}
	must(t, s.c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "invoices-down"}, note))
	if note.Spec.Event != v1alpha1.EventAppDisconnected || note.Spec.Reminder != v1alpha1.ReminderDaily || strings.Join(note.Spec.Apps, ",") != "invoices" ||
		strings.Join(note.Spec.Recipients.Users, ",") != "alice@example.com" {
		t.Errorf("the notification the wizard made: %+v", note.Spec)
	}

	// Its page saves a change against the API server's own rules: for
	// everyone, without the users.
	open("/n/default/notifications/invoices-down")
	run("saving it for everyone", chromedp.Click(chromedp.CSS(`input[name="kind"][value="Everyone"]`)), setField("#users", ""),
		chromedp.Click(chromedp.CSS(`form.card button.primary`)), chromedp.WaitVisible(chromedp.CSS(".notice")))
	must(t, s.c.Get(ctx, client.ObjectKeyFromObject(note), note))
	if note.Spec.Recipients.Kind != v1alpha1.RecipientsEveryone || len(note.Spec.Recipients.Users) != 0 || strings.Join(note.Spec.Apps, ",") != "invoices" {
		t.Errorf("the notification after Save: %+v", note.Spec)
	}

	// Disconnect an app from its page; home lists it under needs attention
	// with a one-click Reconnect.
	open("/n/default/apps/reporting")
	run("disconnecting reporting", chromedp.Click(chromedp.CSS(`form[action$="/connection"] button`)), chromedp.WaitVisible(chromedp.CSS(".notice")))
	waitUntil(t, ctx, "reporting's token is refused", func() bool { return s.call(http.MethodGet, other, "/crm/v3/objects/contacts/1", nil) == 403 })
	until("/n/default/", "Reconnect")
	shot("home")
	run("reconnecting from home", chromedp.Click(chromedp.CSS(`form[action="/n/default/apps/reporting/connection"] button`)),
		chromedp.WaitVisible(chromedp.CSS(".notice")))
	waitUntil(t, ctx, "reporting's token works again", func() bool { return s.call(http.MethodGet, other, "/crm/v3/objects/contacts/1", nil) == 200 })

	// A POST from another origin (a page of another local server) is
	// refused: the app stays.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<!DOCTYPE html><html><body><form method="post" action="%s/n/default/apps/reporting/delete">
<input name="confirm" value="reporting"></form><script>document.forms[0].submit()</script></body></html>`, con.base)
	}))
	defer evil.Close()
	run("a page of another origin posting to the console", chromedp.Navigate(evil.URL), chromedp.Sleep(2*time.Second))
	refused := browserValue(t, bctx, "reading the answer", chromedp.Text(chromedp.CSS("body")))
	if err := s.c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "reporting"}, &v1alpha1.PrivateApp{}); err != nil {
		t.Errorf("a cross-origin POST deleted the app: %v", err)
	}
	if !strings.Contains(refused, "refused") {
		t.Errorf("the cross-origin POST's answer: %q", refused)
	}

	// Delete: the button waits for the exact name; the server refuses a
	// wrong one posted anyway.
	open("/n/default/apps/invoices/delete")
	run("typing a wrong name", chromedp.SendKeys(chromedp.CSS("#confirm"), "invoice"))
	disabled := browserValue(t, bctx, "reading the delete button", chromedp.Evaluate[bool](`document.getElementById("delete-button").disabled`))
	if !disabled {
		t.Error("the delete button is enabled for a wrong name")
	}
	browserValue(t, bctx, "posting the wrong name anyway", chromedp.Evaluate[bool](`document.querySelector('main form').submit(), true`))
	run("waiting for the answer", chromedp.WaitVisible(chromedp.CSS(".error")))
	if h := html(); !strings.Contains(h, "nothing was deleted") {
		t.Error("a wrong name is not refused with what to do")
	}
	must(t, s.c.Get(ctx, client.ObjectKeyFromObject(app), app))
	run("typing the right name", setField("#confirm", ""), chromedp.SendKeys(chromedp.CSS("#confirm"), "invoices"),
		chromedp.Click(chromedp.CSS("#delete-button")), chromedp.WaitVisible(chromedp.CSS(".notice")))
	waitUntil(t, ctx, "the app is gone", func() bool {
		return apierrors.IsNotFound(s.c.Get(ctx, client.ObjectKeyFromObject(app), &v1alpha1.PrivateApp{}))
	})

	// A user bound in default only: another namespace shows the forbidden
	// message and the binding to ask for; Show token is disabled where
	// Secrets may not be read.
	s.kubectl("apply", "-f", filepath.Join(root, "config", "rbac", "privateapps_edit_role.yaml"))
	must(t, s.c.Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "alice-privateapps"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "privateapps-edit"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: "alice@example.com"}}}))
	alice := startConsole(t, ctx, plugin, "--kubeconfig", s.adminKubeconfig, "-n", "default", "--as", "alice@example.com")
	con = alice
	run("signing in as alice", chromedp.Navigate(alice.link), chromedp.WaitVisible(chromedp.CSS("h1")))
	if h := html(); !strings.Contains(h, "reporting") {
		t.Error("alice does not see the apps of default")
	}
	open("/n/default/apps/reporting")
	showDisabled := browserValue(t, bctx, "reading Show token", chromedp.Evaluate[bool](`document.querySelector('form[action$="/token"] button').disabled`))
	if !showDisabled {
		t.Error("Show token is enabled for a user who may not read Secrets")
	}
	if h := open("/n/kube-system/"); !strings.Contains(h, "may not do this in namespace kube-system") || !strings.Contains(h, "--clusterrole=edit") {
		t.Errorf("alice in kube-system does not see the forbidden message with the binding to ask for")
	}

	// No page but the show-token answer held a token.
	for i, p := range pages {
		for _, tk := range tokens {
			if strings.Contains(p, tk) {
				t.Errorf("page %d of %d shows a token", i+1, len(pages))
			}
		}
	}
}

// browserValue runs a browser action that gives a value.
func browserValue[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// setField sets a form field's value as typing does (with an input event);
// chromedp.SetValue refuses to set an empty value.
func setField(selector, value string) chromedp.Action[chromedp.Void] {
	sel, _ := json.Marshal(selector)
	val, _ := json.Marshal(value)
	eval := chromedp.Evaluate[bool](fmt.Sprintf(`(() => { const e = document.querySelector(%s); e.value = %s; `+
		`e.dispatchEvent(new Event("input", {bubbles: true})); e.dispatchEvent(new Event("change", {bubbles: true})); return true })()`, sel, val))
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := eval(ctx, t)
		return chromedp.Void{}, err
	}
}
