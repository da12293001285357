package framework

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/privateapps-dev/privateapp-operator/internal/command"
)

// ControlPlane is a local etcd and kube-apiserver (envtest) with the
// operator's CRDs, and an administrator the components run as.
type ControlPlane struct {
	Env *envtest.Environment
	// Config is the administrator's client configuration; Kubeconfig the
	// same as a file, for the components and kubectl.
	Config     *rest.Config
	Kubeconfig string
	// Client reads and writes every kind the operator knows.
	Client client.WithWatch
}

// ControlPlaneOptions say where things are.
type ControlPlaneOptions struct {
	// CRDs is the directory of the CRDs (config/crd/bases); Assets the
	// directory of etcd and kube-apiserver (bin/k8s, make envtest).
	CRDs, Assets string
	// Kubeconfig is where the administrator's kubeconfig is written.
	Kubeconfig string
	// User names the administrator (system:masters).
	User string
	// Configure, when set, may set kube-apiserver flags before it starts.
	Configure func(*envtest.Environment) error
}

// Scheme holds every kind the components know, and the CRDs the tests
// read.
func Scheme() *runtime.Scheme {
	scheme := command.Scheme()
	utilruntime.Must(apiextensionsv1.AddToScheme(scheme))
	return scheme
}

// StartControlPlane starts one; Stop stops it.
func StartControlPlane(o ControlPlaneOptions) (*ControlPlane, error) {
	env := &envtest.Environment{CRDDirectoryPaths: []string{o.CRDs}, ErrorIfCRDPathMissing: true, BinaryAssetsDirectory: o.Assets}
	if o.Configure != nil {
		if err := o.Configure(env); err != nil {
			return nil, err
		}
	}
	if _, err := env.Start(); err != nil {
		return nil, fmt.Errorf("starting the control plane (make envtest builds it into %s): %w", o.Assets, err)
	}
	cp := &ControlPlane{Env: env}
	if err := cp.admin(o); err != nil {
		return nil, errors.Join(err, env.Stop())
	}
	return cp, nil
}

func (cp *ControlPlane) admin(o ControlPlaneOptions) error {
	name := o.User
	if name == "" {
		name = "admin"
	}
	user, err := cp.Env.AddUser(envtest.User{Name: name, Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(o.Kubeconfig), 0o755); err != nil {
		return err
	}
	cp.Kubeconfig = o.Kubeconfig
	if err := os.WriteFile(cp.Kubeconfig, kc, 0o600); err != nil {
		return err
	}
	cp.Config = user.Config()
	cp.Client, err = client.NewWithWatch(cp.Config, client.Options{Scheme: Scheme()})
	return err
}

// Stop stops the kube-apiserver and etcd.
func (cp *ControlPlane) Stop() error { return cp.Env.Stop() }

// Kubectl runs kubectl against kubeconfig and returns what it printed,
// standard output and error together.
func Kubectl(kubeconfig string, args ...string) (string, error) {
	out, err := exec.Command("kubectl", append([]string{"--kubeconfig", kubeconfig}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %v: %w\n%s", args, err, out)
	}
	return string(out), nil
}
