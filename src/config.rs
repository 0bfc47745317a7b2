//! Settings of the service: command-line flags, each also readable from a `CUSTOMER_CONTEXT_*` environment
//! variable, validated once at start.

use std::{net::SocketAddr, time::Duration};

use clap::{Args, ValueEnum};

/// How log lines are written to standard error.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// When SQLite makes a commit durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum SqliteSynchronous {
    /// Commits survive a crash or kill of the service (WAL in the OS cache); a power cut or OS crash may drop
    /// the last few commits, never corrupt the file.
    #[default]
    Normal,
    /// Every commit is also flushed to disk before it is acknowledged: survives power loss, costs one fsync
    /// per write.
    Full,
}

/// Where the data lives. Shared by every command that opens the database.
#[derive(Clone, Debug, Args)]
pub struct DatabaseSettings {
    /// Database URL: `sqlite://FILE?mode=rwc` (embedded, the default) or `postgres://USER@HOST/DB`.
    #[arg(
        long,
        env = "CUSTOMER_CONTEXT_DATABASE_URL",
        default_value = "sqlite://customer-context.db?mode=rwc"
    )]
    pub database_url: String,

    /// Most database connections the service opens (reads; SQLite writes always use one connection).
    #[arg(
        long,
        env = "CUSTOMER_CONTEXT_DB_MAX_CONNECTIONS",
        default_value_t = 16
    )]
    pub db_max_connections: u32,

    /// SQLite only: `normal` survives a crash of the service, `full` also a power cut (one fsync per write).
    #[arg(
        long,
        env = "CUSTOMER_CONTEXT_SQLITE_SYNCHRONOUS",
        value_enum,
        default_value_t = SqliteSynchronous::Normal
    )]
    pub sqlite_synchronous: SqliteSynchronous,
}

impl DatabaseSettings {
    /// Settings for the database at `url` with default pool sizes.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            database_url: url.into(),
            db_max_connections: 16,
            sqlite_synchronous: SqliteSynchronous::Normal,
        }
    }
}

/// Settings of `customer-context serve`.
#[derive(Clone, Debug, Args)]
pub struct Settings {
    /// Address to listen on for gRPC and gRPC-web (use port 0 for an ephemeral port).
    #[arg(
        long,
        env = "CUSTOMER_CONTEXT_LISTEN",
        default_value = "127.0.0.1:50051"
    )]
    pub listen: SocketAddr,

    #[command(flatten)]
    pub database: DatabaseSettings,

    /// Region used to read phone numbers written without a country code (ISO 3166 code, e.g. US, GB, DE).
    #[arg(long, env = "CUSTOMER_CONTEXT_DEFAULT_REGION", default_value = "US")]
    pub default_region: String,

    /// Log line format.
    #[arg(long, env = "CUSTOMER_CONTEXT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// On SIGINT/SIGTERM, how long in-flight calls may take to finish before the server exits anyway.
    #[arg(long, env = "CUSTOMER_CONTEXT_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,

    /// Origins allowed to call over gRPC-web from a browser (comma-separated); empty allows any origin.
    #[arg(long, env = "CUSTOMER_CONTEXT_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
}

impl Settings {
    /// Settings with every default, listening on `listen` and storing data at `database_url`.
    pub fn new(listen: SocketAddr, database_url: impl Into<String>) -> Self {
        Self {
            listen,
            database: DatabaseSettings::new(database_url),
            default_region: "US".to_owned(),
            log_format: LogFormat::Text,
            shutdown_grace: Duration::from_secs(10),
            cors_origins: Vec::new(),
        }
    }

    /// Checks what clap cannot: values that only make sense together or need parsing.
    pub fn validate(&self) -> anyhow::Result<()> {
        crate::domain::contact::parse_region(&self.default_region)
            .map_err(|e| anyhow::anyhow!("--default-region: {e}"))?;
        if self.database.db_max_connections == 0 {
            anyhow::bail!("--db-max-connections must be at least 1");
        }
        for origin in &self.cors_origins {
            http::HeaderValue::from_str(origin)
                .map_err(|_| anyhow::anyhow!("--cors-origins: {origin:?} is not a valid origin"))?;
        }
        Ok(())
    }
}

/// Parses durations such as `500ms`, `10s`, `2m`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 500ms, 10s or 2m"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(value)),
        "s" => Ok(Duration::from_secs(value)),
        "m" => Ok(Duration::from_secs(value * 60)),
        _ => Err(format!("{text:?}: unit must be ms, s or m")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5h").is_err());
    }
}
