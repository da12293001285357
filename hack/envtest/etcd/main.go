// Command etcd is the etcd server that the envtest suites and `make dev` run,
// built from the Go module proxy because no prebuilt binary can be downloaded.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
