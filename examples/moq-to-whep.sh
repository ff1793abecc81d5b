#!/usr/bin/env bash
# The moq-to-whep gateway, run by gst-launch-1.0 from the description
# `moq-gateway --print moq-to-whep` prints. WHEP viewers (a browser, or whepclientsrc) watch the MoQ broadcast BROADCAST at
# http://127.0.0.1:9090/whep/endpoint.
# Needs a relay (examples/relay.sh; RELAY=... for another). VIDEO=vp8 for VP8.
set -euo pipefail
cd "$(dirname "$0")/.."
. examples/plugins.sh
description=$("$MOQ_GATEWAY" --print moq-to-whep \
    --relay "${RELAY:-http://127.0.0.1:4443/anon}" --broadcast "${BROADCAST:-live}" \
    --video "${VIDEO:-h264}" ${WEBRTC:+--webrtc "$WEBRTC"})
echo "gst-launch-1.0 $description"
# eval: the description quotes its own values, as on a command line.
eval exec gst-launch-1.0 -e "$description"
