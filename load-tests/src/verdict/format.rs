//! Numbers as the summaries print them, and the arithmetic that goes with them.
//!
//! A missing figure prints as `-`. Where a target is checked against a figure the summary shows
//! rounded, it is checked against the rounded figure, so the line and its PASS/MISS agree.

/// `v` with `places` decimals, or `-`.
pub fn decimals(v: Option<f64>, places: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.places$}"))
}

/// `v` as written in the result (`2437.1`, `12`), or `-`.
pub fn plain(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| v.to_string())
}

/// `v` rounded to `places` decimals, as [`decimals`] prints it.
pub fn rounded(v: f64, places: usize) -> f64 {
    format!("{v:.places$}").parse().unwrap_or(v)
}

/// `a / b` when both are there and `b` is positive.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// `100 · a / b`, rounded to `places` decimals, when [`ratio`] has one.
pub fn percent(a: Option<f64>, b: Option<f64>, places: usize) -> Option<f64> {
    ratio(a, b).map(|r| rounded(100.0 * r, places))
}

/// The median: the middle value, or the mean of the two middle ones; `None` for no values.
pub fn median(mut values: Vec<f64>) -> Option<f64> {
    values.retain(|v| !v.is_nan());
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// The mean; `None` for no values.
pub fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_figures_print_as_a_dash() {
        assert_eq!(decimals(Some(5.67), 1), "5.7");
        assert_eq!(decimals(None, 1), "-");
        assert_eq!(plain(Some(2437.1)), "2437.1");
        assert_eq!(plain(Some(12.0)), "12");
        assert_eq!(plain(None), "-");
    }

    #[test]
    fn a_ratio_needs_a_positive_divisor() {
        assert_eq!(ratio(Some(6.0), Some(3.0)), Some(2.0));
        assert_eq!(ratio(Some(6.0), Some(0.0)), None);
        assert_eq!(ratio(Some(6.0), None), None);
        assert_eq!(ratio(None, Some(3.0)), None);
        assert_eq!(percent(Some(1.0), Some(3.0), 1), Some(33.3));
    }

    #[test]
    fn rounding_is_what_the_line_shows() {
        assert_eq!(rounded(3.596, 2), 3.6);
        assert_eq!(rounded(89.6, 0), 90.0);
    }

    #[test]
    fn medians_of_odd_even_and_empty_samples() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
        assert_eq!(mean(&[1.0, 2.0]), Some(1.5));
        assert_eq!(mean(&[]), None);
    }
}
