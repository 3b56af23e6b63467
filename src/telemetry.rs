//! Logging: `tracing` to stderr, human-readable or one JSON object a line (`LOG_FORMAT`),
//! level from `RUST_LOG` (default `info`). Stdout stays free for what commands print.
//!
//! Lines are formatted where they are logged and written by a thread of their own, which
//! writes whatever has come in since its last write in one go: a request does not wait for a
//! `write` to stderr, and under load a batch of lines costs one syscall instead of one each.
//! No line is dropped for being too many (a writer far behind makes loggers wait). What is on
//! its way is written before a panic's message and before the process ends ([`flush`]), and a
//! warning or an error is written before its logger goes on: what a process killed outright
//! (SIGKILL, out of memory) can lose is the information lines of its last moments, at most
//! [`QUEUED_LINES`] of them.

use std::io::Write;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// Lines on their way to the writer thread before a logger has to wait.
pub const QUEUED_LINES: usize = 1024;

const WRITER_THREAD: &str = "kp-log";

/// How long [`flush`] waits for the writer thread (which may itself be what panicked).
const FLUSH_WAIT: Duration = Duration::from_secs(1);

enum Msg {
    Line(Vec<u8>),
    /// Answered once every line sent before it is written.
    Flush(SyncSender<()>),
}

static LINES: OnceLock<SyncSender<Msg>> = OnceLock::new();

/// Installs the subscriber; `default_level` applies unless `RUST_LOG` says otherwise.
pub fn init(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Writers);
    // A second init (tests call it per app) is harmless: the first subscriber stays.
    let installed = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    if installed.is_ok() {
        flush_before_panic_messages();
    }
}

/// Writes every line logged so far (waiting at most a second): before the process ends.
pub fn flush() {
    // The writer thread cannot wait for itself (it would only panic in a broken stderr).
    if std::thread::current().name() == Some(WRITER_THREAD) {
        return;
    }
    let Some(lines) = LINES.get() else { return };
    let deadline = Instant::now() + FLUSH_WAIT;
    let (done, written) = mpsc::sync_channel(1);
    let mut flush = Msg::Flush(done);
    loop {
        match lines.try_send(flush) {
            Ok(()) => break,
            Err(TrySendError::Full(again)) if Instant::now() < deadline => {
                flush = again;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(_) => return,
        }
    }
    let _ = written.recv_timeout(deadline.saturating_duration_since(Instant::now()));
}

fn flush_before_panic_messages() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        flush();
        report(info);
    }));
}

/// Gives each event its writer: warnings and errors wait until they are written.
struct Writers;

impl<'a> MakeWriter<'a> for Writers {
    type Writer = Lines;

    fn make_writer(&'a self) -> Lines {
        Lines { urgent: false }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Lines {
        Lines {
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

/// The writer each log line goes through: hands the line to the writer thread.
struct Lines {
    urgent: bool,
}

impl Write for Lines {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let lines = LINES.get_or_init(start_writer);
        if let Err(mpsc::SendError(Msg::Line(unsent))) = lines.send(Msg::Line(line.to_vec())) {
            // The writer thread is gone: write it here rather than lose it.
            std::io::stderr().write_all(&unsent)?;
        } else if self.urgent {
            flush();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn start_writer() -> SyncSender<Msg> {
    let (lines, queued) = mpsc::sync_channel(QUEUED_LINES);
    let started = std::thread::Builder::new()
        .name(WRITER_THREAD.into())
        .spawn(move || write_lines(queued));
    if let Err(e) = started {
        eprintln!("cannot start the log writer ({e}): log lines go to stderr directly");
    }
    lines
}

/// Lines written in one go at most, so that a flush is answered under a steady stream too.
const BATCH: usize = 1024;

/// Blocks for a line, then takes whatever else has come in, and writes it all at once.
fn write_lines(queued: Receiver<Msg>) {
    let mut stderr = std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr());
    while let Ok(first) = queued.recv() {
        let mut flushed = Vec::new();
        for msg in std::iter::once(first).chain(queued.try_iter().take(BATCH)) {
            match msg {
                Msg::Line(line) => {
                    let _ = stderr.write_all(&line);
                }
                Msg::Flush(done) => flushed.push(done),
            }
        }
        let _ = stderr.flush();
        for done in flushed {
            let _ = done.send(());
        }
    }
}
