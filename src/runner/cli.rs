//! The `cogni` commands behind the thin binary: each returns the process exit code
//! (0 = run completed, 1 = failed run, 2 = invalid config, questions or arguments).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use super::config::{LoadedConfig, DEFAULT_CONFIG_PATH};
use super::output::Output;
use super::run::{eval_task, run_tasks, select_tasks, RunOptions};
use super::validate::validate_files;

/// Exit code: invalid config, questions or arguments.
pub const EXIT_INVALID: i32 = 2;
/// Exit code: the run failed (a task status `error`, or the run could not finish).
pub const EXIT_FAILED: i32 = 1;

/// Options every command shares.
#[derive(Debug, Clone, Default)]
pub struct CommonArgs {
    /// `--spec PATH`; default `.cogni/config.yml`.
    pub spec: Option<PathBuf>,
    /// `--verbose`: per-step lines on the console.
    pub verbose: bool,
    /// `--log FILE`: every line, verbose ones included, without colour.
    pub log: Option<PathBuf>,
    /// `--no-color`.
    pub no_color: bool,
    /// `--output-dir DIR`: overrides `repo.output_dir`.
    pub output_dir: Option<PathBuf>,
}

/// The `--log` file could not be created.
#[derive(Debug, thiserror::Error)]
#[error("--log: cannot create {path}: {source}")]
struct LogFileError {
    path: PathBuf,
    source: std::io::Error,
}

impl CommonArgs {
    fn spec_path(&self) -> PathBuf {
        self.spec
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH))
    }

    fn output(&self) -> Result<Output, LogFileError> {
        let stdout = std::io::stdout();
        let color =
            !self.no_color && stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none();
        let bar = stdout.is_terminal();
        let console: Box<dyn Write + Send> = Box::new(stdout);
        let output = match &self.log {
            None => Output::new(console, color, self.verbose),
            Some(path) => {
                Output::with_log(console, color, self.verbose, path).map_err(|source| {
                    LogFileError {
                        path: path.clone(),
                        source,
                    }
                })?
            }
        };
        Ok(output.with_progress_bar(bar))
    }
}

fn load(path: &Path) -> Result<LoadedConfig, i32> {
    LoadedConfig::load(path).map_err(|e| {
        eprintln!("{e}");
        if !path.exists() && path == Path::new(DEFAULT_CONFIG_PATH) {
            eprintln!("hint: run from the repository root or pass --spec PATH");
        }
        EXIT_INVALID
    })
}

/// `cogni validate`.
pub fn validate(args: &CommonArgs) -> i32 {
    let path = args.spec_path();
    let loaded = match load(&path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    match validate_files(&loaded) {
        Ok(summary) => {
            println!(
                "{}: ok ({} task(s), {} question(s), limiter {})",
                path.display(),
                summary.tasks,
                summary.questions,
                loaded.config.rate_limiter.mode
            );
            0
        }
        Err(problems) => {
            for problem in problems {
                eprintln!("{problem}");
            }
            EXIT_INVALID
        }
    }
}

/// `cogni eval FILE [--agent ID]`.
/// Without `--spec` and without `.cogni/config.yml`, the built-in defaults are used (the
/// repository root is the current directory).
pub async fn eval(args: &CommonArgs, questions_file: PathBuf, agent: Option<String>) -> i32 {
    let default_missing = args.spec.is_none() && !Path::new(DEFAULT_CONFIG_PATH).exists();
    let loaded = if default_missing {
        LoadedConfig::defaults(Path::new("."))
    } else {
        match load(&args.spec_path()) {
            Ok(loaded) => loaded,
            Err(code) => return code,
        }
    };
    match eval_task(&loaded, questions_file, agent) {
        Ok(task) => execute(args, &loaded, vec![task]).await,
        Err(e) => {
            eprintln!("{e}");
            e.exit_code()
        }
    }
}

/// `cogni run [TASK_ID ...]`.
pub async fn run(args: &CommonArgs, task_ids: &[String]) -> i32 {
    let loaded = match load(&args.spec_path()) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    match select_tasks(&loaded, task_ids) {
        Ok(tasks) => execute(args, &loaded, tasks).await,
        Err(e) => {
            eprintln!("{e}");
            e.exit_code()
        }
    }
}

async fn execute(
    args: &CommonArgs,
    loaded: &LoadedConfig,
    tasks: Vec<super::config::TaskConfig>,
) -> i32 {
    let output = match args.output() {
        Ok(output) => output,
        Err(message) => {
            eprintln!("{message}");
            return EXIT_INVALID;
        }
    };
    let options = RunOptions {
        output_dir: args.output_dir.clone(),
        output,
        ..RunOptions::default()
    };
    match run_tasks(loaded, tasks, &options).await {
        Ok(report) if report.has_error() => EXIT_FAILED,
        Ok(_) => 0,
        Err(e) => {
            eprintln!("{e}");
            e.exit_code()
        }
    }
}
