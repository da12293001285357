package e2e

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/notify"
	"github.com/privateapps-dev/privateapp-operator/internal/notify/notifytest"
	"github.com/privateapps-dev/privateapp-operator/test/framework"
)

// TestNotificationsThroughTheManager runs the manager binary with a
// notifications config file the way docs/appnotifications.md describes it:
// credentials in files, the directory in the operator's namespace, mail to a
// real SMTP server over STARTTLS with AUTH, and the signed webhook.
func TestNotificationsThroughTheManager(t *testing.T) {
	root := repoRoot(t)
	tmp := t.TempDir()
	bins := commands(t)
	_, c, kubeconfig := startControlPlane(t, root, tmp)

	mailServer, err := notifytest.StartSMTP(notifytest.SMTPOptions{StartTLS: true, Username: "operator", Password: "smtp-pass-e2e"})
	must(t, err)
	defer mailServer.Close()
	receiver := notifytest.StartReceiver([]byte("e2e-webhook-signing-secret"))
	defer receiver.Close()

	write := func(name string, data []byte) string {
		p := filepath.Join(tmp, name)
		must(t, os.WriteFile(p, data, 0o600))
		return p
	}
	ca := write("smtp-ca.crt", mailServer.CertPEM)
	config := write("notifications.yaml", []byte(`smtp:
  address: `+mailServer.Addr+`
  from: Private apps <privateapps@example.com>
  tls: StartTLS
  usernameFile: `+write("smtp-username", []byte("operator\n"))+`
  passwordFile: `+write("smtp-password", []byte("smtp-pass-e2e\n"))+`
  caFile: `+ca+`
  timeout: 5s
webhook:
  url: `+receiver.URL+`
  secretFile: `+write("webhook-secret", []byte("e2e-webhook-signing-secret\n"))+`
`))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, ns := range []string{"privateapp-system", "team-a"} {
		must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	}
	must(t, c.Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "privateapp-system", Name: notify.DefaultDirectoryName},
		Data:       map[string]string{notify.DirectoryKey: "superAdmins: [alice]\nusers: {alice: alice@example.com, bob: bob@example.com}\n"},
	}))
	for name, event := range map[string]v1alpha1.NotificationEvent{"installs": v1alpha1.EventAppInstalled, "removals": v1alpha1.EventAppUninstalled} {
		must(t, c.Create(ctx, &v1alpha1.AppNotification{
			ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: name},
			Spec:       v1alpha1.AppNotificationSpec{Event: event, Recipients: v1alpha1.Recipients{Kind: v1alpha1.RecipientsEveryone}},
		}))
	}

	logPath := filepath.Join(tmp, "manager.log")
	mgr := &componentProcess{t: t, bin: bins.Path(framework.Manager), kubeconfig: kubeconfig, log: logPath,
		args: []string{"--notifications-config=" + config, "--operator-namespace=privateapp-system"}}
	mgr.start()
	defer mgr.kill()

	waitUntil(t, ctx, "the notifications are active", func() bool {
		n := &v1alpha1.AppNotification{}
		return c.Get(ctx, client.ObjectKey{Namespace: "team-a", Name: "installs"}, n) == nil && n.Status.ActiveSince != nil
	})
	app, tok := createReadyApp(t, ctx, c, "team-a", "crm", "crm.objects.contacts.read")
	subjects := func() []string {
		var out []string
		for _, m := range mailServer.Messages() {
			out = append(out, m.To[0]+" "+m.Header("Subject"))
		}
		slices.Sort(out)
		return out
	}
	waitUntil(t, ctx, "the install is mailed", func() bool { return len(subjects()) == 2 })
	must(t, c.Delete(ctx, app))
	waitUntil(t, ctx, "the uninstall is mailed", func() bool { return len(subjects()) == 4 })
	want := []string{
		"alice@example.com [privateapps] App crm in namespace team-a was installed",
		"alice@example.com [privateapps] App crm in namespace team-a was uninstalled",
		"bob@example.com [privateapps] App crm in namespace team-a was installed",
		"bob@example.com [privateapps] App crm in namespace team-a was uninstalled",
	}
	if got := subjects(); !slices.Equal(got, want) {
		t.Fatalf("mails:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, m := range mailServer.Messages() {
		if !m.TLS || m.User != "operator" {
			t.Errorf("mail to %v: TLS=%v user=%q; want STARTTLS and AUTH as operator", m.To, m.TLS, m.User)
		}
	}
	waitUntil(t, ctx, "both webhooks arrive, signed", func() bool { return len(receiver.Payloads()) == 2 })
	if r := receiver.Refused(); len(r) != 0 {
		t.Fatalf("the receiver refused requests: %v", r)
	}
	mgr.kill()
	log, err := os.ReadFile(logPath)
	must(t, err)
	for what, secret := range map[string]string{"the token": tok, "the SMTP password": "smtp-pass-e2e", "the webhook secret": "e2e-webhook-signing-secret"} {
		if strings.Contains(string(log), secret) {
			t.Errorf("the manager log contains %s", what)
		}
		for _, m := range mailServer.Messages() {
			if strings.Contains(string(m.Data), secret) {
				t.Errorf("a mail contains %s", what)
			}
		}
	}
}
