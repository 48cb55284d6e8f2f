//! `cogni`: evaluate an LLM agent on questions about a repository, with every LLM call
//! rate limited. Argument parsing only; the commands live in `ratelimiter::runner::cli`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use ratelimiter::runner::cli::{self, CommonArgs};

#[derive(Parser)]
#[command(
    name = "cogni",
    version,
    about = "Evaluate an LLM agent on repository questions"
)]
struct Cli {
    /// Config file (default: .cogni/config.yml).
    #[arg(long, global = true, value_name = "PATH")]
    spec: Option<PathBuf>,
    /// Print every agent step.
    #[arg(long, global = true)]
    verbose: bool,
    /// Also write every line (verbose ones included) to FILE.
    #[arg(long, global = true, value_name = "FILE")]
    log: Option<PathBuf>,
    /// Disable colours.
    #[arg(long, global = true)]
    no_color: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check the config and the files it names; non-zero exit on any problem.
    Validate,
    /// Evaluate one questions file.
    Eval {
        /// The questions file (YAML or JSON).
        questions_file: PathBuf,
        /// Agent id (default: default_agent).
        #[arg(long, value_name = "ID")]
        agent: Option<String>,
        /// Where results.json goes (default: repo.output_dir).
        #[arg(long, value_name = "DIR")]
        output_dir: Option<PathBuf>,
    },
    /// Run the configured tasks (all, or those named).
    Run {
        /// Task ids.
        task_ids: Vec<String>,
        /// Where results.json goes (default: repo.output_dir).
        #[arg(long, value_name = "DIR")]
        output_dir: Option<PathBuf>,
    },
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let mut common = CommonArgs {
        spec: cli.spec,
        verbose: cli.verbose,
        log: cli.log,
        no_color: cli.no_color,
        output_dir: None,
    };
    let code = match cli.command {
        Command::Validate => cli::validate(&common),
        Command::Eval {
            questions_file,
            agent,
            output_dir,
        } => {
            common.output_dir = output_dir;
            actix_rt::System::new().block_on(cli::eval(&common, questions_file, agent))
        }
        Command::Run {
            task_ids,
            output_dir,
        } => {
            common.output_dir = output_dir;
            actix_rt::System::new().block_on(cli::run(&common, &task_ids))
        }
    };
    std::process::exit(code);
}
