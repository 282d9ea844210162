//! Real files from `../shared/data/sources` read with the facts their MANIFEST states (and first
//! values taken with mrcfile). Skips, saying so, when the shared data is not beside the checkout.

use std::path::{Path, PathBuf};

use cryoprune_formats::mrc::{ByteOrder, DataKind, Mode};
use cryoprune_formats::npy::{NewField, StructArray};
use cryoprune_formats::{read_micrograph, MrcFile, PickFormat, PickSet, StarFile};

mod common;

fn sources() -> Option<PathBuf> {
    common::data().map(|d| d.join("sources"))
}

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() <= 1e-4 * b.abs().max(1.0)
}

fn files_with(root: &Path, exts: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .file_name()
                .unwrap()
                .to_string_lossy()
                .to_lowercase()
                .split('.')
                .skip(1)
                .any(|x| exts.contains(&x))
            {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

struct MrcFact {
    file: &'static str,
    dims: (usize, usize, usize),
    mode: Mode,
    voxel: [f32; 3],
    nsymbt: usize,
    kind: DataKind,
    first: [f32; 2],
    last: f32,
}

#[test]
fn mrc_files_match_their_manifest() {
    let Some(s) = sources() else { return };
    let facts = [
        MrcFact {
            file: "mrcfile/epu2.9_example.mrc",
            dims: (4096, 4096, 1),
            mode: Mode::Uint16,
            voxel: [0.66655135, 0.66655135, 0.0],
            nsymbt: 909_312,
            kind: DataKind::Image,
            first: [4627.0, 4687.0],
            last: 5807.0,
        },
        MrcFact {
            file: "micrograph_cleaner_em/mics/Ucsf_stack_1142_DW.mrc",
            dims: (959, 927, 1),
            mode: Mode::Float32,
            voxel: [1.0; 3],
            nsymbt: 0,
            kind: DataKind::Image,
            first: [6800.5034, 6806.321],
            last: 6802.442,
        },
        MrcFact {
            file: "cryodrgn/relion31.mrcs",
            dims: (256, 256, 5),
            mode: Mode::Float32,
            voxel: [1.0; 3],
            nsymbt: 0,
            kind: DataKind::ImageStack,
            first: [0.285425, 0.9299029],
            last: -0.8011943,
        },
        MrcFact {
            file: "mrcfile/float16.mrc",
            dims: (64, 64, 1),
            mode: Mode::Float16,
            voxel: [3.5953124, 3.5953124, 0.0],
            nsymbt: 0,
            kind: DataKind::Image,
            first: [-0.36450195, 0.39111328],
            last: 1.1904297,
        },
        MrcFact {
            file: "aspire/sample.mrcs",
            dims: (200, 200, 17),
            mode: Mode::Float32,
            voxel: [0.0; 3],
            nsymbt: 0,
            kind: DataKind::ImageStack,
            first: [-2.0562594, -2.1050336],
            last: 0.008436596,
        },
        MrcFact {
            file: "rosettasciio/rsciio/tests/data/mrc/20241021_00405_movie.mrc",
            dims: (8, 4, 32),
            mode: Mode::Uint16,
            voxel: [-10.0, -10.0, 0.0],
            nsymbt: 0,
            kind: DataKind::Volume,
            first: [0.0, 0.0],
            last: 31.0,
        },
    ];
    for f in &facts {
        let m = MrcFile::open(s.join(f.file)).unwrap_or_else(|e| panic!("{e}"));
        let h = m.header();
        assert_eq!((h.nx, h.ny, h.nz), f.dims, "{}", f.file);
        assert_eq!(h.mode, f.mode, "{}", f.file);
        assert_eq!(h.nsymbt, f.nsymbt, "{}", f.file);
        assert_eq!(h.kind(&s.join(f.file)), f.kind, "{}", f.file);
        for (a, b) in h.voxel_size().iter().zip(f.voxel) {
            assert!(close(*a, b), "{}: voxel {:?}", f.file, h.voxel_size());
        }
        let first = m.read_section(0).unwrap();
        assert!(
            close(first[0], f.first[0]) && close(first[1], f.first[1]),
            "{}: {:?}",
            f.file,
            &first[..2]
        );
        let last = m.read_section(h.nz - 1).unwrap();
        assert!(close(*last.last().unwrap(), f.last), "{}", f.file);
    }
    // Negative DE voxel sizes and unset cells give no pixel size rather than a nonsense one.
    let de = MrcFile::open(s.join(facts[5].file)).unwrap();
    assert_eq!(de.header().pixel_size(), None);
}

#[test]
fn mrc_header_details_from_the_manifest() {
    let Some(s) = sources() else { return };
    let epu = MrcFile::open(s.join("mrcfile/epu2.9_example.mrc")).unwrap();
    assert_eq!(epu.header().exttyp, "FEI2");
    assert_eq!(epu.header().nversion, 20140);
    assert_eq!(epu.extended_header().len(), 909_312);

    let emd = MrcFile::open(s.join("mrcfile/EMD-3001.map")).unwrap();
    let h = emd.header();
    assert_eq!((h.nx, h.ny, h.nz, h.ispg, h.nsymbt), (73, 43, 25, 4, 160));
    assert_ne!(
        h.axis_order,
        [1, 2, 3],
        "EMD-3001 has a non-default axis order"
    );
    let v = h.voxel_size();
    assert!(
        close(v[0], 0.44825) && close(v[1], 0.3925) && close(v[2], 0.45875),
        "{v:?}"
    );
    let data = emd.read_all();
    // The compressed copies decode to the same numbers.
    for z in ["mrcfile/EMD-3001.map.bz2", "mrcfile/emd_3001.map.gz"] {
        assert_eq!(MrcFile::open(s.join(z)).unwrap().read_all(), data, "{z}");
    }
    let d3197 = MrcFile::open(s.join("mrcfile/EMD-3197.map")).unwrap();
    assert_eq!(
        (
            d3197.header().nx,
            d3197.header().ny,
            d3197.header().nz,
            d3197.header().ispg
        ),
        (20, 20, 20, 1)
    );
    assert!(close(d3197.header().pixel_size().unwrap(), 11.4));
    assert_eq!(d3197.header().kind(Path::new("x.map")), DataKind::Volume);

    // Old cryoDRGN stacks: no "MAP " id and a zero machine stamp, read permissively.
    for (f, n, side) in [
        ("cryodrgn/toy_projections.mrcs", 1000, 30),
        ("cryodrgn/hand.5.mrcs", 5, 64),
        (
            "cryodrgn/ay19102021_L3_position6_ribo_it09_bin8_1.82A.mrcs",
            220,
            64,
        ),
    ] {
        let m = MrcFile::open(s.join(f)).unwrap();
        assert!(!m.header().has_map_id, "{f}");
        assert_eq!(m.header().byte_order, ByteOrder::Little);
        assert_eq!((m.header().nz, m.header().nx), (n, side), "{f}");
    }
    let haadf = MrcFile::open(s.join("rosettasciio/rsciio/tests/data/mrc/HAADFscan.mrc")).unwrap();
    assert_eq!(
        (
            haadf.header().nx,
            haadf.header().nsymbt,
            haadf.header().exttyp.as_str()
        ),
        (16, 909_312, "FEI2")
    );
    assert!(close(haadf.header().pixel_size().unwrap(), 56.79131));

    let dv = MrcFile::open(s.join("mrc-pypi/tests/toxo.dv"))
        .err()
        .unwrap()
        .to_string();
    assert!(dv.contains("DeltaVision"), "{dv}");
}

#[test]
fn every_mrc_in_sources_opens() {
    let Some(s) = sources() else { return };
    let files = files_with(&s, &["mrc", "mrcs", "map"]);
    assert!(files.len() > 60, "found only {} MRC files", files.len());
    for f in files {
        let m = MrcFile::open(&f).unwrap_or_else(|e| panic!("{e}"));
        let all = m.read_all();
        assert_eq!(all.len(), m.header().nx * m.header().ny * m.header().nz);
    }
}

#[test]
fn images_read_as_float_arrays() {
    let Some(s) = sources() else { return };
    let klh = read_micrograph(s.join("xmipp/src/xmipp/resources/test/filters/KLH.tif")).unwrap();
    assert_eq!((klh.nx, klh.ny), (760, 844));
    assert!(klh.data.iter().all(|v| (0.0..=255.0).contains(v)));
    let pngs = files_with(&s.join("micassess"), &["png"]);
    assert_eq!(pngs.len(), 30);
    for p in pngs {
        let m = read_micrograph(&p).unwrap();
        assert_eq!((m.nx, m.ny), (512, 494), "{}", p.display());
    }
    let jpg = s.join("../empiar-10017/micrographs/Falcon_2012_06_12-14_33_35_0.jpg");
    let m = read_micrograph(&jpg).unwrap();
    assert_eq!((m.nx, m.ny), (4096, 4096));
    assert_eq!(
        cryoprune_formats::micrograph_shape(&jpg).unwrap(),
        (4096, 4096)
    );
}

#[test]
fn every_star_in_sources_reads_or_fails_as_documented() {
    let Some(s) = sources() else { return };
    let files = files_with(&s, &["star"]);
    assert!(files.len() > 60, "found only {} STAR files", files.len());
    for f in files {
        let r = StarFile::read(&f);
        if f.ends_with("aspire/sample.star") {
            // Documented malformed fixture: one row with an extra token, one with a missing value.
            let e = r.unwrap_err().to_string();
            assert!(e.contains("loop row has 5 values; expected 4"), "{e}");
        } else {
            let star = r.unwrap_or_else(|e| panic!("{e}"));
            assert!(!star.blocks.is_empty(), "{}", f.display());
        }
    }
}

fn rows(star: &StarFile, block: &str) -> (usize, usize) {
    let l = star
        .block(block)
        .unwrap_or_else(|| panic!("no block {block}"))
        .first_loop()
        .unwrap();
    (l.rows.len(), l.columns.len())
}

#[test]
fn star_files_match_their_manifest() {
    let Some(s) = sources() else { return };
    let r = |f: &str| StarFile::read(s.join(f)).unwrap_or_else(|e| panic!("{e}"));
    let r31 = r("cryodrgn/relion31.star");
    assert_eq!(rows(&r31, "optics").0, 1);
    assert_eq!(rows(&r31, "particles"), (5, 26));
    assert!(r31.blocks[0]
        .comments
        .iter()
        .any(|c| c.contains("version 30001")));
    let v2 = r("cryodrgn/relion31.v2.star");
    assert_eq!(
        v2.blocks[0].name, "particles",
        "v2 has particles before optics"
    );
    assert_eq!(
        rows(&r("cryodrgn/relion31.6opticsgroups.star"), "optics").0,
        6
    );
    assert_eq!(
        rows(&r("cryodrgn/relion31.6opticsgroups.star"), "particles").0,
        139
    );
    let r5 = r("cryodrgn/relion5.star");
    assert!(r5.blocks[0]
        .comments
        .iter()
        .any(|c| c.contains("version 50001")));
    assert_eq!(rows(&r5, "particles").0, 17);
    assert_eq!(rows(&r("relion/tests/ap_s_c2d.star"), "").0, 8915);
    assert_eq!(rows(&r("relion/tests/ap_s_c2d.star"), "").1, 26);
    assert_eq!(rows(&r("cryodrgn/toy.star"), "images").0, 1000);
    assert_eq!(rows(&r("cryodrgn/sta_testing_bin8.star"), "").0, 219);
    assert_eq!(
        rows(
            &r("topaz-github/test_data/EMPIAR-10025/rawdata/ctf_params.star"),
            "images"
        )
        .0,
        30
    );
    // The MANIFEST says 28 columns; the header lists 29 (#1..#29) and starfile reads 29 too.
    assert_eq!(
        rows(
            &r("topaz-github/test_data/EMPIAR-10025/rawdata/particles.star"),
            "images"
        ),
        (1500, 29)
    );
    assert_eq!(rows(&r("starfile/one_loop.star"), ""), (16, 12));
    assert_eq!(rows(&r("starfile/history/one_loop.star"), ""), (1365, 12));
    assert_eq!(rows(&r("starfile/empty_loop.star"), "").0, 0);
    assert_eq!(
        r("relion/data/mtf_k2_300kV.star").blocks[0]
            .first_loop()
            .unwrap()
            .rows
            .len(),
        1001
    );
    let dq = r("starfile/loop_double_quote.star");
    let l = dq.blocks[0].first_loop().unwrap();
    assert_eq!((l.rows.len(), l.columns.len()), (2, 8));
    let sq = r("starfile/loop_single_quote.star");
    assert_eq!(
        sq.blocks[0].first_loop().unwrap().rows,
        l.rows,
        "quote styles give the same values"
    );
    assert!(
        l.rows.iter().flatten().any(|v| v.is_empty()),
        "\"\" is an empty value"
    );
    assert!(
        l.rows.iter().flatten().any(|v| v == " "),
        "\" \" is a single space"
    );
    let dup = r("starfile/history/multi_line_c_engine.star");
    assert_eq!(dup.blocks.len(), 2);
    assert_eq!(dup.blocks[0].name, dup.blocks[1].name);
    let kv = r("starfile/two_basic_blocks.star");
    assert_eq!(kv.blocks.len(), 2);
    assert!(kv.blocks[0].pairs().count() > 0 && kv.blocks[0].first_loop().is_none());
    assert_eq!(r("starfile/rln3.1_data_style.star").blocks.len(), 3);
    let mtf = r("aspire/sample_particles_relion31.star");
    let optics = mtf.block("optics").unwrap().first_loop().unwrap();
    assert_eq!(optics.rows.len(), 2, "two optics groups");
    assert!(
        optics.column("rlnMtfFileName").is_some(),
        "bracketed comment after a column name is ignored"
    );
}

#[test]
fn cs_files_match_their_manifest() {
    let Some(s) = sources() else { return };
    let j2 = StructArray::read(s.join("cryodrgn/cryosparc_J2_particles_exported.cs")).unwrap();
    assert_eq!((j2.nrows, j2.fields.len()), (22, 42));
    let psize = j2.field("blob/psize_A").unwrap();
    assert!((j2.number(0, psize, 0).unwrap() - 1.345).abs() < 1e-5);
    let shape = j2.field("blob/shape").unwrap();
    assert_eq!(j2.number(0, shape, 0), Some(300.0));
    assert!(j2
        .text(0, j2.field("blob/path").unwrap())
        .unwrap()
        .starts_with(">J1/imported/"));
    let p12 = StructArray::read(s.join("cryodrgn/cryosparc_P12_J24_001_particles.cs")).unwrap();
    assert_eq!((p12.nrows, p12.fields.len()), (2019, 34));
    assert!(
        (p12.number(5, p12.field("blob/psize_A").unwrap(), 0)
            .unwrap()
            - 2.95)
            .abs()
            < 1e-5
    );
    let e = PickSet::read(
        &[s.join("cryodrgn/cryosparc_P12_J24_001_particles.cs")],
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("no `location/center_x_frac` field"), "{e}");
    let e7 = StructArray::read(s.join("cryodrgn/empiar_10076_7.cs")).unwrap();
    assert_eq!((e7.nrows, e7.fields.len()), (7, 24));
    assert_eq!(
        e7.text(3, e7.field("blob/path").unwrap()).unwrap(),
        "empiar_10076_7.mrc"
    );
    assert_eq!(e7.number(6, e7.field("blob/idx").unwrap(), 0), Some(6.0));
    let k4 = s.join("cryosparc-tools/tests/data/4k_dataset.cs");
    let empty = StructArray::read(&k4).unwrap();
    assert_eq!((empty.nrows, empty.fields.len()), (0, 106));
    assert_eq!(PickSet::read(&[k4], None).unwrap().len(), 0);
}

/// A copy of field `name` of `from`, record `rows[i]` as record `i`.
fn copy_field<'a>(from: &'a StructArray, name: &str, rows: &'a [usize]) -> NewField<'a> {
    let f = from.field(name).unwrap().clone();
    let (dtype, count) = (f.dtype.clone(), f.count());
    NewField::le(name, &dtype, count, move |i, b| {
        let start = rows[i] * from.itemsize + f.offset;
        b.copy_from_slice(&from.data[start..start + f.size()]);
    })
}

/// cryoSPARC's `job.json` for a job whose outputs are `(group, type, metafiles, passthrough)`.
fn job_json(outputs: &[(&str, &str, &[&str], bool)]) -> String {
    let results: Vec<serde_json::Value> = outputs
        .iter()
        .map(|(group, kind, files, passthrough)| {
            serde_json::json!({"group_name": group, "type": kind, "metafiles": files,
                               "passthrough": passthrough, "name": kind.split('.').nth(1)})
        })
        .collect();
    serde_json::json!({"uid": "J24", "project_uid": "P12", "type": "select_2D",
                       "output_results": results})
    .to_string()
}

/// A real cryoSPARC particles `.cs` (refinement output: blob, CTF and alignments, no locations)
/// as the main file of a job folder, with a passthrough holding each record's pick location in
/// another order, as cryoSPARC writes what a job passes on from its inputs.
#[test]
fn a_cryosparc_job_folder_is_read_with_its_passthrough_joined() {
    let Some(s) = sources() else { return };
    let real = s.join("cryodrgn/cryosparc_P12_J24_001_particles.cs");
    let main = StructArray::read(&real).unwrap();
    let n = main.nrows;
    let tmp = tempfile::tempdir().unwrap();
    let job = tmp.path().join("J24");
    std::fs::create_dir_all(&job).unwrap();
    std::fs::copy(&real, job.join("J24_001_particles.cs")).unwrap();
    // Every record's location, from its position in the main file, in reverse order.
    let reversed: Vec<usize> = (0..n).rev().collect();
    let uid = copy_field(&main, "uid", &reversed);
    let x = |r: usize| ((n - 1 - r) % 40) as f32 / 40.0 + 0.01;
    let through = job.join("J24_passthrough_particles.cs");
    StructArray::new()
        .write_selected(
            &through,
            (0..n).map(|_| 0),
            &[
                uid,
                NewField::text("location/micrograph_path", 20, |r| {
                    format!("J2/mic_{}.mrc", (n - 1 - r) % 7)
                }),
                NewField::le("location/micrograph_shape", "<u4", 2, |_, b| {
                    b[..4].copy_from_slice(&3838u32.to_le_bytes());
                    b[4..].copy_from_slice(&3710u32.to_le_bytes());
                }),
                NewField::f32("location/center_x_frac", x),
                NewField::f32("location/center_y_frac", |_| 0.5),
                // A field the main file has too: the main file's value stands.
                NewField::f32("blob/psize_A", |_| 9.0),
            ],
        )
        .unwrap();
    let json = |outputs: &[(&str, &str, &[&str], bool)]| {
        std::fs::write(job.join("job.json"), job_json(outputs)).unwrap()
    };
    let selected = (
        "particles_selected",
        "particle.blob",
        &["J24/J24_000_particles.cs", "J24/J24_001_particles.cs"][..],
        false,
    );
    let passed = (
        "particles_selected",
        "particle.location",
        &["J24/J24_passthrough_particles.cs"][..],
        true,
    );
    let excluded = (
        "particles_excluded",
        "particle.blob",
        &["J24/J24_001_particles.cs"][..],
        false,
    );
    let micrographs = (
        "micrographs",
        "exposure.micrograph_blob",
        &["J24/J24_passthrough_micrographs.cs"][..],
        true,
    );
    std::fs::write(job.join("J24_passthrough_micrographs.cs"), b"not read").unwrap();
    json(&[selected, passed, excluded, micrographs]);

    for given in [job.clone(), job.join("J24_001_particles.cs")] {
        let set =
            PickSet::read(std::slice::from_ref(&given), None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(set.len(), n, "{}", given.display());
        assert_eq!(set.files.len(), 1);
        assert_eq!(set.files[0].path, job.join("J24_001_particles.cs"));
        assert_eq!(set.joined, vec![through.clone()]);
        let cryoprune_formats::picks::Content::Cs(arr) = &set.files[0].content else {
            panic!("not a .cs")
        };
        assert_eq!(arr.fields.len(), main.fields.len() + 4);
        let psize = arr.field("blob/psize_A").unwrap();
        assert!((arr.number(5, psize, 0).unwrap() - 2.95).abs() < 1e-5);
        for (mic, p) in set.iter() {
            let r = p.source.unwrap().row();
            assert_eq!(mic, format!("J2/mic_{}.mrc", r % 7));
            assert!((p.x - 3710.0 * (((r % 40) as f64 / 40.0) + 0.01)).abs() < 1e-2);
            assert!((p.y - 1919.0).abs() < 1e-3);
        }
    }

    // A passthrough that lacks a record's uid is refused, naming the record.
    let lacking = job.join("J24_passthrough_short.cs");
    let short = StructArray::read(&through).unwrap();
    let all_but_last: Vec<usize> = (0..n - 1).collect();
    let fields: Vec<NewField> = short
        .fields
        .iter()
        .map(|f| copy_field(&short, &f.name, &all_but_last))
        .collect();
    StructArray::new()
        .write_selected(&lacking, all_but_last.iter().map(|_| 0), &fields)
        .unwrap();
    let short_pass = (
        "particles_selected",
        "particle.location",
        &["J24/J24_passthrough_short.cs"][..],
        true,
    );
    json(&[selected, short_pass]);
    let e = PickSet::read(std::slice::from_ref(&job), None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("J24_passthrough_short.cs") && e.contains("record 1 of the main file"),
        "{e}"
    );

    // Two particle outputs: which one is meant is the user's to say.
    let classes = (
        "particles_class_1",
        "particle.blob",
        &["J24/J24_001_particles.cs"][..],
        false,
    );
    json(&[selected, passed, classes]);
    let e = PickSet::read(std::slice::from_ref(&job), None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("2 particle outputs: particles_selected") && e.contains("particles_class_1"),
        "{e}"
    );
    // None: the job's outputs are named.
    json(&[micrographs]);
    let e = PickSet::read(std::slice::from_ref(&job), None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no particle output") && e.contains("micrographs"),
        "{e}"
    );

    // Without cryoSPARC's job.json (none, or another tool's) the main file alone has no
    // locations, and the error says where they are.
    for json in [None, Some(r#"{"name": "another tool's"}"#)] {
        match json {
            Some(text) => std::fs::write(job.join("job.json"), text).unwrap(),
            None => std::fs::remove_file(job.join("job.json")).unwrap(),
        }
        let e = PickSet::read(&[job.join("J24_001_particles.cs")], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("passthrough"), "{e}");
    }
}

#[test]
fn pick_files_match_their_manifest() {
    let Some(s) = sources() else { return };
    let read = |f: &str| PickSet::read(&[s.join(f)], None).unwrap_or_else(|e| panic!("{e}"));
    let ucsf = read("micrograph_cleaner_em/inCoords/relion/Ucsf_stack_1142_DW_autopick.star");
    assert_eq!(ucsf.len(), 45);
    assert!(ucsf.iter().all(|(_, p)| p.score.is_some()));
    let ap = read("relion/tests/ap_s_c2d.star");
    assert_eq!((ap.len(), ap.micrographs.len()), (8915, 15));
    assert!(
        ap.iter().all(|(_, p)| p.x < 2000.0 && p.y < 2000.0),
        "binned coordinates (max ~1900)"
    );
    assert_eq!(read("cryodrgn/relion5.star").len(), 17);
    assert_eq!(read("aspire/history/sample_relion_coord.star").len(), 440);
    // RELION 4/5 indexes of coordinate files: one lists a file beside it, the other, in a job
    // folder, a file of the project folder two levels up.
    for (index, micrograph) in [
        ("aspire/history/sample_relion_autopick.star", "sample1.mrc"),
        (
            "aspire/history/AutoPick/job006/sample_relion_autopick.star",
            "sample.mrc",
        ),
    ] {
        let listed = read(index);
        assert_eq!(listed.len(), 440, "{index}");
        assert_eq!(listed.micrographs[0].micrograph, micrograph);
    }
    let topaz = read("topaz-github/test_data/EMPIAR-10025/rawdata/particles.txt");
    assert_eq!((topaz.len(), topaz.micrographs.len()), (1500, 30));
    assert!(topaz.iter().all(|(_, p)| p.score.is_none()));
    let max_x = topaz.iter().map(|(_, p)| p.x).fold(0.0, f64::max);
    let max_y = topaz.iter().map(|(_, p)| p.y).fold(0.0, f64::max);
    assert!(max_x <= 7188.0 && max_x > 7000.0 && max_y <= 7432.0 && max_y > 7000.0);
    // crYOLO: STAR dialect with <NA>, box 220, corner + 110 = centre.
    let cb = read("napari-boxmanager/test_data/particle_cbox_2d/TcdA1-0018_frames_sum.cbox");
    assert_eq!(cb.box_size, Some(220.0));
    let first = &cb.micrographs[0].picks[0];
    assert!(
        (first.x - (3700.3671875 + 110.0)).abs() < 1e-9
            && (first.y - (3874.455551147461 + 110.0)).abs() < 1e-9
    );
    assert!((first.score.unwrap() - 0.6578449010848999).abs() < 1e-12);
    assert!((118..=130).contains(&cb.len()));
    assert_eq!(
        read("napari-boxmanager/test_data/2d_particles.cbox").len(),
        3
    );
    // 37,710 lines, of which 34,414 are boxes; the rest is the header and the slice index block.
    assert_eq!(
        read("napari-boxmanager/test_data/cbox3d/particles.cbox").len(),
        34_414
    );
    let fil = read("napari-boxmanager/test_data/filament_cbox_2d/ActLifeact_03211.cbox");
    assert_eq!(fil.box_size, Some(100.0));
    assert_eq!(
        read("napari-boxmanager/test_data/filament_cbox_2d/empty.cbox").len(),
        0
    );
    // EMAN: the same particles as corners (w=20, h=10) and as centres (w=h=0).
    let left = read("napari-boxmanager/test_data/2d_left.box");
    let centre = read("napari-boxmanager/test_data/2d_center.box");
    let xy = |s: &PickSet| s.iter().map(|(_, p)| (p.x, p.y)).collect::<Vec<_>>();
    assert_eq!(xy(&left), xy(&centre));
    assert_eq!(left.len(), 3);
    assert_eq!(read("napari-boxmanager/test_data/2d_empty.box").len(), 0);
    let apple = read("aspire/history/sample.box");
    assert_eq!((apple.len(), apple.box_size), (440, Some(256.0)));
    for (f, phrase) in [
        (
            "napari-boxmanager/test_data/2d_corrupt_has_string.box",
            "line 2: x is `sixty_three`",
        ),
        (
            "napari-boxmanager/test_data/2d_corrupt_unqual_columns.box",
            "line 3: row has 3 columns",
        ),
    ] {
        let e = PickSet::read(&[s.join(f)], None).unwrap_err().to_string();
        assert!(e.contains(phrase), "{e}");
    }
    let e = PickSet::read(&[s.join("cryodrgn/toy_projections.txt")], None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("no `image_name` column"), "{e}");
}

#[test]
fn box_centres_index_the_stored_array() {
    let Some(s) = sources() else { return };
    // box_data/test_N.box hold "col row 0 0" for single bright pixels of test_N.mrc.
    let dir = s.join("napari-boxmanager/test_data/box_data");
    let mut checked = 0;
    for n in 0..10 {
        let (b, m) = (
            dir.join(format!("test_{n}.box")),
            dir.join(format!("test_{n}.mrc")),
        );
        if !b.exists() {
            continue;
        }
        let mic = read_micrograph(&m).unwrap();
        let max = mic.data.iter().cloned().fold(f32::MIN, f32::max);
        for (_, p) in PickSet::read(&[b], None).unwrap().iter() {
            let v = mic.data[p.y as usize * mic.nx + p.x as usize];
            assert_eq!(v, max, "test_{n}: no dot at column {} row {}", p.x, p.y);
            checked += 1;
        }
    }
    assert!(checked >= 20);
}

#[test]
fn picks_by_format_name_and_extension() {
    assert_eq!(
        PickFormat::from_path(Path::new("a/b.cbox")),
        Some(PickFormat::Cbox)
    );
    assert_eq!(PickFormat::from_name("relion"), Some(PickFormat::Star));
    assert_eq!(PickFormat::from_name("topaz"), Some(PickFormat::Topaz));
}
