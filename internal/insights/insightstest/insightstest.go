// Package insightstest sets a local kube-apiserver up for API aggregation,
// for the tests and `make dev`: a front-proxy CA, the client certificate the
// aggregator presents, and the serving certificate of the insights server.
package insightstest

import (
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/privateapps-dev/privateapp-operator/internal/certs/certstest"
)

// ProxyClientName is the common name of the aggregator's client
// certificate, the one name --requestheader-allowed-names accepts.
const ProxyClientName = "front-proxy-client"

// EnableAggregation writes a front-proxy CA and the aggregator's client
// certificate into dir and gives env's kube-apiserver the flags that let it
// proxy to aggregated API servers. Call it before env.Start.
func EnableAggregation(env *envtest.Environment, dir string) error {
	ca, err := certstest.NewCA("front-proxy-ca")
	if err != nil {
		return err
	}
	client, clientKey, err := ca.Issue(ProxyClientName, nil, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"front-proxy-ca.crt":     certstest.PEM(ca.Cert),
		"front-proxy-client.crt": certstest.PEM(client),
		"front-proxy-client.key": clientKey,
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return err
		}
	}
	args := env.ControlPlane.GetAPIServer().Configure()
	args.Set("requestheader-client-ca-file", filepath.Join(dir, "front-proxy-ca.crt"))
	args.Set("requestheader-allowed-names", ProxyClientName)
	args.Set("requestheader-username-headers", "X-Remote-User")
	args.Set("requestheader-uid-headers", "X-Remote-Uid")
	args.Set("requestheader-group-headers", "X-Remote-Group")
	args.Set("requestheader-extra-headers-prefix", "X-Remote-Extra-")
	args.Set("proxy-client-cert-file", filepath.Join(dir, "front-proxy-client.crt"))
	args.Set("proxy-client-key-file", filepath.Join(dir, "front-proxy-client.key"))
	return nil
}

// ServingCert writes a CA and a serving certificate for dnsName into dir
// and returns the paths of the certificate and key and the CA in PEM, for
// an APIService's caBundle.
func ServingCert(dir, dnsName string) (certFile, keyFile string, caPEM []byte, err error) {
	ca, err := certstest.NewCA("insights-ca")
	if err != nil {
		return "", "", nil, err
	}
	certFile, keyFile, err = ca.WriteCert(dir, "insights", dnsName, []string{dnsName, "localhost"}, x509.ExtKeyUsageServerAuth)
	return certFile, keyFile, certstest.PEM(ca.Cert), err
}

// Register points the kube-apiserver at an insights server listening on
// this host's loopback at port: an ExternalName Service (the aggregator
// resolves it to localhost) and the APIService with caBundle.
func Register(ctx context.Context, c client.Client, namespace, service, port string, caBundle []byte) error {
	p, err := strconv.Atoi(port)
	if err != nil {
		return err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
	if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: service, Namespace: namespace},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "localhost",
			Ports: []corev1.ServicePort{{Name: "https", Port: int32(p)}}},
	}
	if err := c.Create(ctx, svc); err != nil {
		return err
	}
	port32 := int32(p)
	return c.Create(ctx, &apiregistrationv1.APIService{
		ObjectMeta: metav1.ObjectMeta{Name: "v1alpha1.insights.privateapps.dev"},
		Spec: apiregistrationv1.APIServiceSpec{
			Group: "insights.privateapps.dev", Version: "v1alpha1",
			Service:              &apiregistrationv1.ServiceReference{Namespace: namespace, Name: service, Port: &port32},
			CABundle:             caBundle,
			GroupPriorityMinimum: 1000, VersionPriority: 15,
		},
	})
}
