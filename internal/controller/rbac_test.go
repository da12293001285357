package controller

import (
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
)

// The shipped user roles, bound in a namespace and exercised as their users
// through the API server's RBAC authorizer.
var _ = Describe("User roles in config/rbac", func() {
	var ns string

	BeforeEach(func() {
		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "rbac-"}}
		Expect(k8s.Create(ctx, n)).To(Succeed())
		ns = n.Name
		for _, role := range []string{"admin", "edit", "view"} {
			cr := &rbacv1.ClusterRole{}
			data, err := os.ReadFile(filepath.Join("..", "..", "config", "rbac", "privateapps_"+role+"_role.yaml"))
			Expect(err).NotTo(HaveOccurred())
			Expect(yaml.UnmarshalStrict(data, cr)).To(Succeed())
			Expect(cr.Labels).To(HaveKeyWithValue("rbac.authorization.k8s.io/aggregate-to-"+role, "true"))
			if err := k8s.Create(ctx, cr); err != nil {
				Expect(apierrors.IsAlreadyExists(err)).To(BeTrue(), "creating ClusterRole %s: %v", cr.Name, err)
			}
			Expect(k8s.Create(ctx, &rbacv1.RoleBinding{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: role},
				RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: cr.Name},
				Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: role + "-user"}},
			})).To(Succeed())
		}
	})

	as := func(user string) client.Client {
		c := rest.CopyConfig(cfg)
		c.Impersonate = rest.ImpersonationConfig{UserName: user}
		cl, err := client.New(c, client.Options{Scheme: scheme})
		Expect(err).NotTo(HaveOccurred())
		return cl
	}
	notification := func(name string) *v1alpha1.AppNotification {
		return &v1alpha1.AppNotification{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec: v1alpha1.AppNotificationSpec{Event: v1alpha1.EventAppInstalled,
				Recipients: v1alpha1.Recipients{Kind: v1alpha1.RecipientsSuperAdmins}}}
	}
	forbidden := func(err error) {
		GinkgoHelper()
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "want Forbidden, got %v", err)
	}

	It("lets editors manage apps but not notifications or status, and viewers only read", func() {
		admin, edit, view := as("admin-user"), as("edit-user"), as("view-user")

		Expect(edit.Create(ctx, newApp(ns, "by-editor"))).To(Succeed())
		forbidden(edit.Create(ctx, notification("by-editor")))
		Expect(admin.Create(ctx, notification("by-admin"))).To(Succeed())
		Expect(edit.Get(ctx, client.ObjectKey{Namespace: ns, Name: "by-admin"}, &v1alpha1.AppNotification{})).To(Succeed())

		app := waitReady(ns, "by-editor")
		app.Status.Connection = v1alpha1.ConnectionConnected
		app.Status.InstalledBy = "someone-else"
		forbidden(edit.Status().Update(ctx, app))
		forbidden(admin.Status().Update(ctx, app))

		Expect(view.List(ctx, &v1alpha1.PrivateAppList{}, client.InNamespace(ns))).To(Succeed())
		Expect(view.List(ctx, &v1alpha1.AppNotificationList{}, client.InNamespace(ns))).To(Succeed())
		forbidden(view.Create(ctx, newApp(ns, "by-viewer")))
		forbidden(view.Delete(ctx, app))
		forbidden(edit.Delete(ctx, notification("by-admin")))
		Expect(admin.Delete(ctx, notification("by-admin"))).To(Succeed())
	})

	It("lets the catalog reader read API catalogs, and no namespace role change them", func() {
		cr := &rbacv1.ClusterRole{}
		data, err := os.ReadFile(filepath.Join("..", "..", "config", "rbac", "privateapps_catalog_reader_role.yaml"))
		Expect(err).NotTo(HaveOccurred())
		Expect(yaml.UnmarshalStrict(data, cr)).To(Succeed())
		if err := k8s.Create(ctx, cr); err != nil {
			Expect(apierrors.IsAlreadyExists(err)).To(BeTrue(), "creating ClusterRole %s: %v", cr.Name, err)
		}
		binding := &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "catalog-readers-" + ns},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: cr.Name},
			Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: "User", Name: "reader-" + ns}},
		}
		Expect(k8s.Create(ctx, binding)).To(Succeed())
		DeferCleanup(func() { Expect(k8s.Delete(ctx, binding)).To(Succeed()) })

		reader := as("reader-" + ns)
		Eventually(func() error { return reader.List(ctx, &v1alpha1.APICatalogList{}) }).Should(Succeed())
		catalog := &v1alpha1.APICatalog{ObjectMeta: metav1.ObjectMeta{Name: "by-" + ns},
			Spec: v1alpha1.APICatalogSpec{Scopes: []v1alpha1.CatalogScope{{Name: "crm.objects.contacts.read"}}}}
		forbidden(reader.Create(ctx, catalog))
		// Bound in a namespace, even the admin role reaches no cluster-scoped catalog.
		forbidden(as("admin-user").Create(ctx, catalog))
		forbidden(as("view-user").List(ctx, &v1alpha1.APICatalogList{}))
	})
})
