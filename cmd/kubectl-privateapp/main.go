// Command kubectl-privateapp is the kubectl plugin of privateapp-operator:
// `kubectl privateapp` shows what needs attention and every app, and
// describes, rotates, suspends and reconnects apps (docs/kubectl-plugin.md).
package main

import (
	"os"

	"github.com/privateapps-dev/privateapp-operator/internal/plugin"
)

func main() {
	os.Exit(plugin.Main(os.Args[1:]))
}
