#!/bin/sh
# After install, upgrade or removal: make a running systemd see the changed unit files. Nothing is
# enabled or started: adopting node-bootstrap is a decision of the image build (see the README).
# Outside a booted systemd (an image build in a chroot, a container) there is nothing to reload.
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || :
fi
exit 0
