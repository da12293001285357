package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	insightsv1alpha1 "github.com/privateapps-dev/privateapp-operator/api/insights/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/tokenservice"
)

// TestRecordInsights: record changes made through a real nginx (the sample
// APICatalog's contact routes, an upstream answering 2xx, or 409 when asked
// to fail) and with an app's token against the Kubernetes API (the audit
// webhook) count in `kubectl get recordinsights` only when they succeeded,
// under their record type and action; the needs-attention list follows
// the real controller; HubSpot's daily-usage endpoint agrees with
// status.usage and `kubectl get apiusage`.
func TestRecordInsights(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	s := startCallLogStack(t, ctx, "/v1/check", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Query().Get("fail") == "1":
			http.Error(w, "conflict", http.StatusConflict)
		case r.Method == http.MethodPost:
			w.WriteHeader(http.StatusCreated)
		case r.Method == http.MethodDelete:
			w.WriteHeader(http.StatusNoContent)
		default:
			fmt.Fprint(w, "{}")
		}
	}))
	s.kubectl("apply", "-f", filepath.Join(repoRoot(t), "config", "samples", "privateapps_v1alpha1_apicatalog.yaml"))
	_, syncer := createReadyApp(t, ctx, s.c, "default", "syncer", "crm.objects.contacts.read", "crm.objects.contacts.write")
	_, deployer := createReadyApp(t, ctx, s.c, "default", "deployer", "crm.objects.contacts.read")
	tokens := []string{syncer, deployer, s.secret}
	waitUntil(t, ctx, "the catalog is in force in the token service", func() bool {
		return s.call(http.MethodGet, syncer, "/crm/v3/objects/contacts/1", nil) == 200
	})
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{http.MethodPost, "/crm/v3/objects/contacts", 201},
		{http.MethodPost, "/crm/v3/objects/contacts?fail=1", 409},
		{http.MethodPatch, "/crm/v3/objects/contacts/1", 200},
		{http.MethodPatch, "/crm/v3/objects/contacts/2", 200},
		{http.MethodDelete, "/crm/v3/objects/contacts/3", 204},
		{http.MethodDelete, "/crm/v3/objects/contacts/4?fail=1", 409},
		{http.MethodPost, "/crm/v3/objects/contacts/merge", 201},
		{http.MethodGet, "/crm/v3/objects/contacts/5", 200},
	} {
		if got := s.call(c.method, syncer, c.path, strings.NewReader("{}")); got != c.want {
			t.Fatalf("%s %s through nginx: %d, want %d", c.method, c.path, got, c.want)
		}
	}
	// The deployer changes a ConfigMap with its token; a dry run and a
	// delete of nothing change no record.
	s.kubectl("create", "role", "configmaps", "-n", "default", "--verb=get,create,patch,delete", "--resource=configmaps")
	s.kubectl("create", "rolebinding", "deployer-configmaps", "-n", "default", "--role=configmaps", "--user=privateapp:default:deployer")
	app := s.appKubeconfig("deployer", deployer)
	asApp := func(args ...string) {
		out, err := exec.Command("kubectl", append([]string{"--kubeconfig", app, "-n", "default"}, args...)...).CombinedOutput()
		if err != nil && !strings.Contains(args[0], "delete") {
			t.Fatalf("kubectl %v with the app's token: %v\n%s", args, err, out)
		}
	}
	asApp("create", "configmap", "settings", "--from-literal=a=b")
	asApp("create", "configmap", "dry", "--from-literal=a=b", "--dry-run=server")
	// The same dry run with the parameter's name percent-encoded, which the
	// API server decodes (kubectl would normalize it: plain HTTP here).
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(s.env.Config.CAData)
	req, _ := http.NewRequest(http.MethodPost, strings.TrimSuffix(s.env.Config.Host, "/")+"/api/v1/namespaces/default/configmaps?dry%52un=All",
		strings.NewReader(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"dry-encoded"}}`))
	req.Header.Set("Authorization", "Bearer "+deployer)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}}).Do(req)
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("a dry-run create with dry%%52un=All: %d, want 201", resp.StatusCode)
	}
	if out, err := exec.Command("kubectl", "--kubeconfig", s.adminKubeconfig, "get", "configmap", "dry-encoded", "-n", "default").CombinedOutput(); err == nil {
		t.Fatalf("dry%%52un=All created the ConfigMap: the API server does not decode it as a dry run:\n%s", out)
	}
	asApp("patch", "configmap", "settings", "-p", `{"data":{"a":"c"}}`)
	asApp("delete", "configmap", "settings")
	asApp("delete", "configmap", "nothing-here")

	today := time.Now().UTC().Format(time.DateOnly)
	row := func(l *insightsv1alpha1.RecordInsightList, typ string) string {
		for _, r := range l.Items {
			if r.Day == today && r.RecordType == typ {
				return fmt.Sprintf("%d/%d/%d/%d", *r.Created, *r.Updated, *r.Deleted, *r.Merged)
			}
		}
		return "no row"
	}
	var l insightsv1alpha1.RecordInsightList
	deadline := time.Now().Add(40 * time.Second)
	for {
		l = insightsv1alpha1.RecordInsightList{}
		raw, err := exec.Command("kubectl", "--kubeconfig", s.adminKubeconfig, "get", "recordinsights", "-n", "default", "--field-selector", "since=0d", "-o", "json").Output()
		if err == nil && json.Unmarshal(raw, &l) == nil && row(&l, "contacts") == "1/2/1/1" && row(&l, "configmaps") == "1/1/1/0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 40 s, today's contacts %s (want created/updated/deleted/merged 1/2/1/1), configmaps %s (want 1/1/1/0):\n%s\ncalls:\n%s",
				row(&l, "contacts"), row(&l, "configmaps"), s.kubectl("get", "recordinsights", "-n", "default", "--field-selector", "since=0d"),
				s.kubectl("get", "calls", "-n", "default", "-o", "wide"))
		}
		time.Sleep(time.Second)
	}
	// The catalog's other record types are rows of zeros.
	if got := row(&l, "deals"); got != "0/0/0/0" {
		t.Errorf("today's deals: %s, want a row of zeros", got)
	}
	table := s.kubectl("get", "recordinsights", "-n", "default", "--field-selector", "app=syncer,recordType=contacts,since=0d")
	if !strings.Contains(table, "syncer") || !strings.Contains(table, "contacts") || strings.Count(table, "\n") != 2 {
		t.Errorf("kubectl get recordinsights for syncer's contacts today:\n%s", table)
	}

	// Needs attention follows the controller: a disconnected app appears
	// with the command that reconnects it, and goes when it is reconnected.
	attention := func() string {
		var l insightsv1alpha1.NeedsAttentionList
		raw, err := exec.Command("kubectl", "--kubeconfig", s.adminKubeconfig, "get", "needsattention", "-n", "default", "-o", "json").Output()
		if err != nil || json.Unmarshal(raw, &l) != nil {
			return "unreadable"
		}
		var rows []string
		for _, r := range l.Items {
			app := ""
			if r.App != nil {
				app = *r.App
			}
			rows = append(rows, app+":"+r.Reason)
		}
		return strings.Join(rows, ",")
	}
	if got := attention(); got != "" {
		t.Fatalf("needs attention before anything is wrong: %q", got)
	}
	s.kubectl("patch", "privateapp", "syncer", "-n", "default", "--type=merge", "-p", `{"spec":{"suspend":true}}`)
	waitUntil(t, ctx, "syncer needs attention as Disconnected", func() bool { return attention() == "syncer:Disconnected" })
	if out := s.kubectl("get", "needsattention", "-n", "default"); !strings.Contains(out, `kubectl patch privateapp syncer -n default --type merge -p '{"spec":{"suspend":false}}'`) {
		t.Errorf("the row does not say how to reconnect:\n%s", out)
	}
	s.kubectl("patch", "privateapp", "syncer", "-n", "default", "--type=merge", "-p", `{"spec":{"suspend":false}}`)
	waitUntil(t, ctx, "syncer no longer needs attention", func() bool { return attention() == "" })

	// HubSpot's daily-usage endpoint: the account's calls today, the same
	// number status.usage holds once flushed, and apiusage shows.
	daily := func() tokenservice.DailyUsageResult {
		req, _ := http.NewRequest(http.MethodGet, "http://"+s.tokenService+tokenservice.PathDailyUsage, nil)
		req.Header.Set("Authorization", "Bearer "+deployer)
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var u tokenservice.DailyUsage
		if resp.StatusCode != 200 || json.Unmarshal(body, &u) != nil || len(u.Results) != 1 {
			t.Fatalf("daily usage: %s %s", resp.Status, body)
		}
		return u.Results[0]
	}
	// At least the nine calls through nginx and one authentication (the
	// kube-apiserver caches its TokenReviews).
	u := daily()
	if u.Name != "private-apps-api-calls-daily" || u.UsageLimit != 250000 || u.FetchStatus != "SUCCESS" || u.CurrentUsage < 10 ||
		!strings.HasSuffix(u.ResetsAt, "T00:00:00Z") {
		t.Fatalf("daily usage %+v", u)
	}
	statusSum := func() int64 {
		apps := &v1alpha1.PrivateAppList{}
		must(t, s.c.List(ctx, apps, client.InNamespace("default")))
		var n int64
		for _, a := range apps.Items {
			if a.Status.Usage != nil {
				n += a.Status.Usage.CallsToday
			}
		}
		return n
	}
	waitUntil(t, ctx, fmt.Sprintf("status.usage holds the %d calls of the daily-usage endpoint", u.CurrentUsage), func() bool {
		return statusSum() == daily().CurrentUsage
	})
	usage := s.kubectl("get", "apiusage", "-n", "default", "--field-selector", "since=0d")
	if !strings.Contains(usage, fmt.Sprintf(" %d ", daily().CurrentUsage)) {
		t.Errorf("kubectl get apiusage does not show today's %d calls:\n%s", daily().CurrentUsage, usage)
	}

	logText, _ := s.logs()
	all := string(logText) + s.kubectl("get", "recordinsights,needsattention,apiusage", "-A", "-o", "yaml")
	for _, tok := range tokens {
		if strings.Contains(all, tok) {
			t.Fatal("a token or the shared secret is in the manager's log or the insights")
		}
	}
}
