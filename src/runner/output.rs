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

struct Sinks {
    console: Mutex<Box<dyn Write + Send>>,
    log: Option<Mutex<File>>,
    verbose: bool,
    color: bool,
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
                console: Mutex::new(console),
                log: None,
                verbose,
                color,
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
                console: Mutex::new(console),
                log: Some(Mutex::new(file)),
                verbose,
                color,
            }),
        })
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
        let line = format!("{}\n", one_line(text));
        if let Ok(mut console) = self.sinks.console.lock() {
            // Output is best-effort: a closed console must not fail the run.
            let _ = console.write_all(line.as_bytes());
            let _ = console.flush();
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
