//! The `sluice` command line: parses arguments, sets up logging, and hands
//! off to the daemon (`run`), the config checker (`validate`), or the API
//! client commands (`topics`, `groups`, `produce`, `consume`, in `cli.rs`;
//! `status`, `top`, `tap` and `schema` in their own modules).

/// mimalloc: the daemon allocates per record on its hot paths; glibc
/// malloc cost ~40 % of the apply path's CPU in a profile.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use sluice::{cli, daemon};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

const EXIT_CODES: &str = "\
Exit codes:
  0  success (for `run`: every source finished and the pipeline drained, or a clean stop)
  1  invalid configuration (every error is listed with file:line:column)
  2  usage error
  3  the pipeline failed while running (the error names the component), or its drain timed out
  4  could not start (data directory, listener, API security)";

#[derive(Parser)]
#[command(name = "sluice", version, about = "Tails logs and MySQL/MariaDB binlogs, queues, routes and forwards them", after_help = EXIT_CODES)]
struct Cli {
    /// Log output format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Pretty)]
    log_format: LogFormat,
    /// Log level or filter (e.g. `info`, `debug`, `sluice=debug,warn`).
    #[arg(long, global = true, default_value = "info", env = "SLUICE_LOG")]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Pretty,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline (several files merge into one).
    Run {
        /// Pipeline file(s).
        #[arg(
            short = 'c',
            long = "config",
            env = "SLUICE_CONFIG",
            value_delimiter = ',',
            required = true
        )]
        config: Vec<PathBuf>,
        /// Reload when a pipeline file changes, as on SIGHUP.
        #[arg(long)]
        watch_config: bool,
    },
    /// Check pipeline files without running them; lists every error.
    Validate {
        /// Pipeline file(s), merged as `run` would merge them.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Topics of a daemon's store: list, create, describe, delete.
    Topics {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[command(subcommand)]
        cmd: Option<cli::TopicsCmd>,
    },
    /// Consumer groups of a daemon's store: list, describe.
    Groups {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[command(subcommand)]
        cmd: Option<cli::GroupsCmd>,
    },
    /// Produce stdin lines as records (one per line).
    Produce {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[command(flatten)]
        args: cli::ProduceArgs,
    },
    /// Compare source and target tables chunk by chunk; exit 0 only when equal.
    Verify {
        /// Source database URL (mysql://…).
        #[arg(long)]
        source: String,
        /// Target database URL (mysql://… or postgres://…).
        #[arg(long)]
        target: String,
        /// Tables to compare, as `db.table` globs (repeatable; default all).
        #[arg(long = "tables")]
        tables: Vec<String>,
        /// Source database → target database (`shop=shop_replica`, repeatable).
        #[arg(long = "database-map")]
        database_map: Vec<String>,
        /// Re-check differing chunks after this many seconds (for live replication).
        #[arg(long, default_value_t = 0)]
        retry_secs: u64,
    },
    /// One-shot summary of a running daemon's components.
    Status {
        #[command(flatten)]
        api: cli::ApiArgs,
        /// Print the JSON of /api/v1/components instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Live table of a running daemon's components (q quits, s sorts).
    Top {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[command(flatten)]
        args: sluice::top::TopArgs,
    },
    /// Print a live sample of the records passing a component, one JSON object a line.
    Tap {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[command(flatten)]
        args: sluice::tap::TapArgs,
    },
    /// Print the JSON Schema of pipeline files (for editors).
    Schema,
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
    /// Consume records of a topic in a group and print them.
    Consume {
        #[command(flatten)]
        api: cli::ApiArgs,
        #[command(flatten)]
        args: cli::ConsumeArgs,
    },
}

fn init_logging(format: LogFormat, level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// `sluice verify`: 0 when equal, 1 when they differ, 2 on bad flags, 3 when
/// the comparison itself failed.
fn verify(
    source: String,
    target: String,
    tables: Vec<String>,
    database_map: Vec<String>,
    retry_secs: u64,
) -> ExitCode {
    let map = match sluice_mysql::verify::parse_database_map(&database_map) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("error: --database-map: {e}");
            return ExitCode::from(2);
        }
    };
    let mut opts = sluice_mysql::verify::VerifyOptions::new(source, target);
    opts.tables = tables;
    opts.database_map = map;
    opts.retry_secs = retry_secs;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(4);
        }
    };
    match runtime.block_on(sluice_mysql::verify::run_and_print(opts)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(3)
        }
    }
}

fn main() -> ExitCode {
    sluice::allocator::tune();
    let cli = Cli::parse();
    init_logging(cli.log_format, &cli.log_level);
    match cli.command {
        Command::Validate { files } => daemon::validate(&files),
        Command::Topics { api, cmd } => cli::topics(&api, cmd),
        Command::Groups { api, cmd } => cli::groups(&api, cmd),
        Command::Produce { api, args } => cli::produce(&api, args),
        Command::Consume { api, args } => cli::consume(&api, args),
        Command::Verify {
            source,
            target,
            tables,
            database_map,
            retry_secs,
        } => verify(source, target, tables, database_map, retry_secs),
        Command::Status { api, json } => sluice::status::status(&api, json),
        Command::Top { api, args } => sluice::top::top(&api, args),
        Command::Tap { api, args } => sluice::tap::tap(&api, args),
        Command::Schema => sluice::schema::print(),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "sluice", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Run {
            config,
            watch_config,
        } => {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the runtime: {e}");
                    return ExitCode::from(4);
                }
            };
            runtime.block_on(daemon::run(&config, watch_config))
        }
    }
}
