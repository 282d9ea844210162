//! Training-time augmentation of particle images: mirror, 90-degree rotations and rotation by
//! any angle with bilinear interpolation.
//!
//! Every transform keeps pixel (n/2, n/2) — the particle centre after extraction — fixed. In an
//! even-sized image the outermost row and column have no mirror partner; they keep their own
//! values.
//!
//! Rotation by θ turns the content counter-clockwise in (x, y) with x to the right and y up.

use rand::Rng;

use crate::image::Image;

/// Builds an image of the same size whose pixel at offset (dx, dy) from the centre is the input's
/// pixel at `source(dx, dy)` (also an offset), clamped into the image.
fn remap(img: &Image, source: impl Fn(i64, i64) -> (i64, i64)) -> Image {
    let (cx, cy) = ((img.nx / 2) as i64, (img.ny / 2) as i64);
    Image::from_fn(img.nx, img.ny, |x, y| {
        let (sx, sy) = source(x as i64 - cx, y as i64 - cy);
        let sx = (sx + cx).clamp(0, img.nx as i64 - 1) as usize;
        let sy = (sy + cy).clamp(0, img.ny as i64 - 1) as usize;
        img.get(sx, sy)
    })
}

/// Mirror left-right (x -> -x about the centre).
pub fn flip_x(img: &Image) -> Image {
    remap(img, |dx, dy| (-dx, dy))
}

/// Mirror top-bottom (y -> -y about the centre).
pub fn flip_y(img: &Image) -> Image {
    remap(img, |dx, dy| (dx, -dy))
}

/// Rotation by `k` quarter turns counter-clockwise, exact (no interpolation). Square images only.
pub fn rot90(img: &Image, k: u32) -> Image {
    assert_eq!(img.nx, img.ny, "quarter turns need a square image");
    // Output offset p came from R(-90k°) p.
    match k % 4 {
        0 => img.clone(),
        1 => remap(img, |dx, dy| (dy, -dx)),
        2 => remap(img, |dx, dy| (-dx, -dy)),
        _ => remap(img, |dx, dy| (-dy, dx)),
    }
}

/// Rotation by `degrees` counter-clockwise about the centre pixel, bilinear; pixels that come
/// from outside the image take `fill`.
pub fn rotate(img: &Image, degrees: f64, fill: f32) -> Image {
    let (s, c) = degrees.to_radians().sin_cos();
    let (cx, cy) = ((img.nx / 2) as f64, (img.ny / 2) as f64);
    let at = |x: i64, y: i64| -> f32 {
        if x < 0 || y < 0 || x >= img.nx as i64 || y >= img.ny as i64 {
            fill
        } else {
            img.get(x as usize, y as usize)
        }
    };
    Image::from_fn(img.nx, img.ny, |x, y| {
        let (dx, dy) = (x as f64 - cx, y as f64 - cy);
        let sx = c * dx + s * dy + cx;
        let sy = -s * dx + c * dy + cy;
        let (x0, y0) = (sx.floor(), sy.floor());
        let (fx, fy) = ((sx - x0) as f32, (sy - y0) as f32);
        let (x0, y0) = (x0 as i64, y0 as i64);
        let top = at(x0, y0) * (1.0 - fx) + at(x0 + 1, y0) * fx;
        let bottom = at(x0, y0 + 1) * (1.0 - fx) + at(x0 + 1, y0 + 1) * fx;
        top * (1.0 - fy) + bottom * fy
    })
}

/// The planes of a `size` × `size` multi-plane image.
fn planes(pixels: &[f32], size: usize) -> impl Iterator<Item = Image> + '_ {
    pixels
        .chunks_exact(size * size)
        .map(move |p| Image::new(size, size, p.to_vec()))
}

#[derive(Debug, Clone, Copy)]
enum Turn {
    Degrees(f64),
    Quarters(u32),
}

#[derive(Debug, Clone, Copy)]
struct Drawn {
    flip: bool,
    turn: Turn,
}

/// Random augmentation drawn per image. Flips and quarter turns are exact; an arbitrary angle
/// interpolates, and fills the corners it turns in from outside the box with 0 (after
/// per-particle normalisation, the background mean).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Augment {
    /// Mirror left-right with probability 1/2.
    pub flip: bool,
    /// A random number of quarter turns.
    pub rot90: bool,
    /// A uniformly random angle (replaces `rot90` when both are set).
    pub rotate: bool,
}

impl Augment {
    /// No augmentation.
    pub const NONE: Augment = Augment {
        flip: false,
        rot90: false,
        rotate: false,
    };

    pub fn apply(&self, img: &Image, rng: &mut impl Rng) -> Image {
        let drawn = self.draw(rng);
        self.transform(img, drawn)
    }

    /// [`Augment::apply`] on an image of several planes (`pixels`: planes of `size` × `size`
    /// back to back, such as a micrograph and its power spectrum): one random transform for
    /// every plane, so the planes stay registered.
    pub fn apply_planes(&self, pixels: &[f32], size: usize, rng: &mut impl Rng) -> Vec<f32> {
        let drawn = self.draw(rng);
        planes(pixels, size)
            .flat_map(|p| self.transform(&p, drawn).data)
            .collect()
    }

    /// The random choices of one application, drawn in a fixed order so a seed gives the same
    /// images whether one plane or several are transformed.
    fn draw(&self, rng: &mut impl Rng) -> Drawn {
        let flip = self.flip && rng.random_bool(0.5);
        let turn = if self.rotate {
            Turn::Degrees(rng.random_range(0.0..360.0))
        } else if self.rot90 {
            Turn::Quarters(rng.random_range(0..4))
        } else {
            Turn::Quarters(0)
        };
        Drawn { flip, turn }
    }

    fn transform(&self, img: &Image, drawn: Drawn) -> Image {
        let flipped;
        let img = if drawn.flip {
            flipped = flip_x(img);
            &flipped
        } else {
            img
        };
        match drawn.turn {
            Turn::Degrees(d) => rotate(img, d, 0.0),
            Turn::Quarters(k) => rot90(img, k),
        }
    }

    /// Every image `apply` can draw from `img`, each as likely as the others: 1, 2, 4 or 8
    /// views of flips and quarter turns. `None` with arbitrary angles, which are endless.
    pub fn views(&self, img: &Image) -> Option<Vec<Image>> {
        if self.rotate {
            return None;
        }
        let flips = if self.flip {
            vec![img.clone(), flip_x(img)]
        } else {
            vec![img.clone()]
        };
        let turns = if self.rot90 { 4 } else { 1 };
        Some(
            flips
                .iter()
                .flat_map(|f| (0..turns).map(move |k| rot90(f, k)))
                .collect(),
        )
    }

    /// [`Augment::views`] of an image of several planes: each view transforms every plane alike.
    pub fn views_planes(&self, pixels: &[f32], size: usize) -> Option<Vec<Vec<f32>>> {
        let per_plane: Vec<Vec<Image>> = planes(pixels, size)
            .map(|p| self.views(&p))
            .collect::<Option<_>>()?;
        let count = per_plane.first().map_or(0, Vec::len);
        Some(
            (0..count)
                .map(|v| {
                    per_plane
                        .iter()
                        .flat_map(|views| views[v].data.iter().copied())
                        .collect()
                })
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn ramp(n: usize) -> Image {
        Image::from_fn(n, n, |x, y| (x * 3 + y * 17 % 7 + x * y % 5) as f32)
    }

    fn dot(n: usize, x: usize, y: usize) -> Image {
        let mut img = Image::zeros(n, n);
        img.set(x, y, 1.0);
        img
    }

    #[test]
    fn the_views_are_every_image_apply_draws() {
        let img = ramp(6);
        let all = Augment {
            flip: true,
            rot90: true,
            ..Augment::NONE
        };
        let views = all.views(&img).unwrap();
        assert_eq!(views.len(), 8);
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for _ in 0..20 {
            assert!(views.contains(&all.apply(&img, &mut rng)));
        }
        assert_eq!(Augment::NONE.views(&img).unwrap(), vec![img.clone()]);
        let turning = Augment {
            rotate: true,
            ..Augment::NONE
        };
        assert!(turning.views(&img).is_none());
    }

    #[test]
    fn flips_are_involutions_about_the_centre() {
        for n in [7, 8] {
            let img = ramp(n);
            let c = n / 2;
            assert_eq!(flip_x(&img).get(c, 2), img.get(c, 2));
            assert_eq!(flip_x(&img).get(c + 2, 1), img.get(c - 2, 1));
            assert_eq!(flip_y(&img).get(1, c + 3), img.get(1, c - 3));
            // Away from the unpaired edge row/column, flipping twice restores the image.
            let twice = flip_x(&flip_x(&img));
            for y in 0..n {
                for x in 1..n {
                    assert_eq!(twice.get(x, y), img.get(x, y));
                }
            }
        }
    }

    #[test]
    fn quarter_turns_move_a_dot_counter_clockwise() {
        for n in [9, 10] {
            let c = n / 2;
            // (+3, 0) from the centre goes to (0, +3) after a quarter turn with y up.
            let r = rot90(&dot(n, c + 3, c), 1);
            assert_eq!(r.argmax(), (c, c + 3));
            assert_eq!(rot90(&dot(n, c + 3, c), 2).argmax(), (c - 3, c));
            assert_eq!(rot90(&dot(n, c + 3, c), 3).argmax(), (c, c - 3));
            assert_eq!(rot90(&dot(n, c + 1, c + 2), 4), dot(n, c + 1, c + 2));
        }
    }

    #[test]
    fn rotation_by_right_angles_matches_quarter_turns_inside_the_image() {
        let n = 16;
        let img = ramp(n);
        for k in 0..4u32 {
            let a = rotate(&img, 90.0 * k as f64, 0.0);
            let b = rot90(&img, k);
            for y in 1..n - 1 {
                for x in 1..n - 1 {
                    assert!((a.get(x, y) - b.get(x, y)).abs() < 1e-3, "k={k} ({x},{y})");
                }
            }
        }
    }

    #[test]
    fn rotation_interpolates_bilinearly() {
        // A linear ramp is reproduced exactly by bilinear interpolation: rotating f = x by θ
        // gives f' = cx + cos θ dx + sin θ dy.
        let n = 21;
        let img = Image::from_fn(n, n, |x, _| x as f32);
        let r = rotate(&img, 30.0, 0.0);
        let (s, c) = 30f64.to_radians().sin_cos();
        for y in 5..16 {
            for x in 5..16 {
                let (dx, dy) = (x as f64 - 10.0, y as f64 - 10.0);
                let want = 10.0 + c * dx + s * dy;
                assert!((r.get(x, y) as f64 - want).abs() < 1e-4, "({x},{y})");
            }
        }
    }

    #[test]
    fn augmentation_is_reproducible_for_a_seed() {
        let img = ramp(24);
        let aug = Augment {
            flip: true,
            rot90: true,
            rotate: false,
        };
        let draw = |seed| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            (0..8)
                .map(|_| aug.apply(&img, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(5), draw(5));
        // Eight draws of the 8 flip/turn combinations are not all the same.
        let d = draw(5);
        assert!(d.iter().any(|x| x != &d[0]));
        assert_eq!(
            Augment::NONE.apply(&img, &mut rand::rngs::StdRng::seed_from_u64(0)),
            img
        );
    }

    #[test]
    fn planes_turn_together_and_one_plane_is_plain_apply() {
        let (a, b) = (ramp(16), dot(16, 11, 5));
        let both: Vec<f32> = a.data.iter().chain(&b.data).copied().collect();
        for aug in [
            Augment {
                flip: true,
                rot90: true,
                rotate: false,
            },
            Augment {
                flip: true,
                rot90: false,
                rotate: true,
            },
        ] {
            for seed in 0..6 {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                let out = aug.apply_planes(&both, 16, &mut rng);
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                assert_eq!(out[..256], aug.apply(&a, &mut rng).data[..]);
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                assert_eq!(out[256..], aug.apply(&b, &mut rng).data[..]);
            }
        }
        let aug = Augment {
            flip: true,
            rot90: true,
            rotate: false,
        };
        let views = aug.views_planes(&both, 16).unwrap();
        let (va, vb) = (aug.views(&a).unwrap(), aug.views(&b).unwrap());
        assert_eq!(views.len(), 8);
        for (v, (x, y)) in views.iter().zip(va.iter().zip(&vb)) {
            assert_eq!((&v[..256], &v[256..]), (&x.data[..], &y.data[..]));
        }
    }
}
