// Command bench-reconcile measures how long the manager takes to give 1,000
// PrivateApps in 50 namespaces their tokens on an envtest control plane, and
// its peak memory, next to a floor measured in the same run: a plain client
// making the same API writes per app (add the finalizer, create the Secret,
// write status, record the Installed Event) with the same concurrency and the
// same client rate limits.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kruntime "k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/token"
	"github.com/privateapps-dev/privateapp-operator/test/framework"
)

type options struct {
	manager, assets, crds string
	apps, namespaces      int
	concurrency           int
	qps                   float64
	burst                 int
}

func main() {
	var o options
	flags := flag.NewFlagSet("bench-reconcile", flag.ExitOnError)
	flags.StringVar(&o.manager, "manager", "bin/manager", "The manager binary.")
	flags.StringVar(&o.assets, "assets", envOr("KUBEBUILDER_ASSETS", "bin/k8s"), "Directory with etcd and kube-apiserver.")
	flags.StringVar(&o.crds, "crds", "config/crd/bases", "The CRDs.")
	flags.IntVar(&o.apps, "apps", 1000, "How many apps.")
	flags.IntVar(&o.namespaces, "namespaces", 50, "How many namespaces they spread over.")
	flags.IntVar(&o.concurrency, "concurrency", 4, "Parallel reconciles of the manager, and workers of the floor.")
	flags.Float64Var(&o.qps, "qps", 200, "Client requests per second, for the manager and the floor alike.")
	flags.IntVar(&o.burst, "burst", 400, "Client burst, for the manager and the floor alike.")
	_ = flags.Parse(os.Args[1:])
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench-reconcile:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	scheme := kruntime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))

	// Each side gets a fresh control plane, so neither runs on the other's
	// warmed caches or larger database.
	var mgrTime, floorTime time.Duration
	var mem memory
	err := withControlPlane(o, scheme, func(env *envtest.Environment, cfg *rest.Config, creator client.Client) error {
		var err error
		mgrTime, mem, err = runManager(o, env, creator)
		return err
	})
	if err != nil {
		return err
	}
	err = withControlPlane(o, scheme, func(_ *envtest.Environment, cfg *rest.Config, creator client.Client) error {
		var err error
		floorTime, err = runFloor(o, cfg, scheme, creator)
		return err
	})
	if err != nil {
		return err
	}

	fmt.Printf("\n| measure | value |\n| --- | --- |\n")
	fmt.Printf("| apps, namespaces | %d, %d |\n", o.apps, o.namespaces)
	fmt.Printf("| machine | %d cores (GOMAXPROCS), %s/%s |\n", runtime.NumCPU(), runtime.GOOS, runtime.GOARCH)
	fmt.Printf("| client limits (manager and floor) | %.0f QPS, burst %d, concurrency %d |\n", o.qps, o.burst, o.concurrency)
	fmt.Printf("| manager: all apps Ready | %.1f s |\n", mgrTime.Seconds())
	fmt.Printf("| floor: same writes, plain client | %.1f s |\n", floorTime.Seconds())
	fmt.Printf("| manager / floor | %.2fx (target at most 1.2x) |\n", mgrTime.Seconds()/floorTime.Seconds())
	fmt.Printf("| manager peak resident memory (VmHWM) | %.1f MiB (target under 100 MiB) |\n", mib(mem.hwm))
	fmt.Printf("| of which the binary's own pages (RssFile, at the end) | %.1f MiB |\n", mib(mem.file))
	fmt.Printf("| manager peak anonymous memory (RssAnon, sampled every 100 ms): heap, stacks | %.1f MiB |\n", mib(mem.anonPeak))
	return nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// memory is what the manager's process held: its peak resident set, the
// part of it that is the binary's file pages, and the peak of the rest.
type memory struct {
	hwm, file, anonPeak int64
}

// procStatus reads fields (in kB, returned in bytes) of /proc/<pid>/status.
func procStatus(pid int, fields ...string) (map[string]int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && slices.Contains(fields, strings.TrimSuffix(f[0], ":")) {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return nil, err
			}
			out[strings.TrimSuffix(f[0], ":")] = kb << 10
		}
	}
	for _, f := range fields {
		if _, ok := out[f]; !ok {
			return nil, fmt.Errorf("no %s in /proc/%d/status", f, pid)
		}
	}
	return out, nil
}

func withControlPlane(o options, scheme *kruntime.Scheme, f func(*envtest.Environment, *rest.Config, client.Client) error) error {
	env := &envtest.Environment{CRDDirectoryPaths: []string{o.crds}, ErrorIfCRDPathMissing: true, BinaryAssetsDirectory: o.assets}
	cfg, err := env.Start()
	if err != nil {
		return err
	}
	defer env.Stop()
	// The creator of the apps is the same in both runs and not throttled.
	creatorCfg := rest.CopyConfig(cfg)
	creatorCfg.QPS, creatorCfg.Burst = -1, 0
	creator, err := client.New(creatorCfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	return f(env, cfg, creator)
}

func runManager(o options, env *envtest.Environment, creator client.Client) (time.Duration, memory, error) {
	var mem memory
	user, err := env.AddUser(envtest.User{Name: "bench-manager", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return 0, mem, err
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		return 0, mem, err
	}
	dir, err := os.MkdirTemp("", "bench-reconcile")
	if err != nil {
		return 0, mem, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
		return 0, mem, err
	}
	manager := &framework.Process{Bin: o.manager, Kubeconfig: path, Log: filepath.Join(dir, "manager.log"),
		Args: []string{"--health-probe-bind-address=127.0.0.1:18181", "--metrics-bind-address=127.0.0.1:18180", "--metrics-secure=false",
			"--pprof-bind-address=127.0.0.1:18182",
			"--max-concurrent-reconciles=" + strconv.Itoa(o.concurrency),
			fmt.Sprintf("--kube-api-qps=%g", o.qps), "--kube-api-burst=" + strconv.Itoa(o.burst)}}
	if err := manager.Start(); err != nil {
		return 0, mem, err
	}
	defer manager.Stop(30 * time.Second)
	pid := manager.Pid()
	if err := waitHealthy("http://127.0.0.1:18181/readyz"); err != nil {
		return 0, mem, err
	}

	if os.Getenv("BENCH_TRACE") != "" {
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
			for _, l := range strings.Split(string(st), "\n") {
				if strings.HasPrefix(l, "VmRSS") || strings.HasPrefix(l, "RssAnon") || strings.HasPrefix(l, "RssFile") {
					fmt.Println("manager before the first app:", l)
				}
			}
		}
	}
	ctx := context.Background()
	start := time.Now()
	if err := createApps(ctx, creator, "bench", o, nil); err != nil {
		return 0, mem, err
	}
	fmt.Printf("manager run: all apps created after %.1f s\n", time.Since(start).Seconds())
	lastTrace := time.Now()
	for {
		var apps v1alpha1.PrivateAppList
		if err := creator.List(ctx, &apps); err != nil {
			return 0, mem, err
		}
		ready := 0
		for i := range apps.Items {
			if strings.HasPrefix(apps.Items[i].Namespace, "bench-") &&
				meta.IsStatusConditionTrue(apps.Items[i].Status.Conditions, v1alpha1.ConditionReady) {
				ready++
			}
		}
		if st, err := procStatus(pid, "RssAnon"); err == nil {
			mem.anonPeak = max(mem.anonPeak, st["RssAnon"])
		}
		if ready == o.apps {
			break
		}
		if os.Getenv("BENCH_TRACE") != "" && time.Since(lastTrace) >= time.Second {
			fmt.Printf("  %4.1f s: %d Ready\n", time.Since(start).Seconds(), ready)
			lastTrace = time.Now()
		}
		if time.Since(start) > 10*time.Minute {
			return 0, mem, fmt.Errorf("only %d of %d apps Ready after 10 minutes", ready, o.apps)
		}
		time.Sleep(100 * time.Millisecond)
	}
	elapsed := time.Since(start)
	if file := os.Getenv("BENCH_HEAP_PROFILE"); file != "" {
		if out, err := exec.Command("curl", "-fsS", "http://127.0.0.1:18182/debug/pprof/heap").Output(); err == nil {
			_ = os.WriteFile(file, out, 0o600)
		}
	}
	st, err := procStatus(pid, "VmHWM", "RssFile", "RssAnon")
	if err == nil {
		mem.hwm, mem.file, mem.anonPeak = st["VmHWM"], st["RssFile"], max(mem.anonPeak, st["RssAnon"])
	}
	if stat, serr := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); serr == nil {
		f := strings.Fields(string(stat))
		ut, _ := strconv.Atoi(f[13])
		st, _ := strconv.Atoi(f[14])
		fmt.Printf("manager CPU time: %.1f s user, %.1f s system\n", float64(ut)/100, float64(st)/100)
	}
	if out, merr := exec.Command("curl", "-fsS", "http://127.0.0.1:18180/metrics").Output(); merr == nil {
		fmt.Println("manager API requests (rest_client_requests_total):")
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "rest_client_requests_total") {
				fmt.Println("  " + line)
			}
		}
	}
	return elapsed, mem, err
}

// runFloor makes, for each app, the writes the manager makes, with a plain
// client and the same concurrency, as soon as the app exists.
func runFloor(o options, cfg *rest.Config, scheme *kruntime.Scheme, creator client.Client) (time.Duration, error) {
	floorCfg := rest.CopyConfig(cfg)
	floorCfg.QPS, floorCfg.Burst = float32(o.qps), o.burst
	c, err := client.New(floorCfg, client.Options{Scheme: scheme})
	if err != nil {
		return 0, err
	}
	ctx := context.Background()
	created := make(chan *v1alpha1.PrivateApp, o.apps)
	var wg sync.WaitGroup
	errs := make(chan error, o.concurrency)
	start := time.Now()
	for range o.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for app := range created {
				if err := floorWrites(ctx, c, app); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	err = createApps(ctx, creator, "floor", o, created)
	fmt.Printf("floor run: all apps created after %.1f s\n", time.Since(start).Seconds())
	close(created)
	wg.Wait()
	close(errs)
	if err != nil {
		return 0, err
	}
	if err := <-errs; err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

func floorWrites(ctx context.Context, c client.Client, app *v1alpha1.PrivateApp) error {
	base := app.DeepCopy()
	app.Finalizers = append(app.Finalizers, "privateapps.dev/uninstall")
	if err := c.Patch(ctx, app, client.MergeFrom(base)); err != nil {
		return err
	}
	tok, err := token.New()
	if err != nil {
		return err
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: app.Namespace, Name: app.Name + "-token",
			Labels: map[string]string{v1alpha1.ManagedByLabel: v1alpha1.ManagedByValue}},
		Type: v1alpha1.SecretType,
		Data: map[string][]byte{v1alpha1.SecretTokenKey: []byte(tok.Reveal())},
	}
	if err := c.Create(ctx, secret); err != nil {
		return err
	}
	ev := &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{Namespace: app.Namespace, GenerateName: app.Name + "-"},
		EventTime:           metav1.NowMicro(),
		ReportingController: "bench-floor", ReportingInstance: "bench-floor",
		Action: "Reconcile", Reason: "Installed", Type: corev1.EventTypeNormal,
		Regarding: corev1.ObjectReference{Kind: "PrivateApp", APIVersion: v1alpha1.GroupVersion.String(),
			Namespace: app.Namespace, Name: app.Name, UID: app.UID},
		Note: "The app was installed",
	}
	if err := c.Create(ctx, ev); err != nil {
		return err
	}
	base = app.DeepCopy()
	now := metav1.Now()
	app.Status.Token = &v1alpha1.TokenStatus{Digest: tok.Digest().String(), IssuedAt: now}
	app.Status.Connection = v1alpha1.ConnectionConnected
	meta.SetStatusCondition(&app.Status.Conditions, metav1.Condition{Type: v1alpha1.ConditionReady, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonTokenIssued})
	return c.Status().Patch(ctx, app, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
}

// createApps creates the namespaces and the apps with 8 parallel creators,
// passing each created app to out when out is not nil.
func createApps(ctx context.Context, c client.Client, prefix string, o options, out chan<- *v1alpha1.PrivateApp) error {
	for n := range o.namespaces {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%02d", prefix, n)}}
		if err := c.Create(ctx, ns); err != nil {
			return err
		}
	}
	jobs := make(chan int)
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				app := &v1alpha1.PrivateApp{
					ObjectMeta: metav1.ObjectMeta{Namespace: fmt.Sprintf("%s-%02d", prefix, i%o.namespaces), Name: fmt.Sprintf("app-%04d", i)},
					Spec:       v1alpha1.PrivateAppSpec{DisplayName: "Bench", Scopes: []string{"crm.objects.contacts.read"}},
				}
				if err := c.Create(ctx, app); err != nil {
					errs <- err
					return
				}
				if out != nil {
					out <- app
				}
			}
		}()
	}
	for i := range o.apps {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	close(errs)
	return <-errs
}

func waitHealthy(url string) error {
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		out, err := exec.Command("curl", "-fsS", url).Output()
		if err == nil && strings.TrimSpace(string(out)) == "ok" {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("the manager was not ready at %s within a minute", url)
}

// peakRSS reads the process's high-water mark of resident memory.
func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
