//! Authentication and roles with `--auth keys`: the documented code for every RPC x every role x {no key,
//! revoked key, valid key}; keys created and revoked on a running server; the key's name as the acting agent;
//! `--auth none` refused off loopback.

use std::time::{Duration, Instant};

use customer_context::{
    config::Settings,
    pb::{
        self, activity_service_client::ActivityServiceClient,
        context_service_client::ContextServiceClient,
        customer_service_client::CustomerServiceClient, lookup_customers_request::Key,
        watch_service_client::WatchServiceClient,
    },
    server::RunningServer,
};
use prost::Message as _;
use tonic::{Code, Status};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use rstest::rstest;
use rstest_reuse::apply;

use crate::harness::*;

/// Every RPC of the public API. The table below has a row for each; `every_rpc_is_in_the_table` fails when the
/// protos gain an RPC this list lacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rpc {
    CreateCustomer,
    GetCustomer,
    UpdateCustomer,
    DeleteCustomer,
    SearchCustomers,
    LookupCustomers,
    CreateRequest,
    GetRequest,
    UpdateRequest,
    DeleteRequest,
    ListRequests,
    AddComment,
    ListComments,
    CreateActivity,
    GetActivity,
    UpdateActivity,
    DeleteActivity,
    ListActivities,
    OpenContext,
    ListRecentCustomers,
    Watch,
    OpenWatch,
    UpdateWatch,
    FindMatchingCustomers,
    MergeCustomers,
    UnmergeCustomer,
    LockCustomer,
    UnlockCustomer,
    AnonymizeCustomer,
    ExportCustomer,
    ListChanges,
    ListNotifications,
}

const RPCS: [Rpc; 32] = [
    Rpc::CreateCustomer,
    Rpc::GetCustomer,
    Rpc::UpdateCustomer,
    Rpc::DeleteCustomer,
    Rpc::SearchCustomers,
    Rpc::LookupCustomers,
    Rpc::CreateRequest,
    Rpc::GetRequest,
    Rpc::UpdateRequest,
    Rpc::DeleteRequest,
    Rpc::ListRequests,
    Rpc::AddComment,
    Rpc::ListComments,
    Rpc::CreateActivity,
    Rpc::GetActivity,
    Rpc::UpdateActivity,
    Rpc::DeleteActivity,
    Rpc::ListActivities,
    Rpc::OpenContext,
    Rpc::ListRecentCustomers,
    Rpc::Watch,
    Rpc::OpenWatch,
    Rpc::UpdateWatch,
    Rpc::FindMatchingCustomers,
    Rpc::MergeCustomers,
    Rpc::UnmergeCustomer,
    Rpc::LockCustomer,
    Rpc::UnlockCustomer,
    Rpc::AnonymizeCustomer,
    Rpc::ExportCustomer,
    Rpc::ListChanges,
    Rpc::ListNotifications,
];

const ROLES: [&str; 4] = ["admin", "agent", "router", "portal"];

/// The documented table: may `role` call `rpc`? (README "Security"; `src/auth/policy.rs`.)
fn allowed(rpc: Rpc, role: &str) -> bool {
    use Rpc::*;
    match role {
        "admin" => true,
        "agent" => !matches!(
            rpc,
            DeleteCustomer | LockCustomer | UnlockCustomer | AnonymizeCustomer | ExportCustomer
        ),
        "router" => matches!(rpc, OpenContext | LookupCustomers | CreateActivity),
        "portal" => matches!(
            rpc,
            GetCustomer
                | SearchCustomers
                | LookupCustomers
                | GetRequest
                | ListRequests
                | ListComments
                | CreateActivity
                | GetActivity
                | ListActivities
                | Watch
                | OpenWatch
                | UpdateWatch
        ),
        other => panic!("unknown role {other}"),
    }
}

impl Rpc {
    fn service_and_method(self) -> (&'static str, String) {
        use Rpc::*;
        let service = match self {
            CreateCustomer
            | GetCustomer
            | UpdateCustomer
            | DeleteCustomer
            | SearchCustomers
            | LookupCustomers
            | FindMatchingCustomers
            | MergeCustomers
            | UnmergeCustomer
            | LockCustomer
            | UnlockCustomer
            | AnonymizeCustomer
            | ExportCustomer
            | ListChanges
            | ListNotifications => "CustomerService",
            CreateRequest | GetRequest | UpdateRequest | DeleteRequest | ListRequests
            | AddComment | ListComments => "RequestService",
            CreateActivity | GetActivity | UpdateActivity | DeleteActivity | ListActivities => {
                "ActivityService"
            }
            OpenContext | ListRecentCustomers => "ContextService",
            Watch | OpenWatch | UpdateWatch => "WatchService",
        };
        (service, format!("{self:?}"))
    }
}

#[test]
fn every_rpc_is_in_the_table() {
    let set = prost_types::FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET).unwrap();
    let mut in_protos: Vec<(String, String)> = set
        .file
        .iter()
        .filter(|file| file.package() == "customer_context.v1")
        .flat_map(|file| {
            file.service.iter().flat_map(|service| {
                service
                    .method
                    .iter()
                    .map(|method| (service.name().to_owned(), method.name().to_owned()))
            })
        })
        .collect();
    let mut in_table: Vec<(String, String)> = RPCS
        .iter()
        .map(|rpc| {
            let (service, method) = rpc.service_and_method();
            (service.to_owned(), method)
        })
        .collect();
    in_protos.sort();
    in_table.sort();
    assert_eq!(in_table, in_protos, "the table must list every RPC, once");
}

/// What the calls work on: a customer (the portal key's), one of its requests and one of its activities.
struct Fixture {
    customer: pb::Customer,
    request: pb::Request,
    activity: pb::Activity,
}

const PHONE: &str = "+14155550100";

async fn fixture(app: &TestApp) -> Fixture {
    let customer = app
        .create_customer(pb::Customer {
            contact_points: vec![phone(PHONE)],
            ..customer("Carla", "Diaz")
        })
        .await;
    let request = app.create_request(request(&customer.id, "Broken")).await;
    let activity = app.create_activity(activity(&customer.id, "call")).await;
    Fixture {
        customer,
        request,
        activity,
    }
}

/// `message` with `key`, or without credentials.
fn req<T>(key: Option<&str>, message: T) -> tonic::Request<T> {
    match key {
        Some(key) => keyed(key, message),
        None => tonic::Request::new(message),
    }
}

/// One RPC called with one key (none: no `authorization` metadata).
struct Call<'a> {
    app: &'a TestApp,
    rpc: Rpc,
    key: Option<&'a str>,
}

impl Call<'_> {
    /// Sends `message` to the unary RPC, on the path its generated client uses; only the status matters.
    async fn send<M: prost::Message + Send + Sync + 'static>(
        &self,
        message: M,
    ) -> Result<(), Status> {
        let (service, method) = self.rpc.service_and_method();
        let path = format!("/customer_context.v1.{service}/{method}")
            .parse()
            .expect("an RPC path");
        let mut grpc = tonic::client::Grpc::new(self.app.channel());
        grpc.ready()
            .await
            .map_err(|e| Status::unknown(format!("channel not ready: {e}")))?;
        let codec = tonic_prost::ProstCodec::<M, ()>::default();
        grpc.unary(req(self.key, message), path, codec)
            .await
            .map(drop)
    }
}

/// Calls `rpc` with `key` (none: no `authorization` metadata) and returns its status. Whatever the call
/// changes is created for it first (with the app's admin key), so every call can succeed on its own.
async fn call(
    app: &TestApp,
    fx: &Fixture,
    rpc: Rpc,
    key: Option<&str>,
    agent: &str,
) -> Result<(), Status> {
    let to = Call { app, rpc, key };
    let c = fx.customer.id.clone();
    let resource = |kind: pb::ResourceType, known_version: i64| pb::ResourceRef {
        r#type: kind as i32,
        id: c.clone(),
        known_version,
    };
    match rpc {
        Rpc::CreateCustomer => {
            to.send(pb::CreateCustomerRequest {
                customer: Some(customer("New", "One")),
            })
            .await
        }
        Rpc::GetCustomer => to.send(pb::GetCustomerRequest { id: c }).await,
        Rpc::UpdateCustomer => {
            let fresh = app.create_customer(customer("Fresh", "One")).await;
            let change = pb::Customer {
                notes: "changed".into(),
                ..fresh
            };
            to.send(update_customer_request(change, &["notes"])).await
        }
        Rpc::DeleteCustomer => {
            let doomed = app.create_customer(customer("Doomed", "One")).await;
            let (id, version) = (doomed.id, doomed.version);
            to.send(pb::DeleteCustomerRequest { id, version }).await
        }
        Rpc::SearchCustomers => {
            to.send(pb::SearchCustomersRequest {
                query: "Carla".into(),
                ..Default::default()
            })
            .await
        }
        Rpc::LookupCustomers => {
            to.send(pb::LookupCustomersRequest {
                key: Some(Key::Phone(PHONE.into())),
            })
            .await
        }
        Rpc::CreateRequest => {
            to.send(pb::CreateRequestRequest {
                request: Some(request(&c, "New")),
            })
            .await
        }
        Rpc::GetRequest => {
            let id = fx.request.id.clone();
            to.send(pb::GetRequestRequest { id }).await
        }
        Rpc::UpdateRequest => {
            let fresh = app.create_request(request(&c, "Fresh")).await;
            let change = pb::Request {
                title: "Changed".into(),
                ..fresh
            };
            to.send(pb::UpdateRequestRequest {
                request: Some(change),
                update_mask: mask(&["title"]),
                ..Default::default()
            })
            .await
        }
        Rpc::DeleteRequest => {
            let doomed = app.create_request(request(&c, "Doomed")).await;
            let (id, version) = (doomed.id, doomed.version);
            to.send(pb::DeleteRequestRequest { id, version }).await
        }
        Rpc::ListRequests => {
            to.send(pb::ListRequestsRequest {
                customer_id: c,
                ..Default::default()
            })
            .await
        }
        Rpc::AddComment => {
            to.send(pb::AddCommentRequest {
                request_id: fx.request.id.clone(),
                text: "hello".into(),
            })
            .await
        }
        Rpc::ListComments => {
            to.send(pb::ListCommentsRequest {
                request_id: fx.request.id.clone(),
                ..Default::default()
            })
            .await
        }
        Rpc::CreateActivity => {
            to.send(pb::CreateActivityRequest {
                activity: Some(activity(&c, "incoming call")),
            })
            .await
        }
        Rpc::GetActivity => {
            let id = fx.activity.id.clone();
            to.send(pb::GetActivityRequest { id }).await
        }
        Rpc::UpdateActivity => {
            let fresh = app.create_activity(activity(&c, "fresh")).await;
            let change = pb::Activity {
                topic: "changed".into(),
                ..fresh
            };
            to.send(pb::UpdateActivityRequest {
                activity: Some(change),
                update_mask: mask(&["topic"]),
                ..Default::default()
            })
            .await
        }
        Rpc::DeleteActivity => {
            let doomed = app.create_activity(activity(&c, "doomed")).await;
            let (id, version) = (doomed.id, doomed.version);
            to.send(pb::DeleteActivityRequest { id, version }).await
        }
        Rpc::ListActivities => {
            to.send(pb::ListActivitiesRequest {
                customer_id: c,
                ..Default::default()
            })
            .await
        }
        Rpc::OpenContext => {
            to.send(pb::OpenContextRequest {
                interaction_id: unknown_id(),
                channel: pb::Channel::Voice as i32,
                direction: pb::Direction::Incoming as i32,
                phone: PHONE.into(),
                ..Default::default()
            })
            .await
        }
        Rpc::ListRecentCustomers => {
            to.send(pb::ListRecentCustomersRequest {
                agent: agent.into(),
                page_size: 0,
            })
            .await
        }
        Rpc::Watch => {
            let resources = vec![resource(pb::ResourceType::Customer, fx.customer.version)];
            let subscribe = pb::WatchRequest {
                request: Some(pb::watch_request::Request::Subscribe(pb::Subscribe {
                    resources,
                    ..Default::default()
                })),
            };
            // The stream stays open until the client drops it: the call's status is that of opening it.
            WatchServiceClient::new(app.channel())
                .watch(req(key, futures::stream::iter(vec![subscribe])))
                .await
                .map(drop)
        }
        Rpc::OpenWatch => {
            let subscribe = pb::Subscribe {
                resources: vec![resource(pb::ResourceType::Customer, fx.customer.version)],
                ..Default::default()
            };
            let request = pb::OpenWatchRequest {
                subscribe: Some(subscribe),
                ..Default::default()
            };
            WatchServiceClient::new(app.channel())
                .open_watch(req(key, request))
                .await
                .map(drop)
        }
        Rpc::UpdateWatch => {
            // A stream of this key's own when it may open one; else any id (the role is refused first).
            let mut client = WatchServiceClient::new(app.channel());
            let opened = client
                .open_watch(req(key, pb::OpenWatchRequest::default()))
                .await;
            let mut stream = opened.ok().map(tonic::Response::into_inner);
            let watch_id = match stream.as_mut() {
                Some(events) => match events.message().await {
                    Ok(Some(pb::WatchEvent {
                        event: Some(pb::watch_event::Event::WatchOpened(opened)),
                        ..
                    })) => opened.watch_id,
                    _ => "0".repeat(32),
                },
                None => "0".repeat(32),
            };
            let update = pb::UpdateWatchRequest {
                watch_id,
                sequence: 1,
                requests: Vec::new(),
            };
            let answer = client.update_watch(req(key, update)).await.map(drop);
            drop(stream);
            answer
        }
        Rpc::FindMatchingCustomers => {
            to.send(pb::FindMatchingCustomersRequest {
                customer_id: c,
                page_size: 0,
            })
            .await
        }
        Rpc::MergeCustomers => {
            let target = app.create_customer(customer("Merge", "Target")).await;
            let source = app.create_customer(customer("Merge", "Source")).await;
            to.send(pb::MergeCustomersRequest {
                target_id: target.id,
                target_version: target.version,
                source_ids: vec![source.id],
            })
            .await
        }
        Rpc::UnmergeCustomer => {
            let target = app.create_customer(customer("Unmerge", "Target")).await;
            let source = app.create_customer(customer("Unmerge", "Source")).await;
            app.merge_into(&target, &[&source])
                .await
                .expect("merge for the unmerge");
            to.send(pb::UnmergeCustomerRequest {
                target_id: target.id,
                source_id: source.id,
            })
            .await
        }
        Rpc::LockCustomer => {
            let fresh = app.create_customer(customer("Lock", "Me")).await;
            to.send(pb::LockCustomerRequest { id: fresh.id }).await
        }
        Rpc::UnlockCustomer => {
            let fresh = app.create_customer(customer("Unlock", "Me")).await;
            app.lock_customer(&fresh.id).await;
            to.send(pb::UnlockCustomerRequest { id: fresh.id }).await
        }
        Rpc::AnonymizeCustomer => {
            let fresh = app.create_customer(customer("Forget", "Me")).await;
            to.send(pb::AnonymizeCustomerRequest { id: fresh.id }).await
        }
        Rpc::ExportCustomer => to.send(pb::ExportCustomerRequest { id: c }).await,
        Rpc::ListChanges => {
            to.send(pb::ListChangesRequest {
                resource: Some(resource(pb::ResourceType::Customer, 0)),
                ..Default::default()
            })
            .await
        }
        Rpc::ListNotifications => {
            to.send(pb::ListNotificationsRequest {
                customer_id: c,
                ..Default::default()
            })
            .await
        }
    }
}

#[apply(backends)]
#[tokio::test]
async fn every_rpc_gives_each_role_the_documented_code(backend: Backend) {
    let app = or_skip!(TestApp::spawn_with_keys(backend, |_| {}).await);
    let fx = fixture(&app).await;
    for role in ROLES {
        let customer = (role == "portal").then_some(fx.customer.id.as_str());
        let valid = app.mint_key(&format!("{role}-1"), role, customer).await;
        let revoked = app.mint_key(&format!("{role}-old"), role, customer).await;
        app.revoke_key(&format!("{role}-old")).await;
        for rpc in RPCS {
            for (key, label) in [(None, "no key"), (Some(revoked.as_str()), "revoked key")] {
                let status = call(&app, &fx, rpc, key, "ana").await.expect_err(label);
                assert_eq!(
                    status.code(),
                    Code::Unauthenticated,
                    "{rpc:?} with {label} ({role}): {status:?}"
                );
            }
            let agent = format!("{role}-1");
            let result = call(&app, &fx, rpc, Some(&valid), &agent).await;
            if allowed(rpc, role) {
                assert!(result.is_ok(), "{rpc:?} as {role}: {result:?}");
            } else {
                let status = result.expect_err("denied");
                assert_error(&status, Code::PermissionDenied, "ROLE_NOT_ALLOWED");
            }
        }
    }
}

#[apply(backends)]
#[tokio::test]
async fn an_agent_reads_only_their_own_recent_list_and_an_admin_reads_anyones(backend: Backend) {
    let app = or_skip!(TestApp::spawn_with_keys(backend, |_| {}).await);
    let ana = app.mint_key("ana", "agent", None).await;
    let ben = app.mint_key("ben", "agent", None).await;
    let boss = app.mint_key("boss", "admin", None).await;
    let opened = ok(app
        .customers()
        .create_customer(keyed(
            &ana,
            pb::CreateCustomerRequest {
                customer: Some(customer("Opened", "ByAna")),
            },
        ))
        .await);
    let list = |key: String, agent: &str| {
        let mut client = ContextServiceClient::new(app.channel());
        let message = pb::ListRecentCustomersRequest {
            agent: agent.to_owned(),
            page_size: 0,
        };
        async move {
            client
                .list_recent_customers(keyed(&key, message))
                .await
                .map(|r| {
                    r.into_inner()
                        .customers
                        .into_iter()
                        .map(|c| c.id)
                        .collect::<Vec<_>>()
                })
        }
    };
    assert_eq!(
        list(ana.clone(), "ana").await.expect("own list"),
        std::slice::from_ref(&opened.id)
    );
    let status = list(ben.clone(), "ana")
        .await
        .expect_err("another agent's list");
    assert_error(&status, Code::PermissionDenied, "NOT_OWN_RECENT_LIST");
    assert_eq!(
        list(ben, "ben").await.expect("own, empty"),
        Vec::<String>::new()
    );
    assert_eq!(list(boss, "ana").await.expect("supervisor"), [opened.id]);
}

#[apply(backends)]
#[tokio::test]
async fn keys_work_at_once_and_stop_working_within_the_cache_ttl(backend: Backend) {
    let app = or_skip!(TestApp::spawn_with_keys(backend, |_| {}).await);
    let get = |key: String| {
        let mut client = CustomerServiceClient::new(app.channel());
        async move {
            client
                .search_customers(keyed(&key, pb::SearchCustomersRequest::default()))
                .await
        }
    };
    let unknown = format!("cc_{}", "A".repeat(43));
    assert_error(
        &err(get(unknown).await),
        Code::Unauthenticated,
        "INVALID_API_KEY",
    );

    // Created while the server runs: works on the next call.
    let key = app.mint_key("ana", "agent", None).await;
    ok(get(key.clone()).await);

    let revoked_at = Instant::now();
    app.revoke_key("ana").await;
    let status = loop {
        match get(key.clone()).await {
            Ok(_) => {
                assert!(
                    revoked_at.elapsed() < KEY_CACHE_TTL + Duration::from_secs(1),
                    "a revoked key still works {:?} after revocation",
                    revoked_at.elapsed()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => break status,
        }
    };
    assert_error(&status, Code::Unauthenticated, "INVALID_API_KEY");
}

#[apply(backends)]
#[tokio::test]
async fn the_key_name_is_the_acting_agent_and_x_agent_id_is_ignored(backend: Backend) {
    let app = or_skip!(TestApp::spawn_with_keys(backend, |_| {}).await);
    let key = app.mint_key("router-7", "router", None).await;
    let c = app.create_customer(customer("Carla", "Diaz")).await;
    let spoofed = with_key(
        &key,
        as_agent(
            "someone-else",
            pb::CreateActivityRequest {
                activity: Some(activity(&c.id, "call")),
            },
        ),
    );
    let created = ok(ActivityServiceClient::new(app.channel())
        .create_activity(spoofed)
        .await);
    assert_eq!(created.created_by, "router-7");
    assert_eq!(created.entered_by, "router-7");

    // Missing and malformed credentials are told apart.
    let mut customers = CustomerServiceClient::new(app.channel());
    let missing = err(customers
        .get_customer(as_agent(
            "admin",
            pb::GetCustomerRequest { id: c.id.clone() },
        ))
        .await);
    assert_error(&missing, Code::Unauthenticated, "MISSING_API_KEY");
    let mut basic = tonic::Request::new(pb::GetCustomerRequest { id: c.id });
    basic
        .metadata_mut()
        .insert("authorization", "Basic YWRtaW46YWRtaW4=".parse().unwrap());
    assert_error(
        &err(customers.get_customer(basic).await),
        Code::Unauthenticated,
        "MALFORMED_API_KEY",
    );
}

#[apply(backends)]
#[tokio::test]
async fn health_and_reflection_need_no_key(backend: Backend) {
    let app = or_skip!(TestApp::spawn_with_keys(backend, |_| {}).await);
    let health = HealthClient::new(app.channel())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await;
    assert!(health.is_ok(), "{health:?}");

    // Reflection answers without a key too.
    let list = crate::plumbing::v1::MessageRequest::ListServices(String::new());
    let [listed] = crate::plumbing::v1::ask(app.channel(), [list]).await;
    assert!(!crate::plumbing::v1::listed_services(listed).is_empty());
}

#[tokio::test]
async fn auth_none_is_refused_on_a_non_loopback_address() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings::new(
        "0.0.0.0:0".parse().unwrap(),
        database_url(&dir.path().join("cc.db")),
    );
    let error = RunningServer::start(settings)
        .await
        .expect_err("must refuse to start")
        .to_string();
    assert!(
        error.contains("--auth none") && error.contains("loopback"),
        "{error}"
    );
}

/// `customer-context keys ...` as a subprocess: the secret is printed once, never listed, and not in the
/// database; a revoked key is listed as revoked.
#[tokio::test]
async fn the_keys_commands_print_the_secret_once_and_store_only_its_hash() {
    let dir = tempfile::tempdir().unwrap();
    let db_file = dir.path().join("cc.db");
    let url = database_url(&db_file);
    let keys = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_customer-context"))
            .arg("keys")
            .args(args)
            .args(["--database-url", &url])
            .env_remove("CUSTOMER_CONTEXT_DATABASE_URL")
            .output()
            .expect("the binary runs");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (created, secret, note) = keys(&["create", "--name", "router-1", "--role", "router"]);
    assert!(created, "{note}");
    let secret = secret.trim().to_owned();
    assert!(secret.starts_with("cc_") && secret.len() > 40, "{secret}");
    assert!(note.contains("only this once"), "{note}");

    let (listed, list, _) = keys(&["list"]);
    assert!(listed);
    assert!(
        list.contains("router-1") && list.contains("router"),
        "{list}"
    );
    assert!(!list.contains(&secret), "a listing shows a secret");

    // Neither the database nor its WAL holds the secret.
    for file in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(file.unwrap().path()).unwrap();
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the secret is stored"
        );
    }

    let (portal_without_customer, _, why) = keys(&["create", "--name", "p", "--role", "portal"]);
    assert!(!portal_without_customer);
    assert!(why.contains("--customer"), "{why}");

    let (revoked, out, err) = keys(&["revoke", "router-1"]);
    assert!(revoked, "{err}");
    assert!(out.contains("revoked router key"), "{out}");
    let (_, list, _) = keys(&["list"]);
    let row = list.lines().find(|l| l.contains("router-1")).unwrap();
    assert!(
        !row.trim_end().ends_with('-'),
        "not shown as revoked: {row}"
    );
    let (again, _, _) = keys(&["revoke", "router-1"]);
    assert!(!again, "nothing left to revoke");
}

#[apply(backends)]
#[tokio::test]
async fn keys_share_a_name_only_to_rotate_and_revoke_by_id_or_name(backend: Backend) {
    use customer_context::{
        config::DatabaseSettings,
        error::Error,
        store::{Store, keys::NewKey},
    };

    let db = or_skip!(TestDb::new(backend).await);
    let store = Store::connect(&DatabaseSettings::new(db.url()))
        .await
        .unwrap();
    store.migrate().await.unwrap();
    let old: NewKey = store.create_key("router-1", "router", None).await.unwrap();
    let new = store.create_key("router-1", "router", None).await.unwrap();
    let taken = store
        .create_key("router-1", "agent", None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            taken,
            Error::AlreadyExists {
                reason: "KEY_NAME_TAKEN",
                ..
            }
        ),
        "{taken:?}"
    );
    assert!(matches!(
        store
            .create_key("portal-x", "portal", Some(&unknown_id()))
            .await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        store.create_key("two words", "agent", None).await,
        Err(Error::InvalidArgument(_))
    ));

    let found = store.find_active_key(&old.secret).await.unwrap().unwrap();
    assert_eq!(
        (found.name.as_str(), found.id.as_str()),
        ("router-1", old.key.id.as_str())
    );
    // By id: only that key (the rotation's old half).
    let revoked = store.revoke_key(&old.key.id).await.unwrap();
    assert_eq!(revoked.len(), 1);
    assert!(store.find_active_key(&old.secret).await.unwrap().is_none());
    assert!(store.find_active_key(&new.secret).await.unwrap().is_some());
    // By name: every active key of that name.
    let revoked = store.revoke_key("router-1").await.unwrap();
    assert_eq!(
        revoked.iter().map(|k| &k.id).collect::<Vec<_>>(),
        [&new.key.id]
    );
    assert!(matches!(
        store.revoke_key("router-1").await,
        Err(Error::NotFound { .. })
    ));
    let listed = store.list_keys().await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|k| k.revoke_time.is_some()));
    store.close().await;
}
