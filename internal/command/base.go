// Package command is what the operator's commands share: how a command reads
// and checks its flags, its logging, its connection to the Kubernetes API
// and its metrics, health and profiling endpoints. Each component
// (cmd/manager, cmd/token-service, cmd/insights) is an Options type of its
// own beside its main; this package holds only the common part.
package command

import (
	"context"
	goflag "flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/metricsauth"
)

// Component is one command: its flags, the check of their combination
// (every problem at once, before anything starts) and what it runs.
type Component interface {
	AddFlags(fs *pflag.FlagSet)
	Validate() []error
	Run(ctx context.Context) error
}

// Main runs c as the command name: it parses the arguments, reports every
// problem of the command line and exits 2 before anything starts, then runs
// c until a signal ends it (exit 1 when it fails).
func Main(name, about string, c Component) {
	os.Exit(run(name, about, c, os.Args[1:], os.Stderr))
}

func run(name, about string, c Component, args []string, stderr io.Writer) int {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "%s: %s\n\nUsage: %s [flags]\n\nFlags:\n%s", name, about, name, fs.FlagUsages())
	}
	c.AddFlags(fs)
	// controller-runtime's --kubeconfig, and the zap logger's flags.
	if kc := goflag.CommandLine.Lookup("kubeconfig"); kc != nil {
		fs.AddGoFlag(kc)
	}
	logging := zap.Options{}
	goflags := goflag.NewFlagSet(name, goflag.ContinueOnError)
	logging.BindFlags(goflags)
	fs.AddGoFlagSet(goflags)
	if err := fs.Parse(args); err != nil {
		if err == pflag.ErrHelp {
			return 0
		}
		fmt.Fprintf(stderr, "%s: %v (see --help)\n", name, err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s takes flags only; %q is not one (see --help)\n", name, fs.Arg(0))
		return 2
	}
	if problems := c.Validate(); len(problems) > 0 {
		fmt.Fprintf(stderr, "The command line has %d problem(s); nothing was started:\n", len(problems))
		for _, p := range problems {
			fmt.Fprintf(stderr, "  - %s\n", p)
		}
		return 2
	}
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&logging)))
	if err := c.Run(ctrl.SetupSignalHandler()); err != nil {
		ctrl.Log.WithName("setup").Error(err, name+" stopped with an error")
		return 1
	}
	return 0
}

// Kubeconfig is the kubeconfig file the command was given (--kubeconfig,
// else $KUBECONFIG); empty in a cluster.
func Kubeconfig() string {
	if kc := goflag.CommandLine.Lookup("kubeconfig"); kc != nil && kc.Value.String() != "" {
		return kc.Value.String()
	}
	return os.Getenv("KUBECONFIG")
}

// Options are the flags every component has: its endpoints besides the one
// it exists for, and its client of the Kubernetes API.
type Options struct {
	MetricsAddr    string
	MetricsSecure  bool
	MetricsCertDir string
	ProbeAddr      string
	PprofAddr      string
	KubeQPS        float64
	KubeBurst      int
}

// AddFlags adds the common flags.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.MetricsAddr, "metrics-bind-address", "0", "Address of the metrics endpoint, e.g. :8080; 0 turns it off.")
	fs.BoolVar(&o.MetricsSecure, "metrics-secure", true, "Serve metrics over HTTPS to clients the kube-apiserver authenticates (TokenReview) and authorizes (SubjectAccessReview: get on the non-resource URL /metrics, which the metrics-reader ClusterRole grants); others get 401 or 403. false serves plain HTTP to anyone who reaches the address (local development only: the metrics name every tenant's apps).")
	fs.StringVar(&o.MetricsCertDir, "metrics-cert-dir", "", "Directory with tls.crt and tls.key for the HTTPS metrics endpoint, read again when they change; empty: a self-signed certificate made at start.")
	fs.StringVar(&o.ProbeAddr, "health-probe-bind-address", ":8081", "Address of the /healthz and /readyz endpoints; 0 turns them off.")
	fs.StringVar(&o.PprofAddr, "pprof-bind-address", "", "Address of Go's net/http/pprof profiles (heap, CPU), e.g. 127.0.0.1:6060; empty turns them off. Profiles name no token, but bind it to loopback.")
	fs.Float64Var(&o.KubeQPS, "kube-api-qps", 50, "Requests per second to the Kubernetes API server.")
	fs.IntVar(&o.KubeBurst, "kube-api-burst", 100, "Burst of requests to the Kubernetes API server.")
}

// Validate lists the common flags' problems.
func (o *Options) Validate() []error {
	var out []error
	if o.KubeQPS <= 0 || o.KubeBurst <= 0 {
		out = append(out, fmt.Errorf("--kube-api-qps (%g) and --kube-api-burst (%d) must be more than zero", o.KubeQPS, o.KubeBurst))
	}
	return out
}

// Scheme holds every kind the components read and write.
func Scheme() *runtime.Scheme {
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))
	utilruntime.Must(apiregistrationv1.AddToScheme(scheme))
	return scheme
}

// Config is the client configuration of the Kubernetes API, with the
// command's QPS and burst.
func (o *Options) Config() (*rest.Config, error) {
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = float32(o.KubeQPS), o.KubeBurst
	return cfg, nil
}

// ManagerOptions are the controller-runtime manager's options for the
// common endpoints; the component adds its own.
func (o *Options) ManagerOptions() ctrl.Options {
	metrics := metricsserver.Options{BindAddress: o.MetricsAddr}
	if o.MetricsSecure {
		// As kubebuilder projects do: HTTPS behind the kube-apiserver's
		// authentication and authorization (a scraper needs a token whose
		// user may get /metrics).
		metrics.SecureServing = true
		metrics.FilterProvider = metricsauth.Filter
		metrics.CertDir = o.MetricsCertDir
	}
	return ctrl.Options{
		Scheme:                 Scheme(),
		Metrics:                metrics,
		HealthProbeBindAddress: o.ProbeAddr,
		PprofBindAddress:       o.PprofAddr,
	}
}

// CommaList reads a comma-separated flag, ignoring spaces and empty items.
func CommaList(s string) []string {
	var out []string
	for part := range strings.SplitSeq(s, ",") {
		if p := strings.TrimSpace(part); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// ReadSecretFile reads a secret a flag names, without surrounding white
// space; an empty path is no secret.
func ReadSecretFile(flagName, path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flagName, err)
	}
	return []byte(strings.TrimSpace(string(b))), nil
}

// Check parses args as the command does and returns what Validate finds:
// the components' tests go through their real flags.
func Check(c Component, args ...string) ([]error, error) {
	fs := pflag.NewFlagSet("check", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return c.Validate(), nil
}
