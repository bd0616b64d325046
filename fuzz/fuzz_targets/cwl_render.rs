//! Fuzz target `cwl_render`: see `aq_fuzz::cwl_render` and docs/fuzzing.md.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| aq_fuzz::cwl_render(data));
