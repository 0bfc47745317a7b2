//! The server's own figures for a measured window: its `/metrics` page (Prometheus text format) is scraped
//! before and after, and the deltas give what the server saw of the run — calls and handling-time quantiles of
//! the scenario's method, the OpenContext batch size, the wait for the write transaction, the transaction time.
//!
//! Quantiles are interpolated within histogram buckets the way PromQL's `histogram_quantile` does, so they
//! match what a dashboard shows for the same window.

use std::{collections::BTreeMap, time::Duration};

use anyhow::{Context as _, bail};
use http_body_util::{BodyExt as _, Empty};
use hyper::{Request, Uri, body::Bytes, header};
use hyper_util::rt::TokioIo;
use prometheus_parse::{Labels, Sample, Scrape, Value};
use serde::Serialize;
use tokio::net::TcpStream;

use crate::report::{ms, thousands};

/// Longest wait for one scrape.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// One scrape of the server's metrics.
#[derive(Clone, Debug)]
pub struct Snapshot {
    samples: Vec<Sample>,
}

/// `GET url` (plain `http://` only), parsed.
pub async fn scrape(url: &str) -> anyhow::Result<Snapshot> {
    let text = tokio::time::timeout(SCRAPE_TIMEOUT, fetch(url))
        .await
        .with_context(|| format!("no answer from {url} within {SCRAPE_TIMEOUT:?}"))??;
    Snapshot::parse(&text)
}

async fn fetch(url: &str) -> anyhow::Result<String> {
    let uri: Uri = url.parse().with_context(|| {
        format!("{url:?} is not a URL (expected e.g. http://127.0.0.1:9464/metrics)")
    })?;
    if uri.scheme_str() != Some("http") {
        bail!("{url:?}: only http:// metrics URLs are supported");
    }
    let authority = uri
        .authority()
        .with_context(|| format!("{url:?} names no host"))?
        .clone();
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = authority.port_u16().unwrap_or(80);
    let stream = TcpStream::connect((host, port))
        .await
        .with_context(|| format!("cannot connect to {authority}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    let connection = tokio::spawn(connection);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let request = Request::get(path)
        .header(header::HOST, authority.as_str())
        .header(header::ACCEPT, "text/plain;version=0.0.4")
        .body(Empty::<Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    connection.abort();
    if !status.is_success() {
        bail!("{url} answered {status}");
    }
    String::from_utf8(body.to_vec()).with_context(|| format!("{url} answered with non-UTF-8 text"))
}

impl Snapshot {
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let scrape = Scrape::parse(text.lines().map(|line| Ok(line.to_owned())))
            .context("cannot parse the metrics")?;
        Ok(Snapshot {
            samples: scrape.samples,
        })
    }

    /// Whether any sample of this name (a histogram by its base name) is present.
    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.metric == name)
    }

    /// The sum of the plain samples called `name` whose labels pass `filter`; `None` when there is none.
    fn total(&self, name: &str, filter: impl Fn(&Labels) -> bool) -> Option<f64> {
        self.samples
            .iter()
            .filter(|s| s.metric == name && filter(&s.labels))
            .filter_map(|s| scalar(&s.value))
            .fold(None, |acc, v| Some(acc.unwrap_or(0.0) + v))
    }

    /// Plain samples called `name` whose labels pass `filter`, summed by the value of label `by`.
    fn totals_by(
        &self,
        name: &str,
        by: &str,
        filter: impl Fn(&Labels) -> bool,
    ) -> BTreeMap<String, f64> {
        let mut totals = BTreeMap::new();
        for s in self
            .samples
            .iter()
            .filter(|s| s.metric == name && filter(&s.labels))
        {
            if let (Some(key), Some(v)) = (s.labels.get(by), scalar(&s.value)) {
                *totals.entry(key.to_owned()).or_insert(0.0) += v;
            }
        }
        totals
    }

    /// The histogram called `name` (its base name, without `_bucket`), summed over the series whose labels
    /// pass `filter`; `None` when there is no such series.
    fn histogram(&self, name: &str, filter: impl Fn(&Labels) -> bool) -> Option<Histogram> {
        let mut buckets: Vec<(f64, f64)> = Vec::new();
        let mut found = false;
        for s in self
            .samples
            .iter()
            .filter(|s| s.metric == name && filter(&s.labels))
        {
            if let Value::Histogram(counts) = &s.value {
                found = true;
                buckets.extend(counts.iter().map(|c| (c.less_than, c.count)));
            }
        }
        if !found {
            return None;
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
        for (le, count) in buckets {
            match merged.last_mut() {
                Some(last) if last.0 == le => last.1 += count,
                _ => merged.push((le, count)),
            }
        }
        let count = self
            .total(&format!("{name}_count"), &filter)
            .or_else(|| merged.last().map(|b| b.1))
            .unwrap_or(0.0);
        Some(Histogram {
            buckets: merged,
            sum: self.total(&format!("{name}_sum"), &filter).unwrap_or(0.0),
            count,
        })
    }
}

fn scalar(value: &Value) -> Option<f64> {
    match value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => Some(*v),
        Value::Histogram(_) | Value::Summary(_) => None,
    }
}

/// A cumulative histogram: (upper bound `le`, observations <= le) in ascending order, the last one `+Inf`.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    pub buckets: Vec<(f64, f64)>,
    pub sum: f64,
    pub count: f64,
}

impl Histogram {
    /// What was observed after `before` (which may be absent: a series appears with its first observation).
    pub fn since(&self, before: Option<&Histogram>) -> Histogram {
        let Some(before) = before else {
            return self.clone();
        };
        let earlier = |le: f64| {
            before
                .buckets
                .iter()
                .find(|b| b.0 == le)
                .map_or(0.0, |b| b.1)
        };
        Histogram {
            buckets: self
                .buckets
                .iter()
                .map(|&(le, count)| (le, (count - earlier(le)).max(0.0)))
                .collect(),
            sum: self.sum - before.sum,
            count: (self.count - before.count).max(0.0),
        }
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count > 0.0).then(|| self.sum / self.count)
    }

    /// The `q`-quantile (0..=1) as PromQL's `histogram_quantile` estimates it: linear interpolation within the
    /// bucket the rank falls in, the lower bound of the first bucket taken as 0 (when its upper bound is
    /// positive), and the highest finite bound when the rank falls in the `+Inf` bucket.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.buckets.last()?.1;
        if total <= 0.0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * total;
        let index = self.buckets.iter().position(|b| b.1 >= rank)?;
        let (upper, count) = self.buckets[index];
        if upper.is_infinite() {
            return Some(if index == 0 {
                0.0
            } else {
                self.buckets[index - 1].0
            });
        }
        let (lower, below) = if index == 0 {
            (if upper > 0.0 { 0.0 } else { upper }, 0.0)
        } else {
            self.buckets[index - 1]
        };
        let in_bucket = count - below;
        if in_bucket <= 0.0 {
            return Some(upper);
        }
        Some(lower + (upper - lower) * (rank - below) / in_bucket)
    }
}

/// The histogram `name` over `filter` between two scrapes; `None` when absent or nothing was observed.
fn observed(
    before: &Snapshot,
    after: &Snapshot,
    name: &str,
    filter: impl Fn(&Labels) -> bool,
) -> Option<Histogram> {
    let later = after.histogram(name, &filter)?;
    let delta = later.since(before.histogram(name, &filter).as_ref());
    (delta.count > 0.0).then_some(delta)
}

/// What the server's metrics say about one measured window; `None` fields (null in JSON) were absent or saw
/// nothing.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ServerFigures {
    /// Calls of the scenario's method that the server finished.
    pub calls: Option<u64>,
    /// Those that did not end OK, by gRPC code.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub codes: BTreeMap<String, u64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// OpenContext calls per batch of the SQLite batch writer.
    pub open_context_batch_mean: Option<f64>,
    /// Wait to start a write transaction.
    pub write_acquire_mean_ms: Option<f64>,
    pub write_acquire_p99_ms: Option<f64>,
    /// Database transactions, all operations.
    pub transactions: Option<u64>,
    pub transaction_mean_ms: Option<f64>,
}

impl ServerFigures {
    /// The figures for calls of `service`/`method` (e.g. `customer_context.v1.ContextService`, `OpenContext`)
    /// between the scrapes `before` and `after`.
    pub fn between(before: &Snapshot, after: &Snapshot, service: &str, method: &str) -> Self {
        let of_method = |labels: &Labels| {
            labels.get("grpc_method") == Some(method)
                && labels
                    .get("grpc_service")
                    .is_some_and(|s| s == service || service.rsplit('.').next() == Some(s))
        };
        let mut figures = ServerFigures::default();

        let handled_after = after.totals_by("grpc_server_handled_total", "grpc_code", of_method);
        if !handled_after.is_empty() {
            let handled_before =
                before.totals_by("grpc_server_handled_total", "grpc_code", of_method);
            let mut calls = 0;
            for (code, count) in handled_after {
                let delta =
                    (count - handled_before.get(&code).copied().unwrap_or(0.0)).max(0.0) as u64;
                calls += delta;
                if code != "OK" && delta > 0 {
                    figures.codes.insert(code, delta);
                }
            }
            figures.calls = Some(calls);
        }
        if let Some(handling) = observed(before, after, "grpc_server_handling_seconds", of_method) {
            figures.calls.get_or_insert(handling.count as u64);
            figures.p50_ms = handling.quantile(0.50).map(|s| s * 1000.0);
            figures.p99_ms = handling.quantile(0.99).map(|s| s * 1000.0);
        }

        figures.open_context_batch_mean = observed(
            before,
            after,
            "customer_context_open_context_batch_size",
            |_| true,
        )
        .and_then(|h| h.mean());

        // The write pool's wait when the series are split by pool, else all of it.
        let write_pool = after.samples.iter().any(|s| {
            s.metric == "customer_context_db_acquire_seconds"
                && s.labels.get("pool") == Some("write")
        });
        if let Some(acquire) = observed(before, after, "customer_context_db_acquire_seconds", |l| {
            !write_pool || l.get("pool") == Some("write")
        }) {
            figures.write_acquire_mean_ms = acquire.mean().map(|s| s * 1000.0);
            figures.write_acquire_p99_ms = acquire.quantile(0.99).map(|s| s * 1000.0);
        }

        if let Some(transactions) = observed(
            before,
            after,
            "customer_context_db_transaction_seconds",
            |_| true,
        ) {
            figures.transactions = Some(transactions.count as u64);
            figures.transaction_mean_ms = transactions.mean().map(|s| s * 1000.0);
        }
        figures
    }

    pub fn is_empty(&self) -> bool {
        *self == ServerFigures::default()
    }

    /// "12,345 calls, p50 0.81 ms, p99 3.20 ms; OpenContext batch 4.2 calls; ...".
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        let mut calls = Vec::new();
        if let Some(n) = self.calls {
            calls.push(format!("{} calls", thousands(n)));
        }
        for (code, n) in &self.codes {
            calls.push(format!("{} x {code}", thousands(*n)));
        }
        if let Some(p) = self.p50_ms {
            calls.push(format!("p50 {} ms", ms(p)));
        }
        if let Some(p) = self.p99_ms {
            calls.push(format!("p99 {} ms", ms(p)));
        }
        if !calls.is_empty() {
            parts.push(calls.join(", "));
        }
        if let Some(mean) = self.open_context_batch_mean {
            parts.push(format!("OpenContext batch mean {mean:.1} calls"));
        }
        let acquire: Vec<String> = [
            self.write_acquire_mean_ms
                .map(|m| format!("mean {} ms", ms(m))),
            self.write_acquire_p99_ms
                .map(|p| format!("p99 {} ms", ms(p))),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !acquire.is_empty() {
            parts.push(format!("write acquire {}", acquire.join(", ")));
        }
        if let Some(mean) = self.transaction_mean_ms {
            let count = self.transactions.map_or(String::new(), |n| {
                format!(" ({} transactions)", thousands(n))
            });
            parts.push(format!("transaction mean {} ms{count}", ms(mean)));
        }
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Before: 100 GetCustomer calls already handled; OpenContext not called yet.
    const BEFORE: &str = include_str!("testdata/before.prom");

    /// After: 1,000 more GetCustomer calls (2 NotFound), 400 OpenContext calls in 100 batches.
    const AFTER: &str = include_str!("testdata/after.prom");

    fn close(actual: Option<f64>, expected: f64) {
        let actual = actual.expect("a value");
        assert!((actual - expected).abs() < 1e-9, "{actual} != {expected}");
    }

    #[test]
    fn figures_come_from_the_deltas_between_two_scrapes() {
        let before = Snapshot::parse(BEFORE).unwrap();
        let after = Snapshot::parse(AFTER).unwrap();

        let get = ServerFigures::between(
            &before,
            &after,
            "customer_context.v1.CustomerService",
            "GetCustomer",
        );
        assert_eq!(get.calls, Some(1000));
        assert_eq!(get.codes, BTreeMap::from([("NotFound".to_owned(), 2)]));
        // Delta buckets: 500 <= 1 ms, 980 <= 10 ms, 1000 <= 100 ms. The median (rank 500) is the top of the
        // first bucket; p99 (rank 990) is half-way into the (10 ms, 100 ms] bucket.
        close(get.p50_ms, 1.0);
        close(get.p99_ms, 55.0);
        // The write pool only: 100 waits taking 0.1 s, 50 of them <= 1 ms.
        close(get.write_acquire_mean_ms, 1.0);
        close(get.write_acquire_p99_ms, 1.0 + 9.0 * (99.0 - 50.0) / 50.0);
        close(get.open_context_batch_mean, 4.0);
        assert_eq!(get.transactions, None, "absent metrics are not reported");
        assert_eq!(get.transaction_mean_ms, None);

        // A series that appeared during the window counts from zero; the +Inf bucket gives the highest
        // finite bound.
        let open = ServerFigures::between(
            &before,
            &after,
            "customer_context.v1.ContextService",
            "OpenContext",
        );
        assert_eq!(open.calls, Some(400));
        close(open.p50_ms, 1.0 + 9.0 * 200.0 / 390.0);
        close(open.p99_ms, 100.0);

        let text = get.describe();
        assert!(
            text.starts_with("1,000 calls, 2 x NotFound, p50 1.00 ms, p99 55.0 ms;"),
            "{text}"
        );
        assert!(text.contains("OpenContext batch mean 4.0 calls"), "{text}");
        assert!(!text.contains("transaction"), "{text}");
    }

    #[test]
    fn a_page_without_the_metrics_gives_no_figures() {
        let empty = Snapshot::parse("# EOF\n").unwrap();
        let figures = ServerFigures::between(&empty, &empty, "grpc.health.v1.Health", "Check");
        assert!(figures.is_empty());
        assert_eq!(figures.describe(), "");
    }

    #[test]
    fn quantiles_follow_histogram_quantile() {
        let h = Histogram {
            buckets: vec![(0.5, 10.0), (1.0, 20.0), (f64::INFINITY, 20.0)],
            sum: 12.0,
            count: 20.0,
        };
        close(h.quantile(0.25), 0.25);
        close(h.quantile(0.75), 0.75);
        close(h.quantile(1.0), 1.0);
        close(h.mean(), 0.6);
        let empty = Histogram {
            buckets: vec![(0.5, 0.0), (f64::INFINITY, 0.0)],
            sum: 0.0,
            count: 0.0,
        };
        assert_eq!(empty.quantile(0.5), None);
        assert_eq!(empty.mean(), None);
    }

    #[tokio::test]
    async fn scrapes_a_metrics_page_over_http() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = vec![0u8; 4096];
            let n = socket.read(&mut request).await.unwrap();
            let request = String::from_utf8_lossy(&request[..n]).into_owned();
            let body = AFTER;
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(response.as_bytes()).await.unwrap();
            request
        });
        let snapshot = scrape(&format!("http://{addr}/metrics")).await.unwrap();
        assert!(snapshot.has("grpc_server_handling_seconds"));
        assert!(snapshot.has("grpc_server_handled_total"));
        let request = server.await.unwrap();
        assert!(
            request.starts_with("GET /metrics HTTP/1.1\r\n"),
            "{request}"
        );

        assert!(scrape("https://127.0.0.1:1/metrics").await.is_err());
    }
}
