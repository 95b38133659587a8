//! Node pressure from Linux's pressure stall information: the share of the last 10 s in
//! which some task waited for CPU (`/proc/pressure/cpu`) or memory (`/proc/pressure/memory`).
//! Above the threshold, every site's admissions are lowered by the same factor, so each
//! keeps its part of the node in proportion to its limits.

use std::path::PathBuf;

/// Reads the node's pressure, in percent (the larger of CPU's and memory's `some avg10`).
pub trait PressureSource: Send + Sync {
    fn percent(&self) -> std::io::Result<f64>;
}

/// The kernel's files (or others, for tests).
#[derive(Clone, Debug)]
pub struct ProcPressure {
    pub files: Vec<PathBuf>,
}

impl Default for ProcPressure {
    fn default() -> Self {
        Self {
            files: vec!["/proc/pressure/cpu".into(), "/proc/pressure/memory".into()],
        }
    }
}

impl PressureSource for ProcPressure {
    fn percent(&self) -> std::io::Result<f64> {
        let mut worst: f64 = 0.0;
        for file in &self.files {
            let text = std::fs::read_to_string(file)?;
            let some = parse_some_avg10(&text).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: no 'some avg10=' line", file.display()),
                )
            })?;
            worst = worst.max(some);
        }
        Ok(worst)
    }
}

/// `some avg10=12.34 avg60=… avg300=… total=…` → 12.34.
fn parse_some_avg10(text: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix("some "))?
        .split_whitespace()
        .find_map(|field| field.strip_prefix("avg10="))?
        .parse()
        .ok()
}

/// The factor admissions are multiplied by at `percent` of pressure: 1 up to the threshold,
/// then down in a straight line to a quarter at full pressure.
pub fn factor(percent: f64, threshold: f64) -> f64 {
    if percent <= threshold || threshold >= 100.0 {
        return 1.0;
    }
    let over = (percent - threshold) / (100.0 - threshold);
    (1.0 - 0.75 * over).clamp(0.25, 1.0)
}

/// How often pressure is read (the kernel's average is over 10 s).
const EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Follows the node's pressure for as long as the agent runs, lowering admissions above
/// `threshold` percent. A kernel without PSI (or a container that hides it) is said once and
/// leaves admissions as they are.
pub async fn follow(
    ingress: std::sync::Arc<crate::ingress::Ingress>,
    source: Box<dyn PressureSource>,
    threshold: f64,
) {
    let mut ticker = tokio::time::interval(EVERY);
    let mut said = false;
    loop {
        ticker.tick().await;
        apply(&ingress, source.as_ref(), threshold, &mut said);
    }
}

/// One reading, applied to the ingress; an unreadable one is said once (`said`).
fn apply(
    ingress: &crate::ingress::Ingress,
    source: &dyn PressureSource,
    threshold: f64,
    said: &mut bool,
) {
    match source.percent() {
        Ok(percent) => {
            let lowered = factor(percent, threshold);
            if lowered < 1.0 {
                tracing::debug!(percent, lowered, "node pressure lowers admissions");
            }
            ingress.set_pressure(lowered);
        }
        Err(error) if !*said => {
            *said = true;
            tracing::warn!(%error, "node pressure is not readable: admissions are not lowered under pressure");
        }
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_lines_are_read_and_the_worst_counts() {
        let dir = tempfile::tempdir().unwrap();
        let cpu = dir.path().join("cpu");
        let memory = dir.path().join("memory");
        std::fs::write(&cpu, "some avg10=55.10 avg60=20.00 avg300=5.00 total=123\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n").unwrap();
        std::fs::write(&memory, "some avg10=2.50 avg60=1.00 avg300=0.50 total=9\nfull avg10=1.00 avg60=0.00 avg300=0.00 total=0\n").unwrap();
        let source = ProcPressure {
            files: vec![cpu.clone(), memory],
        };
        assert_eq!(source.percent().unwrap(), 55.10);
        std::fs::write(&cpu, "nothing here").unwrap();
        assert!(source.percent().is_err());
    }

    struct Fixed(f64);

    impl PressureSource for Fixed {
        fn percent(&self) -> std::io::Result<f64> {
            Ok(self.0)
        }
    }

    #[test]
    fn the_ingress_follows_the_pressure_it_reads() {
        let ingress = crate::ingress::Ingress::new();
        let mut said = false;
        apply(&ingress, &Fixed(70.0), 40.0, &mut said);
        assert_eq!(ingress.pressure(), 0.625);
        apply(&ingress, &Fixed(5.0), 40.0, &mut said);
        assert_eq!(ingress.pressure(), 1.0);
        // Unreadable: said once, and admissions stay as they were.
        let missing = ProcPressure {
            files: vec!["/nonexistent/pressure".into()],
        };
        apply(&ingress, &missing, 40.0, &mut said);
        assert!(said);
        assert_eq!(ingress.pressure(), 1.0);
    }

    #[test]
    fn admissions_go_down_with_pressure_above_the_threshold_only() {
        assert_eq!(factor(10.0, 40.0), 1.0);
        assert_eq!(factor(40.0, 40.0), 1.0);
        assert_eq!(factor(70.0, 40.0), 0.625);
        assert_eq!(factor(100.0, 40.0), 0.25);
    }
}
