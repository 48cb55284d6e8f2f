//! Console and log output shared by concurrent workers. Every line is formatted first and
//! written with one `write_all` while a lock is held, so lines from different workers never
//! interleave; the optional log file gets every line (verbose ones included) without colour.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Text styles for the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Success.
    Green,
    /// Failure.
    Red,
    /// Warnings and budget problems.
    Yellow,
    /// Secondary detail.
    Dim,
    /// Headings.
    Bold,
}

impl Style {
    fn code(self) -> &'static str {
        match self {
            Style::Green => "32",
            Style::Red => "31",
            Style::Yellow => "33",
            Style::Dim => "2",
            Style::Bold => "1",
        }
    }
}

/// The console and the progress bar drawn on its last line (terminal only).
struct Console {
    writer: Box<dyn Write + Send>,
    /// The bar currently shown below the printed lines, if any.
    bar: Option<String>,
}

struct Sinks {
    console: Mutex<Console>,
    log: Option<Mutex<File>>,
    verbose: bool,
    color: bool,
    /// Whether `progress` draws a bar (only on a terminal: it rewrites the last line).
    progress_bar: bool,
}

/// Width of the progress bar in characters.
const BAR_WIDTH: usize = 30;

/// Erases the current terminal line and returns the cursor to its start.
const CLEAR_LINE: &str = "\r\x1b[K";

/// The bar for `done` of `total`, e.g. `core [=========>          ] 10/30`.
fn render_bar(label: &str, done: usize, total: usize) -> String {
    let filled = (done * BAR_WIDTH)
        .checked_div(total)
        .unwrap_or(BAR_WIDTH)
        .min(BAR_WIDTH);
    let head = if filled < BAR_WIDTH { ">" } else { "" };
    let rest = BAR_WIDTH - filled - head.len();
    format!(
        "{label} [{}{head}{}] {done}/{total}",
        "=".repeat(filled),
        " ".repeat(rest)
    )
}

/// A cloneable, line-locked writer for the console and an optional log file.
#[derive(Clone)]
pub struct Output {
    sinks: Arc<Sinks>,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output")
            .field("verbose", &self.sinks.verbose)
            .field("color", &self.sinks.color)
            .field("log", &self.sinks.log.is_some())
            .finish()
    }
}

impl Output {
    /// Output to `console`; `color` enables ANSI styles, `verbose` prints per-step lines.
    pub fn new(console: Box<dyn Write + Send>, color: bool, verbose: bool) -> Output {
        Output {
            sinks: Arc::new(Sinks {
                console: Mutex::new(Console {
                    writer: console,
                    bar: None,
                }),
                log: None,
                verbose,
                color,
                progress_bar: false,
            }),
        }
    }

    /// Output to `console` plus a log file (created or truncated) that receives every line.
    pub fn with_log(
        console: Box<dyn Write + Send>,
        color: bool,
        verbose: bool,
        log: &Path,
    ) -> io::Result<Output> {
        let file = File::create(log)?;
        Ok(Output {
            sinks: Arc::new(Sinks {
                console: Mutex::new(Console {
                    writer: console,
                    bar: None,
                }),
                log: Some(Mutex::new(file)),
                verbose,
                color,
                progress_bar: false,
            }),
        })
    }

    /// Turns the progress bar on (for a terminal console). Call right after construction.
    pub fn with_progress_bar(mut self, enabled: bool) -> Output {
        if let Some(sinks) = Arc::get_mut(&mut self.sinks) {
            sinks.progress_bar = enabled;
        }
        self
    }

    /// Shows how far a task is: a bar on the console's last line when the bar is on
    /// (removed once `done == total`); nothing otherwise, where the per-question lines are
    /// the progress.
    pub fn progress(&self, label: &str, done: usize, total: usize) {
        if !self.sinks.progress_bar {
            return;
        }
        if let Ok(mut console) = self.sinks.console.lock() {
            let bar = (done < total).then(|| render_bar(label, done, total));
            let text = format!("{CLEAR_LINE}{}", bar.as_deref().unwrap_or(""));
            let _ = console.writer.write_all(text.as_bytes());
            let _ = console.writer.flush();
            console.bar = bar;
        }
    }

    /// Output that discards everything (for tests and library use).
    pub fn silent() -> Output {
        Output::new(Box::new(io::sink()), false, false)
    }

    /// Whether per-step lines are produced at all (console or log).
    pub fn wants_detail(&self) -> bool {
        self.sinks.verbose || self.sinks.log.is_some()
    }

    /// `text` wrapped in the style's colour codes when colour is on.
    pub fn paint(&self, style: Style, text: &str) -> String {
        if self.sinks.color {
            format!("\x1b[{}m{text}\x1b[0m", style.code())
        } else {
            text.to_string()
        }
    }

    /// Writes one line to the console and the log.
    pub fn line(&self, text: &str) {
        self.write_console(text);
        self.write_log(text);
    }

    /// Writes one per-step line: to the console when verbose, always to the log.
    pub fn detail(&self, text: &str) {
        if self.sinks.verbose {
            self.write_console(text);
        }
        self.write_log(text);
    }

    fn write_console(&self, text: &str) {
        if let Ok(mut console) = self.sinks.console.lock() {
            // The line goes above the bar: erase the bar, print the line, draw the bar again.
            let line = match &console.bar {
                Some(bar) => format!("{CLEAR_LINE}{}\n{bar}", one_line(text)),
                None => format!("{}\n", one_line(text)),
            };
            // Output is best-effort: a closed console must not fail the run.
            let _ = console.writer.write_all(line.as_bytes());
            let _ = console.writer.flush();
        }
    }

    fn write_log(&self, text: &str) {
        if let Some(log) = &self.sinks.log {
            let line = format!("{}\n", strip_ansi(&one_line(text)));
            if let Ok(mut file) = log.lock() {
                let _ = file.write_all(line.as_bytes());
            }
        }
    }
}

/// Keeps a logical line on one physical line (embedded newlines become `⏎`).
fn one_line(text: &str) -> String {
    if text.contains('\n') {
        text.trim_end_matches('\n').replace('\n', " ⏎ ")
    } else {
        text.to_string()
    }
}

/// Removes ANSI colour sequences.
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            for next in chars.by_ref() {
                if next.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A `Write` into a shared buffer; lets tests read what was printed.
#[derive(Debug, Clone, Default)]
pub struct SharedBuffer {
    bytes: Arc<Mutex<Vec<u8>>>,
    /// Most bytes accepted per `write` call (0 = unlimited); small values imitate a pipe that
    /// takes partial writes, which is how unlocked output gets torn.
    chunk: usize,
}

impl SharedBuffer {
    /// An empty buffer accepting whole writes.
    pub fn new() -> SharedBuffer {
        SharedBuffer::default()
    }

    /// An empty buffer accepting at most `chunk` bytes per write.
    pub fn chunked(chunk: usize) -> SharedBuffer {
        SharedBuffer {
            bytes: Arc::default(),
            chunk,
        }
    }

    /// Everything written so far.
    pub fn contents(&self) -> String {
        let bytes = self.bytes.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Write for SharedBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = if self.chunk == 0 {
            buf.len()
        } else {
            buf.len().min(self.chunk)
        };
        self.bytes
            .lock()
            .map_err(|_| io::Error::other("buffer lock poisoned"))?
            .extend_from_slice(&buf[..n]);
        // Give other threads a chance to write in between, as a real pipe would.
        std::thread::yield_now();
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_shows_the_fraction_done() {
        assert_eq!(
            render_bar("t", 0, 3),
            format!("t [>{}] 0/3", " ".repeat(29))
        );
        assert_eq!(render_bar("t", 3, 3), format!("t [{}] 3/3", "=".repeat(30)));
        assert_eq!(
            render_bar("t", 1, 2),
            format!("t [{}>{}] 1/2", "=".repeat(15), " ".repeat(14))
        );
        assert_eq!(render_bar("t", 0, 0), format!("t [{}] 0/0", "=".repeat(30)));
    }

    #[test]
    fn lines_are_printed_above_the_bar_and_the_bar_goes_away_at_the_end() {
        let buffer = SharedBuffer::new();
        let output = Output::new(Box::new(buffer.clone()), false, false).with_progress_bar(true);
        output.progress("core", 0, 2);
        output.line("q1 correct");
        output.progress("core", 1, 2);
        output.line("q2 correct");
        output.progress("core", 2, 2);
        let printed = buffer.contents();
        // What a terminal shows at the end: each clear-line sequence erases the bar.
        let shown: Vec<&str> = printed
            .split(CLEAR_LINE)
            .flat_map(|chunk| chunk.split_inclusive('\n'))
            .filter(|piece| piece.ends_with('\n'))
            .collect();
        assert_eq!(shown, ["q1 correct\n", "q2 correct\n"]);
        assert!(printed.contains("core [===============>"), "{printed:?}");
        assert!(
            printed.ends_with(CLEAR_LINE),
            "the bar is erased at the end: {printed:?}"
        );
    }

    #[test]
    fn no_bar_without_a_terminal() {
        let buffer = SharedBuffer::new();
        let output = Output::new(Box::new(buffer.clone()), false, false);
        output.progress("core", 0, 2);
        output.line("q1 correct");
        assert_eq!(buffer.contents(), "q1 correct\n");
    }
}
