//! Picks against true particle centres: one-to-one matching within a radius, greedy in order
//! of decreasing score (as detection benchmarks match), so a pick matched at one threshold stays
//! matched at every lower one and a single matching gives the whole precision-recall curve.

use std::collections::HashMap;

/// A pick to score: its centre and score (None: the picker gives none; all such picks tie).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub x: f64,
    pub y: f64,
    pub score: Option<f64>,
}

/// Points bucketed in square cells, so the points within a cell's side of any place lie in its
/// cell and the 8 around it: the neighbour search of matching and of non-maximum suppression.
pub struct PointGrid {
    cell: f64,
    cells: HashMap<(i64, i64), Vec<GridPoint>>,
}

/// A point's x, y and the id it was inserted with.
type GridPoint = (f64, f64, usize);

impl PointGrid {
    /// A grid of `cell`-sided cells (no less than the radius searched).
    pub fn new(cell: f64) -> PointGrid {
        PointGrid {
            cell,
            cells: HashMap::new(),
        }
    }

    fn key(&self, x: f64, y: f64) -> (i64, i64) {
        (
            (x / self.cell).floor() as i64,
            (y / self.cell).floor() as i64,
        )
    }

    pub fn insert(&mut self, x: f64, y: f64, id: usize) {
        let k = self.key(x, y);
        self.cells.entry(k).or_default().push((x, y, id));
    }

    /// (distance, id) of the points in the 3×3 cells around (x, y): rows of cells from the top,
    /// cells from the left, each in insertion order (so ties resolve the same on every run).
    pub fn around(&self, x: f64, y: f64) -> impl Iterator<Item = (f64, usize)> + '_ {
        let (kx, ky) = self.key(x, y);
        (ky - 1..=ky + 1)
            .flat_map(move |gy| (kx - 1..=kx + 1).map(move |gx| (gx, gy)))
            .flat_map(move |k| self.cells.get(&k).into_iter().flatten())
            .map(move |&(px, py, id)| ((px - x).hypot(py - y), id))
    }
}

/// Which candidates found a true particle: candidates in decreasing score take the nearest
/// unmatched truth within `radius` (ties in score keep the candidates' order).
pub fn match_greedy(candidates: &[Candidate], truth: &[(f64, f64)], radius: f64) -> Vec<bool> {
    let mut grid = PointGrid::new(radius.max(f64::MIN_POSITIVE));
    for (i, &(x, y)) in truth.iter().enumerate() {
        grid.insert(x, y, i);
    }
    let mut taken = vec![false; truth.len()];
    let mut matched = vec![false; candidates.len()];
    for i in by_score(candidates) {
        let c = candidates[i];
        let mut best: Option<(f64, usize)> = None;
        for (d, t) in grid.around(c.x, c.y) {
            if !taken[t] && d <= radius && best.is_none_or(|(bd, _)| d < bd) {
                best = Some((d, t));
            }
        }
        if let Some((_, t)) = best {
            taken[t] = true;
            matched[i] = true;
        }
    }
    matched
}

/// Candidate indices by decreasing score; scoreless ones last, in their order.
fn by_score(candidates: &[Candidate]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by(|&a, &b| {
        let (sa, sb) = (candidates[a].score, candidates[b].score);
        sb.unwrap_or(f64::NEG_INFINITY)
            .total_cmp(&sa.unwrap_or(f64::NEG_INFINITY))
    });
    order
}

/// Precision, recall and F1 at one operating point.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Point {
    /// Picks kept have a score of at least this (None: every pick).
    pub threshold: Option<f64>,
    pub picks: usize,
    pub true_positives: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

/// The precision-recall curve of matched picks pooled over micrographs.
#[derive(Debug, Clone, Default)]
pub struct Curve {
    /// (score, matched), by decreasing score.
    picks: Vec<(Option<f64>, bool)>,
    truth: usize,
}

impl Curve {
    /// Adds one micrograph's candidates (matched against its `truth` true particles).
    pub fn add(&mut self, candidates: &[Candidate], matched: &[bool], truth: usize) {
        self.picks
            .extend(candidates.iter().zip(matched).map(|(c, &m)| (c.score, m)));
        self.truth += truth;
    }

    /// Adds every pick of `other`, as if its micrographs had been added here.
    pub fn merge(&mut self, other: &Curve) {
        self.picks.extend_from_slice(&other.picks);
        self.truth += other.truth;
    }

    fn sorted(&self) -> Vec<(Option<f64>, bool)> {
        let mut p = self.picks.clone();
        p.sort_by(|a, b| {
            b.0.unwrap_or(f64::NEG_INFINITY)
                .total_cmp(&a.0.unwrap_or(f64::NEG_INFINITY))
        });
        p
    }

    pub fn truth(&self) -> usize {
        self.truth
    }

    /// The picks with a score of at least `threshold` (all of them for None).
    pub fn at(&self, threshold: Option<f64>) -> Point {
        let kept = self
            .picks
            .iter()
            .filter(|(s, _)| threshold.is_none_or(|t| s.is_some_and(|s| s >= t)));
        let (picks, tp) = kept.fold((0, 0), |(n, tp), &(_, m)| (n + 1, tp + usize::from(m)));
        point(threshold, picks, tp, self.truth)
    }

    /// Every distinct threshold's point, from the highest score down.
    pub fn points(&self) -> Vec<Point> {
        let sorted = self.sorted();
        let mut out = Vec::new();
        let mut tp = 0;
        for (i, &(s, m)) in sorted.iter().enumerate() {
            tp += usize::from(m);
            let last_of_score = sorted.get(i + 1).is_none_or(|n| n.0 != s);
            if last_of_score {
                out.push(point(s, i + 1, tp, self.truth));
            }
        }
        out
    }

    /// The point of highest F1 (the highest threshold among ties).
    pub fn best(&self) -> Option<Point> {
        self.points()
            .into_iter()
            .fold(None, |best: Option<Point>, p| match best {
                Some(b) if b.f1 >= p.f1 => Some(b),
                _ => Some(p),
            })
    }

    /// Average precision: the area under the curve with precision at each recall taken as the
    /// best precision at that recall or beyond (PASCAL VOC's interpolation, every point).
    /// None without scores to rank by, or without true particles.
    pub fn average_precision(&self) -> Option<f64> {
        if self.truth == 0 || self.picks.iter().any(|(s, _)| s.is_none()) {
            return None;
        }
        let points = self.points();
        let mut envelope: Vec<f64> = points.iter().map(|p| p.precision).collect();
        for i in (0..envelope.len().saturating_sub(1)).rev() {
            envelope[i] = envelope[i].max(envelope[i + 1]);
        }
        let mut area = 0.0;
        let mut recall = 0.0;
        for (p, best) in points.iter().zip(envelope) {
            area += (p.recall - recall) * best;
            recall = p.recall;
        }
        Some(area)
    }
}

fn point(threshold: Option<f64>, picks: usize, tp: usize, truth: usize) -> Point {
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let (precision, recall) = (ratio(tp, picks), ratio(tp, truth));
    let f1 = if precision + recall > 0.0 {
        2.0 * precision * recall / (precision + recall)
    } else {
        0.0
    };
    Point {
        threshold,
        picks,
        true_positives: tp,
        precision,
        recall,
        f1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(x: f64, y: f64, score: f64) -> Candidate {
        Candidate {
            x,
            y,
            score: Some(score),
        }
    }

    #[test]
    fn the_higher_score_takes_a_shared_particle_and_each_particle_matches_once() {
        let truth = [(0.0, 0.0), (100.0, 0.0)];
        // Two picks near particle 0; the better-scored one takes it even though it is farther.
        let picks = [
            c(3.0, 0.0, 0.2),
            c(8.0, 0.0, 0.9),
            c(100.0, 9.0, 0.5),
            c(300.0, 0.0, 0.7),
        ];
        assert_eq!(
            match_greedy(&picks, &truth, 10.0),
            [false, true, true, false]
        );
        // Outside the radius nothing matches.
        assert_eq!(match_greedy(&[c(10.5, 0.0, 1.0)], &truth, 10.0), [false]);
    }

    #[test]
    fn the_nearest_free_particle_is_taken_across_grid_cells() {
        let truth = [(9.0, 9.0), (21.0, 9.0)];
        let picks = [c(15.5, 9.0, 1.0), c(14.0, 9.0, 0.5)];
        // The first pick is nearer the second particle (5.5 against 6.5); the second pick then
        // finds the first particle in the next cell.
        assert_eq!(match_greedy(&picks, &truth, 10.0), [true, true]);
        let mut curve = Curve::default();
        curve.add(&picks, &[true, true], 2);
        assert_eq!(curve.at(None).f1, 1.0);
    }

    #[test]
    fn precision_recall_f1_and_average_precision_by_hand() {
        // Scores 0.9 (hit), 0.8 (miss), 0.7 (hit), 0.6 (miss); 3 true particles.
        let picks = [
            c(0.0, 0.0, 0.9),
            c(0.0, 0.0, 0.8),
            c(0.0, 0.0, 0.7),
            c(0.0, 0.0, 0.6),
        ];
        let mut curve = Curve::default();
        curve.add(&picks, &[true, false, true, false], 3);
        let all = curve.at(None);
        assert_eq!((all.picks, all.true_positives), (4, 2));
        assert!((all.precision - 0.5).abs() < 1e-12 && (all.recall - 2.0 / 3.0).abs() < 1e-12);
        let top = curve.at(Some(0.85));
        assert_eq!((top.picks, top.precision), (1, 1.0));
        // Recall 1/3 at precision 1, then 2/3 at the envelope's 2/3 (0.7's point): AP = 1/3 +
        // 1/3 · 2/3.
        let ap = curve.average_precision().unwrap();
        assert!((ap - (1.0 / 3.0 + 2.0 / 9.0)).abs() < 1e-12, "{ap}");
        // Best F1: at 0.7, P = 2/3, R = 2/3.
        let best = curve.best().unwrap();
        assert_eq!(best.threshold, Some(0.7));
        assert!((best.f1 - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn scoreless_picks_have_no_average_precision_but_still_a_point() {
        let picks = [Candidate {
            x: 0.0,
            y: 0.0,
            score: None,
        }];
        let mut curve = Curve::default();
        curve.add(&picks, &match_greedy(&picks, &[(1.0, 1.0)], 5.0), 1);
        assert_eq!(curve.average_precision(), None);
        assert_eq!(curve.at(None).f1, 1.0);
        assert_eq!(curve.at(Some(0.0)).picks, 0);
    }
}
