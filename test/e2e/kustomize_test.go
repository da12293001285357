package e2e

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"
)

// TestKustomizeDefault renders config/default the way the docs install it,
// checks what a platform team relies on in the Deployment, and applies every
// object to a real kube-apiserver, which validates them.
func TestKustomizeDefault(t *testing.T) {
	root := repoRoot(t)
	out, err := exec.Command("kubectl", "kustomize", filepath.Join(root, "config", "default")).Output()
	if err != nil {
		t.Fatalf("kubectl kustomize config/default: %v", err)
	}
	kinds := map[string]int{}
	var deploy appsv1.Deployment
	for _, doc := range bytes.Split(out, []byte("\n---\n")) {
		var meta struct{ Kind string }
		if err := yaml.Unmarshal(doc, &meta); err != nil {
			t.Fatal(err)
		}
		kinds[meta.Kind]++
		if meta.Kind == "Deployment" {
			if err := yaml.UnmarshalStrict(doc, &deploy); err != nil {
				t.Fatal(err)
			}
		}
	}
	for kind, n := range map[string]int{"CustomResourceDefinition": 4, "Namespace": 1, "ServiceAccount": 1, "ClusterRole": 10,
		"ClusterRoleBinding": 3, "MutatingWebhookConfiguration": 1, "ValidatingWebhookConfiguration": 1, "Role": 1, "RoleBinding": 1, "Service": 3, "Deployment": 1,
		"ValidatingAdmissionPolicy": 1, "ValidatingAdmissionPolicyBinding": 1} {
		if kinds[kind] != n {
			t.Errorf("%d %s, want %d", kinds[kind], kind, n)
		}
	}

	pod := deploy.Spec.Template.Spec
	// One container per component, each its command of the image.
	if len(pod.Containers) != 2 || pod.Containers[0].Name != "manager" || pod.Containers[1].Name != "token-service" ||
		strings.Join(pod.Containers[0].Command, " ") != "/manager" || strings.Join(pod.Containers[1].Command, " ") != "/token-service" {
		t.Fatalf("the Deployment's containers are not the manager and the token service, each by its command: %+v", pod.Containers)
	}
	c, ts := pod.Containers[0], pod.Containers[1]
	for _, want := range []string{"--token-service-bind-address=:8443", "--token-service-tls-cert=/etc/privateapp/token-service-tls/tls.crt",
		"--token-service-tls-key=/etc/privateapp/token-service-tls/tls.key"} {
		if !slices.Contains(ts.Args, want) {
			t.Errorf("token-service args %v lack %s", ts.Args, want)
		}
	}
	if ts.ReadinessProbe == nil || ts.SecurityContext == nil || ts.SecurityContext.ReadOnlyRootFilesystem == nil || !*ts.SecurityContext.ReadOnlyRootFilesystem ||
		ts.Resources.Limits.Memory().IsZero() {
		t.Error("the token-service container lacks a probe, a read-only root or a memory limit")
	}
	switch {
	case deploy.Namespace != "privateapp-system":
		t.Errorf("Deployment in %q", deploy.Namespace)
	case pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot:
		t.Error("the pod may run as root")
	case c.SecurityContext == nil || c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem:
		t.Error("the root filesystem is writable")
	case c.SecurityContext.AllowPrivilegeEscalation == nil || *c.SecurityContext.AllowPrivilegeEscalation:
		t.Error("privilege escalation is allowed")
	case c.LivenessProbe == nil || c.ReadinessProbe == nil:
		t.Error("probes are missing")
	case c.Resources.Limits.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero():
		t.Error("resources are missing")
	case !strings.Contains(strings.Join(c.Args, " "), "--leader-elect"):
		t.Error("replicas > 1 need --leader-elect")
	case !strings.Contains(strings.Join(c.Args, " "), "--self-signed-certs"):
		t.Error("the operator's own CA is off: nothing would make the webhook and token service certificates")
	case len(pod.Volumes) == 0 || pod.Volumes[0].Secret == nil || pod.Volumes[0].Secret.SecretName != "privateapp-token-service-tls":
		t.Error("the token service's certificate does not come from the Secret docs/install.md names")
	}

	// The names the operator's CA is told are the names kustomize gave.
	for _, want := range []string{"--webhook-service=privateapp-webhook-service",
		"--webhook-configurations=privateapp-mutating-webhook-configuration,privateapp-validating-webhook-configuration"} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("manager args %v lack %s", c.Args, want)
		}
	}
	for _, want := range []string{"name: privateapp-webhook-service", "name: privateapp-mutating-webhook-configuration",
		"name: privateapp-validating-webhook-configuration"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("kustomize output lacks %q", want)
		}
	}

	// A real API server accepts every object.
	tmp := t.TempDir()
	_, _, kubeconfig := startControlPlane(t, root, tmp)
	apply := exec.Command("kubectl", "--kubeconfig", kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", "-")
	apply.Stdin = bytes.NewReader(out)
	if b, err := apply.CombinedOutput(); err != nil {
		t.Fatalf("kubectl apply --server-side: %v\n%s", err, b)
	}
	// The binding names the policy by the name kustomize gave it.
	if b, err := exec.Command("kubectl", "--kubeconfig", kubeconfig, "get", "validatingadmissionpolicy/privateapp-directory",
		"validatingadmissionpolicybinding/privateapp-directory", "-o", "jsonpath={.items[1].spec.policyName}").CombinedOutput(); err != nil || string(b) != "privateapp-directory" {
		t.Errorf("the directory policy and its binding: %v %s", err, b)
	}
	got, err := exec.Command("kubectl", "--kubeconfig", kubeconfig, "get", "deployment,service,serviceaccount", "-n", "privateapp-system", "-o", "name").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"deployment.apps/privateapp-controller-manager", "service/privateapp-token-service", "serviceaccount/privateapp-controller-manager"} {
		if !strings.Contains(string(got), want) {
			t.Errorf("%s not created; got\n%s", want, got)
		}
	}
}
