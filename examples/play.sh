#!/usr/bin/env bash
# Play a MoQ broadcast: decode and show it (or count frames with SINK=fakesink).
# Needs a relay and a publisher: examples/relay.sh and examples/publish.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
URL=${URL:-http://127.0.0.1:4443/anon}
BROADCAST=${BROADCAST:-testsrc}
VIDEO_SINK=${SINK:-autovideosink}
AUDIO_SINK=${SINK:-autoaudiosink}
# The whole workspace, so the build shares its features with relay.sh.
cargo build --release --quiet --workspace
export GST_PLUGIN_PATH="${CARGO_TARGET_DIR:-$PWD/target}/release${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
exec gst-launch-1.0 \
    moqsrc name=src url="$URL" broadcast="$BROADCAST" \
    src.video_0 ! queue ! decodebin3 ! videoconvert ! "$VIDEO_SINK" \
    src.audio_0 ! queue ! decodebin3 ! audioconvert ! "$AUDIO_SINK"
