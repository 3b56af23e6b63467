//! Logging: `tracing` to stderr, human-readable or one JSON object a line (`LOG_FORMAT`),
//! level from `RUST_LOG` (default `info`). Stdout stays free for what commands print.
//!
//! Lines are formatted where they are logged and written by a thread of their own, which
//! gathers what comes in for [`LINGER`] and writes it in one go: a request does not wait for
//! a `write` to stderr, nor wake the writer for each line, and under load a few milliseconds
//! of lines cost one syscall. No line is dropped for being too many (a writer far behind
//! makes loggers wait). What is on its way is written before a panic's message and before the
//! process ends ([`flush`]), and a warning or an error is written before its logger goes on:
//! what a process killed outright (SIGKILL, out of memory) can lose is the information lines
//! of its last [`LINGER`], at most [`PENDING_BYTES`] of them.

use std::io::Write;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};
use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// How long the writer gathers lines after the first one before it writes them.
pub const LINGER: Duration = Duration::from_millis(5);

/// Bytes of lines on their way before a logger has to wait for the writer.
pub const PENDING_BYTES: usize = 256 * 1024;

const WRITER_THREAD: &str = "kp-log";

/// How long [`flush`] waits for the writer thread (which may itself be what panicked).
const FLUSH_WAIT: Duration = Duration::from_secs(1);

static QUEUE: Queue = Queue::new();

/// Whether the writer thread runs (started with the first line); without it lines are
/// written where they are logged.
static WRITER: OnceLock<bool> = OnceLock::new();

/// Installs the subscriber; `default_level` applies unless `RUST_LOG` says otherwise.
pub fn init(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Writers);
    // A second init (tests call it per app) is harmless: the first subscriber stays.
    // The request's span once per line (not again in a list of every span it is in).
    let installed = match format {
        LogFormat::Pretty => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_span_list(false)
            .try_init(),
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
    QUEUE.flush(Instant::now() + FLUSH_WAIT);
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
        if !*WRITER.get_or_init(start_writer) || !QUEUE.push(line) {
            std::io::stderr().write_all(line)?;
            return Ok(line.len());
        }
        if self.urgent {
            flush();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn start_writer() -> bool {
    let started = std::thread::Builder::new()
        .name(WRITER_THREAD.into())
        .spawn(|| QUEUE.write_to(std::io::stderr()));
    if let Err(e) = &started {
        eprintln!("cannot start the log writer ({e}): log lines go to stderr directly");
    }
    started.is_ok()
}

/// Lines on their way from the loggers to the writer thread.
struct Queue {
    pending: Mutex<Pending>,
    /// The writer waits here: for a first line, and for more while it lingers.
    wake: Condvar,
    /// Loggers wait here: for their lines to be written (a flush), or for room.
    written: Condvar,
}

struct Pending {
    lines: Vec<u8>,
    /// Bytes ever queued and ever written: a flush waits until `written` reaches what was
    /// queued before it.
    queued: u64,
    written: u64,
    /// The writer waits for a first line: the next one wakes it (the others it gathers).
    idle: bool,
    /// Somebody waits for the lines to be written: no lingering.
    urgent: bool,
    /// The writer thread ended (it panicked): loggers write their lines themselves.
    gone: bool,
}

impl Queue {
    const fn new() -> Queue {
        Queue {
            pending: Mutex::new(Pending {
                lines: Vec::new(),
                queued: 0,
                written: 0,
                idle: false,
                urgent: false,
                gone: false,
            }),
            wake: Condvar::new(),
            written: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `line`; `false` if there is no writer any more to write it.
    fn push(&self, line: &[u8]) -> bool {
        let mut pending = self.lock();
        while pending.lines.len() >= PENDING_BYTES && !pending.gone {
            pending.urgent = true;
            self.wake.notify_one();
            pending = self
                .written
                .wait(pending)
                .unwrap_or_else(|p| p.into_inner());
        }
        if pending.gone {
            return false;
        }
        pending.lines.extend_from_slice(line);
        pending.queued += line.len() as u64;
        if pending.idle {
            pending.idle = false;
            self.wake.notify_one();
        }
        true
    }

    /// Waits until every line queued before this call is written, or `deadline`.
    fn flush(&self, deadline: Instant) {
        let mut pending = self.lock();
        let target = pending.queued;
        while pending.written < target && !pending.gone {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return;
            };
            pending.urgent = true;
            self.wake.notify_one();
            pending = self
                .written
                .wait_timeout(pending, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// The writer thread: waits for a line, gathers more for [`LINGER`] (unless somebody
    /// waits), and writes them all with one `write`.
    fn write_to(&self, mut out: impl Write) {
        let _gone = Gone(self);
        let mut batch = Vec::new();
        let mut pending = self.lock();
        loop {
            while pending.lines.is_empty() {
                pending.idle = true;
                pending = self.wake.wait(pending).unwrap_or_else(|p| p.into_inner());
            }
            pending.idle = false;
            if !pending.urgent {
                pending = self
                    .wake
                    .wait_timeout(pending, LINGER)
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
            }
            pending.urgent = false;
            std::mem::swap(&mut batch, &mut pending.lines);
            let upto = pending.queued;
            drop(pending);
            let _ = out.write_all(&batch).and_then(|()| out.flush());
            batch.clear();
            // One huge line does not keep its buffer for the life of the process.
            if batch.capacity() > 2 * PENDING_BYTES {
                batch = Vec::new();
            }
            pending = self.lock();
            pending.written = upto;
            self.written.notify_all();
        }
    }
}

/// Marks the writer thread as ended when it unwinds, writes what it left behind, and
/// releases every logger waiting for it.
struct Gone<'a>(&'a Queue);

impl Drop for Gone<'_> {
    fn drop(&mut self) {
        let mut pending = self.0.lock();
        pending.gone = true;
        let _ = std::io::stderr().write_all(&std::mem::take(&mut pending.lines));
        self.0.written.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// What the writer thread wrote, and how many writes it took.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut out = self.0.lock().unwrap();
            out.0.extend_from_slice(buf);
            out.1 += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().0.clone()).unwrap()
        }
    }

    fn started(out: impl Write + Send + 'static) -> &'static Queue {
        let queue: &'static Queue = Box::leak(Box::new(Queue::new()));
        std::thread::spawn(move || queue.write_to(out));
        queue
    }

    fn within_5_s(what: &str, done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !done() {
            assert!(Instant::now() < deadline, "{what}: not within 5 s");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_flush_returns_once_every_earlier_line_is_written_in_order() {
        let sink = Sink::default();
        let queue = started(sink.clone());
        for i in 0..1000 {
            assert!(queue.push(format!("line {i}\n").as_bytes()));
        }
        queue.flush(Instant::now() + Duration::from_secs(5));
        let expected: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(sink.text(), expected);
        let writes = sink.0.lock().unwrap().1;
        assert!(writes < 100, "{writes} writes for 1000 lines");
    }

    #[test]
    fn a_line_logged_while_the_writer_waits_wakes_it() {
        let sink = Sink::default();
        let queue = started(sink.clone());
        for (n, line) in ["first\n", "second\n"].into_iter().enumerate() {
            within_5_s("the writer waiting", || queue.lock().idle);
            assert!(queue.push(line.as_bytes()));
            within_5_s("the line written", || sink.text().lines().count() == n + 1);
        }
        assert_eq!(sink.text(), "first\nsecond\n");
    }

    #[test]
    fn loggers_far_ahead_of_the_writer_wait_rather_than_lose_or_mix_lines() {
        let sink = Sink::default();
        let queue = started(sink.clone());
        let pad = "x".repeat(1000);
        let loggers: Vec<_> = (0..4)
            .map(|t| {
                let pad = pad.clone();
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        assert!(queue.push(format!("{t} {i} {pad}\n").as_bytes()));
                    }
                })
            })
            .collect();
        for logger in loggers {
            logger.join().unwrap();
        }
        queue.flush(Instant::now() + Duration::from_secs(5));
        let mut next = [0; 4];
        for line in sink.text().lines() {
            let mut parts = line.split(' ');
            let t: usize = parts.next().unwrap().parse().unwrap();
            let i: usize = parts.next().unwrap().parse().unwrap();
            assert_eq!(
                (i, parts.next(), parts.next()),
                (next[t], Some(&*pad), None)
            );
            next[t] += 1;
        }
        assert_eq!(next, [1000; 4]);
        assert!(queue.lock().lines.capacity() <= 2 * PENDING_BYTES);
    }

    /// A writer that panics on its first write (a broken stderr).
    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            panic!("stderr is broken");
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn without_a_writer_loggers_neither_wait_nor_queue() {
        let queue = started(Broken);
        assert!(queue.push(b"the writer dies on this line\n"));
        within_5_s("the writer gone", || queue.lock().gone);
        assert!(!queue.push(b"written by its logger\n"));
        let started = Instant::now();
        queue.flush(Instant::now() + Duration::from_secs(5));
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(queue.lock().lines.is_empty());
    }
}
