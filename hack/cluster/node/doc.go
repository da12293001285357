// Package node pins the node components that `make cluster` runs beside the
// envtest control plane: kubelet, kube-controller-manager, kube-scheduler
// and kube-proxy of Kubernetes v1.37.2, built from k8s.io/kubernetes with
// its staging modules replaced by the published v0.37.2 releases, as
// hack/envtest/kube-apiserver does for kube-apiserver.
package node
