package plugin

import (
	"context"
	"fmt"
	"html"
	"log"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/privateapps-dev/privateapp-operator/internal/console"
)

func (e *env) uiCommand() *cobra.Command {
	var address string
	var port int
	var noBrowser bool
	cmd := &cobra.Command{
		Use:   "ui",
		Short: "The connected-apps pages in your browser, on loopback, with your kubeconfig",
		Long: `Start the web console on this machine and open it in the browser. It acts with your
kubeconfig, so Kubernetes RBAC and the audit log see you; nothing in the cluster changes.

It listens on 127.0.0.1 and prints a sign-in link that works once; the browser that opens it
gets a session cookie. From a remote shell, pick the port and forward it:
  kubectl privateapp ui --no-browser --port 8765      # on the remote machine
  ssh -L 8765:127.0.0.1:8765 remote-host              # on yours, then open the printed link`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ip := net.ParseIP(address)
			if ip == nil {
				return usageErr("--address %q is not an IP address; the console listens on loopback (127.0.0.1) unless you say otherwise", address)
			}
			if port < 0 || port > 65535 {
				return usageErr("--port %d is not a port (0 picks a free one)", port)
			}
			l, err := net.Listen("tcp", net.JoinHostPort(address, strconv.Itoa(port)))
			if err != nil {
				return fmt.Errorf("listening on %s port %d: %w (pick another --port)", address, port, err)
			}
			port = l.Addr().(*net.TCPAddr).Port
			p := strconv.Itoa(port)
			// The names a browser may use: loopback's, the address itself,
			// and with an unspecified address every address of this host.
			hosts := []string{"127.0.0.1:" + p, "localhost:" + p, "[::1]:" + p, net.JoinHostPort(ip.String(), p)}
			linkHost := ip.String()
			if ip.IsUnspecified() {
				linkHost = "127.0.0.1"
				if addrs, err := net.InterfaceAddrs(); err == nil {
					for _, a := range addrs {
						if n, ok := a.(*net.IPNet); ok {
							hosts = append(hosts, net.JoinHostPort(n.IP.String(), p))
						}
					}
				}
			}
			c, err := console.New(console.Options{Client: e.c, Namespace: e.namespace, Hosts: hosts, Now: e.now,
				Log: log.New(e.errOut, "console: ", log.LstdFlags)})
			if err != nil {
				_ = l.Close()
				return err
			}
			link := "http://" + net.JoinHostPort(linkHost, p) + c.LoginPath()
			fmt.Fprintf(e.out, "The private apps console of namespace %s is at\n  %s\n"+
				"The link signs this browser in and works once. Ctrl-C stops the console.\n", e.namespace, link)
			if !ip.IsLoopback() {
				fmt.Fprintf(e.out, "It listens on %s, not only on loopback: others who reach it still need the link, "+
					"but the link and the session cross the network unencrypted; prefer an ssh port forward.\n", address)
			}
			if !noBrowser {
				done, err := openBrowser(link)
				if err != nil {
					fmt.Fprintf(e.out, "Could not open a browser (%v); open the link yourself.\n", err)
				}
				defer done()
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return c.Serve(ctx, l)
		},
	}
	f := cmd.Flags()
	f.StringVar(&address, "address", "127.0.0.1", "The IP address to listen on.")
	f.IntVar(&port, "port", 0, "The port to listen on; 0 picks a free one.")
	f.BoolVar(&noBrowser, "no-browser", false, "Print the sign-in link only; do not open a browser.")
	return cmd
}

// openBrowser opens link, the console's own sign-in link, in the desktop's
// browser. The link is not put on a command line, where other users of the
// machine could read it (/proc/PID/cmdline) for as long as a browser it
// starts runs: the browser opens a file, readable only by this user, that
// sends it on. done removes the file.
//
//nolint:gosec // the command opens a file this process wrote
func openBrowser(link string) (done func(), err error) {
	done = func() {}
	dir, err := os.MkdirTemp("", "privateapp-console-")
	if err != nil {
		return done, err
	}
	done = func() { _ = os.RemoveAll(dir) }
	page := filepath.Join(dir, "sign-in.html")
	content := `<!DOCTYPE html><meta charset="utf-8"><meta name="referrer" content="no-referrer">` +
		`<meta http-equiv="refresh" content="0;url=` + html.EscapeString(link) + `"><title>Private apps console</title>`
	if err := os.WriteFile(page, []byte(content), 0o600); err != nil {
		return done, err
	}
	var cmd *exec.Cmd
	switch runtime.GOOS {
	case "darwin":
		cmd = exec.CommandContext(context.Background(), "open", page)
	case "windows":
		cmd = exec.CommandContext(context.Background(), "rundll32", "url.dll,FileProtocolHandler", page)
	default:
		cmd = exec.CommandContext(context.Background(), "xdg-open", page)
	}
	if err := cmd.Start(); err != nil {
		return done, err
	}
	go func() { _ = cmd.Wait() }()
	return done, nil
}
