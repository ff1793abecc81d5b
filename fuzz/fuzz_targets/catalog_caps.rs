// SPDX-License-Identifier: MIT OR Apache-2.0

//! A catalog from the network, as moqsrc reads it: JSON -> hang catalog ->
//! caps for every rendition -> (what moqsink would make of those caps). Our
//! code may not panic on any input.
//!
//! hang 0.21.19 itself panics on some catalogs (a non-ASCII H.264 codec
//! string: "avc1.4\u03a601f"); moqsrc turns that into an ERROR (see
//! `contain_panics`). Here that one call is allowed to panic so the fuzzer
//! gets past it to our code; any other panic still aborts.

#![no_main]

use std::cell::Cell;
use std::sync::Once;

use gstmoq::catalog;
use libfuzzer_sys::fuzz_target;

thread_local! {
    static IN_HANG: Cell<bool> = const { Cell::new(false) };
}

fn parse(data: &[u8]) -> Option<hang::catalog::Catalog> {
    IN_HANG.with(|f| f.set(true));
    let parsed = std::panic::catch_unwind(|| hang::catalog::Catalog::<()>::from_slice(data));
    IN_HANG.with(|f| f.set(false));
    parsed.ok()?.ok()
}

fuzz_target!(|data: &[u8]| {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().expect("GStreamer initializes");
        let abort = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_HANG.with(Cell::get) {
                abort(info);
            }
        }));
    });
    let Some(parsed) = parse(data) else {
        return;
    };
    for config in parsed.video.renditions.values() {
        if let Ok(caps) = catalog::video_caps(config) {
            let _ = catalog::sink_format(&caps);
            let _ = catalog::video_hints(&caps);
        }
    }
    for config in parsed.audio.renditions.values() {
        if let Ok(caps) = catalog::audio_caps(config) {
            let _ = catalog::sink_format(&caps);
        }
    }
});
