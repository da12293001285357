package webhook

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apiregistrationv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/privateapps-dev/privateapp-operator/internal/certs"
)

// The CertRotator updates only the webhook configurations and APIService it
// is told about, and its RBAC says so by name: the rules are not generated
// from markers (controller-gen cannot name objects whose names depend on
// the install) but written in config/rbac/certificates_role.yaml and the
// chart's rbac.yaml, each with its own names.

// CertRotator is the operator's own certificate authority for clusters
// without cert-manager. Every controller replica runs it: it keeps a CA in
// the Secret <prefix>-ca and serving certificates in <prefix>-webhook-tls
// (for the Service <prefix>-webhook) and <prefix>-token-service-tls (for
// <prefix>-token-service) valid, renewing each before its last third; writes
// the webhook certificate where the webhook server reads it (which reloads
// it); and puts the CA bundle into the webhook configurations. Replicas race
// safely: writes use resourceVersions, and the loser reads the winner's
// certificates on its next pass.
type CertRotator struct {
	Client client.Client
	// Reader reads Secrets and webhook configurations from the API server;
	// the manager's cache holds neither.
	Reader    client.Reader
	Namespace string
	Prefix    string
	// WebhookConfigurations are the names of the mutating and validating
	// webhook configurations to inject the CA bundle into.
	WebhookConfigurations []string
	// CertDir gets tls.crt and tls.key of the webhook certificate.
	CertDir string
	// WebhookService names the webhook Service; default <prefix>-webhook.
	WebhookService string
	// ExtraNames are more DNS names or IP addresses for the webhook
	// certificate, for an API server that calls the webhooks by URL.
	ExtraNames []string
	// APIServices, when set, are the insights APIServices to inject the CA
	// bundle into; the rotator then also keeps <prefix>-insights-tls, for
	// the Service <prefix>-insights, valid.
	APIServices []string
	Policy      certs.Policy
	Clock       clock.PassiveClock
	Interval    time.Duration
	Log         logr.Logger
}

// NeedLeaderElection is false: every replica serves webhooks and needs the
// files.
func (r *CertRotator) NeedLeaderElection() bool { return false }

// Start re-checks every Interval until ctx ends; the first pass runs before
// the manager starts (Sync), so the webhook server finds its files.
func (r *CertRotator) Start(ctx context.Context) error {
	t := time.NewTicker(r.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := r.Sync(ctx); err != nil {
				r.Log.Error(err, "certificate check failed; retrying at the next interval")
			}
		}
	}
}

// Sync makes one pass, retrying a lost race with another replica.
func (r *CertRotator) Sync(ctx context.Context) error {
	var err error
	for range 5 {
		if err = r.sync(ctx); err == nil || !(apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err)) {
			return err
		}
	}
	return err
}

func (r *CertRotator) sync(ctx context.Context) error {
	now := r.Clock.Now()
	caSecret, err := r.secret(ctx, r.Prefix+"-ca")
	if err != nil {
		return err
	}
	caData, ca, reason, err := certs.EnsureCA(caSecret.Data, r.Prefix, now, r.Policy)
	if err != nil {
		return err
	}
	if reason != "" {
		if err := r.save(ctx, caSecret, corev1.SecretTypeOpaque, caData); err != nil {
			return err
		}
		r.Log.Info("webhook CA "+reason, "secret", caSecret.Name, "notAfter", ca.Cert.NotAfter)
	}
	// The bundle reaches the API server before any serving certificate
	// it must verify is written.
	if err := r.inject(ctx, caData[certs.CACertKey]); err != nil {
		return err
	}
	if err := r.injectAPIServices(ctx, caData[certs.CACertKey]); err != nil {
		return err
	}
	svc := func(name string) []string {
		return []string{fmt.Sprintf("%s.%s.svc", name, r.Namespace), fmt.Sprintf("%s.%s.svc.cluster.local", name, r.Namespace), name}
	}
	webhookService := r.WebhookService
	if webhookService == "" {
		webhookService = r.Prefix + "-webhook"
	}
	var webhookData map[string][]byte
	type leafCert struct {
		secret, service string
		extra           []string
	}
	leaves := []leafCert{
		{r.Prefix + "-webhook-tls", webhookService, r.ExtraNames},
		{r.Prefix + "-token-service-tls", r.Prefix + "-token-service", nil},
	}
	if len(r.APIServices) > 0 {
		leaves = append(leaves, leafCert{r.Prefix + "-insights-tls", r.Prefix + "-insights", nil})
	}
	for _, leaf := range leaves {
		s, err := r.secret(ctx, leaf.secret)
		if err != nil {
			return err
		}
		data, reason, err := certs.EnsureLeaf(s.Data, ca, append(svc(leaf.service), leaf.extra...), now, r.Policy)
		if err != nil {
			return err
		}
		if reason != "" {
			if err := r.save(ctx, s, corev1.SecretTypeTLS, data); err != nil {
				return err
			}
			r.Log.Info("serving certificate "+reason, "secret", s.Name)
		}
		if leaf.service == webhookService {
			webhookData = data
		}
	}
	if r.CertDir != "" {
		if err := writeIfChanged(r.CertDir, webhookData); err != nil {
			return err
		}
	}
	return nil
}

// injectAPIServices puts the CA bundle into the insights APIServices, so
// the kube-apiserver's aggregator verifies the insights server.
func (r *CertRotator) injectAPIServices(ctx context.Context, bundle []byte) error {
	for _, name := range r.APIServices {
		a := &apiregistrationv1.APIService{}
		if err := r.Reader.Get(ctx, client.ObjectKey{Name: name}, a); apierrors.IsNotFound(err) {
			continue
		} else if err != nil {
			return err
		}
		if bytes.Equal(a.Spec.CABundle, bundle) {
			continue
		}
		a.Spec.CABundle = bundle
		if err := r.Client.Update(ctx, a); err != nil {
			return err
		}
		r.Log.Info("CA bundle injected", "apiService", name)
	}
	return nil
}

func (r *CertRotator) secret(ctx context.Context, name string) (*corev1.Secret, error) {
	s := &corev1.Secret{}
	err := r.Reader.Get(ctx, client.ObjectKey{Namespace: r.Namespace, Name: name}, s)
	if apierrors.IsNotFound(err) {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, Name: name}}, nil
	}
	return s, err
}

func (r *CertRotator) save(ctx context.Context, s *corev1.Secret, typ corev1.SecretType, data map[string][]byte) error {
	s.Data = data
	if s.Labels == nil {
		s.Labels = map[string]string{}
	}
	s.Labels["app.kubernetes.io/managed-by"] = "privateapp-operator"
	s.Labels["app.kubernetes.io/component"] = "certificates"
	if s.ResourceVersion == "" {
		s.Type = typ
		return r.Client.Create(ctx, s)
	}
	return r.Client.Update(ctx, s)
}

// inject puts the CA bundle into every webhook of the named configurations.
func (r *CertRotator) inject(ctx context.Context, bundle []byte) error {
	for _, name := range r.WebhookConfigurations {
		m := &admissionregistrationv1.MutatingWebhookConfiguration{}
		v := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		for _, target := range []struct {
			obj     client.Object
			kind    string
			configs func() []*admissionregistrationv1.WebhookClientConfig
		}{
			{m, "mutatingWebhookConfiguration", func() (out []*admissionregistrationv1.WebhookClientConfig) {
				for i := range m.Webhooks {
					out = append(out, &m.Webhooks[i].ClientConfig)
				}
				return out
			}},
			{v, "validatingWebhookConfiguration", func() (out []*admissionregistrationv1.WebhookClientConfig) {
				for i := range v.Webhooks {
					out = append(out, &v.Webhooks[i].ClientConfig)
				}
				return out
			}},
		} {
			if err := r.Reader.Get(ctx, client.ObjectKey{Name: name}, target.obj); apierrors.IsNotFound(err) {
				continue
			} else if err != nil {
				return err
			}
			changed := false
			for _, cc := range target.configs() {
				if !bytes.Equal(cc.CABundle, bundle) {
					cc.CABundle, changed = bundle, true
				}
			}
			if !changed {
				continue
			}
			if err := r.Client.Update(ctx, target.obj); err != nil {
				return err
			}
			r.Log.Info("CA bundle injected", target.kind, name)
		}
	}
	return nil
}

// writeIfChanged replaces tls.crt and tls.key atomically when they differ;
// the webhook server's certificate watcher reloads them.
func writeIfChanged(dir string, data map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for _, key := range []string{certs.KeyKey, certs.CertKey} {
		path := filepath.Join(dir, key)
		if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data[key]) {
			continue
		}
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, data[key], 0o600); err != nil {
			return err
		}
		if err := os.Rename(tmp, path); err != nil {
			return err
		}
	}
	return nil
}
