//! Signs that picks do not belong to the micrographs they were paired with: picks off the
//! image, coordinates from binned (or unbinned) micrographs, or an axis flipped or swapped.
//!
//! Each of these mistakes is silent downstream: a classifier happily scores boxes cut from the
//! wrong place. They leave clear statistical traces, though, when seen over all micrographs:
//! the largest coordinates sit at a constant fraction of the image size, or almost every pick
//! falls in one half of the image.

/// What the picks of one micrograph are checked against.
pub struct Placed<'a> {
    pub picks: &'a [(f64, f64)],
    /// (nx, ny) of the micrograph, pixels.
    pub shape: (usize, usize),
}

/// Fewest picks for the statistical checks (scale, one half); fewer say nothing.
const MIN_PICKS: usize = 50;

/// Plain-words warnings, empty when nothing looks wrong.
pub fn coordinate_warnings(groups: &[Placed]) -> Vec<String> {
    let mut warnings = Vec::new();
    let total: usize = groups.iter().map(|g| g.picks.len()).sum();
    if total == 0 {
        return warnings;
    }
    let mut outside = 0;
    let mut micrographs_outside = 0;
    // Coordinates as fractions of the micrograph size.
    let mut fx = Vec::with_capacity(total);
    let mut fy = Vec::with_capacity(total);
    for g in groups {
        let (nx, ny) = (g.shape.0.max(1) as f64, g.shape.1.max(1) as f64);
        let off = g
            .picks
            .iter()
            .filter(|&&(x, y)| !(x >= 0.0 && y >= 0.0 && x < nx && y < ny))
            .count();
        outside += off;
        micrographs_outside += usize::from(off > 0);
        for &(x, y) in g.picks {
            if x.is_finite() && y.is_finite() {
                fx.push(x / nx);
                fy.push(y / ny);
            }
        }
    }
    if outside > 0 {
        warnings.push(format!(
            "{outside} of {total} picks ({:.1}%) on {micrographs_outside} micrograph{} lie \
             outside their micrograph; they cannot be classified and are not kept",
            100.0 * outside as f64 / total as f64,
            if micrographs_outside == 1 { "" } else { "s" }
        ));
    }
    if fx.len() < MIN_PICKS {
        return warnings;
    }
    // The 99th percentile of the coordinates: a picker avoids the edges a little, but its picks
    // reach close to the far side; a handful of strays should not decide.
    let reach = percentile(&mut fx.clone(), 0.99).max(percentile(&mut fy.clone(), 0.99));
    if reach < 0.6 {
        let factor = (1.0 / reach.max(1e-6)).round().max(2.0);
        warnings.push(format!(
            "the picks reach only {:.0}% of the micrographs' size: they look made on micrographs \
             binned {factor}x (try --scale {factor})",
            100.0 * reach
        ));
    } else if reach > 1.4 {
        let factor = reach.round().max(2.0);
        warnings.push(format!(
            "the picks reach {:.0}% of the micrographs' size: they look made on micrographs \
             {factor}x larger than these (try --scale {})",
            100.0 * reach,
            1.0 / factor
        ));
    }
    for (axis, f) in [("x", &fx), ("y", &fy)] {
        let low = f.iter().filter(|&&v| v < 0.5).count() as f64 / f.len() as f64;
        if reach >= 0.6 && !(0.1..=0.9).contains(&low) {
            warnings.push(format!(
                "{:.0}% of the picks lie in the {} half of the micrographs along {axis}: the \
                 coordinates look flipped, swapped or scaled (check the picker's convention and \
                 --scale)",
                100.0 * low.max(1.0 - low),
                if low > 0.5 { "lower" } else { "upper" }
            ));
        }
    }
    warnings
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    let k = ((v.len() - 1) as f64 * q).round() as usize;
    *v.select_nth_unstable_by(k, f64::total_cmp).1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Picks spread evenly over a `n`-pixel square micrograph, times `scale`.
    fn grid(n: f64, scale: f64) -> Vec<(f64, f64)> {
        (0..100)
            .map(|i| {
                let x = (i % 10) as f64 * n / 10.0 + n / 20.0;
                let y = (i / 10) as f64 * n / 10.0 + n / 20.0;
                (x * scale, y * scale)
            })
            .collect()
    }

    #[test]
    fn evenly_spread_picks_raise_nothing() {
        let picks = grid(1000.0, 1.0);
        let w = coordinate_warnings(&[Placed {
            picks: &picks,
            shape: (1000, 1000),
        }]);
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn binned_picks_suggest_the_factor() {
        let picks = grid(1000.0, 0.5);
        let w = coordinate_warnings(&[Placed {
            picks: &picks,
            shape: (1000, 1000),
        }]);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("--scale 2"), "{w:?}");
    }

    #[test]
    fn picks_from_larger_micrographs_are_outside_and_suggest_a_fraction() {
        let picks = grid(1000.0, 4.0);
        let w = coordinate_warnings(&[Placed {
            picks: &picks,
            shape: (1000, 1000),
        }]);
        assert!(w[0].contains("outside"), "{w:?}");
        assert!(w[1].contains("--scale 0.25"), "{w:?}");
    }

    #[test]
    fn picks_crowded_in_one_half_are_flagged() {
        // Picks for a 2000x1000 micrograph read against a 1000x2000 one: x and y swapped.
        let picks: Vec<(f64, f64)> = grid(1000.0, 1.0)
            .into_iter()
            .map(|(x, y)| (y * 0.45, x * 1.9))
            .collect();
        let w = coordinate_warnings(&[Placed {
            picks: &picks,
            shape: (1000, 2000),
        }]);
        assert!(
            w.iter()
                .any(|m| m.contains("half") && m.contains("along x")),
            "{w:?}"
        );
    }

    #[test]
    fn few_picks_only_count_the_outside_ones() {
        let picks = [(10.0, 10.0), (-3.0, 5.0)];
        let w = coordinate_warnings(&[Placed {
            picks: &picks,
            shape: (100, 100),
        }]);
        assert_eq!(w.len(), 1);
        assert!(w[0].starts_with("1 of 2 picks"), "{w:?}");
    }
}
