// Command insights is the operator's insights component: it keeps the call
// log (SQLite or PostgreSQL), takes reports of calls from gateways, the
// kube-apiserver's audit webhook and token-service replicas, and serves
// insights.privateapps.dev, the aggregated API behind kubectl get calls,
// recordinsights, apiusages and needsattention (docs/calllog.md).
package main

import (
	"github.com/privateapps-dev/privateapp-operator/cmd/insights/app"
	"github.com/privateapps-dev/privateapp-operator/internal/command"
)

func main() {
	command.Main("insights", "the call log and the insights API of privateapp-operator", app.NewOptions())
}
