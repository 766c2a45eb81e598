//! A histogram that observes with atomic adds only.
//!
//! `prometheus-client`'s own `Histogram` keeps its buckets behind a mutex
//! (`parking_lot::Mutex`, see its source: "TODO: Consider using atomics"), and
//! every proxied request observes one, on every worker thread at once. This
//! one keeps one `AtomicU64` per bucket and the sum in whole microseconds, so
//! an observation is a bucket search over a dozen integers and two relaxed
//! `fetch_add`s. It encodes through the crate's own encoder, so the exposition
//! is the same OpenMetrics histogram a scrape expects.
//!
//! The count is not stored: it is the sum of the buckets, read at encode time,
//! so `_count` always equals the `+Inf` bucket even while requests are counted
//! during a scrape. The sum may then lag a count or two behind; Prometheus
//! tolerates that (every client library has the same race).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::exemplar::Exemplar;
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Upper bounds of the finite buckets, in microseconds: the Prometheus
/// clients' default latency buckets (5 ms … 10 s), which suit a backend that
/// answers in milliseconds and show a slow one at a glance.
const BOUNDS_MICROS: [u64; 11] = [
    5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
    10_000_000,
];

/// Buckets: one per bound, plus `+Inf`.
const BUCKETS: usize = BOUNDS_MICROS.len() + 1;

/// A duration histogram in seconds; clones share their counts.
#[derive(Debug, Clone, Default)]
pub(crate) struct Histogram(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    /// Non-cumulative counts: `buckets[i]` counts observations in
    /// `(BOUNDS[i-1], BOUNDS[i]]`, the last one those above every bound.
    buckets: [AtomicU64; BUCKETS],
    /// Sum of every observation, in microseconds (584,000 years of them fit).
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Counts one duration.
    pub(crate) fn observe(&self, elapsed: Duration) {
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_MICROS
            .iter()
            .position(|&bound| micros <= bound)
            .unwrap_or(BUCKETS - 1);
        self.0.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.0.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// `[(upper bound in seconds, non-cumulative count)]` and the total count.
    fn snapshot(&self) -> ([(f64, u64); BUCKETS], u64) {
        let mut buckets = [(f64::INFINITY, 0); BUCKETS];
        let mut count = 0;
        for (i, slot) in buckets.iter_mut().enumerate() {
            if let Some(bound) = BOUNDS_MICROS.get(i) {
                slot.0 = *bound as f64 / 1e6;
            }
            slot.1 = self.0.buckets[i].load(Ordering::Relaxed);
            count += slot.1;
        }
        (buckets, count)
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (buckets, count) = self.snapshot();
        let sum = self.0.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        encoder.encode_histogram::<NoLabelSet>(
            sum,
            count,
            &buckets,
            None::<&HashMap<usize, Exemplar<NoLabelSet, f64>>>,
        )
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_bucket_and_encode_cumulatively() {
        let h = Histogram::default();
        h.observe(Duration::from_millis(3)); // ≤ 5 ms
        h.observe(Duration::from_millis(5)); // ≤ 5 ms (bounds are inclusive)
        h.observe(Duration::from_millis(70)); // ≤ 100 ms
        h.observe(Duration::from_secs(60)); // +Inf
        let (buckets, count) = h.snapshot();
        assert_eq!(count, 4);
        assert_eq!(buckets[0], (0.005, 2));
        assert_eq!(buckets[4], (0.1, 1));
        assert_eq!(buckets[BUCKETS - 1], (f64::INFINITY, 1));
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("t", "test", h.clone());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("# TYPE t histogram"), "{text}");
        assert!(text.contains("t_count 4"), "{text}");
        assert!(text.contains("t_sum 60.078"), "{text}");
        assert!(text.contains("t_bucket{le=\"0.1\"} 3"), "{text}");
        assert!(text.contains("t_bucket{le=\"+Inf\"} 4"), "{text}");
    }
}
