// Command cluster runs the operator on a real single-node Kubernetes on this
// machine (`make cluster`) and removes it again (`make cluster-down`). `up`
// brings up the node (test/cluster), loads the operator's image, installs
// the chart with Helm and its default values, applies the samples and
// checks a sample app's token through the token service's Service. The
// cluster keeps running after the command ends.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/privateapps-dev/privateapp-operator/test/cluster"
)

func main() {
	var o options
	flags := flag.NewFlagSet("cluster", flag.ExitOnError)
	flags.StringVar(&o.dir, "dir", "bin/cluster", "Where the cluster keeps its state (removed by down).")
	flags.StringVar(&o.bin, "bin", "bin/k8s", "Where the control plane, node and containerd binaries are (make node-components).")
	flags.StringVar(&o.image, "image", "bin/image/privateapp-operator.tar", "The operator's image archive (make image), loaded into the node.")
	flags.StringVar(&o.helm, "helm", "bin/tools/helm", "The helm binary.")
	flags.StringVar(&o.chart, "chart", "charts/privateapp-operator", "The chart to install.")
	flags.StringVar(&o.namespace, "namespace", "privateapp-system", "The release's namespace.")
	flags.StringVar(&o.samples, "samples", "config/samples", "The manifests to apply once the operator runs.")
	if len(os.Args) < 2 || (os.Args[1] != "up" && os.Args[1] != "down") {
		fmt.Fprintln(os.Stderr, "usage: cluster up|down [flags]")
		os.Exit(2)
	}
	_ = flags.Parse(os.Args[2:])
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	if os.Args[1] == "up" {
		err = up(ctx, o)
	} else {
		err = down(o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

type options struct {
	dir, bin, image, helm, chart, namespace, samples string
}

func down(o options) error {
	c, err := cluster.Open(cluster.Config{Dir: o.dir, Bin: o.bin, Log: os.Stdout})
	if err != nil {
		return err
	}
	if err := c.Down(); err != nil {
		return err
	}
	fmt.Println("cluster: removed")
	return nil
}

func up(ctx context.Context, o options) error {
	c, err := cluster.Up(ctx, cluster.Config{Dir: o.dir, Bin: o.bin, Images: []string{o.image}, Log: os.Stdout})
	if err != nil {
		return err
	}
	fmt.Println("cluster: helm install privateapp-operator (the chart's default values)")
	helm := exec.CommandContext(ctx, o.helm, "install", "privateapp-operator", o.chart, "--namespace", o.namespace,
		"--create-namespace", "--wait", "--timeout", "5m", "--kubeconfig", c.Kubeconfig)
	helm.Stdout, helm.Stderr = os.Stdout, os.Stderr
	if err := helm.Run(); err != nil {
		return fmt.Errorf("helm install: %w (kubectl --kubeconfig %s -n %s get pods)", err, c.Kubeconfig, o.namespace)
	}
	fmt.Println("cluster: applying", o.samples)
	if _, err := c.Kubectl(ctx, "", "apply", "--recursive", "-f", o.samples); err != nil {
		return err
	}
	if _, err := c.Kubectl(ctx, "", "wait", "--for=condition=Ready", "privateapp/billing-sync", "-n", "default", "--timeout=2m"); err != nil {
		return err
	}
	ts, err := cluster.TokenService(ctx, c, o.namespace, "privateapp-operator")
	if err != nil {
		return err
	}
	token, err := cluster.Token(ctx, c, "default", "billing-sync-token")
	if err != nil {
		return err
	}
	var code int
	err = waitFor(ctx, time.Minute, func() error {
		code, err = ts.Check(ctx, token, "GET", "/crm/v3/objects/contacts")
		return err
	})
	if err != nil {
		return fmt.Errorf("checking billing-sync's token through the token service's Service: %w", err)
	}
	if code != 200 {
		return fmt.Errorf("checking billing-sync's token through the token service's Service: %d, not 200", code)
	}
	abs, _ := filepath.Abs(c.Kubeconfig)
	fmt.Printf(`
The operator runs on a real node; billing-sync's token was checked through
the token service's Service (%s at %s): GET /crm/v3/objects/contacts, 200.

  export KUBECONFIG=%s
  kubectl -n %s get pods
  kubectl get privateapps -A
  kubectl get calls -n default

Remove it all with: make cluster-down
`, ts.URL, ts.Addr, abs, o.namespace)
	return nil
}

func waitFor(ctx context.Context, timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			return errors.Join(err, ctx.Err())
		}
		time.Sleep(time.Second)
	}
}
