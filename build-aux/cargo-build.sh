#!/bin/sh
# Called by meson: builds the plugin with cargo and puts libgstmoq.so where
# meson expects its output. Arguments: source root, output dir, profile.
set -eu
src=$1
out=$2
profile=$3
target=${CARGO_TARGET_DIR:-$out/cargo-target}
if [ "$profile" = release ]; then
    cargo build --release --locked --manifest-path "$src/Cargo.toml" -p gst-plugin-moq --target-dir "$target"
else
    cargo build --locked --manifest-path "$src/Cargo.toml" -p gst-plugin-moq --target-dir "$target"
fi
cp "$target/$profile/libgstmoq.so" "$out/libgstmoq.so"
