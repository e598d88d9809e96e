//! The `sluice` command line. Flags are parsed by clap, turned once into a validated
//! [`sluice::run::RunConfig`], and errors are mapped to exit codes here: 2 for usage and spec
//! errors, 1 for runtime errors.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use sluice::error::{PlanError, SpecError};
use sluice::plan::Plan;
use sluice::run::{run, RunConfig, RunSummary};
use sluice::source::plan_file;

#[cfg(not(feature = "system-allocator"))]
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
    /// Evaluate a spec's models offline: run it over a log in time order, then score every
    /// forecast's realized errors per model, horizon and series, and replay every router's
    /// decisions through simulated regional queues (see README, "Evaluation").
    #[command(after_help = "Example:\n  sluice eval dataflows/regional_load.toml\n  \
        sluice eval dataflows/regional_load.toml --input load=samples.csv --from 2026-01-08T00:00:00Z --format json --out eval/\n  \
        sluice eval dataflows/regional_routing.toml --truth data/regions_sample/events.parquet.truth.json --window 15m --out eval/")]
    Eval(EvalArgs),
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
    /// Write a deterministic synthetic event log (.parquet or .ndjson by extension; regions and services also .csv).
    #[command(
        after_help = "Example:\n  sluice generate learning --events 1000000 --seed 7 --out learning.parquet\n  \
        sluice generate learning --events 50000 --seed 42 --out events.parquet --context ctx/   (profiles, items)\n  \
        sluice generate evolving --events 20000 --out events.ndjson   (also writes events.ndjson.truth.json)\n  \
        sluice generate uploads --events 20000 --out uploads.parquet --context ctx/ --ranges 500   (geo, profiles, sensors, prices)\n  \
        sluice generate regions --regions 3 --events 20000 --span 3d --out events.csv --context ctx/   (load_samples, regions; events.csv.truth.json)\n  \
        sluice generate services --services 30 --order 2 --events 50000 --out calls.parquet   (also writes calls.parquet.truth.json)
        sluice generate nexmark --events 10000000 --out nexmark/   (person, auction and bid .parquet)"
    )]
    Generate {
        /// Scenario: learning, evolving, uploads, regions, services or nexmark (--out DIR: person, auction and bid tables).
        scenario: String,
        #[arg(long, default_value_t = 100_000)]
        events: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
        /// Also write the scenario's context tables to DIR: learning, uploads; regions (required): load samples and regions.
        #[arg(long, value_name = "DIR")]
        context: Option<PathBuf>,
        /// uploads: number of users [default: events / 20, at least 10].
        #[arg(long)]
        users: Option<usize>,
        /// uploads: number of geo ranges [default: 1000].
        #[arg(long)]
        ranges: Option<usize>,
        /// regions: number of regions, 2 to 24 [default: 3].
        #[arg(long)]
        regions: Option<usize>,
        /// regions, services: simulated time span, e.g. 3d or 36h [default: regions 7d; services 1d per million events, at least 1h].
        #[arg(long, value_name = "DURATION")]
        span: Option<String>,
        /// services: number of services, 20 to 50 [default: 30].
        #[arg(long)]
        services: Option<usize>,
        /// services: order of the hidden Markov chain, 1 or 2 [default: 2].
        #[arg(long)]
        order: Option<usize>,
    },
    /// Run a spec continuously over NDJSON lines sent to its tcp sources (see README, "Serving over TCP").
    #[command(
        after_help = "Example:\n  sluice serve dataflows/tcp/learning_stream.toml --listen 127.0.0.1:7070 --wal wal/ --out out/\n\n\
        Clients send one JSON event a line, optionally after {\"hello\":1,\"client\":\"ID\",\"source\":\"NAME\",\"token\":\"T\"};\n\
        the server answers {\"ack\":N} once the client's lines up to N are durable. SIGINT or SIGTERM\n\
        drains, writes the outputs and removes the log."
    )]
    Serve(ServeArgs),
    /// Stream an NDJSON or Parquet file to `sluice serve`, resending what was not acknowledged.
    #[command(
        after_help = "Example:\n  sluice send events.ndjson --to 127.0.0.1:7070 --rate 20000 --connections 4\n  \
        sluice send events.ndjson --to 127.0.0.1:7070 --latency-from 127.0.0.1:7072 --collection user_hourly_attempts"
    )]
    Send(SendArgs),
}

#[derive(Args)]
struct ServeArgs {
    spec: PathBuf,
    /// Address to accept clients on; anything but loopback requires --auth-token.
    #[arg(long)]
    listen: std::net::SocketAddr,
    /// Write-ahead log folder: acknowledged lines survive a crash and are replayed on restart.
    #[arg(long)]
    wal: Option<PathBuf>,
    /// Worker threads.
    #[arg(long, short = 'w', default_value_t = 1)]
    workers: usize,
    /// Write every output as Parquet under DIR/NAME/ (at shutdown, and every 1M updates).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Token clients must present in their hello line.
    #[arg(long)]
    auth_token: Option<String>,
    /// Override a file source's path: NAME=PATH (repeatable).
    #[arg(long = "input", value_parser = parse_input)]
    inputs: Vec<(String, PathBuf)>,
    /// A client silent for this long stops holding its source's watermark, and a source without
    /// events for this long has its watermark move with the wall clock (`off`: neither).
    #[arg(long, default_value = "5s")]
    idle_timeout: String,
    /// Longer lines become dead letters `too_large` (not buffered).
    #[arg(long, default_value_t = 1 << 20)]
    max_line_bytes: usize,
    /// Connections past their hello; further ones are refused.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// Connections still waiting for their hello (first line); a newer one displaces the oldest.
    #[arg(long, default_value_t = 256)]
    max_pending_connections: usize,
    /// A connection must send its hello (first line) this soon after connecting; bytes do not extend it.
    #[arg(long, default_value = "5s")]
    handshake_timeout: String,
    /// Distinct field names the server learns; lines adding more are dead letters `too_many_fields`.
    #[arg(long, default_value_t = 100_000)]
    max_field_names: usize,
    /// Close connections silent for this long.
    #[arg(long, default_value = "5m")]
    conn_idle_timeout: String,
    /// Bytes of lines queued for the workers over all connections (then sockets are not read).
    #[arg(long, default_value_t = 64 << 20)]
    queue_bytes: usize,
    /// Network threads.
    #[arg(long, default_value_t = 1)]
    io_threads: usize,
    /// Serve status, metrics, live collections and subscriptions over HTTP on this address.
    #[arg(long)]
    http: Option<std::net::SocketAddr>,
    /// Accept subscriptions ({"subscribe":"NAME"}) over TCP on this address.
    #[arg(long)]
    subscribe: Option<std::net::SocketAddr>,
    /// A live collection with more distinct rows drops its contents (lookups then fail).
    #[arg(long, default_value_t = 1_000_000)]
    live_rows: usize,
    /// Messages (changes, progress lines) a subscriber may leave unread before it is disconnected.
    #[arg(long, default_value_t = 100_000)]
    subscriber_queue: usize,
    /// With --wal and --out: write outputs up to their frontier and truncate the log this often
    /// (`off`: only at shutdown).
    #[arg(long, default_value = "10s")]
    checkpoint_interval: String,
    /// Write-ahead log segment size in bytes (checkpoints remove whole segments).
    #[arg(long, default_value_t = sluice::serve::wal::SEGMENT_BYTES)]
    wal_segment_bytes: u64,
    /// Forget a named client (its offset for resends) after this long without a hello or a line;
    /// it is then a new client (`off`: never).
    #[arg(long, default_value = "7d")]
    client_retention: String,
}

#[derive(Args)]
struct SendArgs {
    /// NDJSON file (one event a line) or Parquet file (each row becomes a JSON line).
    file: PathBuf,
    /// Server address.
    #[arg(long)]
    to: std::net::SocketAddr,
    /// Lines per second over all connections (default: as fast as acknowledgements allow).
    #[arg(long)]
    rate: Option<f64>,
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// TCP source to feed (default: the spec's first).
    #[arg(long)]
    source: Option<String>,
    /// The server's --auth-token.
    #[arg(long)]
    token: Option<String>,
    /// Client id prefix (connection c is ID-c); reuse it to resume an interrupted send.
    #[arg(long)]
    client: Option<String>,
    /// Most unacknowledged lines per connection.
    #[arg(long, default_value_t = 50_000)]
    window: u64,
    /// Give up after this long without reconnecting or an acknowledgement.
    #[arg(long, default_value = "60s")]
    patience: String,
    /// Print the report as one JSON object.
    #[arg(long)]
    json: bool,
    /// Measure send → output latency through the server's --subscribe address.
    #[arg(long, value_name = "SUBSCRIBE_ADDR", requires = "collection")]
    latency_from: Option<std::net::SocketAddr>,
    /// The output whose progress times the lines (with --latency-from).
    #[arg(long, requires = "latency_from")]
    collection: Option<String>,
    /// The lines' event-time field (with --latency-from).
    #[arg(long, default_value = "event_time")]
    time_field: String,
    /// Unit of numeric event times: ms, s, us or ns (with --latency-from).
    #[arg(long, default_value = "ms")]
    time_unit: String,
    /// After the last acknowledgement, how long to wait for progress to pass the lines left.
    #[arg(long, default_value = "2s")]
    latency_grace: String,
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

#[derive(Args)]
struct EvalArgs {
    spec: PathBuf,
    /// Override a source's path: NAME=PATH (repeatable).
    #[arg(long = "input", value_parser = parse_input)]
    inputs: Vec<(String, PathBuf)>,
    /// Score only targets at or after this time (RFC 3339, or epoch milliseconds).
    #[arg(long, value_parser = parse_time_arg)]
    from: Option<i64>,
    /// Score only targets before this time.
    #[arg(long, value_parser = parse_time_arg)]
    until: Option<i64>,
    /// Write the metrics tables as Parquet under DIR/NAME_metrics/ (and the spec's outputs under DIR/NAME/).
    #[arg(long)]
    out: Option<PathBuf>,
    /// `table` (default) or `json` (one object per metrics row).
    #[arg(long, default_value = "table")]
    format: String,
    /// Worker threads.
    #[arg(long, short = 'w', default_value_t = 1)]
    workers: usize,
    /// Routers: the scenario truth (capacities, spikes, outage) [default: EVENTS_FILE.truth.json].
    #[arg(long, value_name = "FILE")]
    truth: Option<PathBuf>,
    /// Routers: the simulated queues' window, also the least-loaded baseline's trailing window.
    #[arg(long, value_name = "DURATION", default_value = "15m")]
    window: String,
    /// Routers: imbalance is scored this long after the start, and this long after the outage.
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    settle: String,
}

fn parse_time_arg(s: &str) -> Result<i64, String> {
    s.parse::<i64>()
        .ok()
        .or_else(|| sluice::value::parse_time(s))
        .ok_or_else(|| format!("`{s}` is not a time: RFC 3339 (2026-01-08T00:00:00Z) or epoch milliseconds"))
}

fn parse_input(s: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = s.split_once('=').ok_or_else(|| format!("`{s}` is not NAME=PATH"))?;
    Ok((name.to_string(), PathBuf::from(path)))
}

fn main() -> ExitCode {
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
    // Batch commands keep freed memory for reuse; a server keeps mimalloc's default, which
    // hands idle memory back to the OS (its RSS is bounded by tests/integration/serve_memory.rs).
    if !matches!(cli.command, Command::Serve(_)) {
        sluice::run::tune_allocator();
    }
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

fn execute(cli: Cli) -> anyhow::Result<()> {
    let progress = !cli.quiet;
    match cli.command {
        Command::Check { spec, plan } => {
            let p = plan_checked(&spec, &[])?;
            if plan {
                println!("{}", serde_json::to_string_pretty(&p)?);
            } else {
                println!(
                    "{}: ok ({} sources, {} stages, {} outputs)",
                    spec.display(),
                    p.sources.len(),
                    p.stages.len(),
                    p.outputs().len()
                );
            }
        }
        Command::Schema(cmd) => schema_command(cmd)?,
        Command::Eval(args) => eval_command(args, progress)?,
        Command::Serve(args) => serve_command(args)?,
        Command::Send(args) => send_command(args)?,
        Command::Run(args) => {
            let mut plan = plan_checked(&args.spec, &args.inputs)?;
            if let Some(dir) = &args.registry {
                if plan.schemas().next().is_none() {
                    return Err(UsageError(format!(
                        "{} has no [schemas] stage to use --registry",
                        args.spec.display()
                    ))
                    .into());
                }
                for stage in plan.schemas_mut() {
                    stage.registry_dir = Some(dir.clone());
                }
            }
            let config = run_config(&args, progress)?;
            let summary = run(&plan, &config)?;
            print_summary(&summary, &plan, &config);
        }
        Command::Generate {
            scenario,
            events,
            seed,
            out,
            context,
            users,
            ranges,
            regions,
            span,
            services,
            order,
        } => {
            let span_ms = match span {
                Some(text) => Some(
                    sluice::plan::duration::parse_duration(&text)
                        .map_err(|e| anyhow::Error::from(UsageError(format!("--span: {e}"))))?,
                ),
                None => None,
            };
            let config = sluice::generate::GenerateConfig {
                context,
                users,
                ranges,
                regions,
                span_ms,
                services,
                order,
                progress,
                ..sluice::generate::GenerateConfig::new(&scenario, events, seed, &out)
            };
            let s = sluice::generate::generate_with(&config).map_err(|e| match e.is_usage() {
                true => anyhow::Error::from(UsageError(e.to_string())),
                false => e.into(),
            })?;
            println!(
                "wrote {} events to {} ({} late, {} duplicates)",
                s.events,
                out.display(),
                s.late,
                s.duplicates
            );
            for table in &s.context {
                println!("wrote {} rows to {}", table.rows, table.path.display());
            }
        }
    }
    Ok(())
}

/// Plans a spec and checks its fields against its sources; spec errors keep their type, so
/// that they exit with 2.
fn plan_checked(spec: &std::path::Path, inputs: &[(String, PathBuf)]) -> anyhow::Result<Plan> {
    plan_file(spec, inputs).map_err(|e| match e {
        PlanError::Spec(e) => anyhow::Error::from(e),
        PlanError::Source(e) => anyhow::anyhow!(e),
    })
}

fn duration_flag(flag: &str, text: &str) -> anyhow::Result<std::time::Duration> {
    sluice::plan::duration::parse_duration(text)
        .map(std::time::Duration::from_millis)
        .map_err(|e| UsageError(format!("--{flag} {text}: {e}")).into())
}

fn serve_command(args: ServeArgs) -> anyhow::Result<()> {
    use sluice::serve::{serve_with, Limits, ServeConfig};
    use std::io::Write;
    let plan = plan_checked(&args.spec, &args.inputs)?;
    let idle_timeout = match args.idle_timeout.as_str() {
        "off" | "none" => None,
        text => Some(duration_flag("idle-timeout", text)?),
    };
    let config = ServeConfig {
        listen: args.listen,
        wal_dir: args.wal,
        workers: args.workers,
        out_dir: args.out,
        auth_token: args.auth_token,
        idle_timeout,
        io_threads: args.io_threads,
        http: args.http,
        subscribe: args.subscribe,
        live_rows: args.live_rows,
        subscriber_queue: args.subscriber_queue.max(1),
        checkpoint_interval: match args.checkpoint_interval.as_str() {
            "off" | "none" => None,
            text => Some(duration_flag("checkpoint-interval", text)?),
        },
        wal_segment_bytes: args.wal_segment_bytes,
        client_retention: match args.client_retention.as_str() {
            "off" | "none" => None,
            text => Some(duration_flag("client-retention", text)?),
        },
        limits: Limits {
            max_line_bytes: args.max_line_bytes,
            max_connections: args.max_connections,
            max_pending_connections: args.max_pending_connections,
            handshake_timeout: duration_flag("handshake-timeout", &args.handshake_timeout)?,
            max_field_names: args.max_field_names,
            conn_idle_timeout: duration_flag("conn-idle-timeout", &args.conn_idle_timeout)?,
            queue_bytes: args.queue_bytes,
            ..Limits::default()
        },
    };
    config.validate(&plan).map_err(|e| UsageError(e.to_string()))?;
    let summary = serve_with(&plan, &config, |bound| {
        println!("listening on {}", bound.listen);
        if let Some(addr) = bound.http {
            println!("http on {addr}");
        }
        if let Some(addr) = bound.subscribe {
            println!("subscribe on {addr}");
        }
        let _ = std::io::stdout().flush();
    })?;
    let mut out = std::io::stdout().lock();
    let secs = summary.elapsed.as_secs_f64().max(1e-9);
    let _ = writeln!(
        out,
        "served {} events in {:.2}s on {} workers; log replayed {} records{}",
        summary.events,
        secs,
        summary.workers,
        summary.replayed.records,
        if summary.wal_removed { "; log removed" } else { "" }
    );
    let _ = writeln!(out, "  {}", summary.counters);
    for o in &summary.outputs {
        let place = match &config.out_dir {
            Some(dir) => format!(" -> {}", dir.join(&o.name).display()),
            None => String::new(),
        };
        let _ = writeln!(out, "  {:<28} {:>10} updates {:>10} rows{place}", o.name, o.rows, o.net);
    }
    let reasons: Vec<String> = summary.dead_letters.iter().map(|(r, n)| format!("{r}: {n}")).collect();
    let _ = writeln!(out, "  dead letters: {}", reasons.join(", "));
    let _ = out.flush();
    Ok(())
}

fn send_command(args: SendArgs) -> anyhow::Result<()> {
    use sluice::serve::send::{send, LatencyConfig, Lines, SendConfig};
    if args.connections == 0 {
        return Err(UsageError("--connections must be at least 1".into()).into());
    }
    if args.rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
        return Err(UsageError("--rate must be positive".into()).into());
    }
    let time_unit_ms = match args.time_unit.as_str() {
        "ms" => 1.0,
        "s" => 1_000.0,
        "us" => 0.001,
        "ns" => 0.000_001,
        other => return Err(UsageError(format!("--time-unit {other}: use ms, s, us or ns")).into()),
    };
    let latency = match (args.latency_from, args.collection) {
        (Some(from), Some(collection)) => Some(LatencyConfig {
            from,
            collection,
            token: args.token.clone(),
            time_field: args.time_field,
            time_unit_ms,
            grace: duration_flag("latency-grace", &args.latency_grace)?,
        }),
        _ => None,
    };
    let lines = std::sync::Arc::new(Lines::read(&args.file)?);
    let mut config = SendConfig {
        to: args.to,
        rate: args.rate,
        connections: args.connections,
        source: args.source,
        token: args.token,
        window: args.window.max(1),
        patience: duration_flag("patience", &args.patience)?,
        latency,
        ..SendConfig::default()
    };
    if let Some(client) = args.client {
        if !sluice::serve::protocol::valid_client_id(&format!("{client}-0")) {
            return Err(UsageError(format!("--client `{client}`: use A-Z a-z 0-9 _ . : -")).into());
        }
        config.client = client;
    }
    let report = send(lines, &config)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{report}");
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
fn eval_command(args: EvalArgs, progress: bool) -> anyhow::Result<()> {
    if !["table", "json"].contains(&args.format.as_str()) {
        return Err(UsageError(format!("--format is `table` or `json`, not `{}`", args.format)).into());
    }
    if args.workers == 0 {
        return Err(UsageError("--workers must be at least 1".into()).into());
    }
    let plan = plan_checked(&args.spec, &args.inputs)?;
    let config = RunConfig {
        workers: args.workers,
        out_dir: args.out.clone(),
        progress,
        ..RunConfig::default()
    };
    let window = duration_flag("window", &args.window)?.as_millis() as i64;
    if window == 0 {
        return Err(UsageError("--window must be positive".into()).into());
    }
    if let (Some(from), Some(until)) = (args.from, args.until) {
        if from >= until {
            return Err(UsageError("--from must be before --until: the range scores nothing".into()).into());
        }
    }
    let options = sluice::eval::EvalOptions {
        from: args.from,
        until: args.until,
        truth: args.truth.clone(),
        routing: sluice::eval::routing::RoutingOptions {
            window_ms: window,
            settle_ms: duration_flag("settle", &args.settle)?.as_millis() as i64,
        },
        services: Default::default(),
    };
    let evaluations = sluice::eval::evaluate(&plan, &config, &options)?;
    for e in &evaluations {
        if args.format == "json" {
            for row in &e.rows {
                let object: serde_json::Map<String, serde_json::Value> =
                    e.columns.iter().cloned().zip(row.iter().map(|v| v.to_json())).collect();
                println!("{}", serde_json::json!({ "table": e.name, "row": object }));
            }
        } else {
            print_table(e);
        }
        if let (Some(dir), false) = (&args.out, e.rows.is_empty()) {
            let folder = dir.join(&e.name);
            std::fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
            let batch = sluice::format::arrow_write::rows_to_batch(&e.columns, &e.rows)?;
            let path = folder.join("part-00000.parquet");
            let mut sink = sluice::format::arrow_write::ParquetSink::open(&path, batch.schema())?;
            sink.write(&batch)?;
            sink.close()?;
        }
    }
    Ok(())
}

/// An evaluation as a terminal table: its headline lines, then one line per row.
fn print_table(e: &sluice::eval::Evaluation) {
    println!("{}", e.name);
    for line in &e.summary {
        println!("  {line}");
    }
    if e.detail {
        println!(
            "  ({} rows: --out DIR writes them, --format json prints them)",
            e.rows.len()
        );
        return;
    }
    if e.rows.is_empty() {
        return;
    }
    let widths: Vec<usize> = e.columns.iter().map(|c| c.len().max(8)).collect();
    let header: Vec<String> = e.columns.iter().zip(&widths).map(|(c, w)| format!("{c:>w$}")).collect();
    println!("  {}", header.join(" "));
    for row in &e.rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(v, w)| match v {
                sluice::value::Value::Float(f) => format!("{:>w$.3}", f.get()),
                other => format!("{:>w$}", other.to_string()),
            })
            .collect();
        println!("  {}", cells.join(" "));
    }
}

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
        collect_only: None,
        progress: progress && std::io::IsTerminal::is_terminal(&std::io::stderr()),
    })
}

fn print_summary(s: &RunSummary, plan: &Plan, config: &RunConfig) {
    use std::io::Write;
    // A closed stdout (`| head`) is not an error worth a panic.
    let _ = write_summary(&mut std::io::stdout().lock(), s, plan, config).and_then(|_| std::io::stdout().flush());
}

fn write_summary(
    out: &mut impl std::io::Write,
    s: &RunSummary,
    plan: &Plan,
    config: &RunConfig,
) -> std::io::Result<()> {
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
    writeln!(out, "  late events: {}; dead letters: {total}{reasons}", s.late())?;
    write_counters(out, &s.counters)?;
    // Many late events usually mean `allowed_lateness` is too small for the data.
    let mut advised = false;
    for (source, lateness) in plan.sources.iter().zip(&s.lateness) {
        if let Some(advice) = lateness.advice(source.allowed_lateness_ms) {
            writeln!(out, "  {}", advice.describe(&source.name, source.allowed_lateness_ms))?;
            advised = true;
        }
    }
    if advised && config.processes > 1 {
        writeln!(out, "    (counted over this process's splits of the sources)")?;
    }
    Ok(())
}

/// The enrichment counters, with each context stream's hit ratio.
fn write_counters(
    out: &mut impl std::io::Write,
    counters: &std::collections::BTreeMap<(String, String), i64>,
) -> std::io::Result<()> {
    let get = |metric: &str, label: &str| {
        counters
            .get(&(metric.to_string(), label.to_string()))
            .copied()
            .unwrap_or(0)
    };
    let mut sources: Vec<&String> = counters
        .keys()
        .filter(|(m, _)| m == "events_processed")
        .map(|(_, l)| l)
        .collect();
    sources.sort();
    for source in sources {
        writeln!(
            out,
            "  {source}: {} processed, {} enriched, {} filtered, {} deduplicated",
            get("events_processed", source),
            get("events_enriched", source),
            get("events_filtered", source),
            get("events_deduplicated", source),
        )?;
    }
    for ((_, label), hits) in counters.iter().filter(|((m, _), _)| m == "context_hits") {
        let misses = get("context_misses", label);
        let ratio = *hits as f64 / (*hits + misses).max(1) as f64;
        writeln!(
            out,
            "  context {label}: hit ratio {:.3} ({hits} hits, {misses} misses, {} stale)",
            ratio,
            get("context_stale", label)
        )?;
    }
    Ok(())
}
