//! Prometheus's `histogram_quantile` over cumulative buckets: the bucket holding the
//! q-th rank, linearly interpolated between its bounds; the lowest bucket starts at 0
//! when its bound is positive; a rank in the `+Inf` bucket answers the highest finite
//! bound. (https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile)

/// The `q` quantile of cumulative `(le, count)` buckets sorted by `le`, ending with
/// `+Inf`; `None` without observations.
pub fn histogram_quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last().filter(|b| b.0.is_infinite())?.1;
    if total <= 0.0 || buckets.len() < 2 {
        return None;
    }
    let rank = q * total;
    let i = buckets.iter().position(|(_, n)| *n >= rank)?;
    if i == buckets.len() - 1 {
        return Some(buckets[buckets.len() - 2].0);
    }
    let (upper, count) = buckets[i];
    let (lower, below) = match i {
        0 if upper > 0.0 => (0.0, 0.0),
        0 => return Some(upper),
        _ => buckets[i - 1],
    };
    let in_bucket = count - below;
    if in_bucket <= 0.0 {
        return Some(upper);
    }
    Some(lower + (upper - lower) * (rank - below) / in_bucket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_within_the_bucket() {
        let inf = f64::INFINITY;
        // 100 observations: 90 under 10 ms, 10 between 10 and 100 ms.
        let b = [(10.0, 90.0), (100.0, 100.0), (inf, 100.0)];
        assert_eq!(histogram_quantile(0.5, &b), Some(10.0 * 50.0 / 90.0));
        assert_eq!(histogram_quantile(0.99, &b), Some(10.0 + 90.0 * 9.0 / 10.0));
        // Past the last finite bound: that bound.
        let b = [(10.0, 0.0), (100.0, 0.0), (inf, 5.0)];
        assert_eq!(histogram_quantile(0.99, &b), Some(100.0));
        assert_eq!(histogram_quantile(0.99, &[(10.0, 0.0), (inf, 0.0)]), None);
    }
}
