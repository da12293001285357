package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/privateapps-dev/privateapp-operator/api/v1alpha1"
	"github.com/privateapps-dev/privateapp-operator/internal/tokenservice"
	"github.com/privateapps-dev/privateapp-operator/test/framework"
)

// Revocation latency: the manager and the token service, each its
// command as the chart runs it, against an envtest control plane; delete
// an app, then time until its token is first refused.

// revocationTrials creates trials apps (20 per namespace, the cap), then
// deletes them one by one, timing from the delete to the first 401 at
// /v1/check of the real token service.
func revocationTrials(o options) ([]time.Duration, error) {
	dir, err := os.MkdirTemp("", "bench-tokenservice")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	cp, err := framework.StartControlPlane(framework.ControlPlaneOptions{CRDs: o.crds, Assets: o.assets, Kubeconfig: filepath.Join(dir, "kubeconfig"), User: "bench"})
	if err != nil {
		return nil, err
	}
	defer func() { _ = cp.Stop() }()
	kubeconfig := cp.Kubeconfig
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	bins := framework.Commands{Dir: o.bin}
	for component, args := range map[string][]string{
		framework.Manager:      nil,
		framework.TokenService: {"--token-service-bind-address=" + addr, "--token-service-insecure"},
	} {
		p := &framework.Process{Bin: bins.Path(component), Args: append([]string{"--health-probe-bind-address=0"}, args...),
			Kubeconfig: kubeconfig, Log: filepath.Join(dir, component+".log")}
		if err := p.Start(); err != nil {
			return nil, err
		}
		defer p.Kill()
	}

	c := cp.Client
	ctx := context.Background()
	var apps []*v1alpha1.PrivateApp
	for i := range o.trials {
		ns := fmt.Sprintf("rev-%02d", i/20)
		if i%20 == 0 {
			if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
				return nil, err
			}
		}
		app := &v1alpha1.PrivateApp{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("app-%03d", i)},
			Spec:       v1alpha1.PrivateAppSpec{DisplayName: "Bench", Scopes: []string{"crm.objects.contacts.read"}},
		}
		if err := c.Create(ctx, app); err != nil {
			return nil, err
		}
		apps = append(apps, app)
	}
	check := func(tok string) int {
		req, _ := http.NewRequest(http.MethodGet, "http://"+addr+tokenservice.PathCheck, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	var out []time.Duration
	for _, app := range apps {
		var tok string
		deadline := time.Now().Add(time.Minute)
		for {
			if c.Get(ctx, client.ObjectKeyFromObject(app), app) == nil && meta.IsStatusConditionTrue(app.Status.Conditions, v1alpha1.ConditionReady) {
				var s corev1.Secret
				if c.Get(ctx, client.ObjectKey{Namespace: app.Namespace, Name: app.Status.SecretName}, &s) == nil {
					tok = string(s.Data[v1alpha1.SecretTokenKey])
					if check(tok) == http.StatusOK {
						break
					}
				}
			}
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("app %s/%s was not Ready with a working token within a minute", app.Namespace, app.Name)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err := c.Delete(ctx, app); err != nil {
			return nil, err
		}
		start := time.Now()
		for check(tok) != http.StatusUnauthorized {
			if time.Since(start) > 10*time.Second {
				return nil, fmt.Errorf("app %s/%s's token still works 10 s after the delete", app.Namespace, app.Name)
			}
			time.Sleep(200 * time.Microsecond)
		}
		out = append(out, time.Since(start))
	}
	return out, nil
}
