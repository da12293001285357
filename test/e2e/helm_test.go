package e2e

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/notify"
	"github.com/privateapps-dev/privateapp-operator/internal/tokenservice"
)

// tool returns a binary that `make tools` built from go.tool.mod.
func tool(t *testing.T, root, name string) string {
	t.Helper()
	p := filepath.Join(root, "bin", "tools", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s is missing: run `make tools` (make test does)", p)
	}
	return p
}

type chartRun struct {
	t                *testing.T
	helm, chart, tmp string
	kubeconfig       string
}

func (h chartRun) run(args ...string) (string, error) {
	cmd := exec.Command(h.helm, args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(h.tmp, "helm-cache"),
		"HELM_CONFIG_HOME="+filepath.Join(h.tmp, "helm-config"), "HELM_DATA_HOME="+filepath.Join(h.tmp, "helm-data"))
	if h.kubeconfig != "" {
		cmd.Env = append(cmd.Env, "KUBECONFIG="+h.kubeconfig)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (h chartRun) must(args ...string) string {
	h.t.Helper()
	out, err := h.run(args...)
	if err != nil {
		h.t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func (h chartRun) template(set ...string) string {
	h.t.Helper()
	args := []string{"template", "pa", h.chart, "--namespace", "privateapp-system"}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	return h.must(args...)
}

// objects splits rendered YAML into objects by kind/name.
func objects(t *testing.T, rendered string) map[string]*unstructured.Unstructured {
	t.Helper()
	out := map[string]*unstructured.Unstructured{}
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(rendered), 4096)
	for {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return out
			}
			t.Fatalf("rendered YAML: %v", err)
		}
		if len(u.Object) == 0 {
			continue
		}
		out[u.GetKind()+"/"+u.GetName()] = u
	}
}

func convert[T any](t *testing.T, u *unstructured.Unstructured) *T {
	t.Helper()
	if u == nil {
		t.Fatal("object not rendered")
	}
	b, err := yaml.Marshal(u.Object)
	must(t, err)
	var v T
	must(t, yaml.UnmarshalStrict(b, &v))
	return &v
}

func kinds(objs map[string]*unstructured.Unstructured) []string {
	var out []string
	for k := range objs {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestHelmChart lints the chart, renders it with several values, checks the
// output with kubeconform against the API server's own schemas and with
// assertions, and installs, upgrades and uninstalls it against a real API
// server.
func TestHelmChart(t *testing.T) {
	root := repoRoot(t)
	tmp := t.TempDir()
	h := chartRun{t: t, helm: tool(t, root, "helm"), chart: filepath.Join(root, "charts", "privateapp-operator"), tmp: tmp}
	kubeconform := tool(t, root, "kubeconform")

	h.must("lint", "--strict", h.chart)
	h.must("lint", "--strict", h.chart, "--set", "certificates.mode=cert-manager", "--set", "metrics.serviceMonitor.enabled=true",
		"--set", "networkPolicy.enabled=true", "--set", "notifications.smtp.address=smtp.example.com:587",
		"--set", "notifications.smtp.from=privateapps@example.com", "--set", "notifications.smtp.credentialsSecret=smtp")
	for _, bad := range []struct{ set, want string }{
		{"certificates.mode=vault", "/certificates/mode': value must be one of 'operator', 'self-signed', 'cert-manager'"},
		{"notifications.smtp.address=smtp.example.com", "/notifications/smtp/address"},
		{"controller.replicas=0", "/controller/replicas"},
		{"unknownKey=1", "unknownKey"},
		{"tokenService.limits.editions.free.perMinute=5", "perMinute"},
		{"tokenService.limits.editions.free.perTenSeconds=5", "perDay"},
		{"insights.store=mysql", "/insights/store"},
		{"insights.retention=30d", "/insights/retention"},
	} {
		out, err := h.run("template", "pa", h.chart, "--set", bad.set)
		if err == nil || !strings.Contains(out, bad.want) {
			t.Errorf("--set %s: err=%v, want a schema error naming %s; output:\n%s", bad.set, err, bad.want, out)
		}
	}
	if out, err := h.run("template", "pa", h.chart, "--set", "notifications.smtp.address=smtp.example.com:587"); err == nil ||
		!strings.Contains(out, "notifications.smtp.from is required") {
		t.Errorf("smtp without from: err=%v, output:\n%s", err, out)
	}
	for set, want := range map[string]string{
		"insights.replicas=2":     "insights.replicas > 1 needs insights.store=postgres",
		"insights.store=postgres": "insights.store=postgres needs insights.postgres.dsnSecret",
	} {
		if out, err := h.run("template", "pa", h.chart, "--set", set); err == nil || !strings.Contains(out, want) {
			t.Errorf("--set %s: err=%v, want %q; output:\n%s", set, err, want, out)
		}
	}

	t.Run("rendered output", func(t *testing.T) {
		objs := objects(t, h.template())
		for _, want := range []string{
			"CustomResourceDefinition/privateapps.privateapps.dev", "CustomResourceDefinition/tokenrotations.privateapps.dev",
			"CustomResourceDefinition/appnotifications.privateapps.dev", "Deployment/pa-privateapp-operator-controller",
			"Deployment/pa-privateapp-operator-token-service", "Service/pa-privateapp-operator-token-service",
			"Service/pa-privateapp-operator-webhook", "Service/pa-privateapp-operator-controller-metrics",
			"MutatingWebhookConfiguration/pa-privateapp-operator", "ValidatingWebhookConfiguration/pa-privateapp-operator",
			"PodDisruptionBudget/pa-privateapp-operator-controller", "PodDisruptionBudget/pa-privateapp-operator-token-service",
			"ClusterRole/pa-privateapp-operator-admin", "ClusterRole/pa-privateapp-operator-edit", "ClusterRole/pa-privateapp-operator-view",
			"ConfigMap/pa-privateapp-operator-directory",
			"Deployment/pa-privateapp-operator-insights", "Service/pa-privateapp-operator-insights",
			"APIService/v1alpha1.insights.privateapps.dev", "PersistentVolumeClaim/pa-privateapp-operator-insights",
			"ClusterRole/pa-privateapp-operator-insights-reader", "ClusterRole/pa-privateapp-operator-insights-viewer", "RoleBinding/pa-privateapp-operator-insights-auth-reader",
			"Secret/pa-privateapp-operator-insights-ingest",
			"ValidatingAdmissionPolicy/pa-privateapp-operator-token-service-status",
			"ValidatingAdmissionPolicyBinding/pa-privateapp-operator-token-service-status",
			"ValidatingAdmissionPolicy/pa-privateapp-operator-directory", "ValidatingAdmissionPolicyBinding/pa-privateapp-operator-directory",
		} {
			if objs[want] == nil {
				t.Errorf("%s not rendered; got %v", want, kinds(objs))
			}
		}
		if objs["ServiceMonitor/pa-privateapp-operator"] != nil {
			t.Error("the ServiceMonitor is rendered without being enabled")
		}
		// NetworkPolicies ship enabled: the token service's port admits the
		// release's namespace only, until gateways' namespaces are listed;
		// those may then call it and send access logs.
		tokenServicePeers := func(objs map[string]*unstructured.Unstructured) []networkingv1.NetworkPolicyPeer {
			np := objs["NetworkPolicy/pa-privateapp-operator-token-service"]
			if np == nil {
				t.Fatalf("no token-service NetworkPolicy; got %v", kinds(objs))
			}
			return convert[networkingv1.NetworkPolicy](t, np).Spec.Ingress[0].From
		}
		if peers := tokenServicePeers(objs); len(peers) != 1 || peers[0].PodSelector == nil || len(peers[0].PodSelector.MatchLabels) != 0 ||
			peers[0].NamespaceSelector != nil {
			t.Errorf("by default the token service admits %+v, want the pods of its own namespace only", peers)
		}
		gateways := objects(t, h.template("networkPolicy.gatewayNamespaces={ingress-nginx,edge}"))
		ingressNginx := networkingv1.NetworkPolicyPeer{NamespaceSelector: &metav1.LabelSelector{
			MatchLabels: map[string]string{"kubernetes.io/metadata.name": "ingress-nginx"}}}
		if peers := tokenServicePeers(gateways); len(peers) != 3 || !reflect.DeepEqual(peers[1], ingressNginx) {
			t.Errorf("with gatewayNamespaces [ingress-nginx edge] the token service admits %+v", peers)
		}
		ingest := convert[networkingv1.NetworkPolicy](t, gateways["NetworkPolicy/pa-privateapp-operator-insights"]).Spec.Ingress[1]
		if len(ingest.From) != 3 || !reflect.DeepEqual(ingest.From[1], ingressNginx) {
			t.Errorf("with gatewayNamespaces the call log's ingest admits %+v, want the token service and both namespaces", ingest.From)
		}
		if off := objects(t, h.template("networkPolicy.enabled=false")); off["NetworkPolicy/pa-privateapp-operator-token-service"] != nil {
			t.Error("networkPolicy.enabled=false still renders a NetworkPolicy")
		}
		// Each sender kind its own secret; the token service holds only its own.
		ingestSecret := convert[corev1.Secret](t, objs["Secret/pa-privateapp-operator-insights-ingest"])
		if len(ingestSecret.Data) != 3 || len(ingestSecret.Data["gateway"]) < 16 || bytes.Equal(ingestSecret.Data["gateway"], ingestSecret.Data["audit"]) ||
			bytes.Equal(ingestSecret.Data["audit"], ingestSecret.Data["token-service"]) || bytes.Equal(ingestSecret.Data["gateway"], ingestSecret.Data["token-service"]) {
			t.Errorf("the ingest Secret holds %d keys, want three different secrets: gateway, audit, token-service", len(ingestSecret.Data))
		}
		crd := convert[apiextensionsv1.CustomResourceDefinition](t, objs["CustomResourceDefinition/privateapps.privateapps.dev"])
		if crd.Annotations["helm.sh/resource-policy"] != "keep" {
			t.Error("CRDs lack helm.sh/resource-policy: keep with crds.keep=true")
		}

		// The token service's identity cannot touch Secrets; the controller's can.
		rules := func(role string) []rbacv1.PolicyRule {
			return convert[rbacv1.ClusterRole](t, objs["ClusterRole/"+role]).Rules
		}
		grantsSecrets := func(rs []rbacv1.PolicyRule) bool {
			for _, r := range rs {
				if slices.Contains(r.Resources, "secrets") || slices.Contains(r.Resources, "*") {
					return true
				}
			}
			return false
		}
		if grantsSecrets(rules("pa-privateapp-operator-token-service")) {
			t.Error("the token service's ClusterRole grants access to Secrets")
		}
		if grantsSecrets(rules("pa-privateapp-operator-insights")) {
			t.Error("the insights ClusterRole grants access to Secrets")
		}
		if !grantsSecrets(rules("pa-privateapp-operator-controller")) {
			t.Error("the controller's ClusterRole does not grant Secrets; it writes the tokens")
		}
		for _, r := range rules("pa-privateapp-operator-edit") {
			if slices.Contains(r.Resources, "appnotifications") && slices.ContainsFunc(r.Verbs, func(v string) bool { return v != "get" && v != "list" && v != "watch" }) {
				t.Errorf("edit may %v AppNotifications", r.Verbs)
			}
			if slices.ContainsFunc(r.Resources, func(res string) bool { return strings.HasSuffix(res, "/status") }) {
				t.Errorf("edit may write %v", r.Resources)
			}
		}
		ts := convert[appsv1.Deployment](t, objs["Deployment/pa-privateapp-operator-token-service"])
		ctl := convert[appsv1.Deployment](t, objs["Deployment/pa-privateapp-operator-controller"])
		if ts.Spec.Template.Spec.ServiceAccountName != "pa-privateapp-operator-token-service" {
			t.Errorf("token service runs as %q", ts.Spec.Template.Spec.ServiceAccountName)
		}
		if !slices.Contains(ctl.Spec.Template.Spec.Containers[0].Args, "--leader-elect") || *ctl.Spec.Replicas != 2 {
			t.Errorf("controller: replicas %d args %v; want 2 with --leader-elect", *ctl.Spec.Replicas, ctl.Spec.Template.Spec.Containers[0].Args)
		}
		ins := convert[appsv1.Deployment](t, objs["Deployment/pa-privateapp-operator-insights"])
		insArgs := strings.Join(ins.Spec.Template.Spec.Containers[0].Args, " ")
		// Each Deployment runs its component's command of the image.
		for d, command := range map[*appsv1.Deployment]string{ctl: "/manager", ts: "/token-service", ins: "/insights"} {
			if c := d.Spec.Template.Spec.Containers[0]; strings.Join(c.Command, " ") != command {
				t.Errorf("%s runs %q, want %s", d.Name, c.Command, command)
			}
		}
		for _, want := range []string{"--call-log-sqlite=/var/lib/privateapp-insights/calls.db", "--secure-port=8444",
			"--tls-cert-file=/etc/privateapp-operator/insights-tls/tls.crt", "--call-log-ingest-bind-address=:8445", "--call-log-syslog-bind-address=:5514"} {
			if !strings.Contains(insArgs, want) {
				t.Errorf("insights args %s lack %s", insArgs, want)
			}
		}
		if *ins.Spec.Replicas != 1 || ins.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
			t.Errorf("insights on SQLite: %d replicas, strategy %s; want 1, Recreate", *ins.Spec.Replicas, ins.Spec.Strategy.Type)
		}
		tsArgs := strings.Join(ts.Spec.Template.Spec.Containers[0].Args, " ")
		if !strings.Contains(tsArgs, "--introspection-rate-limit=50") || strings.Contains(tsArgs, "--token-review-client-ca") ||
			strings.Contains(tsArgs, "--token-review-audiences") {
			t.Errorf("token service defaults: %s; want the introspection limit, no client CA, no audiences", tsArgs)
		}
		if !strings.Contains(tsArgs, "--call-log-url=https://pa-privateapp-operator-insights.privateapp-system.svc:8445") ||
			!strings.Contains(tsArgs, "--call-log-token-file=/etc/privateapp-operator/insights-ingest/token-service") {
			t.Errorf("the token service does not send its decisions to the call log with its own secret: %s", tsArgs)
		}
		for _, v := range ts.Spec.Template.Spec.Volumes {
			if v.Secret != nil && v.Secret.SecretName == "pa-privateapp-operator-insights-ingest" &&
				(len(v.Secret.Items) != 1 || v.Secret.Items[0].Key != "token-service") {
				t.Errorf("the token-service pods mount %+v of the ingest Secret, want only key token-service", v.Secret.Items)
			}
		}
		for _, want := range []string{"--call-log-gateway-token-file=/etc/privateapp-operator/insights-ingest/gateway",
			"--call-log-audit-token-file=/etc/privateapp-operator/insights-ingest/audit",
			"--call-log-token-service-token-file=/etc/privateapp-operator/insights-ingest/token-service"} {
			if !strings.Contains(insArgs, want) {
				t.Errorf("insights args %s lack %s", insArgs, want)
			}
		}
		if !slices.Contains(ctl.Spec.Template.Spec.Containers[0].Args, "--insights-apiservice=v1alpha1.insights.privateapps.dev") {
			t.Error("operator mode: the controller does not inject its CA into the insights APIService")
		}
		for _, d := range []*appsv1.Deployment{ts, ctl, ins} {
			pod, c := d.Spec.Template.Spec, d.Spec.Template.Spec.Containers[0]
			if pod.SecurityContext == nil || !*pod.SecurityContext.RunAsNonRoot || !*c.SecurityContext.ReadOnlyRootFilesystem ||
				*c.SecurityContext.AllowPrivilegeEscalation || c.Resources.Limits.Memory().IsZero() ||
				c.LivenessProbe == nil || c.ReadinessProbe == nil {
				t.Errorf("%s is not hardened: %+v %+v", d.Name, pod.SecurityContext, c.SecurityContext)
			}
			// The Go runtime knows the memory limit, so garbage does not take
			// a full pod past it.
			if !slices.ContainsFunc(c.Env, func(e corev1.EnvVar) bool {
				return e.Name == "GOMEMLIMIT" && e.ValueFrom != nil && e.ValueFrom.ResourceFieldRef != nil && e.ValueFrom.ResourceFieldRef.Resource == "limits.memory"
			}) {
				t.Errorf("%s does not set GOMEMLIMIT from its memory limit: %+v", d.Name, c.Env)
			}
			// An emptyDir or a log can fill a node: each is bounded.
			if c.Resources.Requests.StorageEphemeral().IsZero() || c.Resources.Limits.StorageEphemeral().IsZero() {
				t.Errorf("%s has no ephemeral-storage request and limit: %+v", d.Name, c.Resources)
			}
		}
		// Two replicas on one node fall together: they are spread, softly,
		// so that a one-node cluster still runs them.
		for _, d := range []*appsv1.Deployment{ts, ctl} {
			spread := d.Spec.Template.Spec.TopologySpreadConstraints
			if len(spread) != 1 || spread[0].TopologyKey != "kubernetes.io/hostname" || spread[0].WhenUnsatisfiable != corev1.ScheduleAnyway ||
				spread[0].LabelSelector == nil || !maps.Equal(spread[0].LabelSelector.MatchLabels, d.Spec.Selector.MatchLabels) {
				t.Errorf("%s's replicas are not spread over nodes by its own pods: %+v", d.Name, spread)
			}
		}

		// By default the operator runs its own CA: no key material in the
		// release, a writable in-memory directory for the webhook certificate.
		if objs["Secret/pa-privateapp-operator-webhook-tls"] != nil || objs["Secret/pa-privateapp-operator-token-service-tls"] != nil {
			t.Error("operator mode renders certificate Secrets; the operator makes them")
		}
		for _, arg := range []string{"--self-signed-certs", "--cert-name-prefix=pa-privateapp-operator", "--webhook-configurations=pa-privateapp-operator"} {
			if !slices.Contains(ctl.Spec.Template.Spec.Containers[0].Args, arg) {
				t.Errorf("operator mode: controller args %v lack %s", ctl.Spec.Template.Spec.Containers[0].Args, arg)
			}
		}
		if v := ctl.Spec.Template.Spec.Volumes[0]; v.Name != "webhook-tls" || v.EmptyDir == nil {
			t.Errorf("operator mode: webhook-tls volume %+v, want an emptyDir", v)
		}

		// Self-signed mode: the CA bundle in the webhook configurations signs
		// the serving certificates, which name the Services.
		objs = objects(t, h.template("certificates.mode=self-signed"))
		webhookSecret := convert[corev1.Secret](t, objs["Secret/pa-privateapp-operator-webhook-tls"])
		tsSecret := convert[corev1.Secret](t, objs["Secret/pa-privateapp-operator-token-service-tls"])
		vwc := convert[admissionregistrationv1.ValidatingWebhookConfiguration](t, objs["ValidatingWebhookConfiguration/pa-privateapp-operator"])
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(vwc.Webhooks[0].ClientConfig.CABundle) {
			t.Fatal("the webhook configuration has no CA bundle")
		}
		for host, s := range map[string]*corev1.Secret{
			"pa-privateapp-operator-webhook.privateapp-system.svc":       webhookSecret,
			"pa-privateapp-operator-token-service.privateapp-system.svc": tsSecret,
		} {
			block, _ := pem.Decode(s.Data["tls.crt"])
			if block == nil {
				t.Fatalf("%s has no certificate", s.Name)
			}
			cert, err := x509.ParseCertificate(block.Bytes)
			must(t, err)
			if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: host}); err != nil {
				t.Errorf("%s does not verify for %s with the webhook CA bundle: %v", s.Name, host, err)
			}
		}
		apiService := convert[apiregistrationv1.APIService](t, objs["APIService/v1alpha1.insights.privateapps.dev"])
		insightsSecret := convert[corev1.Secret](t, objs["Secret/pa-privateapp-operator-insights-tls"])
		insightsRoots := x509.NewCertPool()
		if !insightsRoots.AppendCertsFromPEM(apiService.Spec.CABundle) {
			t.Fatal("self-signed mode: the insights APIService has no CA bundle")
		}
		if block, _ := pem.Decode(insightsSecret.Data["tls.crt"]); block == nil {
			t.Error("self-signed mode: no insights certificate")
		} else if cert, err := x509.ParseCertificate(block.Bytes); err != nil {
			t.Error(err)
		} else if _, err := cert.Verify(x509.VerifyOptions{Roots: insightsRoots, DNSName: "pa-privateapp-operator-insights.privateapp-system.svc"}); err != nil {
			t.Errorf("the insights certificate does not verify with the APIService's CA bundle: %v", err)
		}
		if apiService.Spec.Service.Name != "pa-privateapp-operator-insights" || apiService.Spec.Service.Namespace != "privateapp-system" {
			t.Errorf("the APIService points at %+v", apiService.Spec.Service)
		}
		if vwc.Webhooks[0].ClientConfig.Service.Name != "pa-privateapp-operator-webhook" || *vwc.Webhooks[0].FailurePolicy != admissionregistrationv1.Fail {
			t.Errorf("webhook points at %+v with failurePolicy %s", vwc.Webhooks[0].ClientConfig.Service, *vwc.Webhooks[0].FailurePolicy)
		}

		noCRDs := objects(t, h.template("crds.enabled=false"))
		for k := range noCRDs {
			if strings.HasPrefix(k, "CustomResourceDefinition/") {
				t.Errorf("crds.enabled=false still renders %s", k)
			}
		}
		notKept := objects(t, h.template("crds.keep=false"))
		if _, ok := notKept["CustomResourceDefinition/privateapps.privateapps.dev"].GetAnnotations()["helm.sh/resource-policy"]; ok {
			t.Error("crds.keep=false still sets the keep policy")
		}
		cm := objects(t, h.template("certificates.mode=cert-manager", "metrics.serviceMonitor.enabled=true", "networkPolicy.enabled=true"))
		for _, want := range []string{"Certificate/pa-privateapp-operator-webhook", "Certificate/pa-privateapp-operator-token-service",
			"Issuer/pa-privateapp-operator-ca", "ServiceMonitor/pa-privateapp-operator",
			"NetworkPolicy/pa-privateapp-operator-controller", "NetworkPolicy/pa-privateapp-operator-token-service",
			"Certificate/pa-privateapp-operator-insights", "NetworkPolicy/pa-privateapp-operator-insights"} {
			if cm[want] == nil {
				t.Errorf("%s not rendered; got %v", want, kinds(cm))
			}
		}
		if cm["Secret/pa-privateapp-operator-webhook-tls"] != nil {
			t.Error("cert-manager mode still renders a self-signed Secret")
		}
		if a := cm["APIService/v1alpha1.insights.privateapps.dev"]; a.GetAnnotations()["cert-manager.io/inject-ca-from"] != "privateapp-system/pa-privateapp-operator-insights" {
			t.Errorf("cert-manager mode: the APIService's annotations %v", a.GetAnnotations())
		}
		pg := objects(t, h.template("insights.store=postgres", "insights.postgres.dsnSecret=pg", "insights.replicas=3"))
		if pg["PersistentVolumeClaim/pa-privateapp-operator-insights"] != nil {
			t.Error("insights on PostgreSQL still claims a volume")
		}
		pgDeploy := convert[appsv1.Deployment](t, pg["Deployment/pa-privateapp-operator-insights"])
		if *pgDeploy.Spec.Replicas != 3 || !slices.Contains(pgDeploy.Spec.Template.Spec.Containers[0].Args, "--call-log-postgres-dsn-file=/etc/privateapp-operator/postgres/dsn") {
			t.Errorf("insights on PostgreSQL: %d replicas, args %v", *pgDeploy.Spec.Replicas, pgDeploy.Spec.Template.Spec.Containers[0].Args)
		}
		noEdit := objects(t, h.template("insights.aggregateToEdit=false"))
		if l := noEdit["ClusterRole/pa-privateapp-operator-insights-reader"].GetLabels(); l["rbac.authorization.k8s.io/aggregate-to-edit"] != "" {
			t.Errorf("insights.aggregateToEdit=false still aggregates the reader role: %v", l)
		}
		mwc := cm["MutatingWebhookConfiguration/pa-privateapp-operator"]
		if mwc.GetAnnotations()["cert-manager.io/inject-ca-from"] != "privateapp-system/pa-privateapp-operator-webhook" {
			t.Errorf("cert-manager mode: annotations %v", mwc.GetAnnotations())
		}
		notes := objects(t, h.template("notifications.smtp.address=smtp.example.com:587", "notifications.smtp.from=pa@example.com",
			"notifications.smtp.credentialsSecret=smtp", "notifications.webhook.url=https://hooks.example.com/x",
			"notifications.webhook.secretName=hook", "notifications.directory.users.alice=alice@example.com",
			"notifications.chat[0].name=platform", "notifications.chat[0].format=Slack", "notifications.chat[0].urlSecret=slack-hook"))
		config := notes["ConfigMap/pa-privateapp-operator-notifications"].Object["data"].(map[string]any)["config.yaml"].(string)
		if err := yaml.UnmarshalStrict([]byte(config), &notify.Config{}); err != nil {
			t.Errorf("the chart's notifications config does not parse as the manager reads it: %v\n%s", err, config)
		}
		if d := notes["Deployment/pa-privateapp-operator-controller"]; !strings.Contains(fmt.Sprint(d.Object), "mountPath:/etc/privateapp-operator/chat/platform") ||
			!strings.Contains(fmt.Sprint(d.Object), "secretName:slack-hook") {
			t.Errorf("the controller does not mount the chat webhook's Secret slack-hook at /etc/privateapp-operator/chat/platform")
		}
		if out, err := h.run("template", "pa", h.chart, "--set", "notifications.chat[0].name=x", "--set", "notifications.chat[0].format=Discord",
			"--set", "notifications.chat[0].urlSecret=s"); err == nil || !strings.Contains(out, "format") {
			t.Errorf("a chat of an unknown format renders: %v\n%s", err, out)
		}
		limits := objects(t, h.template("tokenService.limits.defaultEdition=starter",
			"tokenService.limits.editions.starter.perTenSeconds=7", "tokenService.limits.editions.starter.perDay=7000"))
		limitsFile := filepath.Join(tmp, "limits.yaml")
		must(t, os.WriteFile(limitsFile, []byte(limits["ConfigMap/pa-privateapp-operator-limits"].Object["data"].(map[string]any)["limits.yaml"].(string)), 0o600))
		if l, err := tokenservice.LoadLimits(limitsFile); err != nil {
			t.Errorf("the chart's limits file does not load: %v", err)
		} else if got := l.Editions["starter"].PerTenSeconds; got != 7 {
			t.Errorf("starter per 10 s = %d from the chart's limits file, want 7", got)
		}
		for _, want := range []string{"address: \"smtp.example.com:587\"", "passwordFile: /etc/privateapp-operator/smtp/password",
			"secretFile: /etc/privateapp-operator/notification-webhook/secret", "name: pa-privateapp-operator-directory",
			"urlFile: /etc/privateapp-operator/chat/platform/url", "format: Slack"} {
			if !strings.Contains(config, want) {
				t.Errorf("notifications config lacks %q:\n%s", want, config)
			}
		}
	})

	// A real API server: install, upgrade, uninstall.
	env, c, kubeconfig := startControlPlane(t, root, tmp, func(e *envtest.Environment) {
		e.CRDDirectoryPaths, e.ErrorIfCRDPathMissing = nil, false
	})
	h.kubeconfig = kubeconfig
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	install := h.must("install", "pa", h.chart, "--namespace", "privateapp-system", "--create-namespace")
	if !strings.Contains(install, "Call the token service") || !strings.Contains(install, "get secret my-app-token") {
		t.Errorf("NOTES do not say how to get a token and call the token service:\n%s", install)
	}
	if !strings.Contains(install, "The token service admits only pods of namespace privateapp-system") {
		t.Errorf("NOTES do not say that no gateway namespace is listed yet:\n%s", install)
	}
	for _, name := range []string{"privateapps.privateapps.dev", "tokenrotations.privateapps.dev", "appnotifications.privateapps.dev"} {
		waitUntil(t, ctx, "CRD "+name+" is established", func() bool {
			crd := &apiextensionsv1.CustomResourceDefinition{}
			if c.Get(ctx, client.ObjectKey{Name: name}, crd) != nil {
				return false
			}
			for _, cond := range crd.Status.Conditions {
				if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
					return true
				}
			}
			return false
		})
	}

	t.Run("kubeconform", func(t *testing.T) {
		location := writeSchemas(t, env.Config, filepath.Join(tmp, "schemas"))
		for _, set := range [][]string{
			nil,
			{"certificates.mode=cert-manager", "metrics.serviceMonitor.enabled=true", "networkPolicy.enabled=true",
				"tokenService.limits.editions.free.perTenSeconds=10",
				"tokenService.limits.editions.free.perDay=1000",
				"tokenService.redis.address=redis.redis.svc:6379", "tokenService.redis.passwordSecret=redis",
				"tokenService.oauth.clientsSecret=introspection-clients"},
			{"webhooks.enabled=false", "tokenService.enabled=false", "metrics.enabled=false", "crds.enabled=false", "rbac.userRoles=false"},
		} {
			rendered := h.template(set...)
			if oauth := slices.Contains(set, "tokenService.oauth.clientsSecret=introspection-clients"); oauth != (strings.Contains(rendered,
				"--introspection-clients-file=/etc/privateapp-operator/introspection/clients.yaml") && strings.Contains(rendered, "secretName: introspection-clients")) {
				t.Errorf("with %v: the introspection clients Secret is mounted and named to the token service: %v, want %v", set, !oauth, oauth)
			}
			if set == nil && !strings.Contains(rendered, "--token-service-issuer=https://pa-privateapp-operator-token-service.privateapp-system.svc:8443") {
				t.Errorf("the default issuer is not the token service's Service URL")
			}
			cmd := exec.Command(kubeconform, "-strict", "-summary", "-schema-location", location,
				// cert-manager's and the Prometheus operator's kinds are not installed here.
				"-skip", "Certificate,Issuer,ServiceMonitor")
			cmd.Stdin = strings.NewReader(rendered)
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "Invalid: 0, Errors: 0") {
				t.Errorf("kubeconform with %v: %v\n%s", set, err, out)
			}
		}
		bad := strings.Replace(h.template(), "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: true\n            readOnlyRootFS: true", 1)
		cmd := exec.Command(kubeconform, "-strict", "-schema-location", location, "-skip", "Certificate,Issuer,ServiceMonitor")
		cmd.Stdin = strings.NewReader(bad)
		if out, err := cmd.CombinedOutput(); err == nil {
			t.Errorf("kubeconform accepted an unknown field; the schemas are not strict:\n%s", out)
		}
	})

	// No operator pod runs here; inject a CA bundle the way it does, then
	// check an upgrade carries it over instead of blanking it.
	injected := []byte("-----BEGIN CERTIFICATE-----\nMIIBinjected\n-----END CERTIFICATE-----\n")
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	must(t, c.Get(ctx, client.ObjectKey{Name: "pa-privateapp-operator"}, vwc))
	for i := range vwc.Webhooks {
		if len(vwc.Webhooks[i].ClientConfig.CABundle) != 0 {
			t.Fatal("operator mode installed a CA bundle of the chart's own")
		}
		vwc.Webhooks[i].ClientConfig.CABundle = injected
	}
	must(t, c.Update(ctx, vwc))
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{}
	must(t, c.Get(ctx, client.ObjectKey{Name: "pa-privateapp-operator"}, mwc))
	mwc.Webhooks[0].ClientConfig.CABundle = injected
	must(t, c.Update(ctx, mwc))
	caBefore := injected
	must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-a"}}))
	app := &v1alpha1.PrivateApp{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "crm"},
		Spec: v1alpha1.PrivateAppSpec{DisplayName: "CRM", Scopes: []string{"crm.objects.contacts.read"}}}
	// No pod runs here, so the registered webhook cannot answer, and
	// failurePolicy Fail refuses the app: proof the webhooks are registered.
	if err := c.Create(ctx, app.DeepCopy()); err == nil || !strings.Contains(err.Error(), "failed calling webhook") {
		t.Fatalf("creating an app with the webhook registered but unreachable: %v, want a webhook failure", err)
	}

	// A release from before each sender kind had its own secret kept one,
	// "token": an upgrade keeps it as the gateways' (their nginx configs
	// hold it) and makes the audit webhook's and the token service's anew.
	ingestSecret := &corev1.Secret{}
	ingestKey := client.ObjectKey{Namespace: "privateapp-system", Name: "pa-privateapp-operator-insights-ingest"}
	must(t, c.Get(ctx, ingestKey, ingestSecret))
	const preSplit = "the-one-secret-of-an-older-release"
	ingestSecret.Data = map[string][]byte{"token": []byte(preSplit)}
	must(t, c.Update(ctx, ingestSecret))

	h.must("upgrade", "pa", h.chart, "--namespace", "privateapp-system")
	must(t, c.Get(ctx, ingestKey, ingestSecret))
	upgraded := ingestSecret.Data
	if string(upgraded["gateway"]) != preSplit || len(upgraded["audit"]) < 16 || len(upgraded["token-service"]) < 16 ||
		string(upgraded["audit"]) == preSplit || string(upgraded["token-service"]) == preSplit || bytes.Equal(upgraded["audit"], upgraded["token-service"]) {
		t.Errorf("upgrading a release with one ingest secret: gateway kept %v, audit and token-service new and different: %v, %v",
			string(upgraded["gateway"]) == preSplit, len(upgraded["audit"]), len(upgraded["token-service"]))
	}
	must(t, c.Get(ctx, client.ObjectKey{Name: "pa-privateapp-operator"}, vwc))
	must(t, c.Get(ctx, client.ObjectKey{Name: "pa-privateapp-operator"}, mwc))
	for _, w := range vwc.Webhooks {
		if !bytes.Equal(w.ClientConfig.CABundle, caBefore) {
			t.Error("helm upgrade blanked or replaced the injected CA bundle of a validating webhook")
		}
	}
	if !bytes.Equal(mwc.Webhooks[0].ClientConfig.CABundle, caBefore) {
		t.Error("helm upgrade blanked or replaced the injected CA bundle of the mutating webhook")
	}
	h.must("upgrade", "pa", h.chart, "--namespace", "privateapp-system", "--set", "webhooks.enabled=false")
	if err := c.Get(ctx, client.ObjectKey{Name: "pa-privateapp-operator"}, vwc); !apierrors.IsNotFound(err) {
		t.Fatalf("webhooks.enabled=false left the webhook configuration: %v", err)
	}
	must(t, c.Create(ctx, app.DeepCopy()))
	must(t, c.Get(ctx, ingestKey, ingestSecret))
	if !maps.EqualFunc(ingestSecret.Data, upgraded, bytes.Equal) {
		t.Error("a second upgrade changed the senders' secrets")
	}

	h.must("uninstall", "pa", "--namespace", "privateapp-system")
	if err := c.Get(ctx, client.ObjectKey{Namespace: "privateapp-system", Name: "pa-privateapp-operator-controller"}, &appsv1.Deployment{}); !apierrors.IsNotFound(err) {
		t.Errorf("the controller Deployment survived uninstall: %v", err)
	}
	if err := c.Get(ctx, client.ObjectKey{Name: "privateapps.privateapps.dev"}, &apiextensionsv1.CustomResourceDefinition{}); err != nil {
		t.Fatalf("the CRD did not survive uninstall with crds.keep: %v", err)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(app), &v1alpha1.PrivateApp{}); err != nil {
		t.Fatalf("the app did not survive uninstall: %v", err)
	}
}
