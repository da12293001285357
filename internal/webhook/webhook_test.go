package webhook

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/catalogfeed"
	"github.com/privateapps-dev/privateapp-operator/internal/notify"
)

var (
	ctx     context.Context
	cancel  context.CancelFunc
	testEnv *envtest.Environment
	admin   client.Client // requests as user "alice"
	scheme  = runtime.NewScheme()
	// warned is admin whose warnings land in warnings.
	warned   client.Client
	warnings warningLog
	catalogs *catalogfeed.Feed
)

const maxApps = 3

func TestWebhooks(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Webhook Suite")
}

var _ = BeforeSuite(func() {
	ctx, cancel = context.WithCancel(context.Background())
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))
	utilruntime.Must(apiregistrationv1.AddToScheme(scheme))
	testEnv = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: filepath.Join("..", "..", "bin", "k8s"),
		WebhookInstallOptions: envtest.WebhookInstallOptions{Paths: []string{filepath.Join("..", "..", "config", "webhook")}},
	}
	if os.Getenv("KUBEBUILDER_ASSETS") != "" {
		testEnv.BinaryAssetsDirectory = ""
	}
	cfg, err := testEnv.Start()
	Expect(err).NotTo(HaveOccurred())

	alice, err := testEnv.AddUser(envtest.User{Name: "alice", Groups: []string{"system:masters"}}, nil)
	Expect(err).NotTo(HaveOccurred())
	admin, err = client.New(alice.Config(), client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())

	wio := testEnv.WebhookInstallOptions
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:  scheme,
		Metrics: metricsserver.Options{BindAddress: "0"},
		WebhookServer: webhook.NewServer(webhook.Options{
			Host: wio.LocalServingHost, Port: wio.LocalServingPort, CertDir: wio.LocalServingCertDir,
		}),
	})
	Expect(err).NotTo(HaveOccurred())
	catalogs = catalogfeed.New(ctrl.Log.WithName("catalogs"))
	Expect(catalogs.Register(ctx, mgr.GetCache())).To(Succeed())
	Expect(mgr.Add(catalogs)).To(Succeed())
	Expect((&PrivateAppWebhook{Reader: mgr.GetAPIReader(), MaxAppsPerNamespace: maxApps, Catalogs: catalogs}).SetupWithManager(mgr)).To(Succeed())
	Expect((&APICatalogWebhook{Reader: mgr.GetAPIReader()}).SetupWithManager(mgr)).To(Succeed())
	Expect((&TokenRotationWebhook{Reader: mgr.GetAPIReader()}).SetupWithManager(mgr)).To(Succeed())
	Expect((&AppNotificationWebhook{Reader: mgr.GetAPIReader()}).SetupWithManager(mgr)).To(Succeed())
	warnCfg := rest.CopyConfig(alice.Config())
	warnCfg.WarningHandler = &warnings
	warned, err = client.New(warnCfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	go func() {
		defer GinkgoRecover()
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
	// The webhook server answers once its port is open.
	Eventually(func() error {
		return admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "ready-"}})
	}).Should(Succeed())
	// The catalog every test's apps ask their scopes from.
	Expect(admin.Create(ctx, catalogOffering("base", "crm.objects.contacts.read", "crm.objects.contacts.write", "crm.objects.deals.read"))).To(Succeed())
	Eventually(func() bool { return catalogs.Current().Offers("crm.objects.deals.read") }).Should(BeTrue())
})

var _ = AfterSuite(func() {
	cancel()
	Expect(testEnv.Stop()).To(Succeed())
})

// warningLog collects the warnings the API server sends back, as kubectl
// prints them.
type warningLog struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warningLog) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, text)
}

func (w *warningLog) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.msgs
	w.msgs = nil
	return out
}

func newNamespace() string {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "wh-"}}
	Expect(admin.Create(ctx, ns)).To(Succeed())
	return ns.Name
}

func app(ns, name string, scopes ...string) *v1alpha1.PrivateApp {
	if len(scopes) == 0 {
		scopes = []string{"crm.objects.contacts.read"}
	}
	return &v1alpha1.PrivateApp{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       v1alpha1.PrivateAppSpec{DisplayName: name, Scopes: scopes},
	}
}

func expectRefused(err error, message string) {
	ExpectWithOffset(1, err).To(HaveOccurred())
	ExpectWithOffset(1, err.Error()).To(ContainSubstring(message))
}

var _ = Describe("PrivateApp admission", func() {
	It("records the requesting user as the installer, overwriting what the user wrote", func() {
		ns := newNamespace()
		a := app(ns, "crm")
		a.Annotations = map[string]string{v1alpha1.InstalledByAnnotation: "mallory"}
		Expect(admin.Create(ctx, a)).To(Succeed())
		Expect(a.Annotations).To(HaveKeyWithValue(v1alpha1.InstalledByAnnotation, "alice"))

		a.Annotations[v1alpha1.InstalledByAnnotation] = "mallory"
		expectRefused(admin.Update(ctx, a), "cannot be changed")
	})

	It("records who changes the app's spec, and refuses a forged one", func() {
		ns := newNamespace()
		a := app(ns, "sync")
		Expect(admin.Create(ctx, a)).To(Succeed())
		Expect(a.Annotations).NotTo(HaveKey(v1alpha1.ChangedByAnnotation))

		By("a metadata change names nobody")
		a.Labels = map[string]string{"team": "payments"}
		Expect(admin.Update(ctx, a)).To(Succeed())
		Expect(a.Annotations).NotTo(HaveKey(v1alpha1.ChangedByAnnotation))

		By("suspending names the user, whatever the request said")
		a.Spec.Suspend = true
		a.Annotations[v1alpha1.ChangedByAnnotation] = "mallory"
		Expect(admin.Update(ctx, a)).To(Succeed())
		Expect(a.Annotations).To(HaveKeyWithValue(v1alpha1.ChangedByAnnotation, "alice"))

		By("setting it without a change of the spec is refused")
		a.Annotations[v1alpha1.ChangedByAnnotation] = "mallory"
		expectRefused(admin.Update(ctx, a), "recorded when its spec changes")
	})

	It("refuses the app past the namespace cap with the namespace, the count and the limit", func() {
		ns := newNamespace()
		for i := range maxApps {
			Expect(admin.Create(ctx, app(ns, fmt.Sprintf("app-%d", i)))).To(Succeed())
		}
		expectRefused(admin.Create(ctx, app(ns, "one-too-many")),
			fmt.Sprintf(`namespace %q already has %d private apps and the limit is %d`, ns, maxApps, maxApps))
	})

	It("refuses scopes no catalog offers, naming the three closest offered ones", func() {
		err := admin.Create(ctx, app(newNamespace(), "crm", "crm.objects.contacts.read", "crm.objects.contact.read"))
		expectRefused(err, `spec.scopes[1]: Invalid value: "crm.objects.contact.read": no APICatalog offers this scope; `+
			`the closest offered scopes are crm.objects.contacts.read, crm.objects.contacts.write, crm.objects.deals.read`)
		Expect(err.Error()).NotTo(ContainSubstring("spec.scopes[0]"))
	})
})

var _ = Describe("TokenRotation admission", func() {
	rotation := func(ns, name string, strategy v1alpha1.RotationStrategy) *v1alpha1.TokenRotation {
		return &v1alpha1.TokenRotation{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
			Spec:       v1alpha1.TokenRotationSpec{AppName: "crm", Strategy: strategy},
		}
	}

	It("refuses a rotation of an app that does not exist", func() {
		expectRefused(admin.Create(ctx, rotation(newNamespace(), "r", v1alpha1.RotationImmediate)),
			"no PrivateApp of that name")
	})

	It("refuses a second Delayed rotation during a grace period, naming the one that holds it", func() {
		ns := newNamespace()
		a := app(ns, "crm")
		Expect(admin.Create(ctx, a)).To(Succeed())
		a.Status.Token = &v1alpha1.TokenStatus{
			Digest: "sha256:" + fmt.Sprintf("%064d", 1), IssuedAt: metav1.Now(),
			Previous: &v1alpha1.PreviousTokenStatus{Digest: "sha256:" + fmt.Sprintf("%064d", 2),
				ExpiresAt: metav1.NewTime(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)), Rotation: "first"},
		}
		Expect(admin.Status().Update(ctx, a)).To(Succeed())

		expectRefused(admin.Create(ctx, rotation(ns, "second", v1alpha1.RotationDelayed)),
			`grace period of TokenRotation "first" until 2030-01-01T00:00:00Z; set expireOldTokenNow: true or cancel: true on first`)
		Expect(admin.Create(ctx, rotation(ns, "leak", v1alpha1.RotationImmediate))).To(Succeed(), "Immediate is always allowed")
	})

	It("warns about notification apps and recipients that do not exist, and accepts the notification", func() {
		ns := newNamespace()
		Expect(admin.Create(ctx, app(ns, "crm"))).To(Succeed())
		Expect(admin.Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: notify.NamespaceDirectoryName},
			Data:       map[string]string{notify.DirectoryKey: "users: {alice: alice@example.com}\nteams: {ops: [alice]}\n"},
		})).To(Succeed())
		n := &v1alpha1.AppNotification{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "down"},
			Spec: v1alpha1.AppNotificationSpec{Event: v1alpha1.EventAppDisconnected, Apps: []string{"crm", "ghost"},
				Recipients: v1alpha1.Recipients{Kind: v1alpha1.RecipientsSpecific, Users: []string{"alice", "zed"}, Teams: []string{"ops", "sre"}}},
		}
		warnings.take()
		Expect(warned.Create(ctx, n)).To(Succeed())
		Expect(warnings.take()).To(ConsistOf(
			fmt.Sprintf("spec.apps: no PrivateApp ghost in namespace %s yet; the notification applies to it once it exists", ns),
			fmt.Sprintf("spec.recipients.users: zed not in the directory (ConfigMap %s/privateapps-directory); they get nothing until added there", ns),
			fmt.Sprintf("spec.recipients.teams: sre not in the directory (ConfigMap %s/privateapps-directory); they get nothing until added there", ns),
		))

		n.Spec.Apps, n.Spec.Recipients = []string{"crm"}, v1alpha1.Recipients{Kind: v1alpha1.RecipientsSpecific, Teams: []string{"ops"}}
		Expect(warned.Update(ctx, n)).To(Succeed())
		Expect(warnings.take()).To(BeEmpty(), "nothing to warn about")
	})

	It("refuses the grace-period actions outside a grace period", func() {
		ns := newNamespace()
		Expect(admin.Create(ctx, app(ns, "crm"))).To(Succeed())
		r := rotation(ns, "r", v1alpha1.RotationDelayed)
		Expect(admin.Create(ctx, r)).To(Succeed())
		r.Status.Phase = v1alpha1.RotationCompleted
		Expect(admin.Status().Update(ctx, r)).To(Succeed())

		err := admin.Patch(ctx, r, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"cancel":true}}`)))
		expectRefused(err, "spec.cancel: Forbidden: the rotation is Completed, not in its grace period")

		r.Status.Phase = v1alpha1.RotationGracePeriod
		Expect(admin.Status().Update(ctx, r)).To(Succeed())
		Expect(admin.Patch(ctx, r, client.RawPatch(types.MergePatchType, []byte(`{"spec":{"expireOldTokenNow":true}}`)))).To(Succeed())
	})
})
