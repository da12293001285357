// Package containerd pins the container runtime that `make cluster` runs:
// containerd v2.4.2, its ctr client and the runc shim, built without cgo
// (hack/node.sh gives the build tags).
package containerd
