// Package plugin is kubectl privateapp: the connected-apps view of
// HubSpot's settings page, in a terminal. It reads and writes only the
// resources the operator already acts on (PrivateApps, TokenRotations,
// Secrets) and the insights API (insights.privateapps.dev), with the
// user's own kubeconfig and RBAC.
package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	insightsv1alpha1 "github.com/privateapps-dev/privateapp-operator/api/insights/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
)

// Exit codes.
const (
	// ExitError: the command failed (the message says why and what to do).
	ExitError = 1
	// ExitUsage: the command line is wrong.
	ExitUsage = 2
)

// UsageError is a mistake on the command line.
type UsageError struct{ msg string }

func (e UsageError) Error() string { return e.msg }

func usageErr(format string, a ...any) error { return UsageError{fmt.Sprintf(format, a...)} }

var scheme = runtime.NewScheme()

func init() {
	utilruntime.Must(corev1.AddToScheme(scheme))
	utilruntime.Must(authorizationv1.AddToScheme(scheme))
	utilruntime.Must(authenticationv1.AddToScheme(scheme))
	utilruntime.Must(v1alpha1.AddToScheme(scheme))
	// The insights kinds in their served version only (the API's own
	// AddToScheme also registers them as the server's internal version).
	scheme.AddKnownTypes(insightsv1alpha1.SchemeGroupVersion, &insightsv1alpha1.Call{}, &insightsv1alpha1.CallList{},
		&insightsv1alpha1.RecordInsight{}, &insightsv1alpha1.RecordInsightList{}, &insightsv1alpha1.NeedsAttention{}, &insightsv1alpha1.NeedsAttentionList{},
		&insightsv1alpha1.APIUsage{}, &insightsv1alpha1.APIUsageList{})
	metav1.AddToGroupVersion(scheme, insightsv1alpha1.SchemeGroupVersion)
}

// env is what every command works with.
type env struct {
	out, errOut io.Writer
	// kube are kubectl's own flags (--kubeconfig, --context, -n, --as,
	// --token, --server, ...); their loader is made once they are parsed.
	kube          *genericclioptions.ConfigFlags
	allNamespaces bool
	output        string
	c             client.Client
	namespace     string
	now           func() time.Time
}

func (e *env) connect() error {
	if e.c != nil {
		return nil
	}
	loader := e.kube.ToRawKubeConfigLoader()
	if raw, err := loader.RawConfig(); err == nil && len(raw.Clusters) == 0 && value(e.kube.APIServer) == "" {
		return errors.New("no cluster to connect to: the kubeconfig has none; set --kubeconfig or $KUBECONFIG (or --server and --token)")
	}
	cfg, err := loader.ClientConfig()
	if err != nil {
		return fmt.Errorf("reading the kubeconfig: %w (set --kubeconfig or $KUBECONFIG)", err)
	}
	cfg.UserAgent = "kubectl-privateapp"
	e.c, err = client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", cfg.Host, err)
	}
	if e.namespace, _, err = loader.Namespace(); err != nil {
		return err
	}
	return nil
}

// listNamespace is the namespace a list reads: "" with -A.
func (e *env) listNamespace() string {
	if e.allNamespaces {
		return ""
	}
	return e.namespace
}

// NewCommand is the kubectl-privateapp command.
func NewCommand(out, errOut io.Writer) *cobra.Command {
	return newCommand(&env{out: terminalSafe{out}, errOut: terminalSafe{errOut}, now: time.Now})
}

// newCommand builds the command tree around e; a test gives e a client,
// and connect keeps it.
func newCommand(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:   "kubectl-privateapp",
		Short: "The connected-apps view of private apps: what needs attention, each app's overview, rotation and logs",
		Long: `kubectl privateapp shows and acts on PrivateApps with your own kubeconfig and RBAC.
Without a command it shows what needs attention, then every app (as "home").`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE:          func(cmd *cobra.Command, _ []string) error { return e.home(cmd.Context()) },
	}
	root.SetOut(e.out)
	root.SetErr(e.errOut)
	flags := root.PersistentFlags()
	// kubectl's own connection flags, as every kubectl plugin built on
	// cli-runtime has them: --kubeconfig, --context, --cluster, --user,
	// -n, --as, --as-group, --as-uid, --token, --server, TLS and timeouts.
	e.kube = genericclioptions.NewConfigFlags(true)
	e.kube.AddFlags(flags)
	flags.BoolVarP(&e.allNamespaces, "all-namespaces", "A", false, "Every namespace you may read (needs a cluster-wide binding).")
	flags.StringVarP(&e.output, "output", "o", "table", "Output format: table, json or yaml.")
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error {
		switch e.output {
		case "table", "json", "yaml":
		default:
			return usageErr("--output %q: use table, json or yaml", e.output)
		}
		if cmd.Name() == "completion" || strings.HasPrefix(cmd.Name(), "__complete") {
			return nil
		}
		return e.connect()
	}
	root.AddCommand(
		&cobra.Command{Use: "home", Short: "What needs attention, then every app", Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error { return e.home(cmd.Context()) }},
		e.describeCommand(), e.tokenCommand(), e.rotateCommand(), e.rotationCommand(),
		e.suspendCommand(true), e.suspendCommand(false),
		e.logsCommand(), e.insightsCommand(), e.usageCommand(), e.activityCommand(), e.uiCommand(),
	)
	// Every mistake on the command line is a UsageError (exit 2): a flag
	// cobra cannot parse, and arguments a command's Args refuse, whatever
	// cobra's message says.
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return UsageError{err.Error()} })
	markUsage(root)
	return root
}

// markUsage makes the argument checks of cmd and its subcommands return
// UsageErrors.
func markUsage(cmd *cobra.Command) {
	if args := cmd.Args; args != nil {
		cmd.Args = func(c *cobra.Command, a []string) error {
			if err := args(c, a); err != nil {
				var u UsageError
				if errors.As(err, &u) {
					return err
				}
				return UsageError{err.Error()}
			}
			return nil
		}
	}
	for _, sub := range cmd.Commands() {
		markUsage(sub)
	}
}

// Main runs the command and returns the exit code.
func Main(args []string) int { return run(args, os.Stdout, os.Stderr) }

func run(args []string, out, errOut io.Writer) int {
	cmd := NewCommand(out, errOut)
	cmd.SetArgs(args)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	// Through the command's error writer, which filters what a terminal
	// would act on: errors quote what they were given.
	fmt.Fprintln(cmd.ErrOrStderr(), "error: "+err.Error())
	var u UsageError
	if errors.As(err, &u) {
		return ExitUsage
	}
	return ExitError
}

// getApp reads an app, with an error that says what exists.
func (e *env) getApp(ctx context.Context, name string) (*v1alpha1.PrivateApp, error) {
	app := &v1alpha1.PrivateApp{}
	err := e.c.Get(ctx, client.ObjectKey{Namespace: e.namespace, Name: name}, app)
	if apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("no PrivateApp %q in namespace %q; `kubectl privateapp -n %s` lists them", name, e.namespace, e.namespace)
	}
	if err != nil {
		return nil, explain(err)
	}
	return app, nil
}

// explain makes API errors say what to do.
func explain(err error) error {
	switch {
	case apierrors.IsForbidden(err):
		return fmt.Errorf("%w (ask for a role binding that allows it in this namespace)", err)
	case apierrors.IsNotFound(err) && strings.Contains(err.Error(), "insights.privateapps.dev"),
		strings.Contains(err.Error(), "no matches for kind") && strings.Contains(err.Error(), "insights.privateapps.dev"):
		return fmt.Errorf("the insights API (insights.privateapps.dev) is not served in this cluster: install the operator's insights component (docs/calllog.md): %w", err)
	}
	return err
}

// appNames completes app names.
func (e *env) appNames(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	if err := e.connect(); err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	var apps v1alpha1.PrivateAppList
	if err := e.c.List(cmd.Context(), &apps, client.InNamespace(e.namespace)); err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	var names []string
	for _, a := range apps.Items {
		names = append(names, a.Name)
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

func oneApp(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return usageErr("%s takes one app name: kubectl privateapp %s APP", cmd.Name(), cmd.CommandPath()[len("kubectl-privateapp "):])
	}
	return nil
}
