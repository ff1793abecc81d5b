#!/usr/bin/env bash
# The whep-to-moq gateway, run by gst-launch-1.0 from the description
# `moq-gateway --print whep-to-moq` prints. Pulls from the WHEP server WEBRTC (default http://127.0.0.1:9090/whep/endpoint) into
# the MoQ broadcast BROADCAST.
# Needs a relay (examples/relay.sh; RELAY=... for another). VIDEO=vp8 for VP8.
set -euo pipefail
cd "$(dirname "$0")/.."
. examples/plugins.sh
description=$("$MOQ_GATEWAY" --print whep-to-moq \
    --relay "${RELAY:-http://127.0.0.1:4443/anon}" --broadcast "${BROADCAST:-live}" \
    --video "${VIDEO:-h264}" ${WEBRTC:+--webrtc "$WEBRTC"})
echo "gst-launch-1.0 $description"
# eval: the description quotes its own values, as on a command line.
eval exec gst-launch-1.0 -e "$description"
