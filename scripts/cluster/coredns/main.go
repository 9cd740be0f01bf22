// A CoreDNS with only the plugins the local cluster's DNS needs (scripts/cluster/up.sh): the default plugin set
// pulls in cloud SDKs and takes far longer to build. Built by scripts/setup.d/35-kube-node.sh.
package main

import (
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"

	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"
)

// The plugins run in this order inside a server block (CoreDNS orders them by this list, not by the Corefile).
var directives = []string{"bind", "ready", "errors", "log", "cache", "loadbalance", "kubernetes", "forward"}

func init() {
	dnsserver.Directives = directives
}

func main() {
	coremain.Run()
}
