//! The `sluice` command line. Flags are parsed by clap, turned once into a validated
//! [`sluice::run::RunConfig`], and errors are mapped to exit codes here: 2 for usage and spec
//! errors, 1 for runtime errors.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use sluice::error::SpecError;
use sluice::plan::plan_file;
use sluice::run::{run, RunConfig, RunSummary};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Incremental event processing on timely and differential dataflow"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Hide progress bars.
    #[arg(long, short, global = true)]
    quiet: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline spec over its sources.
    #[command(
        after_help = "Example:\n  sluice run dataflows/learning_analytics.toml --workers 2 --out out/\n  \
        sluice run dataflows/learning_analytics.toml --input events=big.parquet\n\n\
        Cluster mode (timely's own flags): run the same command on each host with\n  \
        -n PROCESSES -p INDEX [-h HOSTFILE] (-w is --workers, threads per process)."
    )]
    Run(RunArgs),
    /// Validate a spec; with --plan, print the validated plan.
    #[command(after_help = "Example:\n  sluice check dataflows/learning_analytics.toml --plan")]
    Check {
        spec: PathBuf,
        /// Print the plan as JSON.
        #[arg(long)]
        plan: bool,
    },
    /// Infer schemas from files, or compare two schemas.
    #[command(
        subcommand,
        after_help = "Example:\n  sluice schema infer data/evolving_sample.ndjson --format table\n  sluice schema diff old.json new.json"
    )]
    Schema(SchemaCommand),
    /// Write a deterministic synthetic event log (.parquet or .ndjson by extension).
    #[command(
        after_help = "Example:\n  sluice generate learning --events 1000000 --seed 7 --out learning.parquet\n  sluice generate evolving --events 20000 --out events.ndjson   (also writes events.ndjson.truth.json)"
    )]
    Generate {
        /// Scenario: learning or evolving.
        scenario: String,
        #[arg(long, default_value_t = 100_000)]
        events: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum SchemaCommand {
    /// Print the inferred schema of each event type in Parquet or NDJSON files.
    #[command(after_help = "Example:\n  sluice schema infer data/evolving_sample.ndjson --format table")]
    Infer {
        files: Vec<PathBuf>,
        /// `json` (JSON Schema documents) or `table`.
        #[arg(long, default_value = "json")]
        format: String,
        #[arg(long, default_value = "event_time")]
        time_field: String,
        #[arg(long, default_value = "event_type")]
        type_field: String,
    },
    /// Compare two JSON Schema files: drift score, changed fields, and which compatibility modes accept the change.
    #[command(after_help = "Example:\n  sluice schema diff registry/orders/v1.json registry/orders/v2.json")]
    Diff { old: PathBuf, new: PathBuf },
}

#[derive(Args)]
#[command(disable_help_flag = true)]
struct RunArgs {
    spec: PathBuf,
    /// Worker threads per process (timely's -w).
    #[arg(long, short = 'w', default_value_t = 1)]
    workers: usize,
    /// Write every output as Parquet under DIR/NAME/.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Override a source's path: NAME=PATH (repeatable).
    #[arg(long = "input", value_parser = parse_input)]
    inputs: Vec<(String, PathBuf)>,
    /// Number of processes in a cluster (timely's -n).
    #[arg(long, short = 'n', default_value_t = 1)]
    processes: usize,
    /// This process's index in the cluster (timely's -p).
    #[arg(long, short = 'p', default_value_t = 0)]
    process: usize,
    /// File of process addresses, one `host:port` a line (timely's -h).
    #[arg(long, short = 'h')]
    hostfile: Option<PathBuf>,
    /// Load the schema registry from DIR at start-up and save it there at the end.
    #[arg(long)]
    registry: Option<PathBuf>,
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
}

fn parse_input(s: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = s.split_once('=').ok_or_else(|| format!("`{s}` is not NAME=PATH"))?;
    Ok((name.to_string(), PathBuf::from(path)))
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if e.downcast_ref::<SpecError>().is_some() || e.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(String);

/// Keeps freed memory in mimalloc's arenas instead of handing it back to the OS after 10 ms:
/// decoding and exchanging batches frees and reallocates the same amount over and over, and
/// returning it made the kernel zero fresh pages for a quarter of the run time. An explicit
/// `MIMALLOC_PURGE_DELAY` wins. mimalloc reads the option on first use, after this runs.
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        std::env::set_var("MIMALLOC_PURGE_DELAY", "-1");
    }
}

fn execute(cli: Cli) -> anyhow::Result<()> {
    let progress = !cli.quiet;
    match cli.command {
        Command::Check { spec, plan } => {
            let p = plan_file(&spec, &[])?;
            if plan {
                println!("{}", serde_json::to_string_pretty(&p)?);
            } else {
                println!(
                    "{}: ok ({} sources, {} aggregates)",
                    spec.display(),
                    p.sources.len(),
                    p.aggregates.len()
                );
            }
        }
        Command::Schema(cmd) => schema_command(cmd)?,
        Command::Run(args) => {
            let mut plan = plan_file(&args.spec, &args.inputs)?;
            if let Some(dir) = &args.registry {
                if plan.schemas.is_empty() {
                    return Err(UsageError(format!(
                        "{} has no [schemas] stage to use --registry",
                        args.spec.display()
                    ))
                    .into());
                }
                for stage in &mut plan.schemas {
                    stage.registry_dir = Some(dir.clone());
                }
            }
            let config = run_config(&args, progress)?;
            let summary = run(&plan, &config)?;
            print_summary(&summary, &config);
        }
        Command::Generate {
            scenario,
            events,
            seed,
            out,
        } => {
            let s = sluice::generate::generate(&scenario, events, seed, &out, progress)?;
            println!(
                "wrote {} events to {} ({} late, {} duplicates)",
                s.events,
                out.display(),
                s.late,
                s.duplicates
            );
        }
    }
    Ok(())
}

fn schema_command(cmd: SchemaCommand) -> anyhow::Result<()> {
    use sluice::schema::{diff_report, infer_files, Schema};
    match cmd {
        SchemaCommand::Infer {
            files,
            format,
            time_field,
            type_field,
        } => {
            if files.is_empty() {
                return Err(UsageError("name at least one file".into()).into());
            }
            let by_type = infer_files(&files, &time_field, &type_field)?;
            match format.as_str() {
                "json" => {
                    let docs: serde_json::Map<String, serde_json::Value> = by_type
                        .iter()
                        .map(|(t, inf)| (t.clone(), inf.schema().to_json_schema()))
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&docs)?);
                }
                "table" => {
                    for (t, inf) in &by_type {
                        println!("## {t} ({} events)\n{}", inf.events, inf.to_table());
                    }
                }
                other => return Err(UsageError(format!("unknown format `{other}`: use json or table")).into()),
            }
        }
        SchemaCommand::Diff { old, new } => {
            let read = |p: &PathBuf| -> anyhow::Result<Schema> {
                let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
                let doc: serde_json::Value =
                    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", p.display()))?;
                Schema::from_json_schema(&doc)
                    .with_context(|| format!("{} is not a JSON Schema sluice reads", p.display()))
            };
            println!("{}", diff_report(&read(&old)?, &read(&new)?));
        }
    }
    Ok(())
}

/// Turns raw flags into the validated run configuration.
fn run_config(args: &RunArgs, progress: bool) -> anyhow::Result<RunConfig> {
    if args.workers == 0 {
        return Err(UsageError("--workers must be at least 1".into()).into());
    }
    if args.processes == 0 || args.process >= args.processes {
        return Err(UsageError(format!(
            "--process {} must be below --processes {}",
            args.process, args.processes
        ))
        .into());
    }
    let addresses = match &args.hostfile {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading hostfile {}", path.display()))?;
            let hosts: Vec<String> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect();
            if hosts.len() < args.processes {
                return Err(UsageError(format!(
                    "{} lists {} hosts for {} processes",
                    path.display(),
                    hosts.len(),
                    args.processes
                ))
                .into());
            }
            hosts
        }
        None => Vec::new(),
    };
    Ok(RunConfig {
        workers: args.workers,
        processes: args.processes,
        process: args.process,
        addresses,
        out_dir: args.out.clone(),
        collect: false,
        progress: progress && std::io::IsTerminal::is_terminal(&std::io::stderr()),
    })
}

fn print_summary(s: &RunSummary, config: &RunConfig) {
    use std::io::Write;
    // A closed stdout (`| head`) is not an error worth a panic.
    let _ = write_summary(&mut std::io::stdout().lock(), s, config).and_then(|_| std::io::stdout().flush());
}

fn write_summary(out: &mut impl std::io::Write, s: &RunSummary, config: &RunConfig) -> std::io::Result<()> {
    let secs = s.elapsed.as_secs_f64().max(1e-9);
    writeln!(
        out,
        "read {} events in {:.2}s ({:.0} events/s) on {} workers",
        s.events_read,
        secs,
        s.events_read as f64 / secs,
        s.workers
    )?;
    for o in &s.outputs {
        let place = match &config.out_dir {
            Some(dir) => format!(" -> {}", dir.join(&o.name).display()),
            None => String::new(),
        };
        writeln!(out, "  {:<28} {:>10} updates {:>10} rows{place}", o.name, o.rows, o.net)?;
    }
    let total: i64 = s.dead_letters.values().sum();
    let reasons: Vec<String> = s.dead_letters.iter().map(|(r, n)| format!("{r}: {n}")).collect();
    let reasons = if reasons.is_empty() {
        String::new()
    } else {
        format!(" ({})", reasons.join(", "))
    };
    writeln!(out, "  late events: {}; dead letters: {total}{reasons}", s.late())
}
