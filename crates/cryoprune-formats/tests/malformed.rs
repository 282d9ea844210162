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

/// A pipe, a device or a folder given as a pick file or micrograph is refused at once instead of
/// blocking forever (a FIFO) or reading without end (`/dev/zero`).
#[cfg(unix)]
#[test]
fn non_regular_files_are_refused_without_blocking() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("non_regular");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("picks.star");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let zero = dir.join("zero.mrc");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let folder = dir.join("folder.mrc");
    std::fs::create_dir_all(&folder).unwrap();
    for (reader, path) in [
        ("star_picks", &fifo),
        ("star", &fifo),
        ("mrc", &zero),
        ("image", &zero),
        ("mrc", &folder),
    ] {
        let msg = read_with(reader, path).unwrap_err();
        assert!(
            msg.contains("not a regular file") || msg.contains("a folder"),
            "{reader} {}: {msg}",
            path.display()
        );
    }
}

/// A UTF-8 byte-order mark (Windows editors) is accepted by every text format, as the CSV reader
/// always did.
#[test]
fn a_byte_order_mark_is_accepted_everywhere() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bom");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, format, text) in [
        (
            "a.star",
            PickFormat::Star,
            "data_\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n10 20\n",
        ),
        ("a.csv", PickFormat::Csv, "micrograph,x,y\na,10,20\n"),
        (
            "a.txt",
            PickFormat::Topaz,
            "image_name\tx_coord\ty_coord\na\t10\t20\n",
        ),
        ("a.box", PickFormat::Box, "5\t15\t10\t10\n"),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, format!("\u{feff}{text}")).unwrap();
        let set = PickSet::read(&[path], Some(format)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (_, p) = set.iter().next().unwrap();
        assert_eq!((p.x, p.y), (10.0, 20.0), "{name}");
    }
}

/// A TIFF of 150 bytes declaring 200000 x 200000 pixels is refused before anything is
/// allocated (it used to abort the process), and a JPEG cut short is refused instead of decoding
/// its missing rows as flat grey.
#[test]
fn declared_sizes_and_truncated_jpegs_are_refused() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("declared");
    std::fs::create_dir_all(&dir).unwrap();
    // Little-endian TIFF, one IFD of 8 entries (tag, type, count, value).
    let mut t: Vec<u8> = b"II*\0".to_vec();
    t.extend(8u32.to_le_bytes());
    let entries: [(u16, u16, u32); 8] = [
        (256, 4, 200_000), // width
        (257, 4, 200_000), // height
        (258, 3, 8),       // bits per sample
        (259, 3, 1),       // no compression
        (262, 3, 1),       // black is zero
        (273, 4, 200),     // strip offset
        (278, 4, 200_000), // rows per strip
        (279, 4, 1 << 30), // strip byte count
    ];
    t.extend((entries.len() as u16).to_le_bytes());
    for (tag, kind, value) in entries {
        t.extend(tag.to_le_bytes());
        t.extend(kind.to_le_bytes());
        t.extend(1u32.to_le_bytes());
        match kind {
            3 => t.extend((value as u16).to_le_bytes().into_iter().chain([0, 0])),
            _ => t.extend(value.to_le_bytes()),
        }
    }
    t.extend(0u32.to_le_bytes());
    let tif = dir.join("huge.tif");
    std::fs::write(&tif, &t).unwrap();
    let err = read_micrograph(&tif).err().unwrap().to_string();
    assert!(err.contains("declares 200000x200000 pixels"), "{err}");

    let img =
        image::GrayImage::from_fn(64, 64, |x, y| image::Luma([((x * 3 + y * 5) % 256) as u8]));
    let jpg = dir.join("whole.jpg");
    img.save(&jpg).unwrap();
    assert!(read_micrograph(&jpg).is_ok());
    let bytes = std::fs::read(&jpg).unwrap();
    let cut = dir.join("cut.jpg");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    let err = read_micrograph(&cut).err().unwrap().to_string();
    assert!(
        err.contains("truncated") && err.contains("cut.jpg"),
        "{err}"
    );
}
