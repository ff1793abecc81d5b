// SPDX-License-Identifier: MIT OR Apache-2.0

//! A frame from the network in the hang legacy container (timestamp varint
//! + payload), as moqsrc's track reader decodes it. No input may panic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = hang::container::Frame::decode(bytes::Bytes::copy_from_slice(data));
});
