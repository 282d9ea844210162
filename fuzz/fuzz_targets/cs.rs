//! Any bytes given to the `.npy`/`.cs` parser give an array or an error; an array that parses
//! must write and parse back identically, and every field must be readable in every row.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("fuzz.cs");
    if let Ok(a) = cryoprune_formats::npy::StructArray::parse(data, path) {
        for r in 0..a.nrows.min(64) {
            for f in &a.fields {
                let _ = a.text(r, f);
                for e in 0..f.count() {
                    let _ = a.number(r, f, e);
                }
            }
        }
        let mut buf = Vec::new();
        a.write_to(&mut buf).unwrap();
        let b = cryoprune_formats::npy::StructArray::parse(&buf, path).expect("what we write must read back");
        assert_eq!(a, b);
    }
});
