//! How far a restore is: rustic_core reports its byte progress through `ProgressBars`; this
//! one counts into atomics the agent reads for its reports.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustic_core::{HiddenProgress, Progress, ProgressBars, ProgressType, RusticProgress};

/// Bytes done of a total, shared between rustic_core's threads and the agent's reports.
#[derive(Clone, Debug, Default)]
pub struct ByteProgress {
    done: Arc<AtomicU64>,
    total: Arc<AtomicU64>,
}

impl ByteProgress {
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Adds what a restore plan will write (several paths add up).
    pub fn add_total(&self, bytes: u64) {
        self.total.fetch_add(bytes, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct Counting(ByteProgress);

impl RusticProgress for Counting {
    fn is_hidden(&self) -> bool {
        true
    }
    fn set_length(&self, _len: u64) {}
    fn set_title(&self, _title: &str) {}
    fn inc(&self, inc: u64) {
        self.0.done.fetch_add(inc, Ordering::Relaxed);
    }
    fn finish(&self) {}
}

impl ProgressBars for ByteProgress {
    fn progress(&self, progress_type: ProgressType, _prefix: &str) -> Progress {
        match progress_type {
            ProgressType::Bytes => Progress::new(Counting(self.clone())),
            _ => Progress::new(HiddenProgress),
        }
    }
}
