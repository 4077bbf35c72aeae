#!/bin/sh
# /usr/bin/node-bootstrap: runs the bundle (../lib/node-bootstrap/node-bootstrap.mjs, found relative to
# this script so that an unpacked root works too) with the first Node.js runtime found.
# AL2023 installs Node majors side by side as /usr/bin/node-20, node-22, ... and points /usr/bin/node
# at one of them with alternatives; the versioned binaries do not move when someone switches it.
# No NODE_OPTIONS and no V8 flags: each one discards Node's code cache (+30 ms per start).
here=${0%/*}
[ "$here" = "$0" ] && here=.
bundle=$here/../lib/node-bootstrap/node-bootstrap.mjs
if [ ! -f "$bundle" ]; then
  here=$(dirname "$(readlink -f "$0")")
  bundle=$here/../lib/node-bootstrap/node-bootstrap.mjs
fi
for node in /usr/bin/node-22 /usr/bin/node-20 /usr/bin/node-24 /usr/bin/node /usr/local/bin/node; do
  if [ -x "$node" ]; then
    exec "$node" "$bundle" "$@"
  fi
done
echo "node-bootstrap: no Node.js runtime found (tried /usr/bin/node-22, /usr/bin/node-20, /usr/bin/node-24, /usr/bin/node, /usr/local/bin/node); install Node.js 20 or newer (AL2023: dnf install nodejs22; Ubuntu/Debian: nodejs >= 20)" >&2
exit 69
