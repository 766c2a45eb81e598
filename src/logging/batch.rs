//! The hand-off from the threads that log to the one thread that writes.
//!
//! tracing-subscriber formats each event into a reused per-thread buffer and
//! then makes one `write` of the finished line. Here that write copies the line
//! into a shared batch buffer under a short lock and never waits for I/O; the
//! writer thread swaps the whole batch for its empty spare and writes it out.
//! Both buffers keep their capacity, so a logged request allocates nothing
//! (a channel of lines, as tracing-appender's, allocates one `Vec` per line).
//! When the batch is full (the disk or journald stalls), lines are dropped and
//! counted rather than blocking a worker.
//!
//! One writer thread serves stderr (bellhop's own log); each access-log file
//! has its own (`access_files`), which can also be told to reopen its file.

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use tracing_subscriber::fmt::MakeWriter;

/// Bytes queued before new lines are dropped: about 16,000 lines of 256 bytes.
const MAX_QUEUED: usize = 4 * 1024 * 1024;
/// Capacity a buffer keeps once a burst is written out; beyond it, memory a
/// burst took goes back.
const KEEP: usize = 64 * 1024;

/// What the logging threads and the writer thread share.
#[derive(Debug, Default)]
struct Queue {
    state: Mutex<State>,
    /// Signalled when the batch stops being empty, and on close.
    ready: Condvar,
}

#[derive(Debug, Default)]
struct State {
    batch: Vec<u8>,
    /// Lines dropped because the batch was full, reported once written.
    dropped: u64,
    closed: bool,
    /// The output is to be reopened once this much of `batch` (the lines
    /// queued before the request) is written (logrotate).
    reopen_at: Option<usize>,
}

/// Where a writer thread's batches go.
pub(crate) trait Output: Write + Send + 'static {
    /// Opens the destination afresh, for a file that logrotate moved away.
    fn reopen(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// Names the destination in messages about it.
    fn describe(&self) -> String;
}

impl Output for io::Stderr {
    fn describe(&self) -> String {
        "stderr".to_string()
    }
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The `MakeWriter` handed to tracing-subscriber: cheap to clone, each
/// `write` queues one formatted line.
#[derive(Debug, Clone)]
pub(crate) struct BatchWriter(Arc<Queue>);

impl BatchWriter {
    /// Asks the writer thread to reopen its output once it has written what
    /// is queued; returns at once.
    pub(crate) fn reopen(&self) {
        let mut state = self.0.lock();
        state.reopen_at = Some(state.batch.len());
        self.0.ready.notify_one();
    }
}

impl BatchWriter {
    /// Queues one whole line (or drops it, counted, when the batch is full).
    pub(crate) fn push(&self, line: &[u8]) {
        let mut state = self.0.lock();
        if state.batch.len() + line.len() > MAX_QUEUED {
            state.dropped += 1;
        } else {
            let was_empty = state.batch.is_empty();
            state.batch.extend_from_slice(line);
            if was_empty {
                self.0.ready.notify_one();
            }
        }
    }
}

impl Write for BatchWriter {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        self.push(line);
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchWriter {
    type Writer = BatchWriter;

    fn make_writer(&'a self) -> BatchWriter {
        self.clone()
    }
}

/// Owns the writer thread; dropping it writes what is queued and waits for
/// the thread to end.
#[derive(Debug)]
pub(crate) struct WriterThread {
    queue: Arc<Queue>,
    thread: Option<JoinHandle<()>>,
}

impl WriterThread {
    fn close(&self) {
        self.queue.lock().closed = true;
        self.queue.ready.notify_one();
    }

    /// Lets the thread write what is queued and end on its own, without
    /// waiting for it: for a caller that must not block (a worker dropping
    /// the last router that used a log file).
    pub(crate) fn detach(mut self) {
        self.close();
        self.thread.take();
    }
}

impl Drop for WriterThread {
    fn drop(&mut self) {
        self.close();
        if let Some(thread) = self.thread.take() {
            // A panic in the writer has nothing left to report to.
            let _ = thread.join();
        }
    }
}

/// Starts the writer thread for `out` (stderr, or an access-log file).
pub(crate) fn start(out: impl Output) -> io::Result<(BatchWriter, WriterThread)> {
    let queue = Arc::new(Queue::default());
    let thread = std::thread::Builder::new()
        .name("bellhop-log".into())
        .spawn({
            let queue = queue.clone();
            move || write_batches(&queue, out)
        })?;
    let writer = BatchWriter(queue.clone());
    Ok((
        writer,
        WriterThread {
            queue,
            thread: Some(thread),
        },
    ))
}

/// The writer thread: waits for a batch, swaps it for the spare, writes it,
/// and reopens the output when asked to: lines queued before the request go
/// to the old file, lines queued after it to the new one.
fn write_batches(queue: &Queue, mut out: impl Output) {
    let mut spare = Vec::new();
    loop {
        let (dropped, closed, reopen_at) = {
            let mut state = queue.lock();
            while state.batch.is_empty() && !state.closed && state.reopen_at.is_none() {
                state = queue
                    .ready
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            std::mem::swap(&mut state.batch, &mut spare);
            (
                std::mem::take(&mut state.dropped),
                state.closed,
                state.reopen_at.take(),
            )
        };
        // Nothing to tell anyone if stderr is gone.
        let split = reopen_at.map_or(spare.len(), |at| at.min(spare.len()));
        let _ = out.write_all(&spare[..split]);
        if reopen_at.is_some() {
            let _ = out.flush();
            if let Err(e) = out.reopen() {
                tracing::error!(log = %out.describe(), error = %e, "cannot reopen the access log; still writing to the old file");
            }
        }
        let _ = out.write_all(&spare[split..]);
        if dropped > 0 {
            let _ = writeln!(
                out,
                "bellhop: {dropped} log lines dropped (output too slow)"
            );
        }
        let _ = out.flush();
        let written = spare.len();
        spare.clear();
        if written < KEEP / 4 {
            spare.shrink_to(KEEP);
        }
        if closed && queue.lock().batch.is_empty() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Write` the test can read back after the writer thread ended.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Output for Shared {
        fn describe(&self) -> String {
            "test".to_string()
        }
    }

    #[test]
    fn lines_from_many_threads_arrive_whole_and_are_flushed_on_drop() {
        let out = Shared::default();
        let (writer, thread) = start(out.clone()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let mut w = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..500 {
                        w.write_all(format!("thread {t} line {i}\n").as_bytes())
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(thread);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 2000);
        for t in 0..4 {
            let mine: Vec<_> = text
                .lines()
                .filter(|l| l.starts_with(&format!("thread {t} ")))
                .collect();
            let expected: Vec<_> = (0..500).map(|i| format!("thread {t} line {i}")).collect();
            assert_eq!(mine, expected, "thread {t}'s lines in order");
        }
    }

    #[test]
    fn a_full_batch_drops_lines_and_says_so() {
        let queue = Queue::default();
        let mut writer = BatchWriter(Arc::new(queue));
        let line = vec![b'x'; MAX_QUEUED / 2];
        for _ in 0..3 {
            writer.write_all(&line).unwrap();
        }
        let state = writer.0.lock();
        assert_eq!(state.batch.len(), MAX_QUEUED);
        assert_eq!(state.dropped, 1);
    }
}
