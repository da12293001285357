// Package kubeapiserver pins the kube-apiserver that the envtest suites and
// `make dev` run. k8s.io/kubernetes is not meant to be consumed as a library,
// so this module replaces each of its staging modules with the published
// v0.37.2 release; hack/envtest.sh builds k8s.io/kubernetes/cmd/kube-apiserver
// from it.
package kubeapiserver
