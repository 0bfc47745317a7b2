//! Settings of the service: command-line flags, each also readable from a `CUSTOMER_CONTEXT_*` environment
//! variable, validated once at start.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

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

/// How callers prove who they are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// No authentication: every caller is an admin acting as its `x-agent-id`. Allowed only on a loopback
    /// address (local development, the quickstart).
    #[default]
    None,
    /// Bearer API keys (`authorization: Bearer cc_...`), created with `customer-context keys create`.
    Keys,
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

impl SqliteSynchronous {
    /// The value of SQLite's `PRAGMA synchronous` for this setting.
    pub fn pragma(self) -> &'static str {
        match self {
            SqliteSynchronous::Normal => "NORMAL",
            SqliteSynchronous::Full => "FULL",
        }
    }
}

/// Default `--sqlite-wal-limit-mib`: at a steady 1,000 `OpenContext` calls a second the log starts over about every
/// 13 s.
pub const DEFAULT_SQLITE_WAL_LIMIT_MIB: u32 = 1024;

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

    /// SQLite only: size the write-ahead log (`FILE-wal`) may reach, in MiB. A checkpointer thread copies the log
    /// into the database file as it is written, but under a steady write load the log starts over only when it
    /// reaches this size, and the write that finds it there waits for the last copy and its two syncs (tens of
    /// milliseconds). Smaller takes less disk and pauses writes more often.
    #[arg(
        long,
        env = "CUSTOMER_CONTEXT_SQLITE_WAL_LIMIT_MIB",
        default_value_t = DEFAULT_SQLITE_WAL_LIMIT_MIB,
        value_parser = clap::value_parser!(u32).range(4..=65_536)
    )]
    pub sqlite_wal_limit_mib: u32,

    /// SQLite only: run every write (`OpenContext` calls and all others) on the database writer's thread, in
    /// batches, one transaction per batch, and reads on its read connections in the calls' own tasks (the
    /// default). `false` runs each write in a transaction of its own on the pooled writer and reads on the read
    /// pool, as on PostgreSQL: slower, and the same answers.
    #[arg(
        long,
        env = "CUSTOMER_CONTEXT_SQLITE_OPEN_CONTEXT_BATCHES",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub sqlite_open_context_batches: bool,

    /// PostgreSQL only: a statement running longer is cancelled and the call fails with UNAVAILABLE.
    #[arg(long, env = "CUSTOMER_CONTEXT_DB_STATEMENT_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub db_statement_timeout: Duration,
}

impl DatabaseSettings {
    /// Whether the URL names a PostgreSQL server (`postgres://` or `postgresql://`).
    pub fn is_postgres(&self) -> bool {
        let url = self.database_url.as_str();
        url.starts_with("postgres://") || url.starts_with("postgresql://")
    }

    /// Settings for the database at `url` with default pool sizes.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            database_url: url.into(),
            db_max_connections: 16,
            sqlite_synchronous: SqliteSynchronous::Normal,
            sqlite_wal_limit_mib: DEFAULT_SQLITE_WAL_LIMIT_MIB,
            sqlite_open_context_batches: true,
            db_statement_timeout: Duration::from_secs(10),
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

    /// How often health asks the database whether it answers (`SELECT 1`, given as long to answer). Health reports
    /// NOT_SERVING while it does not, and SERVING again once it does.
    #[arg(long, env = "CUSTOMER_CONTEXT_HEALTH_PROBE_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub health_probe_interval: Duration,

    /// Origins allowed to call over gRPC-web from a browser (comma-separated); empty allows any origin.
    #[arg(long, env = "CUSTOMER_CONTEXT_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Pages allowed to frame the agent gadget served at `/gadget/` (its Content-Security-Policy
    /// `frame-ancestors`): origins such as `https://desktop.example.com`, separated by spaces or commas, or
    /// `'self'` or `'none'`.
    #[arg(
        long,
        env = "CUSTOMER_CONTEXT_GADGET_FRAME_ANCESTORS",
        default_value = crate::gadget::DEFAULT_FRAME_ANCESTORS
    )]
    pub gadget_frame_ancestors: String,

    /// Address of the metrics listener, serving `GET /metrics` in the Prometheus text format; off when unset.
    #[arg(long, env = "CUSTOMER_CONTEXT_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// OpenTelemetry collector to export trace spans to over OTLP/gRPC (e.g. `http://127.0.0.1:4317`); off when
    /// unset.
    #[arg(long, env = "CUSTOMER_CONTEXT_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    #[command(flatten)]
    pub security: SecuritySettings,

    #[command(flatten)]
    pub notifications: NotificationSettings,
}

/// Customer notifications: where they are sent from and through, and how failed deliveries are retried.
#[derive(Clone, Debug, Args)]
pub struct NotificationSettings {
    /// SMTP server that delivers customer notifications: `smtp://HOST:PORT` (plain), `smtp://HOST:PORT?tls=required`
    /// (STARTTLS), `smtps://HOST:PORT` (TLS); `USER:PASSWORD@` before the host to log in. Without it notifications
    /// are queued and listed (ListNotifications) but not sent.
    #[arg(long, env = "CUSTOMER_CONTEXT_SMTP_URL")]
    pub smtp_url: Option<String>,

    /// Sender of notifications, e.g. `Example Support <support@example.com>`; required with --smtp-url.
    #[arg(long, env = "CUSTOMER_CONTEXT_SMTP_FROM")]
    pub smtp_from: Option<String>,

    /// Delivery attempts before a notification is given up (FAILED); a permanent refusal (5xx) gives up at once.
    #[arg(
        long,
        env = "CUSTOMER_CONTEXT_NOTIFICATION_MAX_ATTEMPTS",
        default_value_t = 10
    )]
    pub notification_max_attempts: u32,

    /// Wait before the first retry of a failed delivery; it doubles with each further attempt (with jitter), up
    /// to 10 minutes.
    #[arg(long, env = "CUSTOMER_CONTEXT_NOTIFICATION_RETRY_DELAY", default_value = "1s", value_parser = parse_duration)]
    pub notification_retry_delay: Duration,
}

impl Default for NotificationSettings {
    fn default() -> Self {
        Self {
            smtp_url: None,
            smtp_from: None,
            notification_max_attempts: 10,
            notification_retry_delay: Duration::from_secs(1),
        }
    }
}

impl NotificationSettings {
    /// Checks what clap cannot; the URL and address themselves are parsed when the sender is built.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.smtp_url.is_some() && self.smtp_from.is_none() {
            anyhow::bail!(
                "--smtp-url needs --smtp-from, the sender address of notifications \
                 (e.g. --smtp-from 'Example Support <support@example.com>')"
            );
        }
        if self.notification_max_attempts == 0 {
            anyhow::bail!("--notification-max-attempts must be at least 1");
        }
        if self.notification_retry_delay.is_zero() {
            anyhow::bail!("--notification-retry-delay must be more than 0");
        }
        Ok(())
    }
}

/// Authentication, TLS and limits of `serve`.
#[derive(Clone, Debug, Args)]
pub struct SecuritySettings {
    /// `keys`: callers need an API key (`authorization: Bearer ...`). `none`: anyone is an admin acting as
    /// their `x-agent-id`; accepted only when listening on a loopback address.
    #[arg(long, env = "CUSTOMER_CONTEXT_AUTH", value_enum, default_value_t = AuthMode::None)]
    pub auth: AuthMode,

    /// How long a looked-up API key is remembered; a key revoked on a running server stops working within
    /// this time. 0 looks every call up in the database.
    #[arg(long, env = "CUSTOMER_CONTEXT_KEY_CACHE_TTL", default_value = "5s", value_parser = parse_duration)]
    pub key_cache_ttl: Duration,

    /// TLS certificate chain (PEM). With --tls-key, the service speaks only TLS.
    #[arg(long, env = "CUSTOMER_CONTEXT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// TLS private key (PEM) of --tls-cert.
    #[arg(long, env = "CUSTOMER_CONTEXT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// CA certificates (PEM): when given, clients must present a certificate signed by one of them.
    #[arg(long, env = "CUSTOMER_CONTEXT_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// Largest request message accepted, in bytes; larger ones are refused (OUT_OF_RANGE).
    #[arg(long, env = "CUSTOMER_CONTEXT_MAX_MESSAGE_BYTES", default_value_t = DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,

    /// Most calls processed at once; calls beyond it are refused at once with RESOURCE_EXHAUSTED instead of
    /// queueing. Open watch streams are not counted. 0 = no limit.
    #[arg(
        long,
        env = "CUSTOMER_CONTEXT_MAX_CONCURRENT_CALLS",
        default_value_t = 1024
    )]
    pub max_concurrent_calls: usize,

    /// Calls per second allowed to each API key (each agent with --auth none); beyond it RESOURCE_EXHAUSTED
    /// with RetryInfo. 0 = no limit.
    #[arg(
        long,
        env = "CUSTOMER_CONTEXT_RATE_LIMIT_PER_KEY",
        default_value_t = 0.0
    )]
    pub rate_limit_per_key: f64,

    /// Calls a key may make in a burst above --rate-limit-per-key (default: one second's worth, at least 1).
    #[arg(long, env = "CUSTOMER_CONTEXT_RATE_LIMIT_BURST")]
    pub rate_limit_burst: Option<u32>,

    /// How long the request of a unary call may take to arrive in full; a call whose request is still
    /// incomplete then is ended (DEADLINE_EXCEEDED, REQUEST_TIMEOUT) and frees its slot.
    #[arg(long, env = "CUSTOMER_CONTEXT_REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// Calls one API key (one agent with --auth none) may have in flight at once, so that no key can take
    /// every slot of --max-concurrent-calls. 0 = no limit of its own.
    #[arg(long, env = "CUSTOMER_CONTEXT_MAX_CALLS_PER_KEY", default_value_t = DEFAULT_MAX_CALLS_PER_KEY)]
    pub max_calls_per_key: usize,

    /// Watch streams one API key (one agent with --auth none) may hold open at once. 0 = no limit.
    #[arg(long, env = "CUSTOMER_CONTEXT_MAX_STREAMS_PER_KEY", default_value_t = DEFAULT_MAX_STREAMS_PER_KEY)]
    pub max_streams_per_key: usize,

    /// Calls and streams one HTTP/2 connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS);
    /// clients queue the rest.
    #[arg(
        long,
        env = "CUSTOMER_CONTEXT_MAX_STREAMS_PER_CONNECTION",
        default_value_t = DEFAULT_MAX_STREAMS_PER_CONNECTION
    )]
    pub max_streams_per_connection: u32,
}

/// A quarter of the default --max-concurrent-calls.
pub const DEFAULT_MAX_CALLS_PER_KEY: usize = 256;
pub const DEFAULT_MAX_STREAMS_PER_KEY: usize = 32;
pub const DEFAULT_MAX_STREAMS_PER_CONNECTION: u32 = 256;

/// tonic's default, kept explicit: 4 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

impl Default for SecuritySettings {
    fn default() -> Self {
        Self {
            auth: AuthMode::None,
            key_cache_ttl: Duration::from_secs(5),
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_concurrent_calls: 1024,
            rate_limit_per_key: 0.0,
            rate_limit_burst: None,
            request_timeout: Duration::from_secs(10),
            max_calls_per_key: DEFAULT_MAX_CALLS_PER_KEY,
            max_streams_per_key: DEFAULT_MAX_STREAMS_PER_KEY,
            max_streams_per_connection: DEFAULT_MAX_STREAMS_PER_CONNECTION,
        }
    }
}

impl SecuritySettings {
    /// The burst of the per-key rate limit: as given, else one second's worth (at least 1).
    pub fn rate_limit_burst(&self) -> u32 {
        self.rate_limit_burst
            .unwrap_or_else(|| {
                self.rate_limit_per_key
                    .ceil()
                    .clamp(1.0, f64::from(u32::MAX)) as u32
            })
            .max(1)
    }

    /// Checks what clap cannot; `listen` is where the service will listen.
    pub fn validate(&self, listen: SocketAddr) -> anyhow::Result<()> {
        if self.auth == AuthMode::None && !listen.ip().is_loopback() {
            anyhow::bail!(
                "--auth none lets anyone act as anyone, so it is only accepted on a loopback address, \
                 not {listen}: use --auth keys (create keys with `customer-context keys create`) or listen \
                 on 127.0.0.1"
            );
        }
        if self.request_timeout < Duration::from_millis(100) {
            anyhow::bail!("--request-timeout must be at least 100ms");
        }
        if self.max_streams_per_connection == 0 {
            anyhow::bail!("--max-streams-per-connection must be at least 1");
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            anyhow::bail!("--tls-cert and --tls-key go together");
        }
        if self.tls_client_ca.is_some() && self.tls_cert.is_none() {
            anyhow::bail!("--tls-client-ca needs --tls-cert and --tls-key");
        }
        if self.max_message_bytes < 1024 {
            anyhow::bail!("--max-message-bytes must be at least 1024");
        }
        if !self.rate_limit_per_key.is_finite() || self.rate_limit_per_key < 0.0 {
            anyhow::bail!(
                "--rate-limit-per-key must be 0 (off) or a positive number of calls per second"
            );
        }
        Ok(())
    }
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
            health_probe_interval: DEFAULT_HEALTH_PROBE_INTERVAL,
            cors_origins: Vec::new(),
            gadget_frame_ancestors: crate::gadget::DEFAULT_FRAME_ANCESTORS.to_owned(),
            metrics_listen: None,
            otlp_endpoint: None,
            security: SecuritySettings::default(),
            notifications: NotificationSettings::default(),
        }
    }

    /// Checks what clap cannot: values that only make sense together or need parsing.
    pub fn validate(&self) -> anyhow::Result<()> {
        crate::domain::contact::parse_region(&self.default_region)
            .map_err(|e| anyhow::anyhow!("--default-region: {e}"))?;
        if self.database.db_max_connections == 0 {
            anyhow::bail!("--db-max-connections must be at least 1");
        }
        if self.database.is_postgres()
            && self.database.db_max_connections < MIN_POSTGRES_CONNECTIONS
        {
            anyhow::bail!(
                "--db-max-connections must be at least {MIN_POSTGRES_CONNECTIONS} on PostgreSQL (got {}): the \
                 change and presence listeners hold two connections for good, and calls need the rest \
                 (4 or more recommended)",
                self.database.db_max_connections
            );
        }
        if self.health_probe_interval < MIN_HEALTH_PROBE_INTERVAL {
            anyhow::bail!(
                "--health-probe-interval must be at least {MIN_HEALTH_PROBE_INTERVAL:?} (got {:?})",
                self.health_probe_interval
            );
        }
        self.security.validate(self.listen)?;
        self.notifications.validate()?;
        for origin in &self.cors_origins {
            http::HeaderValue::from_str(origin)
                .map_err(|_| anyhow::anyhow!("--cors-origins: {origin:?} is not a valid origin"))?;
        }
        Ok(())
    }
}

/// Default `--health-probe-interval`.
const DEFAULT_HEALTH_PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// Shortest `--health-probe-interval`: a probe more often than this would load the database for little.
const MIN_HEALTH_PROBE_INTERVAL: Duration = Duration::from_millis(50);

/// Fewest connections a PostgreSQL replica may be given: its two listeners hold one each for good, and calls need
/// at least one more.
const MIN_POSTGRES_CONNECTIONS: u32 = 3;

/// Parses durations such as `500us`, `500ms`, `10s`, `2m`; a bare number is seconds.
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
        "us" => Ok(Duration::from_micros(value)),
        "ms" => Ok(Duration::from_millis(value)),
        "s" => Ok(Duration::from_secs(value)),
        "m" => Ok(Duration::from_secs(value * 60)),
        _ => Err(format!("{text:?}: unit must be us, ms, s or m")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_none_is_refused_off_loopback() {
        let local = Settings::new("127.0.0.1:0".parse().unwrap(), "sqlite://x.db");
        assert!(local.validate().is_ok());
        let ipv6 = Settings::new("[::1]:0".parse().unwrap(), "sqlite://x.db");
        assert!(ipv6.validate().is_ok());
        let mut open = Settings::new("0.0.0.0:0".parse().unwrap(), "sqlite://x.db");
        let why = open.validate().unwrap_err().to_string();
        assert!(
            why.contains("--auth none") && why.contains("loopback"),
            "{why}"
        );
        open.security.auth = AuthMode::Keys;
        assert!(open.validate().is_ok());
    }

    #[test]
    fn a_postgres_replica_needs_connections_beside_its_two_listeners() {
        let mut replica = Settings::new("127.0.0.1:0".parse().unwrap(), "postgres://cc@db/cc");
        replica.database.db_max_connections = 2;
        let why = replica.validate().unwrap_err().to_string();
        assert!(
            why.contains("--db-max-connections must be at least 3"),
            "{why}"
        );
        replica.database.db_max_connections = 3;
        assert!(replica.validate().is_ok());
        let mut embedded = Settings::new("127.0.0.1:0".parse().unwrap(), "sqlite://x.db");
        embedded.database.db_max_connections = 1;
        assert!(embedded.validate().is_ok());
    }

    #[test]
    fn the_health_probe_interval_has_a_floor() {
        let mut settings = Settings::new("127.0.0.1:0".parse().unwrap(), "sqlite://x.db");
        assert_eq!(parse_duration("5s"), Ok(settings.health_probe_interval));
        settings.health_probe_interval = Duration::from_millis(10);
        let why = settings.validate().unwrap_err().to_string();
        assert!(
            why.contains("--health-probe-interval must be at least 50ms"),
            "{why}"
        );
        settings.health_probe_interval = MIN_HEALTH_PROBE_INTERVAL;
        assert!(settings.validate().is_ok());
    }

    #[test]
    fn the_burst_defaults_to_one_second_of_calls() {
        let mut security = SecuritySettings {
            rate_limit_per_key: 2.5,
            ..Default::default()
        };
        assert_eq!(security.rate_limit_burst(), 3);
        security.rate_limit_per_key = 0.1;
        assert_eq!(security.rate_limit_burst(), 1);
        security.rate_limit_burst = Some(10);
        assert_eq!(security.rate_limit_burst(), 10);
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("500us"), Ok(Duration::from_micros(500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5h").is_err());
    }
}
