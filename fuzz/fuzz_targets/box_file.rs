//! EMAN `.box` content read from a file gives picks or an error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static DIR: tempfile::TempDir = tempfile::tempdir().unwrap();
    }
    DIR.with(|d| {
        let p = d.path().join("fuzz.box");
        std::fs::write(&p, data).unwrap();
        if let Ok(set) = cryoprune_formats::PickSet::read(&[p], None) {
            assert!(set.iter().all(|(_, p)| p.x.is_finite() && p.y.is_finite()));
        }
    });
});
