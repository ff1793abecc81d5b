#!/usr/bin/env bash
# Publish a test pattern (H.264) with a tone (Opus) as a MoQ broadcast.
# Needs a relay: examples/relay.sh in another terminal.
set -euo pipefail
cd "$(dirname "$0")/.."
URL=${URL:-http://127.0.0.1:4443/anon}
BROADCAST=${BROADCAST:-testsrc}
# The whole workspace, so the build shares its features with relay.sh.
cargo build --release --quiet --workspace
export GST_PLUGIN_PATH="${CARGO_TARGET_DIR:-$PWD/target}/release${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
exec gst-launch-1.0 -e \
    videotestsrc is-live=true pattern=ball ! video/x-raw,format=I420,width=1280,height=720,framerate=30/1 \
    ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=60 bitrate=3000 ! h264parse \
    ! moqsink name=sink url="$URL" broadcast="$BROADCAST" \
    audiotestsrc is-live=true wave=ticks ! audioconvert ! opusenc ! sink.audio_0
