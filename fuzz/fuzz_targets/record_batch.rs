//! Feeds arbitrary bytes to the record-batch view: parsing, validation and splitting must
//! return errors, never panic, whatever a producer or a damaged disk hands them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spate_core::record_batch::{split, validate};

fuzz_target!(|data: &[u8]| {
    let _ = validate(data);
    for item in split(data) {
        if let Ok((_, header, batch)) = item {
            assert_eq!(batch.len(), header.total_len());
        }
    }
});
