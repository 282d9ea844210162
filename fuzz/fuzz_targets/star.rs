//! STAR text that parses must write out and parse again to the same values.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = std::path::Path::new("fuzz.star");
    if let Ok(star) = cryoprune_formats::StarFile::parse(text, path) {
        let again = cryoprune_formats::StarFile::parse(&star.to_string_lossless(), path)
            .expect("what we write must read back");
        assert_eq!(star.blocks.len(), again.blocks.len());
        for (a, b) in star.blocks.iter().zip(&again.blocks) {
            for (la, lb) in a.loops().zip(b.loops()) {
                assert_eq!((&la.columns, &la.rows), (&lb.columns, &lb.rows));
            }
        }
    }
});
