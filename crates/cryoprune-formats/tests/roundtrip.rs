//! read -> write -> read gives identical values in every format, keeps unknown columns, and
//! the EMPIAR-10017 Topaz picks survive a trip through every other format and back.

use std::collections::HashMap;
use std::path::Path;

use cryoprune_formats::mrc::{write_mrc, Mode, WriteKind};
use cryoprune_formats::npy::StructArray;
use cryoprune_formats::picks::Content;
use cryoprune_formats::{micrograph_shape, MrcFile, PickFormat, PickSet, StarFile, WriteOptions};

mod common;
use common::data;

type Row = (String, f64, f64, Option<f64>, Option<String>);

fn rows(set: &PickSet) -> Vec<Row> {
    set.iter()
        .map(|(m, p)| {
            (
                m.to_string(),
                p.x,
                p.y,
                p.score,
                p.label.as_deref().map(str::to_string),
            )
        })
        .collect()
}

/// Same-format round trips of real files: identical picks and identical source tables.
#[test]
fn same_format_round_trip_keeps_everything() {
    let Some(d) = data() else { return };
    let s = d.join("sources");
    let files = [
        "cryodrgn/relion31.star",
        "cryodrgn/relion31.v2.star",
        "cryodrgn/relion5.star",
        "cryodrgn/relion31.6opticsgroups.star",
        "relion/tests/ap_s_c2d.star",
        "micrograph_cleaner_em/inCoords/relion/Ucsf_stack_1142_DW_autopick.star",
        "cryosparc-tools/tests/data/4k_dataset.cs",
        "napari-boxmanager/test_data/particle_cbox_2d/TcdA1-0018_frames_sum.cbox",
        "napari-boxmanager/test_data/filament_cbox_2d/ActLifeact_03211.cbox",
        "napari-boxmanager/test_data/2d_left.box",
        "topaz-github/test_data/EMPIAR-10025/rawdata/particles.txt",
        "../empiar-10017/labels/topaz.csv",
        "../empiar-10017/picks/crYOLO/Falcon_2012_06_12-14_33_35_0.box",
    ];
    let tmp = tempfile::tempdir().unwrap();
    for (i, f) in files.iter().enumerate() {
        let src = s.join(f);
        let a = PickSet::read(std::slice::from_ref(&src), None).unwrap_or_else(|e| panic!("{e}"));
        // same file name in its own folder: per-micrograph formats name the micrograph by the file
        let out = tmp
            .path()
            .join(i.to_string())
            .join(src.file_name().unwrap());
        a.write(a.format, &out, &WriteOptions::default()).unwrap();
        let b = PickSet::read(std::slice::from_ref(&out), Some(a.format)).unwrap();
        assert!(rows(&a) == rows(&b), "{f}: picks differ after a round trip");
        match (&a.files[0].content, &b.files[0].content) {
            (Content::Star { star: x, .. }, Content::Star { star: y, .. }) => {
                assert_eq!(x.blocks.len(), y.blocks.len(), "{f}");
                for (bx, by) in x.blocks.iter().zip(&y.blocks) {
                    assert_eq!(bx.name, by.name, "{f}");
                    assert_eq!(
                        bx.pairs().collect::<Vec<_>>(),
                        by.pairs().collect::<Vec<_>>(),
                        "{f}"
                    );
                    for (lx, ly) in bx.loops().zip(by.loops()) {
                        assert_eq!(
                            (&lx.columns, &lx.rows),
                            (&ly.columns, &ly.rows),
                            "{f}: block {}",
                            bx.name
                        );
                    }
                }
            }
            (Content::Cs(x), Content::Cs(y)) => assert_eq!(x, y, "{f}"),
            (
                Content::Table {
                    header: hx,
                    rows: rx,
                },
                Content::Table {
                    header: hy,
                    rows: ry,
                },
            ) => {
                assert_eq!((hx, rx), (hy, ry), "{f}");
            }
            _ => panic!("{f}: content kind changed"),
        }
    }
}

/// A subset with added columns keeps the unknown columns of the input (STAR optics, `.cs` fields).
#[test]
fn subset_with_new_columns_keeps_unknown_columns() {
    let Some(d) = data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let src = d.join("sources/cryodrgn/relion31.6opticsgroups.star");
    let mut set = PickSet::read(std::slice::from_ref(&src), None).unwrap();
    let mut k = 0;
    set.retain(|_, _| {
        k += 1;
        k % 2 == 0
    });
    set.add_column("cryopruneClass", |_, _| "particle".into());
    set.add_column("cryopruneProbParticle", |_, p| {
        format!("{:.3}", p.x / 10000.0)
    });
    let out = tmp.path().join("kept.star");
    set.write(PickFormat::Star, &out, &WriteOptions::default())
        .unwrap();
    let orig = StarFile::read(&src).unwrap();
    let kept = StarFile::read(&out).unwrap();
    let (oo, ko) = (orig.block("optics").unwrap(), kept.block("optics").unwrap());
    assert_eq!(oo.comments, ko.comments);
    let (lo_opt, lk_opt) = (oo.first_loop().unwrap(), ko.first_loop().unwrap());
    assert_eq!(
        (&lo_opt.columns, &lo_opt.rows),
        (&lk_opt.columns, &lk_opt.rows),
        "optics block unchanged"
    );
    let (lo, lk) = (
        orig.block("particles").unwrap().first_loop().unwrap(),
        kept.block("particles").unwrap().first_loop().unwrap(),
    );
    assert_eq!(lk.columns.len(), lo.columns.len() + 2);
    assert_eq!(&lk.columns[..lo.columns.len()], &lo.columns[..]);
    assert_eq!(lk.rows.len(), lo.rows.len() / 2);
    for (i, row) in lk.rows.iter().enumerate() {
        assert_eq!(
            row.to_vec()[..lo.columns.len()],
            lo.rows.get(2 * i + 1).to_vec()[..]
        );
        assert_eq!(row.get(lo.columns.len()), "particle");
    }

    let fields = |a: &StructArray| a.fields.iter().map(|f| f.name.clone()).collect::<Vec<_>>();
    let k4 = d.join("sources/cryosparc-tools/tests/data/4k_dataset.cs");
    let mut cs = PickSet::read(std::slice::from_ref(&k4), None).unwrap();
    cs.add_column("class", |_, _| "junk".into());
    let out = tmp.path().join("kept.cs");
    cs.write(PickFormat::Cs, &out, &WriteOptions::default())
        .unwrap();
    let (a, b) = (
        StructArray::read(&k4).unwrap(),
        StructArray::read(&out).unwrap(),
    );
    assert_eq!(fields(&b)[..a.fields.len()], fields(&a)[..]);
    assert_eq!(fields(&b).last().unwrap(), "cryoprune/class");
}

fn empiar_topaz(d: &Path) -> PickSet {
    let dir = d.join("empiar-10017/picks/topaz");
    PickSet::read(&[dir], None).unwrap()
}

/// The acceptance check of the formats issue: Topaz `.box` -> every format -> `.box` keeps
/// centres within 0.01 px, and the centres are the x, y of `labels/topaz.csv`.
#[test]
fn empiar_topaz_picks_survive_every_format() {
    let Some(d) = data() else { return };
    let orig = empiar_topaz(&d);
    assert_eq!(orig.len(), 3052);
    let labels = PickSet::read(&[d.join("empiar-10017/labels/topaz.csv")], None).unwrap();
    let centres = |s: &PickSet| {
        let mut m: HashMap<String, Vec<(f64, f64)>> = HashMap::new();
        for (mic, p) in s.iter() {
            m.entry(cryoprune_formats::names::micrograph_key(mic))
                .or_default()
                .push((p.x, p.y));
        }
        m
    };
    let want = centres(&labels);
    let close = |a: &HashMap<String, Vec<(f64, f64)>>, what: &str| {
        assert_eq!(a.len(), want.len(), "{what}: micrographs");
        for (k, v) in &want {
            let got = &a[k];
            assert_eq!(got.len(), v.len(), "{what}: {k}");
            for (p, q) in got.iter().zip(v) {
                assert!(
                    (p.0 - q.0).abs() < 0.01 && (p.1 - q.1).abs() < 0.01,
                    "{what}: {k}: {p:?} vs {q:?}"
                );
            }
        }
    };
    close(&centres(&orig), "topaz .box vs labels/topaz.csv");
    let mut shapes = HashMap::new();
    for m in &orig.micrographs {
        let jpg = d.join(format!("empiar-10017/micrographs/{}.jpg", m.micrograph));
        shapes.insert(m.micrograph.clone(), micrograph_shape(&jpg).unwrap());
    }
    let opts = WriteOptions {
        box_size: None,
        micrograph_shapes: shapes,
    };
    let tmp = tempfile::tempdir().unwrap();
    for format in [
        PickFormat::Star,
        PickFormat::Cs,
        PickFormat::Cbox,
        PickFormat::Topaz,
        PickFormat::Csv,
    ] {
        let there = tmp.path().join(format!("{format:?}"));
        let out = if format.per_micrograph_only() {
            there.clone()
        } else {
            there.join(format!("all.{}", format.extension()))
        };
        orig.write(format, &out, &opts).unwrap();
        let mid = PickSet::read(&[out], Some(format)).unwrap();
        close(&centres(&mid), &format!("{format:?}"));
        let back_dir = tmp.path().join(format!("{format:?}_back"));
        mid.write(
            PickFormat::Box,
            &back_dir,
            &WriteOptions {
                box_size: Some(180.0),
                ..Default::default()
            },
        )
        .unwrap();
        let back = PickSet::read(&[back_dir], None).unwrap();
        close(&centres(&back), &format!("{format:?} -> box"));
        let scores: Vec<f64> = back.iter().filter_map(|(_, p)| p.score).collect();
        assert_eq!(scores.len(), 3052, "{format:?}: scores survive");
    }
}

#[test]
fn mrc_round_trip_of_real_files_is_exact() {
    let Some(d) = data() else { return };
    let tmp = tempfile::tempdir().unwrap();
    for (f, mode) in [
        ("sources/mrcfile/float16.mrc", Mode::Float16),
        ("sources/mrcfile/EMD-3197.map", Mode::Float32),
        ("sources/cryodrgn/hand.5.mrcs", Mode::Float32),
        (
            "sources/rosettasciio/rsciio/tests/data/mrc/Custom_movie.mrc",
            Mode::Uint16,
        ),
    ] {
        let a = MrcFile::open(d.join(f)).unwrap();
        let h = a.header();
        let out = tmp.path().join("copy.mrc");
        let kind = if h.nz > 1 && h.ispg == 1 && f.ends_with(".map") {
            WriteKind::Volume
        } else {
            WriteKind::ImageOrStack
        };
        write_mrc(
            &out,
            (h.nx, h.ny, h.nz),
            &a.read_all(),
            mode,
            kind,
            h.pixel_size(),
        )
        .unwrap();
        let b = MrcFile::open(&out).unwrap();
        assert_eq!(b.read_all(), a.read_all(), "{f}");
        assert_eq!(b.header().mode, h.mode, "{f}");
        assert_eq!(b.header().pixel_size(), h.pixel_size(), "{f}");
    }
}
