//! Model-loading progress: `tracing` events for the logs, and a byte bar when stderr is a
//! terminal.

use std::io::{IsTerminal, Read, Seek, SeekFrom};

use indicatif::{ProgressBar, ProgressStyle};

/// Reports the stages of a model load and, for weights read through a [`ProgressReader`], how
/// many bytes are in.
pub struct LoadProgress {
    model: String,
    bar: Option<ProgressBar>,
    /// Last logged tenth of the weights, so the log gets ~10 lines, not one per tensor.
    logged_tenth: u64,
    total: u64,
    read: u64,
}

impl LoadProgress {
    pub fn new(model: &str) -> Self {
        Self {
            model: model.to_owned(),
            bar: None,
            logged_tenth: 0,
            total: 0,
            read: 0,
        }
    }

    /// A named step of the load (parsing metadata, building the tokenizer, warming up).
    pub fn stage(&self, what: &str) {
        tracing::info!(model = %self.model, "loading: {what}");
        if let Some(bar) = &self.bar {
            bar.set_message(what.to_owned());
        }
    }

    /// Starts counting weight bytes towards `total`.
    pub fn start_weights(&mut self, total: u64) {
        self.total = total;
        self.read = 0;
        self.logged_tenth = 0;
        tracing::info!(model = %self.model, bytes = total, "loading weights");
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total);
            let style = ProgressStyle::with_template(
                "{msg:>12} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_message("weights");
            self.bar = Some(bar);
        }
    }

    fn advance(&mut self, bytes: u64) {
        self.read = (self.read + bytes).min(self.total.max(1));
        if let Some(bar) = &self.bar {
            bar.set_position(self.read);
        }
        let tenth = self.read * 10 / self.total.max(1);
        if tenth > self.logged_tenth {
            self.logged_tenth = tenth;
            tracing::info!(model = %self.model, "loading weights: {}%", tenth * 10);
        }
    }

    /// Ends the byte bar (the log line for 100% was already written).
    pub fn finish_weights(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for LoadProgress {
    fn drop(&mut self) {
        self.finish_weights();
    }
}

/// A reader that reports every byte it reads to a [`LoadProgress`].
pub struct ProgressReader<'p, R> {
    inner: R,
    progress: &'p mut LoadProgress,
}

impl<'p, R> ProgressReader<'p, R> {
    pub fn new(inner: R, progress: &'p mut LoadProgress) -> Self {
        Self { inner, progress }
    }
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

impl<R: Seek> Seek for ProgressReader<'_, R> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}
