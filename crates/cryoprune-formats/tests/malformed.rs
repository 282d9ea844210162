//! Every file in `tests/malformed/` must be refused with one clear error that names the file and
//! contains the phrase listed in `expected.tsv` — never a panic, never a silent partial read.

use std::path::{Path, PathBuf};

use cryoprune_formats::npy::StructArray;
use cryoprune_formats::{read_micrograph, MrcFile, PickFormat, PickSet, StarFile};

fn read_with(reader: &str, path: &Path) -> Result<(), String> {
    let picks = |f| PickSet::read(&[path.to_path_buf()], Some(f)).map(|_| ());
    let r = match reader {
        "mrc" => MrcFile::open(path).map(|_| ()),
        "star" => StarFile::read(path).map(|_| ()),
        "star_picks" => picks(PickFormat::Star),
        "cs" => StructArray::read(path).map(|_| ()),
        "cs_picks" => picks(PickFormat::Cs),
        "box" => picks(PickFormat::Box),
        "cbox" => picks(PickFormat::Cbox),
        "topaz" => picks(PickFormat::Topaz),
        "csv" => picks(PickFormat::Csv),
        "image" => read_micrograph(path).map(|_| ()),
        other => panic!("unknown reader {other} in expected.tsv"),
    };
    r.map_err(|e| e.to_string())
}

#[test]
fn malformed_files_give_clear_errors() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/malformed");
    let table = std::fs::read_to_string(dir.join("expected.tsv")).unwrap();
    let mut n = 0;
    for line in table.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (file, reader, phrase) = (cols[0], cols[1], cols[2]);
        let path = dir.join(file);
        let result = std::panic::catch_unwind(|| read_with(reader, &path));
        let msg = match result {
            Err(_) => panic!("{file}: reader panicked"),
            Ok(Ok(())) => panic!("{file}: was accepted, expected an error containing `{phrase}`"),
            Ok(Err(m)) => m,
        };
        assert!(
            msg.contains(file),
            "{file}: error does not name the file: {msg}"
        );
        assert!(
            msg.contains(phrase),
            "{file}: expected `{phrase}` in: {msg}"
        );
        assert_eq!(
            msg.lines().count(),
            1,
            "{file}: error is not one line: {msg}"
        );
        n += 1;
    }
    assert!(n >= 30, "the corpus must hold at least 30 files, has {n}");
}
