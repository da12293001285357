package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/privateapps-dev/privateapp-operator/internal/tokenservice"
)

// TokenReview over TLS next to kube-apiserver's own review of a
// ServiceAccount token.

// tokenReviewRows compares TokenReviews over TLS: kube-apiserver's own of
// a ServiceAccount token (envtest's kube-apiserver, called with a
// ServiceAccount token allowed to create TokenReviews) and the token
// service's of an app token, both driven by wrk with a Lua script that
// posts the review, in alternating runs.
func tokenReviewRows(o options, p *served) (string, error) {
	env := &envtest.Environment{CRDDirectoryPaths: []string{o.crds}, ErrorIfCRDPathMissing: true, BinaryAssetsDirectory: o.assets}
	cfg, err := env.Start()
	if err != nil {
		return "", err
	}
	defer func() { _ = env.Stop() }()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return "", err
	}
	ctx := context.Background()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "bench-reviewer"}}
	if _, err := cs.CoreV1().ServiceAccounts("default").Create(ctx, sa, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "bench-reviewer"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "system:auth-delegator"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Namespace: "default", Name: "bench-reviewer"}},
	}, metav1.CreateOptions{}); err != nil {
		return "", err
	}
	tr, err := cs.CoreV1().ServiceAccounts("default").CreateToken(ctx, "bench-reviewer", &authnv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	saToken := tr.Status.Token
	b, _ := json.Marshal(map[string]any{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": map[string]any{"token": saToken}})
	dir, err := os.MkdirTemp("", "bench-review-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	apiserverScript, err := postScript(dir, "apiserver.lua", string(b))
	if err != nil {
		return "", err
	}
	ourScript, err := postScript(dir, "tokenservice.lua", p.ReviewBody)
	if err != nil {
		return "", err
	}
	apiserver := strings.TrimSuffix(cfg.Host, "/") + tokenservice.PathTokenReview
	ours := strings.TrimSuffix(p.TLS.Check, tokenservice.PathCheck) + tokenservice.PathTokenReview
	// Both answer authenticated before anything is measured.
	for _, c := range []struct{ url, auth, body string }{{apiserver, "Bearer " + saToken, string(b)}, {ours, "", p.ReviewBody}} {
		if err := reviewOnce(c.url, c.auth, c.body); err != nil {
			return "", err
		}
	}
	var theirs, mine []float64
	for round := range o.rounds {
		runs := []func() error{
			func() error {
				r, err := wrkScript(apiserver, []string{"Authorization: Bearer " + saToken}, apiserverScript, o.connections, o.duration)
				theirs = append(theirs, r)
				return err
			},
			func() error {
				r, err := wrkScript(ours, nil, ourScript, o.connections, o.duration)
				mine = append(mine, r)
				return err
			},
		}
		if round%2 == 1 {
			runs[0], runs[1] = runs[1], runs[0]
		}
		for _, run := range runs {
			if err := run(); err != nil {
				return "", err
			}
		}
	}
	return fmt.Sprintf("| TokenReview over TLS: kube-apiserver (envtest's, from %s) reviewing a ServiceAccount token, median of %d alternating runs | %.0f reviews/s (runs %s) | |\n"+
		"| **TokenReview over TLS: the token service reviewing an app token** (same wrk, same machine, alternating) | **%.0f reviews/s** (runs %s) = **%.1fx kube-apiserver's** | at least 10x |\n",
		o.assets, o.rounds, median(theirs), spread(theirs), median(mine), spread(mine), median(mine)/median(theirs)), nil
}

// reviewOnce posts one TokenReview and wants it authenticated.
func reviewOnce(url, auth, body string) error {
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // loopback benchmark
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var review authnv1.TokenReview
	if err := json.NewDecoder(resp.Body).Decode(&review); err != nil || !review.Status.Authenticated {
		return fmt.Errorf("the TokenReview at %s was not authenticated (%d, %v)", url, resp.StatusCode, err)
	}
	return nil
}
