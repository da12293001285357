#!/usr/bin/env bash
# Installs the real servers the test suite runs that do not come from the Go
# module proxy, from Debian: nginx (with auth_request) and Caddy
# (forward_auth) for the gateway tests, Chromium (headless) for the web
# console, Apache httpd with mod_auth_openidc
# (token introspection), and redis-server for the shared
# rate-limit counters, PostgreSQL for the call log's shared store, and
# Prometheus (with promtool) for the alert rules and the dashboard, and the
# parts of the real node that `make cluster` takes from Debian: runc, the CNI
# plugins, iptables and conntrack.
set -euo pipefail
missing=()
if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
  missing+=(nginx-light)
fi
if ! command -v redis-server >/dev/null; then
  missing+=(redis-server)
fi
if ! command -v caddy >/dev/null; then
  missing+=(caddy)
fi
if ! command -v initdb >/dev/null && ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
  missing+=(postgresql)
fi
if ! command -v wrk >/dev/null; then
  missing+=(wrk) # make bench's load generator
fi
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  missing+=(prometheus) # the alert rules' tests and the dashboard's queries
fi
if [ ! -x /usr/sbin/apache2 ]; then
  missing+=(apache2) # an OAuth 2.0 resource server no one here wrote
fi
if [ ! -e /usr/lib/apache2/modules/mod_auth_openidc.so ]; then
  missing+=(libapache2-mod-auth-openidc)
fi
if ! command -v runc >/dev/null; then
  missing+=(runc) # the node's container runtime (crun fails on hybrid cgroups)
fi
if [ ! -x /usr/lib/cni/bridge ]; then
  missing+=(containernetworking-plugins) # the pod network of make cluster
fi
if ! command -v iptables >/dev/null && [ ! -x /usr/sbin/iptables ]; then
  missing+=(iptables) # kube-proxy's Services
fi
if ! command -v conntrack >/dev/null && [ ! -x /usr/sbin/conntrack ]; then
  missing+=(conntrack)
fi
if ! command -v chromium >/dev/null; then
  missing+=(chromium) # the web console's browser test (headless)
fi
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo ">> Installing ${missing[*]} from Debian (the tests run them for real)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  exit 0
fi
echo "The test suite runs a real nginx (auth_request), Caddy (forward_auth), Apache httpd with mod_auth_openidc, redis-server, PostgreSQL, Prometheus, Chromium (headless), and a node of runc, CNI plugins and iptables: install ${missing[*]} (Debian: apt-get install ${missing[*]}) and run make test again." >&2
exit 1
