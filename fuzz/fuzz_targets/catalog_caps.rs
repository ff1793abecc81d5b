// SPDX-License-Identifier: MIT OR Apache-2.0

//! A catalog from the network, as moqsrc reads it: JSON -> hang catalog ->
//! caps for every rendition -> (what moqsink would make of those caps). No
//! input may panic; caps that come out must be accepted back.

#![no_main]

use std::sync::Once;

use gstmoq::catalog;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    static INIT: Once = Once::new();
    INIT.call_once(|| gst::init().expect("GStreamer initializes"));
    let Ok(parsed) = hang::catalog::Catalog::<()>::from_slice(data) else {
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
