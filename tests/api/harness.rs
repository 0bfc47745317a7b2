//! Test harness: every test gets its own server on an ephemeral port and its own fresh database, so tests run in
//! parallel and never share state (zero2prod's `spawn_app`). Helpers build inputs and read rich error details.

use std::{
    collections::BTreeSet,
    fmt::Debug,
    future::Future,
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use customer_context::{
    config::{AuthMode, DatabaseSettings, Settings},
    pb,
    server::RunningServer,
    shutdown::Shutdown,
    store::Store,
};
use prost_types::{FieldMask, Timestamp};
use rstest_reuse::template;
use tempfile::TempDir;
use tonic::{Code, Response, Status, transport::Channel};
use tonic_types::{ErrorInfo, StatusExt};

use pb::{
    activity_service_client::ActivityServiceClient, customer_service_client::CustomerServiceClient,
    request_service_client::RequestServiceClient,
};

/// Metadata key naming the acting agent.
pub const AGENT_HEADER: &str = "x-agent-id";

/// The agent the helpers act as when a test does not care who writes.
pub const SETUP_AGENT: &str = "setup";

/// How long servers started by [`TestApp::spawn_with_keys`] remember a key: a revoked key stops working within
/// this time.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(1);

/// Upper bound for anything a test awaits (server start, shutdown, a batch of concurrent calls).
pub const WAIT: Duration = Duration::from_secs(60);

/// The database backends every test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs a test once per backend: `#[apply(backends)] #[tokio::test] async fn name(backend: Backend)`.
#[template]
#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::postgres(Backend::Postgres)]
pub fn backends(#[case] backend: Backend) {}

/// A database for one test: a file in a temporary directory, or a fresh database on the test PostgreSQL.
pub struct TestDb {
    url: String,
    // Dropped with the database: removes the SQLite file.
    _dir: Option<TempDir>,
}

impl TestDb {
    /// A fresh database, or None when the backend is not available here (the test is then skipped).
    pub async fn new(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temporary directory");
                let url = database_url(&dir.path().join("cc.db"));
                Some(TestDb {
                    url,
                    _dir: Some(dir),
                })
            }
            Backend::Postgres => crate::postgres::new_database()
                .await
                .map(|url| TestDb { url, _dir: None }),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }
}

/// The URL of an SQLite database file.
pub fn database_url(db_file: &Path) -> String {
    format!("sqlite://{}?mode=rwc", db_file.display())
}

/// The SQLite database file a URL made by [`database_url`] names.
pub fn sqlite_file(url: &str) -> PathBuf {
    let rest = url.strip_prefix("sqlite://").expect("an SQLite URL");
    PathBuf::from(rest.split('?').next().expect("a path"))
}

/// Awaits `fut`, failing the test if it takes longer than [`WAIT`].
pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {WAIT:?}"))
}

/// A server running for one test, with a channel to it.
pub struct TestApp {
    pub addr: SocketAddr,
    server: Option<RunningServer>,
    channel: Channel,
    /// The database URL the server runs on.
    url: String,
    /// With `--auth keys`: the admin key the helpers act with.
    admin_key: Option<String>,
    // Dropped last: removes the database of `spawn()`ed apps.
    _db: Option<TestDb>,
}

impl TestApp {
    /// A server on a fresh database of `backend`, or None when that backend is not available here.
    pub async fn spawn(backend: Backend) -> Option<Self> {
        Self::spawn_with(backend, |_| {}).await
    }

    /// A server on the database at `url`; the caller owns the database (a restart test starts several).
    pub async fn spawn_on(url: &str) -> Self {
        Self::spawn_on_with(url, |_| {}).await
    }

    /// A server on a fresh database of `backend` with settings changed by `configure`.
    pub async fn spawn_with(
        backend: Backend,
        configure: impl FnOnce(&mut Settings),
    ) -> Option<Self> {
        let db = TestDb::new(backend).await?;
        let mut app = Self::spawn_on_with(db.url(), configure).await;
        app._db = Some(db);
        Some(app)
    }

    /// A server with `--auth keys` (keys remembered for [`KEY_CACHE_TTL`]) on a fresh database of `backend`,
    /// with an admin key that the helpers of this app use.
    pub async fn spawn_with_keys(
        backend: Backend,
        configure: impl FnOnce(&mut Settings),
    ) -> Option<Self> {
        let mut app = Self::spawn_with(backend, |settings| {
            settings.security.auth = AuthMode::Keys;
            settings.security.key_cache_ttl = KEY_CACHE_TTL;
            configure(settings);
        })
        .await?;
        app.admin_key = Some(app.mint_key(SETUP_AGENT, "admin", None).await);
        Some(app)
    }

    /// A server on the database at `url` with settings changed by `configure`. With TLS the channel connects on
    /// first use (and must be replaced by a TLS one to be useful).
    pub async fn spawn_on_with(url: &str, configure: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = Settings::new("127.0.0.1:0".parse().expect("socket address"), url);
        settings.database.db_max_connections = 8;
        configure(&mut settings);
        let tls = settings.security.tls_cert.is_some();
        let server = within("server start", RunningServer::start(settings))
            .await
            .expect("server starts");
        let addr = server.local_addr();
        let channel = if tls {
            Channel::from_shared(format!("http://{addr}"))
                .expect("endpoint uri")
                .connect_lazy()
        } else {
            connect(addr).await
        };
        Self {
            addr,
            server: Some(server),
            channel,
            url: url.to_owned(),
            admin_key: None,
            _db: None,
        }
    }

    /// Creates an API key on this app's database (as `customer-context keys create` does) and returns its
    /// secret.
    pub async fn mint_key(&self, name: &str, role: &str, customer: Option<&str>) -> String {
        let store = self.store().await;
        let created = store.create_key(name, role, customer).await;
        store.close().await;
        created.expect("key created").secret
    }

    /// Revokes every active key named `name` (as `customer-context keys revoke` does).
    pub async fn revoke_key(&self, name: &str) {
        let store = self.store().await;
        let revoked = store.revoke_key(name).await;
        store.close().await;
        revoked.expect("key revoked");
    }

    async fn store(&self) -> Store {
        let mut database = DatabaseSettings::new(&self.url);
        database.db_max_connections = 2;
        within("opening the database", Store::connect(&database))
            .await
            .expect("database opens")
    }

    /// `message` as the helpers send it: as [`SETUP_AGENT`], with the admin key when the app has one.
    pub fn setup<T>(&self, message: T) -> tonic::Request<T> {
        let request = as_agent(SETUP_AGENT, message);
        match &self.admin_key {
            Some(key) => with_key(key, request),
            None => request,
        }
    }

    /// Where the server serves `GET /metrics` (started with `metrics_listen`).
    /// The URL of the database the server runs on.
    pub fn database_url(&self) -> &str {
        &self.url
    }

    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.server.as_ref().and_then(RunningServer::metrics_addr)
    }

    /// Fires when the server begins shutting down.
    pub fn shutdown_signal(&self) -> Shutdown {
        self.server
            .as_ref()
            .expect("server still running")
            .shutdown_signal()
    }

    /// Stops the server gracefully and waits until it has.
    pub async fn shutdown(mut self) {
        let server = self.server.take().expect("server still running");
        drop(self.channel);
        within("server shutdown", server.shutdown())
            .await
            .expect("server shuts down cleanly");
    }

    /// The shared channel of this app (cheap to clone).
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// A new, separate connection to the server: one per simulated client machine.
    pub async fn new_channel(&self) -> Channel {
        connect(self.addr).await
    }

    pub fn customers(&self) -> CustomerServiceClient<Channel> {
        CustomerServiceClient::new(self.channel())
    }

    pub fn requests(&self) -> RequestServiceClient<Channel> {
        RequestServiceClient::new(self.channel())
    }

    pub fn activities(&self) -> ActivityServiceClient<Channel> {
        ActivityServiceClient::new(self.channel())
    }

    /// Updates every mutable field (empty mask) as `agent`.
    pub async fn update_customer(
        &self,
        agent: &str,
        customer: pb::Customer,
    ) -> Result<pb::Customer, Status> {
        self.update_as(agent, customer, None).await
    }

    /// Every customer matching `query` (one page of up to 500).
    pub async fn search_customers(&self, query: &str) -> Vec<pb::Customer> {
        let request = pb::SearchCustomersRequest {
            query: query.to_owned(),
            page_size: 500,
            page_token: String::new(),
        };
        ok(self.customers().search_customers(request).await).customers
    }

    pub async fn list_requests(
        &self,
        customer_id: &str,
        status: pb::RequestStatus,
    ) -> Vec<pb::Request> {
        let call = pb::ListRequestsRequest {
            customer_id: customer_id.to_owned(),
            status: status as i32,
            page_size: 500,
            page_token: String::new(),
        };
        ok(self.requests().list_requests(call).await).requests
    }

    pub async fn add_comment(
        &self,
        agent: &str,
        request_id: &str,
        text: &str,
    ) -> Result<pb::Comment, Status> {
        let call = pb::AddCommentRequest {
            request_id: request_id.to_owned(),
            text: text.to_owned(),
        };
        self.requests()
            .add_comment(as_agent(agent, call))
            .await
            .map(Response::into_inner)
    }

    pub async fn list_comments(&self, request_id: &str) -> Result<Vec<pb::Comment>, Status> {
        let call = pb::ListCommentsRequest {
            request_id: request_id.to_owned(),
            page_size: 500,
            page_token: String::new(),
        };
        self.requests()
            .list_comments(call)
            .await
            .map(|r| r.into_inner().comments)
    }

    /// One page of a customer's (or a request's) activities.
    pub async fn list_activities(
        &self,
        customer_id: &str,
        request_id: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<pb::ListActivitiesResponse, Status> {
        let call = pb::ListActivitiesRequest {
            customer_id: customer_id.to_owned(),
            request_id: request_id.to_owned(),
            page_size,
            page_token: page_token.to_owned(),
        };
        self.activities()
            .list_activities(call)
            .await
            .map(Response::into_inner)
    }
}

async fn connect(addr: SocketAddr) -> Channel {
    let endpoint = Channel::from_shared(format!("http://{addr}")).expect("endpoint uri");
    within("connecting", endpoint.connect())
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e:?}"))
}

/// `message` sent as `agent` (request metadata `x-agent-id`).
pub fn as_agent<T>(agent: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert(AGENT_HEADER, agent.parse().expect("ascii agent id"));
    request
}

/// `request` with `authorization: Bearer <secret>`.
pub fn with_key<T>(secret: &str, mut request: tonic::Request<T>) -> tonic::Request<T> {
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {secret}").parse().expect("ascii key"),
    );
    request
}

/// `message` sent with the API key `secret`.
pub fn keyed<T>(secret: &str, message: T) -> tonic::Request<T> {
    with_key(secret, tonic::Request::new(message))
}

/// The message of a successful call; fails the test with the status otherwise.
#[track_caller]
pub fn ok<T>(result: Result<Response<T>, Status>) -> T {
    match result {
        Ok(response) => response.into_inner(),
        Err(status) => panic!("call failed: {status:?}"),
    }
}

/// The status of a call that must fail; fails the test with the value otherwise.
#[track_caller]
pub fn err<T: Debug>(result: Result<T, Status>) -> Status {
    match result {
        Ok(value) => panic!("call succeeded but must fail: {value:?}"),
        Err(status) => status,
    }
}

// ---- inputs -------------------------------------------------------------------------------------------------

pub fn customer(first_name: &str, last_name: &str) -> pb::Customer {
    pb::Customer {
        first_name: first_name.to_owned(),
        last_name: last_name.to_owned(),
        ..Default::default()
    }
}

pub fn contact(kind: pb::ContactKind, label: &str, value: &str) -> pb::ContactPoint {
    pb::ContactPoint {
        kind: kind as i32,
        label: label.to_owned(),
        value: value.to_owned(),
    }
}

pub fn phone(value: &str) -> pb::ContactPoint {
    contact(pb::ContactKind::Phone, "mobile", value)
}

pub fn email(value: &str) -> pb::ContactPoint {
    contact(pb::ContactKind::Email, "work", value)
}

pub fn request(customer_id: &str, title: &str) -> pb::Request {
    pb::Request {
        customer_id: customer_id.to_owned(),
        title: title.to_owned(),
        ..Default::default()
    }
}

pub fn activity(customer_id: &str, topic: &str) -> pb::Activity {
    pb::Activity {
        customer_id: customer_id.to_owned(),
        channel: pb::Channel::Voice as i32,
        direction: pb::Direction::Incoming as i32,
        topic: topic.to_owned(),
        ..Default::default()
    }
}

pub fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    })
}

pub fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|v| (*v).to_owned()).collect()
}

pub fn timestamp(seconds: i64, nanos: i32) -> Timestamp {
    Timestamp { seconds, nanos }
}

pub fn now() -> Timestamp {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    timestamp(
        i64::try_from(since.as_secs()).expect("seconds fit"),
        i32::try_from(since.subsec_nanos()).expect("nanos fit"),
    )
}

/// Nanoseconds since the epoch, for ordering timestamps.
pub fn nanos(ts: &Timestamp) -> i128 {
    i128::from(ts.seconds) * 1_000_000_000 + i128::from(ts.nanos)
}

/// `id` is a UUIDv7 in its canonical string form.
#[track_caller]
pub fn assert_uuid_v7(id: &str) {
    let uuid = uuid::Uuid::parse_str(id).unwrap_or_else(|e| panic!("{id:?} is not a UUID: {e}"));
    assert_eq!(uuid.get_version_num(), 7, "{id} is not a UUIDv7");
    assert_eq!(
        uuid.hyphenated().to_string(),
        id,
        "{id} is not in canonical form"
    );
}

/// A well-formed id that names nothing.
pub fn unknown_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

// ---- errors -------------------------------------------------------------------------------------------------

/// `(field, reason)` of every violation in the status's BadRequest, in the order given.
pub fn field_violations(status: &Status) -> Vec<(String, String)> {
    let details = status.get_error_details();
    let bad_request = details
        .bad_request()
        .unwrap_or_else(|| panic!("no BadRequest in {status:?}"));
    bad_request
        .field_violations
        .iter()
        .map(|v| {
            assert!(
                !v.description.is_empty(),
                "violation without a description: {v:?}"
            );
            (v.field.clone(), v.reason.clone())
        })
        .collect()
}

pub fn error_info(status: &Status) -> ErrorInfo {
    status
        .get_error_details()
        .error_info()
        .cloned()
        .unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"))
}

/// The status has `code`, a message, and an ErrorInfo with `reason`.
#[track_caller]
pub fn assert_error(status: &Status, code: Code, reason: &str) {
    assert_eq!(status.code(), code, "unexpected code: {status:?}");
    assert_eq!(
        error_info(status).reason,
        reason,
        "unexpected reason: {status:?}"
    );
    assert!(
        !status.message().is_empty(),
        "status without a message: {status:?}"
    );
}

/// INVALID_ARGUMENT with exactly these `(field, reason)` violations (in any order) in one BadRequest, and an
/// ErrorInfo naming the first violation's reason and listing every distinct reason once in metadata `reasons`.
#[track_caller]
pub fn assert_violations(status: &Status, expected: &[(&str, &str)]) {
    assert_eq!(
        status.code(),
        Code::InvalidArgument,
        "unexpected code: {status:?}"
    );
    let actual = field_violations(status);
    let actual_set: BTreeSet<(String, String)> = actual.iter().cloned().collect();
    let expected_set: BTreeSet<(String, String)> = expected
        .iter()
        .map(|(f, r)| ((*f).to_owned(), (*r).to_owned()))
        .collect();
    assert_eq!(actual_set, expected_set, "violations of {status:?}");
    assert_eq!(
        actual.len(),
        expected.len(),
        "violations repeated in {status:?}"
    );
    let info = error_info(status);
    assert_eq!(
        info.reason, actual[0].1,
        "ErrorInfo.reason must be the first violation's"
    );
    let listed: Vec<&str> = info
        .metadata
        .get("reasons")
        .unwrap_or_else(|| panic!("no `reasons` metadata in {info:?}"))
        .split(',')
        .map(str::trim)
        .collect();
    let distinct: BTreeSet<&str> = expected.iter().map(|(_, r)| *r).collect();
    assert_eq!(
        listed.len(),
        distinct.len(),
        "ErrorInfo metadata `reasons` must list each reason once: {listed:?}"
    );
    let listed: BTreeSet<&str> = listed.into_iter().collect();
    assert_eq!(listed, distinct, "ErrorInfo metadata `reasons`");
}

/// ABORTED with ErrorInfo VERSION_MISMATCH naming the current version and who made it.
#[track_caller]
pub fn assert_version_mismatch(status: &Status, current_version: i64, updated_by: &str) {
    assert_error(status, Code::Aborted, "VERSION_MISMATCH");
    let info = error_info(status);
    assert_eq!(
        info.metadata.get("current_version").map(String::as_str),
        Some(current_version.to_string().as_str()),
        "current_version of {info:?}"
    );
    assert_eq!(
        info.metadata.get("updated_by").map(String::as_str),
        Some(updated_by),
        "updated_by of {info:?}"
    );
}

// ---- customers: builders, partial updates, lookups, deletes -----------------------------------------------

/// `first_name last_name` reachable at `contact_points`.
pub fn customer_with_contacts(
    first_name: &str,
    last_name: &str,
    contact_points: Vec<pb::ContactPoint>,
) -> pb::Customer {
    pb::Customer {
        contact_points,
        ..customer(first_name, last_name)
    }
}

/// A customer with only `id` and `version` set: the base of a partial (masked) update.
pub fn customer_at(id: &str, version: i64) -> pb::Customer {
    pb::Customer {
        id: id.to_owned(),
        version,
        ..Default::default()
    }
}

/// An UpdateCustomerRequest changing the fields named in `paths`, or every mutable field when `paths` is empty.
pub fn update_customer_request(
    customer: pb::Customer,
    paths: &[&str],
) -> pb::UpdateCustomerRequest {
    pb::UpdateCustomerRequest {
        customer: Some(customer),
        update_mask: if paths.is_empty() { None } else { mask(paths) },
        ..Default::default()
    }
}

/// The call failed with NOT_FOUND (ErrorInfo NOT_FOUND).
#[track_caller]
pub fn assert_not_found<T: Debug>(result: Result<T, Status>) {
    assert_error(&err(result), Code::NotFound, "NOT_FOUND");
}

impl TestApp {
    /// Creates `customers` one after the other, so the last one is the newest.
    pub async fn create_customers<const N: usize>(
        &self,
        customers: [pb::Customer; N],
    ) -> [pb::Customer; N] {
        let mut created = Vec::with_capacity(N);
        for customer in customers {
            created.push(self.create_customer(customer).await);
        }
        created.try_into().expect("one created customer per input")
    }

    /// Every customer found by `key`, most recently updated first.
    pub async fn lookup_customers(
        &self,
        key: pb::lookup_customers_request::Key,
    ) -> Result<Vec<pb::Customer>, Status> {
        let call = pb::LookupCustomersRequest { key: Some(key) };
        self.customers()
            .lookup_customers(call)
            .await
            .map(|r| r.into_inner().customers)
    }
}

// ---- apps whose database the test keeps; request status, locking and merging as the helpers' agent ----------

impl TestApp {
    /// A server on a fresh database of `backend`, with that database, for a test that restarts on it or reads it
    /// directly; None when that backend is not available here. Keep the pair in this order (`let Some((app, db))`)
    /// so the server stops before the database goes.
    pub async fn spawn_keeping_db(backend: Backend) -> Option<(TestApp, TestDb)> {
        let db = TestDb::new(backend).await?;
        let app = TestApp::spawn_on(db.url()).await;
        Some((app, db))
    }

    /// Moves `request` to `status` as `agent` (an update of `status` alone).
    pub async fn set_request_status(
        &self,
        agent: &str,
        request: &pb::Request,
        status: pb::RequestStatus,
    ) -> Result<pb::Request, Status> {
        let change = pb::Request {
            status: status as i32,
            ..request.clone()
        };
        self.patch_request(agent, change, &["status"]).await
    }

    /// Locks customer `id` as the helpers' agent.
    pub async fn lock_customer(&self, id: &str) -> pb::Customer {
        let call = pb::LockCustomerRequest { id: id.to_owned() };
        ok(self.customers().lock_customer(self.setup(call)).await)
    }

    /// Merges `sources` into `target` (at the version it has) as the helpers' agent.
    pub async fn merge_into(
        &self,
        target: &pb::Customer,
        sources: &[&pb::Customer],
    ) -> Result<pb::Customer, Status> {
        let call = pb::MergeCustomersRequest {
            target_id: target.id.clone(),
            target_version: target.version,
            source_ids: sources.iter().map(|source| source.id.clone()).collect(),
        };
        self.customers()
            .merge_customers(self.setup(call))
            .await
            .map(Response::into_inner)
    }
}
/// The status's message contains `part`.
#[track_caller]
pub fn assert_message_contains(status: &Status, part: &str) {
    assert!(
        status.message().contains(part),
        "message without {part:?}: {status:?}"
    );
}

// ---- records: what customers, requests and activities share (bookkeeping, create/get/update/delete) ---------

/// A customer, a request or an activity: the bookkeeping every write sets, and the calls that write and read it
/// (as an agent, with `--auth none`).
pub trait Record: Clone + Debug + PartialEq + Sized {
    fn id(&self) -> &str;
    fn version(&self) -> i64;
    fn create_time(&self) -> Option<Timestamp>;
    fn update_time(&self) -> Option<Timestamp>;
    fn created_by(&self) -> &str;
    /// `self` with the bookkeeping of a write: `id` and `version`, and when and by whom it was created and last
    /// updated.
    fn with_bookkeeping(
        self,
        id: &str,
        version: i64,
        created: (Timestamp, &str),
        updated: (Timestamp, &str),
    ) -> Self;
    fn create_as(
        app: &TestApp,
        agent: &str,
        record: Self,
    ) -> impl Future<Output = Result<Self, Status>>;
    fn get(app: &TestApp, id: &str) -> impl Future<Output = Result<Self, Status>>;
    /// Changes the fields named in `update_mask`, or every mutable field without a mask.
    fn update_as(
        app: &TestApp,
        agent: &str,
        record: Self,
        update_mask: Option<FieldMask>,
    ) -> impl Future<Output = Result<Self, Status>>;
}

macro_rules! impl_record {
    ($record:ty, $field:ident, $client:ident,
     $create:ident($Create:ident), $get:ident($Get:ident), $update:ident($Update:ident)) => {
        impl Record for $record {
            fn id(&self) -> &str {
                &self.id
            }
            fn version(&self) -> i64 {
                self.version
            }
            fn create_time(&self) -> Option<Timestamp> {
                self.create_time
            }
            fn update_time(&self) -> Option<Timestamp> {
                self.update_time
            }
            fn created_by(&self) -> &str {
                &self.created_by
            }
            fn with_bookkeeping(
                self,
                id: &str,
                version: i64,
                (create_time, created_by): (Timestamp, &str),
                (update_time, updated_by): (Timestamp, &str),
            ) -> Self {
                Self {
                    id: id.to_owned(),
                    version,
                    create_time: Some(create_time),
                    update_time: Some(update_time),
                    created_by: created_by.to_owned(),
                    updated_by: updated_by.to_owned(),
                    ..self
                }
            }
            async fn create_as(app: &TestApp, agent: &str, record: Self) -> Result<Self, Status> {
                let call = pb::$Create {
                    $field: Some(record),
                };
                let answer = app.$client().$create(as_agent(agent, call)).await;
                answer.map(Response::into_inner)
            }
            async fn get(app: &TestApp, id: &str) -> Result<Self, Status> {
                let call = pb::$Get { id: id.to_owned() };
                let answer = app.$client().$get(app.setup(call)).await;
                answer.map(Response::into_inner)
            }
            async fn update_as(
                app: &TestApp,
                agent: &str,
                record: Self,
                update_mask: Option<FieldMask>,
            ) -> Result<Self, Status> {
                let call = pb::$Update {
                    $field: Some(record),
                    update_mask,
                    ..Default::default()
                };
                let answer = app.$client().$update(as_agent(agent, call)).await;
                answer.map(Response::into_inner)
            }
        }
    };
}

impl_record!(
    pb::Customer,
    customer,
    customers,
    create_customer(CreateCustomerRequest),
    get_customer(GetCustomerRequest),
    update_customer(UpdateCustomerRequest)
);
impl_record!(
    pb::Request,
    request,
    requests,
    create_request(CreateRequestRequest),
    get_request(GetRequestRequest),
    update_request(UpdateRequestRequest)
);
impl_record!(
    pb::Activity,
    activity,
    activities,
    create_activity(CreateActivityRequest),
    get_activity(GetActivityRequest),
    update_activity(UpdateActivityRequest)
);

/// The calls of each record kind by name, for tests that read better with the kind spelled out:
/// `create_…(record)` as the setup agent, expecting success; `create_…_as(agent, record)` and
/// `patch_…(agent, record, paths)` (only the fields named in `paths`, every mutable field when empty), which let
/// the caller see a refusal; `get_…(id)` without credentials; `delete_…(agent, id, version)`.
macro_rules! record_helpers {
    ($($Record:ident: $client:ident, $create:ident($Create:ident { $field:ident }), $create_as:ident,
       $get:ident($Get:ident), $patch:ident, $delete:ident($Delete:ident);)+) => {
        impl TestApp {$(
            pub async fn $create(&self, $field: pb::$Record) -> pb::$Record {
                let call = pb::$Create { $field: Some($field) };
                ok(self.$client().$create(self.setup(call)).await)
            }

            pub async fn $create_as(&self, agent: &str, $field: pb::$Record) -> Result<pb::$Record, Status> {
                self.create_as(agent, $field).await
            }

            pub async fn $get(&self, id: &str) -> Result<pb::$Record, Status> {
                let call = pb::$Get { id: id.to_owned() };
                self.$client().$get(call).await.map(Response::into_inner)
            }

            pub async fn $patch(
                &self,
                agent: &str,
                $field: pb::$Record,
                paths: &[&str],
            ) -> Result<pb::$Record, Status> {
                self.update_as(agent, $field, mask(paths)).await
            }

            pub async fn $delete(&self, agent: &str, id: &str, version: i64) -> Result<(), Status> {
                let call = pb::$Delete { id: id.to_owned(), version };
                self.$client().$delete(as_agent(agent, call)).await.map(Response::into_inner)
            }
        )+}
    };
}

record_helpers! {
    Customer: customers, create_customer(CreateCustomerRequest { customer }), create_customer_as,
        get_customer(GetCustomerRequest), patch_customer, delete_customer(DeleteCustomerRequest);
    Request: requests, create_request(CreateRequestRequest { request }), create_request_as,
        get_request(GetRequestRequest), patch_request, delete_request(DeleteRequestRequest);
    Activity: activities, create_activity(CreateActivityRequest { activity }), create_activity_as,
        get_activity(GetActivityRequest), patch_activity, delete_activity(DeleteActivityRequest);
}

impl TestApp {
    /// Creates `record` as `agent`; the status when it is refused.
    pub async fn create_as<R: Record>(&self, agent: &str, record: R) -> Result<R, Status> {
        R::create_as(self, agent, record).await
    }

    /// Updates the fields of `record` named in `update_mask` (every mutable field without one) as `agent`.
    pub async fn update_as<R: Record>(
        &self,
        agent: &str,
        record: R,
        update_mask: Option<FieldMask>,
    ) -> Result<R, Status> {
        R::update_as(self, agent, record, update_mask).await
    }

    /// Every request of a customer, whatever its status (one page of up to 500), newest first.
    pub async fn requests_of(&self, customer_id: &str) -> Vec<pb::Request> {
        self.list_requests(customer_id, pb::RequestStatus::Unspecified)
            .await
    }

    /// Every activity of a customer (one page of up to 500, read as the helpers' agent), newest first.
    pub async fn activities_of(&self, customer_id: &str) -> Vec<pb::Activity> {
        let call = pb::ListActivitiesRequest {
            customer_id: customer_id.to_owned(),
            page_size: 500,
            ..Default::default()
        };
        ok(self.activities().list_activities(self.setup(call)).await).activities
    }
}

/// Creates `input` as `agent` and checks the answer and the stored record: `expected` (the input as stored) with
/// a new UUIDv7, version 1, created and last updated now by `agent`. Returns the created record.
pub async fn create_and_check<R: Record>(app: &TestApp, agent: &str, input: R, expected: R) -> R {
    let created = app.create_as(agent, input).await.expect("create");
    assert_uuid_v7(created.id());
    let create_time = created.create_time().expect("create_time set");
    let expected =
        expected.with_bookkeeping(created.id(), 1, (create_time, agent), (create_time, agent));
    assert_eq!(created, expected);
    assert_eq!(R::get(app, created.id()).await.expect("get"), expected);
    created
}

/// Replaces every mutable field of `current` by those of `replacement` (no update mask) as `agent`, and checks the
/// answer and the stored record: `expected` (the replacement as stored) at the next version, created as before and
/// updated now by `agent`. Returns the updated record.
pub async fn replace_and_check<R: Record>(
    app: &TestApp,
    agent: &str,
    current: &R,
    replacement: R,
    expected: R,
) -> R {
    let updated = app
        .update_as(agent, replacement, None)
        .await
        .expect("update");
    let create_time = current.create_time().expect("create_time set");
    let update_time = updated.update_time().expect("update_time set");
    assert!(nanos(&update_time) >= nanos(&create_time));
    let expected = expected.with_bookkeeping(
        current.id(),
        current.version() + 1,
        (create_time, current.created_by()),
        (update_time, agent),
    );
    assert_eq!(updated, expected);
    assert_eq!(R::get(app, current.id()).await.expect("get"), expected);
    updated
}

/// The call failed with `code` and ErrorInfo `reason`.
#[track_caller]
pub fn assert_fails<T: Debug>(result: Result<T, Status>, code: Code, reason: &str) {
    assert_error(&err(result), code, reason);
}

/// The call failed with INVALID_ARGUMENT and exactly these `(field, reason)` violations.
#[track_caller]
pub fn assert_invalid<T: Debug>(result: Result<T, Status>, expected: &[(&str, &str)]) {
    assert_violations(&err(result), expected);
}

/// `agent` watching customer `id` (known at `known_version`), once the server has confirmed the subscription.
pub async fn watch_customer(
    app: &TestApp,
    agent: &str,
    id: &str,
    known_version: i64,
) -> crate::watch::Watcher {
    let mut watcher = crate::watch::Watcher::open(app, agent).await;
    watcher
        .subscribe(vec![crate::watch::customer_ref(id, known_version)], 0)
        .await;
    watcher.joined(id, agent).await;
    watcher
}

impl TestApp {
    /// One page of the customers matching `query`.
    pub async fn search_customers_page(
        &self,
        query: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<pb::SearchCustomersResponse, Status> {
        let call = pb::SearchCustomersRequest {
            query: query.to_owned(),
            page_size,
            page_token: page_token.to_owned(),
        };
        self.customers()
            .search_customers(call)
            .await
            .map(Response::into_inner)
    }
}

/// The value of an `Option` a test needs, or the end of the test when there is none (its database backend is not
/// available here, so the test is skipped): `let app = or_skip!(TestApp::spawn(backend).await);`.
macro_rules! or_skip {
    ($option:expr) => {
        match $option {
            Some(value) => value,
            None => return,
        }
    };
}
pub(crate) use or_skip;

/// `first_name last_name` with the customer number `customer_number`.
pub fn numbered_customer(customer_number: &str, first_name: &str, last_name: &str) -> pb::Customer {
    pb::Customer {
        customer_number: customer_number.to_owned(),
        ..customer(first_name, last_name)
    }
}

/// An activity about request `request_id` (an empty `customer_id` leaves the customer to the request).
pub fn activity_on_request(customer_id: &str, request_id: &str, topic: &str) -> pb::Activity {
    pb::Activity {
        request_id: request_id.to_owned(),
        ..activity(customer_id, topic)
    }
}

impl TestApp {
    /// Sends `call` (an update built by the test: mask, conflict policy) as `agent`.
    pub async fn update_customer_with(
        &self,
        agent: &str,
        call: pb::UpdateCustomerRequest,
    ) -> Result<pb::Customer, Status> {
        self.customers()
            .update_customer(as_agent(agent, call))
            .await
            .map(Response::into_inner)
    }
}

impl TestApp {
    /// Adds a comment that must be accepted, as `agent`.
    pub async fn comment_on(&self, agent: &str, request_id: &str, text: &str) -> pb::Comment {
        self.add_comment(agent, request_id, text)
            .await
            .unwrap_or_else(|status| panic!("comment {text:?} on {request_id}: {status:?}"))
    }

    /// Creates request `title` of `customer_id`, then moves it to `status` as `agent`.
    pub async fn create_request_in_status(
        &self,
        agent: &str,
        customer_id: &str,
        title: &str,
        status: pb::RequestStatus,
    ) -> pb::Request {
        let created = self.create_request(request(customer_id, title)).await;
        self.set_request_status(agent, &created, status)
            .await
            .unwrap_or_else(|refused| panic!("{title} to {status:?}: {refused:?}"))
    }
}

impl TestApp {
    /// Ana Lopez, the customer most tests start from.
    pub async fn ana_lopez(&self) -> pb::Customer {
        self.create_customer(customer("Ana", "Lopez")).await
    }

    /// Ana Lopez with one open request, "Broken": the fixture of most activity tests.
    pub async fn ana_with_a_broken_request(&self) -> (pb::Customer, pb::Request) {
        let ana = self.ana_lopez().await;
        let broken = self.create_request(request(&ana.id, "Broken")).await;
        (ana, broken)
    }
}

/// One HTTP/1.1 exchange with `addr`, on a connection of its own: the answer's head and its whole body.
pub async fn http1(
    addr: SocketAddr,
    request: http::Request<http_body_util::Full<bytes::Bytes>>,
) -> (http::response::Parts, bytes::Bytes) {
    use http_body_util::BodyExt as _;
    within("an HTTP/1.1 exchange", async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connects");
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .expect("HTTP/1.1 handshake");
        tokio::spawn(connection);
        let response = sender.send_request(request).await.expect("an answer");
        let (parts, body) = response.into_parts();
        (
            parts,
            body.collect().await.expect("the whole body").to_bytes(),
        )
    })
    .await
}
