//! The `customer-context` command line: parses arguments and runs one command.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use customer_context::{
    config::{DatabaseSettings, LogFormat, Settings},
    error::Error,
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
                  customer-context migrate --database-url sqlite://customer-context.db?mode=rwc\n  \
                  customer-context export 0190a5e2-7c1d-7b3e-9f00-1a2b3c4d5e6f > customer.json"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// One variant per command; each runs in [`run`].
#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gRPC service (gRPC, gRPC-web, health, reflection); applies pending migrations first.
    Serve(Box<Settings>),
    /// Apply pending database migrations, print what was applied, and exit.
    Migrate(DatabaseSettings),
    /// Manage API keys: with `serve --auth keys` every call needs one. Changes take effect on running servers
    /// within --key-cache-ttl (default 5 s), without a restart.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Print everything held about one customer (profile, requests with comments, activities, notifications,
    /// merged customers and change history) as one JSON document on standard output, as ExportCustomer does.
    Export(ExportCustomer),
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key and print its secret on standard output. The secret is shown only this once; the database
    /// keeps only its SHA-256.
    Create(CreateKey),
    /// List every key (id, name, role, customer, created, revoked); never the secrets.
    List(DatabaseSettings),
    /// Revoke the key with this id, or every active key with this name.
    Revoke(RevokeKey),
}

#[derive(Debug, Args)]
struct CreateKey {
    /// The key's name: the acting agent of its calls (created_by, entered_by, comment author, watch changed_by).
    #[arg(long)]
    name: String,
    /// What the key may do.
    #[arg(long, value_parser = ["admin", "agent", "router", "portal"])]
    role: String,
    /// The customer a portal key is bound to (required for --role portal, refused otherwise).
    #[arg(long)]
    customer: Option<String>,
    #[command(flatten)]
    database: DatabaseSettings,
}

#[derive(Debug, Args)]
struct RevokeKey {
    /// A key id (from `keys list`) or a key name.
    name_or_id: String,
    #[command(flatten)]
    database: DatabaseSettings,
}

#[derive(Debug, Args)]
struct ExportCustomer {
    /// The customer's id.
    id: String,
    #[command(flatten)]
    database: DatabaseSettings,
}

/// mimalloc instead of the C library's allocator: the calls allocate and free many small buffers across threads
/// (messages, statements, rows), which glibc's malloc served with a tenth of the service's CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
            let traces = telemetry::init(settings.log_format, settings.otlp_endpoint.as_deref())?;
            let served = server::serve(*settings).await;
            // The spans of the last calls, whether the server stopped cleanly or not.
            if let Some(traces) = traces {
                traces.shutdown().await;
            }
            served
        }
        Command::Migrate(database) => {
            telemetry::init(LogFormat::Text, None)?;
            migrate(&database).await
        }
        Command::Keys(command) => {
            telemetry::init(LogFormat::Text, None)?;
            keys(command).await
        }
        Command::Export(export) => {
            telemetry::init(LogFormat::Text, None)?;
            export_customer(&export).await
        }
    }
}

/// `customer-context export ID`: reads the customer from the database (never writes, never migrates) and prints
/// the export document, pretty-printed.
async fn export_customer(export: &ExportCustomer) -> anyhow::Result<()> {
    let id = customer_context::domain::ids::parse_id(export.id.trim()).with_context(|| {
        format!(
            "{:?} is not a customer id (expected a UUID such as 0190a5e2-7c1d-7b3e-9f00-1a2b3c4d5e6f)",
            export.id
        )
    })?;
    let database = &export.database;
    let url = store::redact(&database.database_url);
    if let Some(path) = sqlite_file(&database.database_url)
        && !std::path::Path::new(path).exists()
    {
        anyhow::bail!("no database file {path} (from --database-url {url})");
    }
    let store = Store::connect(database)
        .await
        .with_context(|| format!("cannot open the database {url}"))?;
    let document = read_export(&store, &id).await;
    store.close().await;
    let document = document.with_context(|| format!("cannot export customer {id} from {url}"))?;
    let text = serde_json::to_string_pretty(&document).context("cannot write the document")?;
    println!("{text}");
    Ok(())
}

async fn read_export(store: &Store, id: &str) -> anyhow::Result<serde_json::Value> {
    let pending = store
        .pending_migrations()
        .await
        .context("cannot read the schema version")?;
    if !pending.is_empty() {
        anyhow::bail!(
            "the database schema is not up to date (pending: {}); run `customer-context migrate` first",
            pending.join(", ")
        );
    }
    customer_context::api::export_document(store, id)
        .await
        .map_err(|err| match err {
            Error::Merged {
                ref merged_into, ..
            } => {
                anyhow::anyhow!("{err}; export customer {merged_into} instead")
            }
            other => anyhow::Error::new(other),
        })
}

/// The file of an SQLite URL (`sqlite://FILE?...`), unless it names an in-memory database.
fn sqlite_file(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.starts_with(":memory:")).then_some(path)
}

/// `customer-context keys ...`: migrates the database (keys live in it) and runs the command.
async fn keys(command: KeysCommand) -> anyhow::Result<()> {
    let database = match &command {
        KeysCommand::Create(create) => &create.database,
        KeysCommand::List(database) => database,
        KeysCommand::Revoke(revoke) => &revoke.database,
    };
    let url = store::redact(&database.database_url);
    let store = Store::connect(database)
        .await
        .with_context(|| format!("cannot open the database {url}"))?;
    let result = run_keys(&store, &command).await;
    store.close().await;
    result
}

async fn run_keys(store: &Store, command: &KeysCommand) -> anyhow::Result<()> {
    store
        .migrate()
        .await
        .context("cannot migrate the database")?;
    match command {
        KeysCommand::Create(create) => {
            let new = store
                .create_key(&create.name, &create.role, create.customer.as_deref())
                .await
                .context("cannot create the key")?;
            // The secret alone on standard output, so scripts can capture it; the rest on standard error.
            println!("{}", new.secret);
            eprintln!(
                "created {} key {:?} (id {}){}. The secret above is shown only this once: store it now.",
                new.key.role,
                new.key.name,
                new.key.id,
                new.key
                    .customer_id
                    .map(|c| format!(" for customer {c}"))
                    .unwrap_or_default()
            );
        }
        KeysCommand::List(_) => {
            let keys = store.list_keys().await.context("cannot list the keys")?;
            println!(
                "{:<36}  {:<24}  {:<6}  {:<36}  {:<20}  REVOKED",
                "ID", "NAME", "ROLE", "CUSTOMER", "CREATED"
            );
            for key in keys {
                println!(
                    "{:<36}  {:<24}  {:<6}  {:<36}  {:<20}  {}",
                    key.id,
                    key.name,
                    key.role,
                    key.customer_id.as_deref().unwrap_or("-"),
                    time(key.create_time),
                    key.revoke_time.map_or_else(|| "-".to_owned(), time)
                );
            }
        }
        KeysCommand::Revoke(revoke) => {
            let revoked = store
                .revoke_key(&revoke.name_or_id)
                .await
                .context("cannot revoke the key")?;
            for key in revoked {
                println!("revoked {} key {:?} (id {})", key.role, key.name, key.id);
            }
        }
    }
    Ok(())
}

/// A time in microseconds as RFC 3339 (UTC, whole seconds).
fn time(micros: i64) -> String {
    let mut ts = customer_context::domain::time::to_timestamp(micros);
    ts.nanos = 0;
    ts.to_string()
}

/// `customer-context migrate`: applies pending migrations and prints their names.
async fn migrate(database: &DatabaseSettings) -> anyhow::Result<()> {
    let url = store::redact(&database.database_url);
    let store = Store::connect(database)
        .await
        .with_context(|| format!("cannot open the database {url}"))?;
    let applied = store
        .migrate()
        .await
        .with_context(|| format!("cannot migrate the database {url}"));
    store.close().await;
    let applied = applied?;
    if applied.is_empty() {
        println!("{url}: already up to date");
    } else {
        for name in &applied {
            println!("applied {name}");
        }
        println!("{url}: {} migration(s) applied", applied.len());
    }
    Ok(())
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
        if std::env::var_os("CUSTOMER_CONTEXT_GADGET_FRAME_ANCESTORS").is_none() {
            assert_eq!(settings.gadget_frame_ancestors, "'self'");
        }
        if std::env::var_os("CUSTOMER_CONTEXT_DATABASE_URL").is_none() {
            assert_eq!(
                settings.database.database_url,
                "sqlite://customer-context.db?mode=rwc"
            );
        }
    }

    #[test]
    fn keys_commands_take_the_database_options() {
        let cli = Cli::try_parse_from([
            "customer-context",
            "keys",
            "create",
            "--name",
            "portal-7",
            "--role",
            "portal",
            "--customer",
            "0190a5e2-7c1d-7b3e-9f00-1a2b3c4d5e6f",
            "--database-url",
            "sqlite://x.db?mode=rwc",
        ])
        .unwrap();
        let Command::Keys(KeysCommand::Create(create)) = cli.command else {
            panic!("expected keys create");
        };
        assert_eq!(create.role, "portal");
        assert_eq!(create.database.database_url, "sqlite://x.db?mode=rwc");
        assert!(
            Cli::try_parse_from([
                "customer-context",
                "keys",
                "create",
                "--name",
                "x",
                "--role",
                "root"
            ])
            .is_err()
        );
        let cli = Cli::try_parse_from(["customer-context", "keys", "revoke", "router-1"]).unwrap();
        assert!(
            matches!(cli.command, Command::Keys(KeysCommand::Revoke(r)) if r.name_or_id == "router-1")
        );
    }

    #[test]
    fn export_takes_an_id_and_the_database_options() {
        let cli = Cli::try_parse_from([
            "customer-context",
            "export",
            "0190a5e2-7c1d-7b3e-9f00-1a2b3c4d5e6f",
            "--database-url",
            "postgres://cc@db/cc",
            "--db-max-connections",
            "2",
        ])
        .unwrap();
        let Command::Export(export) = cli.command else {
            panic!("expected export");
        };
        assert_eq!(export.id, "0190a5e2-7c1d-7b3e-9f00-1a2b3c4d5e6f");
        assert_eq!(export.database.database_url, "postgres://cc@db/cc");
        assert_eq!(export.database.db_max_connections, 2);
        assert!(Cli::try_parse_from(["customer-context", "export"]).is_err());
    }

    #[test]
    fn sqlite_files_are_found_in_urls() {
        assert_eq!(sqlite_file("sqlite://cc.db?mode=rwc"), Some("cc.db"));
        assert_eq!(sqlite_file("sqlite:///tmp/cc.db"), Some("/tmp/cc.db"));
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://cc@db/cc"), None);
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
