#!/usr/bin/env bash
# Replaces the part of docs/benchmarks.md between
#   <!-- BEGIN $1 --> and <!-- END $1 -->
# with standard input, stamped with the date and the command that made it.
set -euo pipefail
name=$1 command=$2 doc=docs/benchmarks.md
body=$(cat)
stamp="Made by \`$command\` on $(date -u +%Y-%m-%d), $(nproc) cores."
awk -v name="$name" -v body="$body" -v stamp="$stamp" '
  $0 == "<!-- BEGIN " name " -->" { print; print stamp; print ""; print body; skip = 1; next }
  $0 == "<!-- END " name " -->"   { skip = 0 }
  !skip { print }
' "$doc" > "$doc.tmp"
mv "$doc.tmp" "$doc"
