#!/usr/bin/env bash
# A local MoQ relay for the other examples: 127.0.0.1:4443, public path anon/.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo run --release --quiet -- relay --listen "${LISTEN:-127.0.0.1:4443}"
