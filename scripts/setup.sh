#!/usr/bin/env bash
# Installs what onestor's demo, tests and benchmarks need on a Debian machine: the Debian packages
# (when run as root and something is missing) and Deno from the npm registry. Idempotent and quick
# when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  openssh-server openssh-client qemu-utils qemu-system-x86 libvirt-daemon libvirt-daemon-driver-qemu
  libvirt-clients e2fsprogs xfsprogs dosfstools xorriso genisoimage rsync xz-utils bzip2 gzip file
  procps iproute2 util-linux curl coreutils tar xxhash
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "setup: missing Debian packages (run as root to install them): ${missing[*]}" >&2
  fi
fi

# The end-to-end tests run a real OpenNebula front-end from ../shared/oned (as CI has it beside the
# checkout): its run-time packages (Ruby and C++ libraries) come from its own `oned.sh deps`.
oned_dir=${ONESTOR_ONED_DIR:-../shared/oned}
if [ -f "$oned_dir/oned.sh" ]; then
  oned_pkgs=$(sed -n '/^deps()/,/^}/p' "$oned_dir/oned.sh" | tr '\\\n' '  ' |
    sed -n 's/.*--no-install-recommends\([^>]*\)>.*/\1/p')
  oned_missing=()
  for p in $oned_pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || oned_missing+=("$p")
  done
  if [ -z "$oned_pkgs" ] || [ ${#oned_missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
      echo "setup: installing OpenNebula's run-time packages for the end-to-end tests: ${oned_missing[*]}" >&2
      bash "$oned_dir/oned.sh" deps
    else
      echo "setup: missing OpenNebula run-time packages (run as root to install them): ${oned_missing[*]}" >&2
    fi
  fi
fi

# promtool (`promtool check metrics` validates `onestor metrics` in the tests) is one static binary of
# Debian's prometheus package: only it is taken out of the package (48 MB), not the server, its
# web assets and its service, which a test machine does not need.
if ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "setup: installing promtool from Debian's prometheus package" >&2
    dl=$(mktemp -d)
    (cd "$dl" && apt-get download -qq prometheus >/dev/null 2>&1 ||
      { apt-get update -qq >/dev/null && apt-get download -qq prometheus >/dev/null 2>&1; }) &&
      dpkg-deb --fsys-tarfile "$dl"/prometheus_*.deb | tar -xO ./usr/bin/promtool >"$dl/promtool" &&
      install -m 755 "$dl/promtool" /usr/local/bin/promtool ||
      echo "setup: could not install promtool (the metrics format check will fail)" >&2
    rm -rf "$dl"
  else
    echo "setup: promtool missing (run as root to install it)" >&2
  fi
fi

if [ ! -x node_modules/.bin/deno ] || ! node_modules/.bin/deno --version 2>/dev/null | grep -q '^deno 2\.9\.6'; then
  echo "setup: installing Deno 2.9.6 from the npm registry" >&2
  npm install --no-audit --no-fund --loglevel=error >/dev/null
fi

# `onestor install` bundles the actions with `deno bundle`, whose esbuild Deno fetches from the npm
# registry into its cache on first use. Fetch it now: the lab's hosts reach no registry and install
# as oneadmin from this (read-only) cache, and without the bundler their actions would run main.ts.
deno_cache=${DENO_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/deno}
if ! ls -d "$deno_cache"/dl/esbuild-* >/dev/null 2>&1; then
  bundle_tmp=$(mktemp -d)
  node_modules/.bin/deno bundle --quiet --no-config --no-lock --platform deno --outdir "$bundle_tmp" main.ts \
    >/dev/null 2>&1 || echo "setup: could not fetch Deno's bundler (actions will run main.ts, slower to start)" >&2
  rm -rf "$bundle_tmp"
fi
