//! The `customer-context` command line: parses arguments and runs one command.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use customer_context::{
    config::{DatabaseSettings, LogFormat, Settings},
    server,
    store::{self, Store},
    telemetry,
};

#[derive(Debug, Parser)]
#[command(
    name = "customer-context",
    version,
    about,
    propagate_version = true,
    arg_required_else_help = true,
    after_help = "Every option can also be set with a CUSTOMER_CONTEXT_* environment variable (shown in each \
                  command's --help). Log verbosity follows RUST_LOG (default: info).\n\n\
                  Examples:\n  \
                  customer-context serve\n  \
                  customer-context serve --listen 0.0.0.0:50051 --database-url postgres://cc@db/cc\n  \
                  customer-context migrate --database-url sqlite://customer-context.db?mode=rwc"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// One variant per command; each runs in [`run`].
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gRPC service (gRPC, gRPC-web, health, reflection); applies pending migrations first.
    Serve(Settings),
    /// Apply pending database migrations, print what was applied, and exit.
    Migrate(DatabaseSettings),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line: the error and its causes, outermost first.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(settings) => {
            telemetry::init(settings.log_format);
            server::serve(settings).await
        }
        Command::Migrate(database) => {
            telemetry::init(LogFormat::Text);
            migrate(&database).await
        }
    }
}

/// `customer-context migrate`: applies pending migrations and prints their names.
async fn migrate(database: &DatabaseSettings) -> anyhow::Result<()> {
    let url = store::redact(&database.database_url);
    let store = Store::connect(database)
        .await
        .with_context(|| format!("cannot open the database {url}"))?;
    let pending = pending_migrations(database).await;
    let migrated = store
        .migrate()
        .await
        .with_context(|| format!("cannot migrate the database {url}"));
    store.close().await;
    migrated?;
    match pending {
        Ok(names) if names.is_empty() => println!("{url}: already up to date"),
        Ok(names) => {
            for name in &names {
                println!("applied {name}");
            }
            println!("{url}: {} migration(s) applied", names.len());
        }
        Err(err) => println!("{url}: up to date (could not list the applied migrations: {err:#})"),
    }
    Ok(())
}

/// Names of the migrations not yet applied, read over a connection of its own.
async fn pending_migrations(database: &DatabaseSettings) -> anyhow::Result<Vec<String>> {
    use sea_orm_migration::MigratorTrait as _;

    let mut options = sea_orm::ConnectOptions::new(database.database_url.clone());
    options.max_connections(1).sqlx_logging(false);
    let connection = sea_orm::Database::connect(options).await?;
    let pending = store::migration::Migrator::get_pending_migrations(&connection).await;
    let _ = connection.close().await;
    Ok(pending?
        .iter()
        .map(|migration| migration.name().to_owned())
        .collect())
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
    fn serve_defaults_match_the_documented_names() {
        let cli = Cli::try_parse_from(["customer-context", "serve"]).unwrap();
        let Command::Serve(settings) = cli.command else {
            panic!("expected serve");
        };
        if std::env::var_os("CUSTOMER_CONTEXT_LISTEN").is_none() {
            assert_eq!(settings.listen.to_string(), "127.0.0.1:50051");
        }
        if std::env::var_os("CUSTOMER_CONTEXT_DATABASE_URL").is_none() {
            assert_eq!(
                settings.database.database_url,
                "sqlite://customer-context.db?mode=rwc"
            );
        }
    }

    #[test]
    fn migrate_takes_a_database_url() {
        let cli = Cli::try_parse_from([
            "customer-context",
            "migrate",
            "--database-url",
            "sqlite://x.db?mode=rwc",
        ])
        .unwrap();
        let Command::Migrate(database) = cli.command else {
            panic!("expected migrate");
        };
        assert_eq!(database.database_url, "sqlite://x.db?mode=rwc");
    }
}
