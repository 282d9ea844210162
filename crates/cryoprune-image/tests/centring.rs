//! A bright dot at each pick must come out at the box centre, for even and odd boxes, with and
//! without resampling, and after the micrograph itself was binned (coordinates divided by the
//! factor actually applied).

use cryoprune_image::extract::{EdgePolicy, ExtractConfig, Extractor, ParticleNorm};
use cryoprune_image::fourier::bin;
use cryoprune_image::Image;

fn micrograph_with_dots(nx: usize, ny: usize, at: &[(f64, f64)]) -> Image {
    let mut img = Image::from_fn(nx, ny, |x, y| ((x * 7 + y * 13) % 5) as f32 * 0.01);
    for &(x, y) in at {
        img.set(x as usize, y as usize, 5.0);
    }
    img
}

fn assert_centred(mic: &Image, picks: &[(f64, f64)], box_size: usize, out_size: usize, what: &str) {
    let cfg = ExtractConfig {
        out_size,
        edge: EdgePolicy::PadMean,
        norm: ParticleNorm::relion_default(box_size, out_size),
        ..ExtractConfig::new(box_size)
    };
    let got = Extractor::new(cfg).unwrap().extract(mic, picks, 0);
    assert_eq!(got.kept.len(), picks.len(), "{what}");
    let s2 = out_size * out_size;
    for (k, (pick, px)) in picks.iter().zip(got.data.chunks_exact(s2)).enumerate() {
        let p = Image::new(out_size, out_size, px.to_vec());
        assert_eq!(
            p.argmax(),
            (out_size / 2, out_size / 2),
            "{what}: box {box_size} -> {out_size}, pick {k} at {pick:?}"
        );
    }
}

#[test]
fn dots_stay_centred_after_binning_the_micrograph() {
    // Positions on multiples of 10 land on whole pixels after binning by 2 or 2.5; the last pick is
    // near the edge so its box is padded.
    let at = [
        (100.0, 150.0),
        (250.0, 200.0),
        (370.0, 80.0),
        (150.0, 300.0),
        (490.0, 390.0),
    ];
    let mic = micrograph_with_dots(500, 400, &at);
    for (factor, boxes) in [
        (2.5, [(32, 32), (33, 33), (32, 20), (33, 16)]),
        (2.0, [(40, 40), (41, 41), (40, 24), (41, 13)]),
    ] {
        let b = bin(&mic, factor).unwrap();
        assert_eq!(b.factor_x, factor);
        let picks: Vec<(f64, f64)> = at
            .iter()
            .map(|&(x, y)| (x / b.factor_x, y / b.factor_y))
            .collect();
        for (bs, os) in boxes {
            assert_centred(&b.image, &picks, bs, os, &format!("binned by {factor}"));
        }
    }
}

#[test]
fn dots_are_centred_for_even_and_odd_boxes_on_an_unbinned_micrograph() {
    let at = [(64.0, 64.0), (300.0, 41.0), (17.0, 250.0), (450.0, 333.0)];
    let mic = micrograph_with_dots(512, 384, &at);
    for (bs, os) in [(64, 64), (65, 65), (64, 32), (65, 33), (63, 100), (180, 64)] {
        assert_centred(&mic, &at, bs, os, "unbinned");
    }
}
