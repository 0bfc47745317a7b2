//! `loadgen`: seeds a database with a large, reproducible customer book and drives a running customer-context
//! server with benchmark scenarios (throughput and latency next to the gRPC health baseline) and watch fan-out.
//!
//! Build it in release mode: `cargo run --release --bin loadgen -- --help`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod delay;
mod fanout;
mod fixture;
mod report;
mod run;
mod seed;
mod server_metrics;
mod traffic;

/// The data seed used when none is given.
pub const DEFAULT_SEED: u64 = 42;

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    about = "Seeds a customer-context database and measures a running server.",
    arg_required_else_help = true,
    after_help = "Typical session (release builds; the server and loadgen share the machine, so read the \
                  ratio to the health baseline rather than absolute figures):\n  \
                  cargo run --release --bin loadgen -- seed --database-url 'sqlite:///tmp/cc-1m.db?mode=rwc' \
                  --customers 1000000\n  \
                  RUST_LOG=warn cargo run --release -- serve --database-url 'sqlite:///tmp/cc-1m.db?mode=rwc' \
                  --metrics-listen 127.0.0.1:9464 &\n  \
                  cargo run --release --bin loadgen -- run --scenario open-context,get-customer,lookup,search \
                  --concurrency 32 --duration 20s --metrics-url http://127.0.0.1:9464/metrics\n  \
                  cargo run --release --bin loadgen -- run --scenario open-context --rate 1000 --duration 20s\n  \
                  cargo run --release --bin loadgen -- fanout --watchers 1,100,1000,10000 --server-pid $(pgrep -n customer-cont)\n\n\
                  Scenarios: health (the baseline), open-context, get-customer, create-activity, search, lookup; \
                  see `loadgen run --help`."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fill a database directly (not through gRPC) with N generated customers: varied and accented names,
    /// companies, a unique US phone each, household phones shared by 2-3 customers (ambiguous callers),
    /// emails, chat handles, tags, and requests and activities for about a fifth of them. Migrates first.
    /// The data is a pure function of --seed, so `run` finds known, unknown and ambiguous callers by itself.
    Seed(seed::SeedArgs),
    /// Drive scenarios against a running server and report, per scenario: successful calls, errors by gRPC
    /// code, throughput, p50/p99/p99.9/max latency (HDR histogram), and the ratio to the health baseline run
    /// first with the same load.
    Run(run::RunArgs),
    /// Watch fan-out: for each N, open N watch streams on one customer, let the joins settle, then update the
    /// customer and measure commit-to-delivery latency at every watcher, and the server's memory per idle stream.
    Fanout(fanout::FanoutArgs),
    /// Forward TCP connections from --listen to --upstream, delaying every chunk by --delay each way: a database
    /// a network hop away (1 ms round trip = --delay 500us) on one machine, where the kernel may lack netem.
    DelayProxy(delay::DelayProxyArgs),
}

/// mimalloc, as the service uses: seeding makes and drops many small buffers (the generated records, their rows),
/// and the C library's malloc took a large share of both of its threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let result = match cli.command {
        Command::Seed(args) => seed::seed(args).await,
        Command::Run(args) => run::run(args).await,
        Command::Fanout(args) => fanout::fanout(args).await,
        Command::DelayProxy(args) => delay::delay_proxy(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_defaults_to_a_closed_loop_with_the_baseline() {
        let cli =
            Cli::try_parse_from(["loadgen", "run", "--scenario", "open-context,lookup"]).unwrap();
        let Command::Run(args) = cli.command else {
            panic!("expected run");
        };
        assert!(args.baseline);
        assert_eq!(args.concurrency, None);
        assert_eq!(args.scenario.len(), 2);
        assert_eq!(args.metrics_url, None, "server figures only when asked for");
        let Command::Run(args) = Cli::try_parse_from([
            "loadgen",
            "run",
            "--scenario",
            "open-context",
            "--metrics-url",
            "http://127.0.0.1:9464/metrics",
        ])
        .unwrap()
        .command
        else {
            panic!("expected run");
        };
        assert_eq!(
            args.metrics_url.as_deref(),
            Some("http://127.0.0.1:9464/metrics")
        );
        assert!(
            Cli::try_parse_from([
                "loadgen",
                "run",
                "--scenario",
                "health",
                "--rate",
                "5",
                "--concurrency",
                "2"
            ])
            .is_err(),
            "--rate and --concurrency exclude each other"
        );
    }

    #[test]
    fn several_servers_can_be_driven_at_once() {
        for argv in [
            &[
                "loadgen",
                "run",
                "--scenario",
                "health",
                "--target",
                "http://a:1,http://b:2",
            ][..],
            &[
                "loadgen",
                "run",
                "--scenario",
                "health",
                "--addr",
                "http://a:1",
                "--target",
                "http://b:2",
            ][..],
        ] {
            let Command::Run(args) = Cli::try_parse_from(argv).unwrap().command else {
                panic!("expected run");
            };
            assert_eq!(args.addr, ["http://a:1", "http://b:2"]);
        }
    }
}
