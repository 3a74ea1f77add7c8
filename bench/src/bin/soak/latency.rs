//! The ingest-to-commit latency over a soak, from the cumulative histogram
//! (`spotcheck_ingest_commit_latency_seconds_bucket`) sampled into the CSV: per minute, the
//! messages committed and their p99, interpolated inside the bucket as Prometheus's
//! `histogram_quantile` does.

/// A histogram as sampled: `(upper bound in seconds, cumulative count)`, in bound order, the
/// last bound infinite.
pub(crate) type Buckets = Vec<(f64, f64)>;

/// Parses the CSV's `le:count;le:count;…` cell.
pub(crate) fn parse(cell: &str) -> Option<Buckets> {
    if cell.trim().is_empty() {
        return None;
    }
    cell.split(';')
        .map(|pair| {
            let (le, n) = pair.split_once(':')?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, n.parse().ok()?))
        })
        .collect()
}

/// The `q` quantile of what was observed between `earlier` and `later` (same bounds), in
/// seconds; `None` when nothing was observed. Within a bucket the observations are taken as
/// spread evenly; in the last (infinite) bucket the answer is the highest finite bound.
pub(crate) fn quantile(earlier: &Buckets, later: &Buckets, q: f64) -> Option<f64> {
    if earlier.len() != later.len() {
        return None;
    }
    let delta: Vec<(f64, f64)> = later
        .iter()
        .zip(earlier)
        .map(|(&(le, b), &(_, a))| (le, (b - a).max(0.0)))
        .collect();
    let total = delta.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut below = (0.0, 0.0); // (bound, cumulative count) of the previous bucket
    for &(le, n) in &delta {
        if n >= rank {
            if le.is_infinite() {
                return Some(below.0);
            }
            let inside = n - below.1;
            let frac = if inside > 0.0 {
                (rank - below.1) / inside
            } else {
                1.0
            };
            return Some(below.0 + (le - below.0) * frac);
        }
        below = (le, n);
    }
    None
}

/// Messages committed between two samples.
pub(crate) fn observed(earlier: &Buckets, later: &Buckets) -> f64 {
    match (earlier.last(), later.last()) {
        (Some(a), Some(b)) => (b.1 - a.1).max(0.0),
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cell_parses_and_an_empty_one_is_none() {
        let b = parse("0.001:2;0.002:5;+Inf:6").unwrap();
        assert_eq!(b, vec![(0.001, 2.0), (0.002, 5.0), (f64::INFINITY, 6.0)]);
        assert_eq!(parse(""), None);
        assert_eq!(parse("0.001:x"), None);
    }

    #[test]
    fn the_quantile_of_a_window_interpolates_inside_its_bucket() {
        let zero = parse("0.001:0;0.002:0;0.004:0;+Inf:0").unwrap();
        // 100 observations: 50 at most 1 ms, 40 in (1, 2] ms, 10 in (2, 4] ms.
        let at = parse("0.001:50;0.002:90;0.004:100;+Inf:100").unwrap();
        assert_eq!(observed(&zero, &at), 100.0);
        let p50 = quantile(&zero, &at, 0.5).unwrap();
        assert!((p50 - 0.001).abs() < 1e-12, "{p50}");
        // Rank 99 is the 9th of 10 in (2, 4] ms: 2 + 2 × 0.9 = 3.8 ms.
        let p99 = quantile(&zero, &at, 0.99).unwrap();
        assert!((p99 - 0.0038).abs() < 1e-9, "{p99}");
        // Only the window counts: the same histogram later with 100 more, all ≤ 1 ms.
        let later = parse("0.001:150;0.002:190;0.004:200;+Inf:200").unwrap();
        assert!(quantile(&at, &later, 0.99).unwrap() <= 0.001);
        assert_eq!(quantile(&at, &at, 0.99), None, "nothing observed");
    }

    #[test]
    fn beyond_the_last_finite_bound_the_answer_is_that_bound() {
        let zero = parse("0.001:0;+Inf:0").unwrap();
        let at = parse("0.001:1;+Inf:100").unwrap();
        assert_eq!(quantile(&zero, &at, 0.99), Some(0.001));
    }
}
