#!/usr/bin/env bash
# Runs onestor's demo on a local lab cluster. Installs what it needs first (as root).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec node_modules/.bin/deno run -A --no-check scripts/demo.ts
