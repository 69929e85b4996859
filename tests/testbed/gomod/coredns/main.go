// CoreDNS v1.14.2 with only the plugins the kind clusters' Corefile uses: the one kubeadm v1.36.3
// writes (cmd/kubeadm/app/phases/addons/dns/manifests.go; kind and our roles do not edit it).
// This is CoreDNS's documented custom build: a main package that imports coremain and the wanted
// plugins instead of core/plugin (all of them; the cloud backends' SDKs are most of a cold build).
// The order plugins run in stays core/dnsserver's Directives list; a Corefile naming a plugin left
// out here fails at start with "no action found for directive ... (missing a plugin?)".
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics" // the "prometheus" directive
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

func main() {
	coremain.Run()
}
