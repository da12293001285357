// Package webhooktest registers the operator's admission webhooks with an
// API server that has no Service network (envtest's, make dev's): the
// generated configurations of config/webhook, called by URL on loopback.
package webhooktest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Register creates the webhook configurations of manifests (the generated
// config/webhook/manifests.yaml) under name, each webhook calling
// https://addr<its path>. The operator's CertRotator (--self-signed-certs,
// --webhook-configurations=name) fills in their CA bundles.
func Register(ctx context.Context, c client.Client, manifests, name, addr string) error {
	data, err := os.ReadFile(manifests)
	if err != nil {
		return err
	}
	byURL := func(cc *admissionregistrationv1.WebhookClientConfig) error {
		if cc.Service == nil || cc.Service.Path == nil {
			return fmt.Errorf("%s: a webhook without a service path", manifests)
		}
		u := "https://" + addr + *cc.Service.Path
		cc.URL, cc.Service = &u, nil
		return nil
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		var raw map[string]any
		if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("%s: %w", manifests, err)
		}
		b, _ := json.Marshal(raw)
		var obj client.Object
		switch raw["kind"] {
		case "MutatingWebhookConfiguration":
			m := &admissionregistrationv1.MutatingWebhookConfiguration{}
			if err := json.Unmarshal(b, m); err != nil {
				return err
			}
			for i := range m.Webhooks {
				if err := byURL(&m.Webhooks[i].ClientConfig); err != nil {
					return err
				}
			}
			obj = m
		case "ValidatingWebhookConfiguration":
			v := &admissionregistrationv1.ValidatingWebhookConfiguration{}
			if err := json.Unmarshal(b, v); err != nil {
				return err
			}
			for i := range v.Webhooks {
				if err := byURL(&v.Webhooks[i].ClientConfig); err != nil {
					return err
				}
			}
			obj = v
		default:
			continue
		}
		obj.SetName(name)
		if err := c.Create(ctx, obj); err != nil {
			return fmt.Errorf("creating %s %s: %w", raw["kind"], name, err)
		}
	}
}

// WaitForCA waits until every webhook of both configurations named name
// has a CA bundle.
func WaitForCA(ctx context.Context, c client.Client, name string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		m, v := &admissionregistrationv1.MutatingWebhookConfiguration{}, &admissionregistrationv1.ValidatingWebhookConfiguration{}
		if c.Get(ctx, client.ObjectKey{Name: name}, m) == nil && c.Get(ctx, client.ObjectKey{Name: name}, v) == nil && injected(m.Webhooks, v.Webhooks) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the operator did not inject its CA into the webhook configurations %s within %s", name, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func injected(m []admissionregistrationv1.MutatingWebhook, v []admissionregistrationv1.ValidatingWebhook) bool {
	if len(m) == 0 || len(v) == 0 {
		return false
	}
	for _, w := range m {
		if len(w.ClientConfig.CABundle) == 0 {
			return false
		}
	}
	for _, w := range v {
		if len(w.ClientConfig.CABundle) == 0 {
			return false
		}
	}
	return true
}
