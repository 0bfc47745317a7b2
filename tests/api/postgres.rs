//! A throwaway PostgreSQL for the tests: started once per test run in a temporary directory on a free port (as
//! the `postgres` user when running as root, since PostgreSQL refuses root), and stopped by a watchdog when the
//! test process exits. Each test gets its own database in it.
//!
//! `CUSTOMER_CONTEXT_TEST_POSTGRES_URL=postgres://user@host:port` uses an existing server instead (each test
//! creates a database there). Without PostgreSQL the PostgreSQL half of the suite is skipped with a notice;
//! `CUSTOMER_CONTEXT_TEST_POSTGRES=require` (set by CI) turns the skip into a failure.

use std::{
    io::Write,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

use sea_orm::{ConnectionTrait, Database};

/// The admin URL of the test server, or why there is none.
fn server() -> &'static Result<String, String> {
    static SERVER: OnceLock<Result<String, String>> = OnceLock::new();
    SERVER.get_or_init(
        || match std::env::var("CUSTOMER_CONTEXT_TEST_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => Ok(url.trim_end_matches('/').to_owned()),
            _ => start_cluster(),
        },
    )
}

/// A new empty database for one test, or None (after a one-time notice) when PostgreSQL is not available.
pub async fn new_database() -> Option<String> {
    let admin = match server() {
        Ok(url) => url,
        Err(why) => {
            if std::env::var("CUSTOMER_CONTEXT_TEST_POSTGRES").as_deref() == Ok("require") {
                panic!(
                    "PostgreSQL tests are required (CUSTOMER_CONTEXT_TEST_POSTGRES=require) but: {why}"
                );
            }
            notice_skip(why);
            return None;
        }
    };
    let name = format!("cc_test_{}", uuid::Uuid::now_v7().simple());
    // The server may still be starting up ("the database system is starting up").
    let started = Instant::now();
    let connection = loop {
        match Database::connect(format!("{admin}/postgres")).await {
            Ok(connection) => break connection,
            Err(e) if started.elapsed() > Duration::from_secs(30) => {
                panic!("cannot reach the test PostgreSQL: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    connection
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create a test database");
    let _ = connection.close().await;
    Some(format!("{admin}/{name}"))
}

fn notice_skip(why: &str) {
    static NOTICED: Mutex<bool> = Mutex::new(false);
    let mut noticed = NOTICED.lock().unwrap_or_else(|p| p.into_inner());
    if !*noticed {
        *noticed = true;
        // Written past the test harness's output capture, so a passing run still says it.
        let _ = writeln!(
            std::io::stderr(),
            "\nnote: PostgreSQL tests skipped: {why}\n      (install PostgreSQL, or set CUSTOMER_CONTEXT_TEST_POSTGRES_URL)\n"
        );
    }
}

/// Finds a PostgreSQL binary on PATH or in Debian's versioned directories.
fn pg_binary(name: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    on_path.or_else(|| {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|entry| entry.ok().map(|e| e.path().join("bin").join(name)))
            .filter(|candidate| candidate.is_file())
            .collect();
        versions.sort();
        versions.pop()
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// Runs a command as the `postgres` user when we are root.
fn as_server_user(program: &Path, root: bool) -> Command {
    if root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| format!("no free port: {e}"))
}

fn start_cluster() -> Result<String, String> {
    let initdb = pg_binary("initdb").ok_or("initdb not found")?;
    let postgres = pg_binary("postgres").ok_or("postgres not found")?;
    let root = is_root();
    let dir = std::env::temp_dir().join(format!("cc-test-pg-{}", std::process::id()));
    let data = dir.join("data");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    if root {
        let status = Command::new("chown")
            .args(["-R", "postgres:"])
            .arg(&dir)
            .status()
            .map_err(|e| format!("chown: {e}"))?;
        if !status.success() {
            return Err("cannot hand the test directory to the postgres user".into());
        }
    }
    let out = as_server_user(&initdb, root)
        .args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
            "-D",
        ])
        .arg(&data)
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let port = free_port()?;
    // The watchdog runs the server and stops it (and removes its files) once this test process is gone.
    let script = r#"
        "$1" -D "$2" -p "$3" -k "$4" -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=300 -c shared_buffers=64MB >"$4/server.log" 2>&1 &
        server=$!
        while [ -d "/proc/$5" ] && kill -0 "$server" 2>/dev/null; do sleep 1; done
        kill -INT "$server" 2>/dev/null; wait "$server"; rm -rf "$2"
    "#;
    as_server_user(Path::new("/bin/sh"), root)
        .args(["-c", script, "pg-watchdog"])
        .arg(&postgres)
        .arg(&data)
        .arg(port.to_string())
        .arg(&dir)
        .arg(std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start postgres: {e}"))?;
    let url = format!("postgres://postgres@127.0.0.1:{port}");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(url);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
    Err(format!("postgres did not start on port {port}: {log}"))
}
