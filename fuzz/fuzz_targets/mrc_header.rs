//! Any bytes given to the MRC header parser give a header or an error, never a panic; a header
//! that parses must describe data that fits in the bytes given.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz.mrc");
    if let Ok(h) = cryoprune_formats::MrcHeader::parse(path, data, data.len() as u64) {
        assert!(h.data_offset() as u64 + h.data_len_bytes() <= data.len() as u64);
    }
});
