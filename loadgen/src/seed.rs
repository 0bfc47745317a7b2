//! `loadgen seed`: writes the deterministic book straight into a database, in large transactions.

use std::{
    io::IsTerminal as _,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use customer_context::{
    config::DatabaseSettings,
    store::{
        Store, redact,
        seed::{self, SeedCounts, SeedCustomer},
    },
};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc;

use crate::fixture::{Book, MAX_CUSTOMERS};

#[derive(Debug, clap::Args)]
pub struct SeedArgs {
    /// Database to fill (migrated first), e.g. sqlite:///tmp/cc-1m.db?mode=rwc. It must not already hold the
    /// same book (customer numbers are unique). A SQLite file nothing else has open is loaded fastest, and
    /// nothing else can open it until the load ends; one a server has open is loaded through its log.
    #[arg(long, env = "CUSTOMER_CONTEXT_DATABASE_URL")]
    pub database_url: String,

    /// How many customers to write (at most 50,000,000).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_CUSTOMERS))]
    pub customers: u64,

    /// Customers made ready at a time. Each batch is one transaction on PostgreSQL; on SQLite the whole load is
    /// one transaction.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub batch: u64,

    /// Seed of the generated data; `run` must be given the same one.
    #[arg(long, default_value_t = crate::DEFAULT_SEED)]
    pub seed: u64,
}

pub async fn seed(args: SeedArgs) -> anyhow::Result<()> {
    let url = redact(&args.database_url);
    let settings = DatabaseSettings::new(args.database_url.clone());
    migrate(&settings)
        .await
        .with_context(|| format!("cannot migrate {url}"))?;
    let (counts, elapsed) = fill(&settings, &args)
        .await
        .with_context(|| format!("cannot seed {url}"))?;
    let secs = elapsed.as_secs_f64().max(1e-9);
    println!(
        "seeded {url}: {} customers, {} requests, {} activities in {:.1} s ({} customers/s), seed {}",
        crate::report::thousands(counts.customers),
        crate::report::thousands(counts.requests),
        crate::report::thousands(counts.activities),
        secs,
        crate::report::thousands((counts.customers as f64 / secs) as u64),
        args.seed,
    );
    println!(
        "next: cargo run --release --bin loadgen -- run --seed {} --scenario health,get-customer,lookup",
        args.seed
    );
    Ok(())
}

/// Brings the database's schema up to date, and closes it: the load opens it again, on SQLite alone.
async fn migrate(settings: &DatabaseSettings) -> anyhow::Result<()> {
    let store = Store::connect(settings)
        .await
        .context("cannot open the database")?;
    let applied = store.migrate().await;
    store.close().await;
    let applied = applied?;
    if !applied.is_empty() {
        eprintln!("applied {} migration(s)", applied.len());
    }
    Ok(())
}

async fn fill(
    settings: &DatabaseSettings,
    args: &SeedArgs,
) -> anyhow::Result<(SeedCounts, Duration)> {
    let book = Book::new(args.seed, args.customers);
    let progress = progress_bar(args.customers);
    let started = Instant::now();

    // Batches are generated on a blocking thread while the previous one is written.
    let (batches, ready) = mpsc::channel::<Vec<SeedCustomer>>(2);
    let batch = args.batch;
    let total = args.customers;
    let generator = tokio::task::spawn_blocking(move || {
        let mut first = 0;
        while first < total {
            let last = (first + batch).min(total);
            let customers = (first..last).map(|i| book.customer(i)).collect();
            if batches.blocking_send(customers).is_err() {
                return;
            }
            first = last;
        }
    });

    let mut next_report = total / 10;
    let counts = seed::load(settings, ready, |written| {
        progress.inc(written.customers);
        let done = progress.position();
        if progress.is_hidden() && done >= next_report {
            eprintln!(
                "  {} / {} customers ({:.0} s)",
                crate::report::thousands(done),
                crate::report::thousands(total),
                started.elapsed().as_secs_f64()
            );
            next_report += total / 10;
        }
    })
    .await?;
    generator.await.context("the data generator failed")?;
    progress.finish_and_clear();
    Ok((counts, started.elapsed()))
}

fn progress_bar(total: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{elapsed_precise} [{wide_bar}] {human_pos}/{human_len} customers, {per_sec}, eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
