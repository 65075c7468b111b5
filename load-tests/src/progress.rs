//! The progress bar drawn while a run goes on.
//!
//! The bar is redrawn from the [`Live`] counters by its own ticker, a few times a second, so the
//! request path only bumps atomics. It draws nothing when stderr is not a terminal.

use crate::runner::{Bound, Live};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

const REDRAW: Duration = Duration::from_millis(200);

pub struct Progress {
    bar: ProgressBar,
    ticker: JoinHandle<()>,
}

impl Progress {
    pub fn start(bound: Bound, live: Arc<Live>, visible: bool) -> Self {
        let target = if visible {
            ProgressDrawTarget::stderr_with_hz(5)
        } else {
            ProgressDrawTarget::hidden()
        };
        let (length, template) = match bound {
            Bound::Requests(n) => (n, "{elapsed_precise} [{bar:40}] {pos}/{len} {msg}"),
            Bound::Duration(d) => (d.as_millis() as u64, "{elapsed_precise} [{bar:40}] {msg}"),
        };
        let bar = ProgressBar::with_draw_target(Some(length), target);
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style.progress_chars("=> "));
        }
        let ticker = tokio::spawn(tick(bar.clone(), bound, live));
        Self { bar, ticker }
    }

    pub fn finish(self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}

async fn tick(bar: ProgressBar, bound: Bound, live: Arc<Live>) {
    let started = Instant::now();
    let mut last_done = 0;
    let mut last_at = started;
    loop {
        tokio::time::sleep(REDRAW).await;
        let now = Instant::now();
        let snapshot = live.snapshot();
        let rate = (snapshot.done - last_done) as f64 / (now - last_at).as_secs_f64();
        (last_done, last_at) = (snapshot.done, now);
        match bound {
            Bound::Requests(_) => bar.set_position(snapshot.sent),
            Bound::Duration(_) => bar.set_position((now - started).as_millis() as u64),
        }
        let skipped = match snapshot.skipped {
            0 => String::new(),
            n => format!(" skipped {n}"),
        };
        bar.set_message(format!(
            "done {} errors {} in flight {}{skipped}  {rate:.0} req/s",
            snapshot.done,
            snapshot.errors,
            snapshot.in_flight()
        ));
    }
}
