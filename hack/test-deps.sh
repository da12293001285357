#!/usr/bin/env bash
# Installs the real servers the test suite runs that do not come from the Go
# module proxy: nginx (with auth_request) from Debian.
set -euo pipefail
if command -v nginx >/dev/null || [ -x /usr/sbin/nginx ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo ">> Installing nginx-light from Debian (the gateway test runs a real nginx)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
  exit 0
fi
echo "The test suite runs a real nginx with auth_request: install it (Debian: apt-get install nginx-light) and run make test again." >&2
exit 1
