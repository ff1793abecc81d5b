# Sourced by the examples: builds the workspace once (release) and puts both
# plugins, moq and gst-plugins-rs's rswebrtc, on GST_PLUGIN_PATH. Cargo
# leaves the rswebrtc library only under deps/ with a hash in its name, so
# both are linked into one folder under their plugin names.
cargo build --release --quiet --workspace
release="${CARGO_TARGET_DIR:-$PWD/target}/release"
plugins="$release/gst-plugins"
mkdir -p "$plugins"
ln -sf "$release/libgstmoq.so" "$plugins/libgstmoq.so"
ln -sf "$(ls -t "$release"/deps/libgstrswebrtc-*.so | head -n 1)" "$plugins/libgstrswebrtc.so"
export GST_PLUGIN_PATH="$plugins${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
MOQ_GATEWAY="$release/moq-gateway"
