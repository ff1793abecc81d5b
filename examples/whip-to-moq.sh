#!/usr/bin/env bash
# The whip-to-moq gateway, run by gst-launch-1.0 from the description
# `moq-gateway --print whip-to-moq` prints. A WHIP publisher (OBS: Settings > Stream > WHIP, server http://127.0.0.1:8080/whip/endpoint;
# or a browser) feeds the MoQ broadcast BROADCAST (default live).
# Needs a relay (examples/relay.sh; RELAY=... for another). VIDEO=vp8 for VP8.
set -euo pipefail
cd "$(dirname "$0")/.."
. examples/plugins.sh
description=$("$MOQ_GATEWAY" --print whip-to-moq \
    --relay "${RELAY:-http://127.0.0.1:4443/anon}" --broadcast "${BROADCAST:-live}" \
    --video "${VIDEO:-h264}" ${WEBRTC:+--webrtc "$WEBRTC"})
echo "gst-launch-1.0 $description"
# eval: the description quotes its own values, as on a command line.
eval exec gst-launch-1.0 -e "$description"
