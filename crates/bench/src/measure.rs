//! What every benchmark measures with: many calls at a given concurrency, percentiles, and
//! waiting until a site answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Latency summary of one measurement.
#[derive(Debug)]
pub struct Summary {
    pub p50: Duration,
    pub p99: Duration,
    pub per_second: f64,
}

/// Runs `requests` calls of `call`, `concurrency` at a time; every call must succeed.
pub async fn measure<F, Fut>(
    requests: usize,
    concurrency: usize,
    call: F,
) -> anyhow::Result<Summary>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let call = Arc::new(call);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (call, next) = (call.clone(), next.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < requests {
                    let t = Instant::now();
                    call().await?;
                    latencies.push(t.elapsed());
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(requests);
    for worker in workers {
        all.extend(worker.await??);
    }
    let elapsed = started.elapsed();
    let count = all.len();
    let (p50, p99) = percentiles(all);
    Ok(Summary {
        p50,
        p99,
        per_second: count as f64 / elapsed.as_secs_f64(),
    })
}

/// p50 and p99 of a list of durations.
pub(crate) fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |q: f64| {
        samples
            .get(((samples.len() as f64 * q) as usize).min(samples.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    (at(0.5), at(0.99))
}

/// Polls `url` with `Host: host` until it answers 200 (bounded).
pub(crate) async fn first_200(http: &reqwest::Client, url: &str, host: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) = http.get(url).header("host", host).send().await
            && response.status() == 200
        {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "{host} never answered 200");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
