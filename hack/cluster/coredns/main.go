// Command coredns is the cluster DNS of `make cluster`: CoreDNS with only
// the plugins the cluster's Corefile uses. There is no forward plugin on
// purpose: names outside the cluster are not resolved, so no query leaves
// the machine.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	// The plugins of the Corefile, in CoreDNS's own order (plugin.cfg).
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"
)

func init() {
	dnsserver.Directives = []string{"ready", "health", "errors", "cache", "kubernetes"}
}

func main() {
	coremain.Run()
}
