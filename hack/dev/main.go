// Command dev runs the operator on a local control plane for a newcomer:
// it starts etcd and kube-apiserver on loopback, installs the CRDs, runs the
// operator's three components (manager, token service, insights) against
// them, applies config/samples and waits until the
// sample apps have their tokens. It runs until interrupted, then stops every
// process it started. `make dev` builds what it needs and runs it.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/insights/insightstest"
	"github.com/privateapps-dev/privateapp-operator/internal/notify/notifytest"
	"github.com/privateapps-dev/privateapp-operator/internal/token"
	"github.com/privateapps-dev/privateapp-operator/internal/webhook/webhooktest"
	"github.com/privateapps-dev/privateapp-operator/test/framework"
)

func main() {
	var o options
	// A flag set of our own: controller-runtime registers --kubeconfig on the
	// default one, with another meaning.
	flags := flag.NewFlagSet("dev", flag.ExitOnError)
	flags.StringVar(&o.kubeconfig, "kubeconfig", "bin/dev/kubeconfig", "Where to write the kubeconfig of the local control plane.")
	flags.StringVar(&o.bin, "bin", "bin", "The directory of the operator's commands (manager, token-service, insights: make build).")
	flags.StringVar(&o.logDir, "log-dir", "bin/dev", "Where each component's log (manager.log, token-service.log, insights.log) and make dev's files go.")
	flags.StringVar(&o.crds, "crds", "config/crd/bases", "The CRDs to install.")
	flags.StringVar(&o.samples, "samples", "config/samples", "The manifests to apply once the manager runs.")
	flags.StringVar(&o.webhook, "webhook-address", "127.0.0.1:19443", "Address the kube-apiserver calls the admission webhooks at (the manager listens on its port).")
	flags.StringVar(&o.webhookManifests, "webhook-manifests", "config/webhook/manifests.yaml", "The generated webhook configurations, registered by URL.")
	flags.StringVar(&o.rotation, "rotation-sample", "config/samples/rotation/delayed.yaml", "A TokenRotation to apply once the calls are made, so needs attention has a grace period to show.")
	flags.StringVar(&o.notifications, "notification-samples", "config/samples/notifications", "AppNotifications (and their directory) to apply before the apps.")
	flags.StringVar(&o.mailLog, "mail-log", "bin/dev/mail.log", "Where the mails the operator sends to the local mail catcher go.")
	flags.StringVar(&o.assets, "assets", envOr("KUBEBUILDER_ASSETS", "bin/k8s"), "Directory with the etcd and kube-apiserver binaries.")
	flags.StringVar(&o.tokenService, "token-service-address", "127.0.0.1:18080", "Loopback address of the token service (plain HTTP).")
	flags.StringVar(&o.insights, "insights-address", "127.0.0.1:18444", "Loopback address of the insights API (kubectl get calls), which the local kube-apiserver reaches through its aggregation layer.")
	flags.StringVar(&o.nginx, "nginx-address", "127.0.0.1:18081", "Loopback address of the nginx gateway make dev runs in front of a stand-in API, when nginx is installed.")
	flags.StringVar(&o.syslog, "syslog-address", "127.0.0.1:18514", "Loopback UDP address where the insights component takes nginx's access log.")
	flags.StringVar(&o.ingest, "ingest-address", "127.0.0.1:18445", "Loopback address of the insights component's ingest endpoint, where the token service sends its decisions.")
	flags.StringVar(&o.callLog, "call-log", "bin/dev/calls.db", "The call log's SQLite file; emptied at start, like the control plane.")
	flags.DurationVar(&o.readyTimeout, "ready-timeout", 2*time.Minute, "How long to wait for the sample apps to be Ready.")
	_ = flags.Parse(os.Args[1:])

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "dev:", err)
		os.Exit(1)
	}
}

type options struct {
	kubeconfig, bin, logDir, crds, samples, assets        string
	rotation, webhook, webhookManifests                   string
	tokenService, insights, callLog                       string
	insightsCert, insightsKey                             string
	nginx, syslog, ingest, ingestToken, tokenServiceToken string
	caFile                                                string
	readyTimeout                                          time.Duration
	notifications, mailLog, notificationsConfig           string
}

func run(ctx context.Context, o options) (err error) {
	say("Starting a local control plane: etcd and kube-apiserver from %s, on loopback", o.assets)
	devDir := o.logDir
	if err := os.MkdirAll(devDir, 0o755); err != nil {
		return err
	}
	var caBundle []byte
	if o.insightsCert, o.insightsKey, caBundle, err = insightstest.ServingCert(devDir, insightsService+"."+devOperatorNamespace+".svc"); err != nil {
		return err
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(o.callLog + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	// The gateways' secret (nginx's syslog lines) and the token service's
	// (its decisions); make dev has no audit webhook.
	o.ingestToken, o.tokenServiceToken, o.caFile = filepath.Join(devDir, "gateway-secret"), filepath.Join(devDir, "token-service-secret"), filepath.Join(devDir, "insights-ca.crt")
	secret := newSecret()
	if err := os.WriteFile(o.ingestToken, []byte(secret), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(o.tokenServiceToken, []byte(newSecret()), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(o.caFile, caBundle, 0o600); err != nil {
		return err
	}
	// The API server proxies insights.privateapps.dev to the insights
	// component, as a cluster's does to metrics-server.
	cp, err := framework.StartControlPlane(framework.ControlPlaneOptions{CRDs: o.crds, Assets: o.assets, Kubeconfig: o.kubeconfig, User: "dev-admin",
		Configure: func(env *envtest.Environment) error { return insightstest.EnableAggregation(env, devDir) }})
	if err != nil {
		return err
	}
	defer func() {
		say("Stopping the control plane")
		err = errors.Join(err, cp.Stop())
	}()
	cfg := cp.Env.Config
	say("Control plane up at %s; kubeconfig in %s", cfg.Host, o.kubeconfig)

	// A local mail catcher, so the AppNotification samples have somewhere
	// to send to: every mail lands in o.mailLog.
	mail, err := notifytest.StartSMTP(notifytest.SMTPOptions{})
	if err != nil {
		return err
	}
	defer mail.Close()
	o.notificationsConfig = filepath.Join(o.logDir, "notifications.yaml")
	if err := os.WriteFile(o.notificationsConfig, []byte(fmt.Sprintf(
		"smtp: {address: %q, from: \"Private apps <privateapps@localhost>\", tls: None}\n", mail.Addr)), 0o600); err != nil {
		return err
	}
	say("Mail catcher on %s (mails in %s)", mail.Addr, o.mailLog)

	c := cp.Client
	// The admission webhooks, called by URL on loopback, with the
	// operator's own CA: they record who installed each app.
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: devOperatorNamespace}}); err != nil {
		return err
	}
	if err := webhooktest.Register(ctx, c, o.webhookManifests, webhookConfigurations, o.webhook); err != nil {
		return fmt.Errorf("registering the admission webhooks: %w", err)
	}

	components, err := startComponents(o)
	if err != nil {
		return err
	}
	// One channel says which component stopped first.
	stopped := make(chan error, 1)
	for _, p := range components {
		go func() {
			<-p.Done()
			select {
			case stopped <- fmt.Errorf("%s stopped (%v); see %s", filepath.Base(p.Bin), p.Err(), p.Log):
			default:
			}
		}()
	}
	defer func() {
		say("Stopping the operator's components")
		for _, p := range components {
			p.Stop(15 * time.Second)
		}
	}()

	say("Waiting for the operator's CA in the webhook configurations")
	if err := webhooktest.WaitForCA(ctx, c, webhookConfigurations, o.readyTimeout); err != nil {
		return err
	}

	// Notifications first: they report what happens after they start
	// watching, and the apps' installs are what they should show.
	say("Applying %s", o.notifications)
	_, insightsPort, _ := net.SplitHostPort(o.insights)
	if err := insightstest.Register(ctx, c, devOperatorNamespace, insightsService, insightsPort, caBundle); err != nil {
		return fmt.Errorf("registering the insights APIService: %w", err)
	}
	if err := kubectl(o.kubeconfig, "apply", "-f", o.notifications); err != nil {
		return err
	}
	if err := waitForNotifications(ctx, c, o.readyTimeout); err != nil {
		return err
	}

	say("Applying %s", o.samples)
	if err := kubectl(o.kubeconfig, "apply", "-f", o.samples); err != nil {
		return err
	}
	say("Waiting for the sample apps to get their tokens")
	apps, err := waitForApps(ctx, c, o.readyTimeout, stopped)
	if err != nil {
		return err
	}
	_ = kubectl(o.kubeconfig, "get", "privateapps", "-A")
	first := apps[0]
	say("Validating %s/%s's token with the token service at http://%s", first.Namespace, first.Name, o.tokenService)
	if err := validateWithTokenService(ctx, c, o.tokenService, first); err != nil {
		return err
	}
	for _, a := range apps {
		if a.Name == "warehouse-sync" {
			say("Asking about a call the API catalog refuses")
			if err := showRefusal(ctx, c, o.tokenService, a); err != nil {
				return err
			}
		}
	}
	gateway, err := startNginx(devDir, o.nginx, o.tokenService, o.syslog, secret)
	if err != nil {
		return fmt.Errorf("starting nginx: %w", err)
	}
	calls := 2
	if gateway == nil {
		say("nginx is not installed (hack/test-deps.sh installs it): no gateway in front of the token service this time")
		// Without an access log, the token service's allow decision is what
		// record insights count.
		if err := createInvoice(ctx, c, o.tokenService, first); err != nil {
			return err
		}
		calls++
	} else {
		defer func() { _ = gateway.Process.Kill(); _ = gateway.Wait() }()
		say("Calling the stand-in CRM API through nginx at http://%s (auth_request to the token service, access log to the call log)", o.nginx)
		if err := callThroughNginx(ctx, c, o.nginx, first); err != nil {
			return err
		}
		calls += 3
	}
	say("Waiting for the install notifications")
	if err := showMails(ctx, mail, o.mailLog, 3*len(apps)); err != nil {
		return err
	}
	say("The calls, as the call log shows them (kubectl get calls -n %s)", first.Namespace)
	if err := showCalls(ctx, o.kubeconfig, first.Namespace, calls); err != nil {
		return err
	}
	say("What %s did to records today (kubectl get recordinsights -n %s --field-selector app=%s,recordType=invoices,since=0d)", first.Name, first.Namespace, first.Name)
	if err := showUntil(ctx, o.kubeconfig, "the invoice %s created", func(out string) bool { return hasRow(out, first.Name, "invoices", "1") },
		"get", "recordinsights", "-n", first.Namespace, "--field-selector", "app="+first.Name+",recordType=invoices,since=0d"); err != nil {
		return err
	}
	say("Rotating %s's token later (%s): the old token keeps working for 7 days", first.Name, o.rotation)
	if err := kubectl(o.kubeconfig, "apply", "-f", o.rotation); err != nil {
		return err
	}
	say("What needs attention (kubectl get needsattention -n %s)", first.Namespace)
	if err := showUntil(ctx, o.kubeconfig, "the grace period's end", func(out string) bool { return strings.Contains(out, "GracePeriodEnding") },
		"get", "needsattention", "-n", first.Namespace); err != nil {
		return err
	}
	fmt.Printf(`
The operator is running. In another terminal:

  export KUBECONFIG=%[1]s
  bin/kubectl-privateapp                                 # the kubectl plugin (kubectl privateapp on your PATH): what needs attention, every app
  bin/kubectl-privateapp describe %[2]s              # one app: token, usage chart, activity, record insights, latest calls
  bin/kubectl-privateapp ui                              # the same in your browser: connected apps, private apps, insights (docs/web-console.md)
  kubectl get privateapps -A
  kubectl describe privateapp %[2]s -n %[3]s
  TOKEN=$(kubectl get secret %[4]s -n %[3]s -o jsonpath='{.data.token}' | base64 -d)
  curl -s http://%[5]s/oauth/v2/private-apps/get/access-token-info -d "{\"tokenKey\":\"$TOKEN\"}"
  kubectl get apicatalogs
  curl -si -H "Authorization: Bearer $TOKEN" -H 'X-Original-Method: GET' -H 'X-Original-URL: http://api.example.com%[6]s' http://%[5]s/v1/check
  curl -s -H "Authorization: Bearer $TOKEN" http://%[5]s/v1/check%[8]s    # as Envoy asks: 403, no crm.objects.deals.read
  curl -s -H "Authorization: Bearer $TOKEN" http://%[9]s/crm/v3/objects/contacts/1   # through nginx (when installed)
  kubectl get calls -n %[3]s --field-selector code=4xx,since=30d       # the call log: refused calls, 30 days
  kubectl get recordinsights -n %[3]s --field-selector since=7d       # records created, updated, deleted, merged per day
  kubectl get needsattention -A                                      # apps that need a person, and what to do
  kubectl get apiusage -n %[3]s                                       # the account's calls per day, 30 days
  curl -s -H "Authorization: Bearer $TOKEN" http://%[5]s/account-info/v3/api-usage/daily/private-apps
  kubectl get appnotifications -A
  kubectl patch privateapp %[2]s -n %[3]s --type merge -p '{"spec":{"suspend":true}}'   # then see %[7]s

Every sample app's Secret holds a well-formed token whose SHA-256 matches
status.token.digest, and the token service accepts it. Press Ctrl-C to stop everything.
dev: ready
`, o.kubeconfig, first.Name, first.Namespace, first.Status.SecretName, o.tokenService, allowedPath, o.mailLog, refusedPath, o.nginx)

	select {
	case <-ctx.Done():
		fmt.Println()
		return nil
	case err := <-stopped:
		return err
	}
}

// devOperatorNamespace holds the recipients directory of the samples.
const devOperatorNamespace = "privateapp-system"

// webhookConfigurations names make dev's webhook configurations.
const webhookConfigurations = "privateapp"

// insightsService is the Service the APIService names: an ExternalName for
// localhost here.
const insightsService = "privateapp-insights"

// showUntil runs kubectl with args until done accepts its output (30 s at
// most), then prints it.
func showUntil(ctx context.Context, kubeconfig, what string, done func(string) bool, args ...string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := exec.CommandContext(ctx, "kubectl", append([]string{"--kubeconfig", kubeconfig}, args...)...).CombinedOutput()
		if err == nil && done(string(out)) {
			os.Stdout.Write(out)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kubectl %s did not show %s within 30 s: %v\n%s", strings.Join(args, " "), what, err, out)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// hasRow reports whether a line of a kubectl table holds every field.
func hasRow(table string, fields ...string) bool {
	for line := range strings.SplitSeq(table, "\n") {
		f := strings.Fields(line)
		all := len(f) > 0
		for _, want := range fields {
			all = all && slices.Contains(f, want)
		}
		if all {
			return true
		}
	}
	return false
}

// createInvoice asks the token service, as a gateway would, about a call
// that creates an invoice.
func createInvoice(ctx context.Context, c client.Client, addr string, app v1alpha1.PrivateApp) error {
	var s corev1.Secret
	if err := c.Get(ctx, client.ObjectKey{Namespace: app.Namespace, Name: app.Status.SecretName}, &s); err != nil {
		return err
	}
	code, _, _, err := check(ctx, addr, "/v1/check", string(s.Data[v1alpha1.SecretTokenKey]), map[string]string{
		"X-Original-Method": "POST", "X-Original-URL": "http://api.example.com" + invoicesPath})
	if err != nil {
		return err
	}
	fmt.Printf("   /v1/check about POST %s: %d\n", invoicesPath, code)
	return nil
}

// showCalls prints the namespace's call log once the calls made so far
// are in it, the gateway's with the upstream's code.
func showCalls(ctx context.Context, kubeconfig, namespace string, want int) error {
	deadline := time.Now().Add(30 * time.Second)
	var out []byte
	var err error
	for {
		cmd := exec.CommandContext(ctx, "kubectl", "--kubeconfig", kubeconfig, "get", "calls", "-n", namespace)
		out, err = cmd.CombinedOutput()
		if err == nil && strings.Count(string(out), "\n") >= want+1 && (want < 4 || strings.Contains(string(out), " 404 ")) {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the calls did not reach `kubectl get calls` within 30 s: %v\n%s", err, out)
		}
		time.Sleep(500 * time.Millisecond)
	}
	os.Stdout.Write(out)
	return nil
}

// waitForNotifications waits until every AppNotification watches.
func waitForNotifications(ctx context.Context, c client.Client, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var list v1alpha1.AppNotificationList
		if err := c.List(ctx, &list); err == nil && len(list.Items) > 0 {
			active := 0
			for _, n := range list.Items {
				if n.Status.ActiveSince != nil {
					active++
				}
			}
			if active == len(list.Items) {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the sample AppNotifications were not picked up within %s; see `kubectl describe appnotifications -A`", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// showMails waits for want mails at the catcher, prints who got what, and
// writes them all to path.
func showMails(ctx context.Context, mail *notifytest.SMTPServer, path string, want int) error {
	deadline := time.Now().Add(30 * time.Second)
	for len(mail.Messages()) < want {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d install notifications arrived; see `kubectl describe appnotifications -A`", len(mail.Messages()), want)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	var all strings.Builder
	for _, m := range mail.Messages() {
		subject, _ := new(mime.WordDecoder).DecodeHeader(m.Header("Subject"))
		fmt.Printf("   mail to %s: %s\n", strings.Join(m.To, ", "), subject)
		all.Write(m.Data)
		all.WriteString("\n")
	}
	return os.WriteFile(path, []byte(all.String()), 0o600)
}

// startComponents starts the operator's three components, each a process
// of its own as the chart runs each in its own pod: the manager (the
// controllers and the webhooks), the token service and the insights
// component. They go down with this process even if it is killed.
func startComponents(o options) ([]*framework.Process, error) {
	webhookHost, webhookPort, err := net.SplitHostPort(o.webhook)
	if err != nil {
		return nil, fmt.Errorf("--webhook-address: %w", err)
	}
	insightsHost, insightsPort, err := net.SplitHostPort(o.insights)
	if err != nil {
		return nil, fmt.Errorf("--insights-address: %w", err)
	}
	_, ingestPort, err := net.SplitHostPort(o.ingest)
	if err != nil {
		return nil, fmt.Errorf("--ingest-address: %w", err)
	}
	bins := framework.Commands{Dir: o.bin}
	// The insights component first: the token service sends it calls.
	specs := []struct {
		component string
		args      []string
	}{
		{framework.Insights, []string{"--bind-address=" + insightsHost, "--secure-port=" + insightsPort,
			"--tls-cert-file=" + o.insightsCert, "--tls-private-key-file=" + o.insightsKey,
			"--call-log-sqlite=" + o.callLog, "--call-log-syslog-bind-address=" + o.syslog, "--call-log-gateway-token-file=" + o.ingestToken,
			"--call-log-ingest-bind-address=" + o.ingest, "--call-log-token-service-token-file=" + o.tokenServiceToken}},
		{framework.TokenService, []string{"--token-service-bind-address=" + o.tokenService, "--token-service-insecure", "--token-service-route-header",
			// Calls show up in `kubectl get privateapps` within seconds.
			"--usage-flush-interval=5s",
			"--call-log-url=https://localhost:" + ingestPort, "--call-log-ca-file=" + o.caFile, "--call-log-token-file=" + o.tokenServiceToken}},
		{framework.Manager, []string{"--notifications-config=" + o.notificationsConfig, "--operator-namespace=" + devOperatorNamespace,
			"--self-signed-certs", "--webhook-configurations=" + webhookConfigurations, "--webhook-cert-extra-names=" + webhookHost,
			"--webhook-cert-dir=" + filepath.Join(o.logDir, "webhook-certs"), "--webhook-port=" + webhookPort}},
	}
	var started []*framework.Process
	for _, spec := range specs {
		p := &framework.Process{Bin: bins.Path(spec.component), Args: append([]string{"--health-probe-bind-address=0", "--zap-devel"}, spec.args...),
			Kubeconfig: o.kubeconfig, Log: filepath.Join(o.logDir, spec.component+".log"), Deathsig: syscall.SIGTERM}
		say("Starting the %s (log in %s)", spec.component, p.Log)
		if err := p.Start(); err != nil {
			for _, q := range started {
				q.Stop(15 * time.Second)
			}
			return nil, fmt.Errorf("%w (run `make build` first)", err)
		}
		started = append(started, p)
	}
	return started, nil
}

// waitForApps waits until every PrivateApp is Ready and its Secret holds the
// token status names by digest.
func waitForApps(ctx context.Context, c client.Client, timeout time.Duration, stopped chan error) ([]v1alpha1.PrivateApp, error) {
	deadline := time.After(timeout)
	for {
		var apps v1alpha1.PrivateAppList
		if err := c.List(ctx, &apps); err != nil {
			return nil, err
		}
		if len(apps.Items) > 0 && allIssued(ctx, c, apps.Items) {
			return apps.Items, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case err := <-stopped:
			stopped <- err
			return nil, fmt.Errorf("%w before the sample apps were Ready", err)
		case <-deadline:
			return nil, fmt.Errorf("the sample apps were not Ready after %s; see `kubectl describe privateapps -A`", timeout)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func allIssued(ctx context.Context, c client.Client, apps []v1alpha1.PrivateApp) bool {
	for _, a := range apps {
		if !meta.IsStatusConditionTrue(a.Status.Conditions, v1alpha1.ConditionReady) || a.Status.Token == nil {
			return false
		}
		var s corev1.Secret
		if err := c.Get(ctx, client.ObjectKey{Namespace: a.Namespace, Name: a.Status.SecretName}, &s); err != nil {
			return false
		}
		tok, err := token.Parse(string(s.Data[v1alpha1.SecretTokenKey]))
		if err != nil || tok.Digest().String() != a.Status.Token.Digest {
			return false
		}
	}
	return true
}

func kubectl(kubeconfig string, args ...string) error {
	cmd := exec.Command("kubectl", append([]string{"--kubeconfig", kubeconfig}, args...)...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("kubectl %v: %w", args, err)
	}
	return nil
}

func say(format string, args ...any) { fmt.Printf(">> "+format+"\n", args...) }

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// validateWithTokenService asks the token service about the app's token the
// way a gateway and an integration would, and prints the answers (never the
// token).
func validateWithTokenService(ctx context.Context, c client.Client, addr string, app v1alpha1.PrivateApp) error {
	var s corev1.Secret
	if err := c.Get(ctx, client.ObjectKey{Namespace: app.Namespace, Name: app.Status.SecretName}, &s); err != nil {
		return err
	}
	tok := string(s.Data[v1alpha1.SecretTokenKey])
	body, _ := json.Marshal(map[string]string{"tokenKey": tok})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Post("http://"+addr+"/oauth/v2/private-apps/get/access-token-info", "application/json", bytes.NewReader(body))
		if err == nil {
			info, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				fmt.Printf("   access-token-info: %d %s", resp.StatusCode, info)
				break
			}
			err = fmt.Errorf("access-token-info answered %d: %s", resp.StatusCode, info)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the token service did not accept the sample token: %w", err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	// As nginx asks about GET /crm/v3/objects/contacts/1: the sample
	// catalog's route contacts-get needs crm.objects.contacts.read.
	code, h, _, err := check(ctx, addr, "/v1/check", tok, map[string]string{
		"X-Original-Method": "GET", "X-Original-URL": "http://api.example.com" + allowedPath})
	if err != nil {
		return err
	}
	fmt.Printf("   /v1/check about GET %s (nginx headers): %d, X-PrivateApp-Name=%s, X-PrivateApp-Route=%s, X-RateLimit-Remaining=%s\n",
		allowedPath, code, h.Get("X-PrivateApp-Name"), h.Get("X-PrivateApp-Route"), h.Get("X-RateLimit-Remaining"))
	if code != http.StatusOK {
		return fmt.Errorf("/v1/check answered %d for the sample token", code)
	}
	return nil
}

const (
	invoicesPath = "/crm/v3/objects/invoices"
	allowedPath  = "/crm/v3/objects/contacts/1"
	refusedPath  = "/crm/v3/objects/deals/1"
)

// showRefusal asks, as Envoy in path-prefix mode does, whether an app that
// holds only crm.objects.products.write may GET a deal: the catalog says no.
func showRefusal(ctx context.Context, c client.Client, addr string, app v1alpha1.PrivateApp) error {
	var s corev1.Secret
	if err := c.Get(ctx, client.ObjectKey{Namespace: app.Namespace, Name: app.Status.SecretName}, &s); err != nil {
		return err
	}
	code, _, body, err := check(ctx, addr, "/v1/check"+refusedPath, string(s.Data[v1alpha1.SecretTokenKey]), nil)
	if err != nil {
		return err
	}
	fmt.Printf("   /v1/check%s as %s (Envoy path-prefix mode): %d %s", refusedPath, app.Name, code, body)
	if code != http.StatusForbidden {
		return fmt.Errorf("/v1/check%s answered %d for %s, want 403 from the catalog", refusedPath, code, app.Name)
	}
	return nil
}

func check(ctx context.Context, addr, path, tok string, header map[string]string) (int, http.Header, string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(body), nil
}
