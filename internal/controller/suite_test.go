package controller

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/workqueue"
	clocktesting "k8s.io/utils/clock/testing"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/catalogfeed"
	"github.com/privateapps-dev/privateapp-operator/internal/hubid"
)

// unmanagedLabel keeps an app away from the suite's manager, so that a test
// can set up by hand the state a crash would leave, then hand the app over.
const unmanagedLabel = "test.privateapps.dev/unmanaged"

var (
	ctx       context.Context
	cancel    context.CancelFunc
	testEnv   *envtest.Environment
	cfg       *rest.Config
	k8s       client.Client
	clientset *kubernetes.Clientset
	fakeClock *clocktesting.FakeClock
	scheme    = runtime.NewScheme()

	// managerLog holds everything the manager logged, to be searched for
	// tokens.
	managerLog syncBuffer
	// tokens collects every token the operator ever wrote into a Secret.
	tokens tokenSet
)

// idRegistryKey is the ConfigMap of the HubSpot ids in the tests.
var idRegistryKey = types.NamespacedName{Namespace: "default", Name: "privateapp-operator-ids"}

func TestControllers(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Controller Suite")
}

var _ = BeforeSuite(func() {
	ctrl.SetLogger(zap.New(zap.WriteTo(&managerLog), zap.UseDevMode(true)))
	ctx, cancel = context.WithCancel(context.Background())
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))

	testEnv = &envtest.Environment{
		CRDDirectoryPaths:     []string{filepath.Join("..", "..", "config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		BinaryAssetsDirectory: filepath.Join("..", "..", "bin", "k8s"),
	}
	if os.Getenv("KUBEBUILDER_ASSETS") != "" {
		testEnv.BinaryAssetsDirectory = ""
	}
	var err error
	cfg, err = testEnv.Start()
	Expect(err).NotTo(HaveOccurred())

	k8s, err = client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	clientset = kubernetes.NewForConfigOrDie(cfg)
	go tokens.watch(ctx, clientset)

	fakeClock = clocktesting.NewFakeClock(time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC))
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:  scheme,
		Metrics: metricsserver.Options{BindAddress: "0"},
		Cache:   testCacheOptions(),
	})
	Expect(err).NotTo(HaveOccurred())
	catalogs := catalogfeed.New(ctrl.Log.WithName("catalogs"))
	Expect(catalogs.Register(ctx, mgr.GetCache())).To(Succeed())
	Expect(mgr.Add(catalogs)).To(Succeed())
	Expect((&APICatalogReconciler{Client: mgr.GetClient(), Recorder: mgr.GetEventRecorder("privateapp-operator"), Clock: fakeClock}).
		SetupWithManager(mgr)).To(Succeed())
	Expect((&PrivateAppReconciler{
		Catalogs:                catalogs,
		Client:                  mgr.GetClient(),
		APIReader:               mgr.GetAPIReader(),
		Recorder:                mgr.GetEventRecorder("privateapp-operator"),
		Clock:                   fakeClock,
		MaxAppsPerNamespace:     DefaultMaxAppsPerNamespace,
		MaxConcurrentReconciles: 4,
		NewQueue:                newFakeClockQueue,
		IDs: &hubid.Registry{Reader: mgr.GetAPIReader(), Writer: mgr.GetClient(), Key: idRegistryKey,
			InUse: func(ctx context.Context) (int64, error) { return hubid.LargestInUse(ctx, mgr.GetAPIReader()) }},
	}).SetupWithManager(mgr)).To(Succeed())

	Expect((&TokenRotationReconciler{Client: mgr.GetClient(), Clock: fakeClock}).SetupWithManager(mgr)).To(Succeed())

	go func() {
		defer GinkgoRecover()
		Expect(mgr.Start(ctx)).To(Succeed())
	}()
	startNotificationInfra()
})

var _ = AfterSuite(func() {
	cancel()
	if testEnv != nil {
		Expect(testEnv.Stop()).To(Succeed())
	}
})

// Every test ends by checking that no token the operator issued so far shows
// up in the manager's log, in an Event, or in any PrivateApp (status included).
var _ = AfterEach(func() {
	var evs eventsv1.EventList
	Expect(k8s.List(ctx, &evs)).To(Succeed())
	var apps v1alpha1.PrivateAppList
	Expect(k8s.List(ctx, &apps)).To(Succeed())
	var haystack bytes.Buffer
	haystack.WriteString(managerLog.String())
	for _, e := range evs.Items {
		haystack.WriteString(e.Note + "\n" + e.Reason + "\n")
	}
	for _, a := range apps.Items {
		j, err := json.Marshal(a)
		Expect(err).NotTo(HaveOccurred())
		haystack.Write(j)
	}
	Expect(tokens.foundIn(haystack.String())).To(BeZero(), "tokens found in logs, Events or app objects")
})

// testCacheOptions are the operator's cache options, without the apps a
// test marks as unmanaged.
func testCacheOptions() cache.Options {
	opts := CacheOptions()
	managed, err := labels.NewRequirement(unmanagedLabel, selection.DoesNotExist, nil)
	Expect(err).NotTo(HaveOccurred())
	opts.ByObject[&v1alpha1.PrivateApp{}] = cache.ByObject{Label: labels.NewSelector().Add(*managed)}
	return opts
}

// newFakeClockQueue runs every delay the reconciler asks for on the fake
// clock as well as the real one: tests step the fake clock through lifetimes
// and grace periods, while short real-time waits still pass by themselves.
// Reconciles are idempotent, so the second of the two wake-ups does nothing.
func newFakeClockQueue(name string, rl workqueue.TypedRateLimiter[reconcile.Request]) workqueue.TypedRateLimitingInterface[reconcile.Request] {
	return &fakeClockQueue{
		TypedRateLimitingInterface: workqueue.NewTypedRateLimitingQueueWithConfig(rl,
			workqueue.TypedRateLimitingQueueConfig[reconcile.Request]{Name: name}),
	}
}

type fakeClockQueue struct {
	workqueue.TypedRateLimitingInterface[reconcile.Request]
}

func (q *fakeClockQueue) AddAfter(item reconcile.Request, d time.Duration) {
	q.TypedRateLimitingInterface.AddAfter(item, d)
	if d > 0 {
		fakeClock.AfterFunc(d, func() { q.Add(item) })
	}
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	GinkgoWriter.Write(p)
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// tokenSet records every token written into a token Secret, from a watch on
// all Secrets, so that none escapes the leak check however short-lived.
type tokenSet struct {
	mu  sync.Mutex
	all map[string]bool
}

func (s *tokenSet) watch(ctx context.Context, cs *kubernetes.Clientset) {
	defer GinkgoRecover()
	for ctx.Err() == nil {
		w, err := cs.CoreV1().Secrets("").Watch(ctx, metav1.ListOptions{FieldSelector: "type=" + string(v1alpha1.SecretType)})
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		for ev := range w.ResultChan() {
			if sec, ok := ev.Object.(*corev1.Secret); ok {
				s.add(sec)
			}
		}
	}
}

func (s *tokenSet) add(sec *corev1.Secret) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.all == nil {
		s.all = map[string]bool{}
	}
	for _, k := range []string{v1alpha1.SecretTokenKey, v1alpha1.SecretPreviousTokenKey} {
		if v := string(sec.Data[k]); v != "" {
			s.all[v] = true
		}
	}
}

// foundIn counts the recorded tokens that occur in text. It returns a count,
// never the tokens, so that a failure does not print them.
func (s *tokenSet) foundIn(text string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for t := range s.all {
		if bytes.Contains([]byte(text), []byte(t)) {
			n++
		}
	}
	return n
}

func (s *tokenSet) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.all)
}
