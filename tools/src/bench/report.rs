//! The figures of one run: counts, throughput and latency percentiles, printed for people and
//! as one JSON line for scripts.

use std::io::Write;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latency percentiles of the measured operations, µs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Slowest operation.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

impl Latency {
    /// Percentiles of a histogram recorded in nanoseconds.
    pub fn from_ns(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let us = |ns: u64| ns as f64 / 1_000.0;
        Latency {
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
            mean: h.mean() / 1_000.0,
        }
    }
}

/// Everything a run measured, after the warm-up.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `memcached` or `native`.
    pub mode: String,
    /// The servers, or the config file of the native driver.
    pub target: String,
    /// Concurrent connections (native: concurrent callers).
    pub connections: usize,
    /// Requests in flight per connection.
    pub pipeline: usize,
    /// Keys in the key space.
    pub keys: u64,
    /// Bytes per value.
    pub value_size: usize,
    /// Share of gets.
    pub get_ratio: f64,
    /// Seed of the operation streams.
    pub seed: u64,
    /// Warm-up excluded from the figures, s.
    pub warmup_secs: f64,
    /// Measured time, s (from the end of the warm-up to the last reply).
    pub elapsed_secs: f64,
    /// Operations completed in the measured time (including failed ones).
    pub ops: u64,
    /// ops / elapsed_secs.
    pub ops_per_sec: f64,
    /// Gets completed.
    pub gets: u64,
    /// Sets completed.
    pub sets: u64,
    /// Gets that found their key (with the right value).
    pub hits: u64,
    /// Gets that did not find their key.
    pub misses: u64,
    /// Operations that failed: error replies, wrong values, timeouts, broken connections.
    pub errors: u64,
    /// Hits whose value differed from the one stored (also counted in `errors`).
    pub wrong_values: u64,
    /// Reconnections after a broken connection.
    pub reconnects: u64,
    /// Latency of the completed operations, µs.
    pub latency_us: Latency,
    /// chmpx messages routed per operation (sum over the `--metrics` endpoints), if scraped.
    pub messages_per_op: Option<f64>,
    /// chmpx message body bytes per operation, if scraped.
    pub bytes_per_op: Option<f64>,
    /// The command line that produced this report.
    pub command: String,
}

impl Report {
    /// The human-readable summary.
    pub fn write_human(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(
            out,
            "dkc-bench {} {}: {} connections, pipeline {}, {} keys, {} B values, {:.0}% get, seed {}",
            self.mode,
            self.target,
            self.connections,
            self.pipeline,
            self.keys,
            self.value_size,
            self.get_ratio * 100.0,
            self.seed
        )?;
        writeln!(
            out,
            "  measured {:.2} s after a {:.2} s warm-up",
            self.elapsed_secs, self.warmup_secs
        )?;
        writeln!(
            out,
            "  ops        {:>12}   {:.0} ops/s",
            self.ops, self.ops_per_sec
        )?;
        writeln!(
            out,
            "  gets       {:>12}   hits {}  misses {}",
            self.gets, self.hits, self.misses
        )?;
        writeln!(out, "  sets       {:>12}", self.sets)?;
        writeln!(
            out,
            "  errors     {:>12}   (wrong values {}, reconnects {})",
            self.errors, self.wrong_values, self.reconnects
        )?;
        let l = &self.latency_us;
        writeln!(
            out,
            "  latency us  p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  mean {:.1}",
            l.p50, l.p90, l.p99, l.p999, l.max, l.mean
        )?;
        if let (Some(m), Some(b)) = (self.messages_per_op, self.bytes_per_op) {
            writeln!(
                out,
                "  chmpx      {m:.2} messages/op  {b:.0} bytes/op (summed over the --metrics endpoints)"
            )?;
        }
        Ok(())
    }

    /// The report as one JSON line (no trailing newline).
    pub fn json_line(&self) -> String {
        // Serializing plain numbers and strings cannot fail.
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}
