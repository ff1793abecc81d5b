#!/usr/bin/env bash
# The serve mode: WHIP publishers and WHEP viewers for any broadcast on one
# listener (default 127.0.0.1:8080; open http://127.0.0.1:8080/ for a page
# that publishes your camera or watches), with the embedded relay unless
# RELAY is set.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --release --quiet -- serve --listen "${LISTEN:-127.0.0.1:8080}" ${RELAY:+--relay "$RELAY"}
