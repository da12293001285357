package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/privateapps-dev/privateapp-operator/internal/certs"
	appwebhook "github.com/privateapps-dev/privateapp-operator/internal/webhook"
)

// TestOnlyAdminsChangeWhoIsNotified applies the chart's policies and roles
// to a real kube-apiserver: a namespace editor, who may write ConfigMaps,
// can neither create, change nor delete the namespace's
// privateapps-directory, nor touch the cluster-wide directory; a namespace
// admin can manage the namespace's; other ConfigMaps stay the editor's.
func TestOnlyAdminsChangeWhoIsNotified(t *testing.T) {
	root := repoRoot(t)
	tmp := t.TempDir()
	env, c, _ := startControlPlane(t, root, tmp)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	const ns, tenant = "privateapp-system", "team-a"
	h := chartRun{t: t, helm: tool(t, root, "helm"), chart: filepath.Join(root, "charts", "privateapp-operator"), tmp: tmp}
	objs := objects(t, h.must("template", "pa", h.chart, "--namespace", ns, "--show-only", "templates/policies.yaml", "--show-only", "templates/rbac.yaml"))
	createRendered(t, ctx, c, objs, ns, "ValidatingAdmissionPolicy/pa-privateapp-operator-directory",
		"ValidatingAdmissionPolicyBinding/pa-privateapp-operator-directory", "ClusterRole/pa-privateapp-operator-admin", "ClusterRole/pa-privateapp-operator-edit")
	for _, n := range []string{ns, tenant} {
		must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}))
	}
	// Without kube-controller-manager nothing aggregates roles: bind what
	// admin and edit aggregate (Kubernetes' own rules and the chart's).
	user := func(name, namespace string, roles ...string) client.Client {
		for _, role := range roles {
			must(t, c.Create(ctx, &rbacv1.RoleBinding{
				ObjectMeta: metav1.ObjectMeta{Namespace: namespace, GenerateName: name + "-"},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
				Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: name}},
			}))
		}
		u, err := env.AddUser(envtest.User{Name: name}, nil)
		must(t, err)
		uc, err := client.New(u.Config(), client.Options{Scheme: c.Scheme()})
		must(t, err)
		return uc
	}
	editor := user("erin", tenant, "system:aggregate-to-edit", "system:aggregate-to-view", "pa-privateapp-operator-edit")
	admin := user("adam", tenant, "system:aggregate-to-admin", "system:aggregate-to-edit", "system:aggregate-to-view", "pa-privateapp-operator-admin")
	opsAdmin := user("oscar", ns, "system:aggregate-to-admin", "system:aggregate-to-edit", "system:aggregate-to-view", "pa-privateapp-operator-admin")
	opsEditor := user("olga", ns, "system:aggregate-to-edit", "system:aggregate-to-view", "pa-privateapp-operator-edit")

	directory := func(namespace, name, to string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name},
			Data: map[string]string{"directory.yaml": "superAdmins: [mallory]\nusers: {mallory: " + to + "}\n"}}
	}
	forbidden := func(what string, err error, wants ...string) {
		t.Helper()
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s: %v, want forbidden", what, err)
			return
		}
		for _, want := range wants {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s: %q does not say %q", what, err, want)
			}
		}
	}

	// A new policy takes kube-apiserver a moment to load.
	waitUntil(t, ctx, "the directory policy is in force", func() bool {
		return apierrors.IsForbidden(editor.Create(ctx, directory(tenant, "privateapps-directory", "mallory@example.com"), client.DryRunAll))
	})
	forbidden("an editor creates the namespace's directory", editor.Create(ctx, directory(tenant, "privateapps-directory", "mallory@example.com")),
		"who is notified about the apps of namespace team-a", "ask a namespace admin")
	must(t, editor.Create(ctx, directory(tenant, "settings", "anything@example.com")))
	must(t, admin.Create(ctx, directory(tenant, "privateapps-directory", "alice@example.com")))
	cm := &corev1.ConfigMap{}
	must(t, editor.Get(ctx, client.ObjectKey{Namespace: tenant, Name: "privateapps-directory"}, cm))
	cm.Data["directory.yaml"] = "{}"
	forbidden("an editor empties the namespace's directory", editor.Update(ctx, cm), "team-a")
	forbidden("an editor deletes the namespace's directory", editor.Delete(ctx, cm), "team-a")
	must(t, admin.Update(ctx, cm))

	must(t, c.Create(ctx, directory(ns, "pa-privateapp-operator-directory", "alice@example.com")))
	must(t, opsEditor.Get(ctx, client.ObjectKey{Namespace: ns, Name: "pa-privateapp-operator-directory"}, cm))
	cm.Data["directory.yaml"] = "{}"
	forbidden("an editor of the operator's namespace changes the cluster directory", opsEditor.Update(ctx, cm), "notifications.directory")
	forbidden("an admin of the operator's namespace only changes the cluster directory", opsAdmin.Update(ctx, cm), "all namespaces")
	must(t, c.Update(ctx, cm))
}

// TestOperatorCAUpdatesOnlyItsOwnObjects runs the operator's CA
// (CertRotator) as the chart's controller ServiceAccount, bound to the
// chart's controller ClusterRole: it injects its bundle into the chart's
// webhook configurations and APIService, and that identity cannot change
// anyone else's webhook configuration.
func TestOperatorCAUpdatesOnlyItsOwnObjects(t *testing.T) {
	root := repoRoot(t)
	tmp := t.TempDir()
	env, c, _ := startControlPlane(t, root, tmp)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	const ns, name = "privateapp-system", "pa-privateapp-operator"
	h := chartRun{t: t, helm: tool(t, root, "helm"), chart: filepath.Join(root, "charts", "privateapp-operator"), tmp: tmp}
	objs := objects(t, h.template())
	must(t, c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	createRendered(t, ctx, c, objs, ns, "ClusterRole/"+name+"-controller", "ServiceAccount/"+name+"-controller",
		"MutatingWebhookConfiguration/"+name, "ValidatingWebhookConfiguration/"+name, "APIService/v1alpha1.insights.privateapps.dev")
	must(t, c.Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-controller"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name + "-controller"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: ns, Name: name + "-controller"}},
	}))
	others := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "someone-elses"}}
	must(t, c.Create(ctx, others))

	_, cc := asServiceAccount(t, ctx, env, c, ns, name+"-controller")

	rotator := &appwebhook.CertRotator{Client: cc, Reader: cc, Namespace: ns, Prefix: name, WebhookConfigurations: []string{name},
		APIServices: []string{"v1alpha1.insights.privateapps.dev"}, CertDir: filepath.Join(tmp, "webhook-tls"),
		Policy: certs.DefaultPolicy, Clock: clock.RealClock{}, Log: logr.Discard()}
	must(t, rotator.Sync(ctx))
	mutating := &admissionregistrationv1.MutatingWebhookConfiguration{}
	must(t, c.Get(ctx, client.ObjectKey{Name: name}, mutating))
	api := &apiregistrationv1.APIService{}
	must(t, c.Get(ctx, client.ObjectKey{Name: "v1alpha1.insights.privateapps.dev"}, api))
	if len(mutating.Webhooks) == 0 || len(mutating.Webhooks[0].ClientConfig.CABundle) == 0 || len(api.Spec.CABundle) == 0 {
		t.Fatal("the operator's CA did not inject its bundle as the controller's identity")
	}

	err := cc.Get(ctx, client.ObjectKeyFromObject(others), others)
	if err == nil {
		others.Webhooks = []admissionregistrationv1.ValidatingWebhook{}
		others.Annotations = map[string]string{"hijacked": "true"}
		err = cc.Update(ctx, others)
	}
	if !apierrors.IsForbidden(err) {
		t.Errorf("the controller's identity changed another webhook configuration: %v; want forbidden", err)
	}
}
