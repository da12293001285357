// Command manager is the operator's controller component: it issues and
// rotates the tokens of PrivateApps, carries out TokenRotations, delivers
// AppNotifications, compiles APICatalogs, serves the admission webhooks and
// keeps the operator's own certificates (docs/install.md).
package main

import (
	"github.com/privateapps-dev/privateapp-operator/cmd/manager/app"
	"github.com/privateapps-dev/privateapp-operator/internal/command"
)

func main() {
	command.Main("manager", "the controllers and admission webhooks of privateapp-operator", &app.Options{})
}
