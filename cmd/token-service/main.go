// Command token-service is the operator's token service: gateways, the
// kube-apiserver and OAuth 2.0 resource servers ask it whether a token may
// make a call (docs/token-service.md). It reads apps and namespaces and
// writes only the apps' usage; it needs no access to Secrets.
package main

import (
	"github.com/privateapps-dev/privateapp-operator/cmd/token-service/app"
	"github.com/privateapps-dev/privateapp-operator/internal/command"
)

func main() {
	command.Main("token-service", "the token service of privateapp-operator", &app.Options{})
}
