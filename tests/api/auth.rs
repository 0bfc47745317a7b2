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
        request_service_client::RequestServiceClient, watch_service_client::WatchServiceClient,
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

const RPCS: [Rpc; 30] = [
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
            Watch => "WatchService",
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

/// Calls `rpc` with `key` (none: no `authorization` metadata) and returns its status. Whatever the call
/// changes is created for it first (with the app's admin key), so every call can succeed on its own.
async fn call(
    app: &TestApp,
    fx: &Fixture,
    rpc: Rpc,
    key: Option<&str>,
    agent: &str,
) -> Result<(), Status> {
    let customers = || CustomerServiceClient::new(app.channel());
    let requests = || RequestServiceClient::new(app.channel());
    let activities = || ActivityServiceClient::new(app.channel());
    let c = fx.customer.id.clone();
    match rpc {
        Rpc::CreateCustomer => customers()
            .create_customer(req(
                key,
                pb::CreateCustomerRequest {
                    customer: Some(customer("New", "One")),
                },
            ))
            .await
            .map(drop),
        Rpc::GetCustomer => customers()
            .get_customer(req(key, pb::GetCustomerRequest { id: c }))
            .await
            .map(drop),
        Rpc::UpdateCustomer => {
            let fresh = app.create_customer(customer("Fresh", "One")).await;
            customers()
                .update_customer(req(
                    key,
                    pb::UpdateCustomerRequest {
                        customer: Some(pb::Customer {
                            notes: "changed".into(),
                            ..fresh
                        }),
                        update_mask: mask(&["notes"]),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop)
        }
        Rpc::DeleteCustomer => {
            let fresh = app.create_customer(customer("Doomed", "One")).await;
            customers()
                .delete_customer(req(
                    key,
                    pb::DeleteCustomerRequest {
                        id: fresh.id,
                        version: fresh.version,
                    },
                ))
                .await
                .map(drop)
        }
        Rpc::SearchCustomers => customers()
            .search_customers(req(
                key,
                pb::SearchCustomersRequest {
                    query: "Carla".into(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        Rpc::LookupCustomers => customers()
            .lookup_customers(req(
                key,
                pb::LookupCustomersRequest {
                    key: Some(Key::Phone(PHONE.into())),
                },
            ))
            .await
            .map(drop),
        Rpc::CreateRequest => requests()
            .create_request(req(
                key,
                pb::CreateRequestRequest {
                    request: Some(request(&c, "New")),
                },
            ))
            .await
            .map(drop),
        Rpc::GetRequest => requests()
            .get_request(req(
                key,
                pb::GetRequestRequest {
                    id: fx.request.id.clone(),
                },
            ))
            .await
            .map(drop),
        Rpc::UpdateRequest => {
            let fresh = app.create_request(request(&c, "Fresh")).await;
            requests()
                .update_request(req(
                    key,
                    pb::UpdateRequestRequest {
                        request: Some(pb::Request {
                            title: "Changed".into(),
                            ..fresh
                        }),
                        update_mask: mask(&["title"]),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop)
        }
        Rpc::DeleteRequest => {
            let fresh = app.create_request(request(&c, "Doomed")).await;
            requests()
                .delete_request(req(
                    key,
                    pb::DeleteRequestRequest {
                        id: fresh.id,
                        version: fresh.version,
                    },
                ))
                .await
                .map(drop)
        }
        Rpc::ListRequests => requests()
            .list_requests(req(
                key,
                pb::ListRequestsRequest {
                    customer_id: c,
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        Rpc::AddComment => requests()
            .add_comment(req(
                key,
                pb::AddCommentRequest {
                    request_id: fx.request.id.clone(),
                    text: "hello".into(),
                },
            ))
            .await
            .map(drop),
        Rpc::ListComments => requests()
            .list_comments(req(
                key,
                pb::ListCommentsRequest {
                    request_id: fx.request.id.clone(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        Rpc::CreateActivity => activities()
            .create_activity(req(
                key,
                pb::CreateActivityRequest {
                    activity: Some(activity(&c, "incoming call")),
                },
            ))
            .await
            .map(drop),
        Rpc::GetActivity => activities()
            .get_activity(req(
                key,
                pb::GetActivityRequest {
                    id: fx.activity.id.clone(),
                },
            ))
            .await
            .map(drop),
        Rpc::UpdateActivity => {
            let fresh = app.create_activity(activity(&c, "fresh")).await;
            activities()
                .update_activity(req(
                    key,
                    pb::UpdateActivityRequest {
                        activity: Some(pb::Activity {
                            topic: "changed".into(),
                            ..fresh
                        }),
                        update_mask: mask(&["topic"]),
                        ..Default::default()
                    },
                ))
                .await
                .map(drop)
        }
        Rpc::DeleteActivity => {
            let fresh = app.create_activity(activity(&c, "doomed")).await;
            activities()
                .delete_activity(req(
                    key,
                    pb::DeleteActivityRequest {
                        id: fresh.id,
                        version: fresh.version,
                    },
                ))
                .await
                .map(drop)
        }
        Rpc::ListActivities => activities()
            .list_activities(req(
                key,
                pb::ListActivitiesRequest {
                    customer_id: c,
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        Rpc::OpenContext => ContextServiceClient::new(app.channel())
            .open_context(req(
                key,
                pb::OpenContextRequest {
                    interaction_id: unknown_id(),
                    channel: pb::Channel::Voice as i32,
                    direction: pb::Direction::Incoming as i32,
                    phone: PHONE.into(),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        Rpc::ListRecentCustomers => ContextServiceClient::new(app.channel())
            .list_recent_customers(req(
                key,
                pb::ListRecentCustomersRequest {
                    agent: agent.into(),
                    page_size: 0,
                },
            ))
            .await
            .map(drop),
        Rpc::Watch => {
            let subscribe = pb::WatchRequest {
                request: Some(pb::watch_request::Request::Subscribe(pb::Subscribe {
                    resources: vec![pb::ResourceRef {
                        r#type: pb::ResourceType::Customer as i32,
                        id: c,
                        known_version: fx.customer.version,
                    }],
                    ..Default::default()
                })),
            };
            // The stream stays open until the client drops it: the call's status is that of opening it.
            WatchServiceClient::new(app.channel())
                .watch(req(key, futures::stream::iter(vec![subscribe])))
                .await
                .map(drop)
        }
        Rpc::FindMatchingCustomers => customers()
            .find_matching_customers(req(
                key,
                pb::FindMatchingCustomersRequest {
                    customer_id: c,
                    page_size: 0,
                },
            ))
            .await
            .map(drop),
        Rpc::MergeCustomers => {
            let target = app.create_customer(customer("Merge", "Target")).await;
            let source = app.create_customer(customer("Merge", "Source")).await;
            customers()
                .merge_customers(req(
                    key,
                    pb::MergeCustomersRequest {
                        target_id: target.id,
                        target_version: target.version,
                        source_ids: vec![source.id],
                    },
                ))
                .await
                .map(drop)
        }
        Rpc::UnmergeCustomer => {
            let target = app.create_customer(customer("Unmerge", "Target")).await;
            let source = app.create_customer(customer("Unmerge", "Source")).await;
            customers()
                .merge_customers(app.setup(pb::MergeCustomersRequest {
                    target_id: target.id.clone(),
                    target_version: target.version,
                    source_ids: vec![source.id.clone()],
                }))
                .await
                .expect("merge for the unmerge");
            customers()
                .unmerge_customer(req(
                    key,
                    pb::UnmergeCustomerRequest {
                        target_id: target.id,
                        source_id: source.id,
                    },
                ))
                .await
                .map(drop)
        }
        Rpc::LockCustomer => {
            let fresh = app.create_customer(customer("Lock", "Me")).await;
            customers()
                .lock_customer(req(key, pb::LockCustomerRequest { id: fresh.id }))
                .await
                .map(drop)
        }
        Rpc::UnlockCustomer => {
            let fresh = app.create_customer(customer("Unlock", "Me")).await;
            customers()
                .lock_customer(app.setup(pb::LockCustomerRequest {
                    id: fresh.id.clone(),
                }))
                .await
                .expect("lock for the unlock");
            customers()
                .unlock_customer(req(key, pb::UnlockCustomerRequest { id: fresh.id }))
                .await
                .map(drop)
        }
        Rpc::AnonymizeCustomer => {
            let fresh = app.create_customer(customer("Forget", "Me")).await;
            customers()
                .anonymize_customer(req(key, pb::AnonymizeCustomerRequest { id: fresh.id }))
                .await
                .map(drop)
        }
        Rpc::ExportCustomer => customers()
            .export_customer(req(key, pb::ExportCustomerRequest { id: c }))
            .await
            .map(drop),
        Rpc::ListChanges => customers()
            .list_changes(req(
                key,
                pb::ListChangesRequest {
                    resource: Some(pb::ResourceRef {
                        r#type: pb::ResourceType::Customer as i32,
                        id: c,
                        known_version: 0,
                    }),
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
        Rpc::ListNotifications => customers()
            .list_notifications(req(
                key,
                pb::ListNotificationsRequest {
                    customer_id: c,
                    ..Default::default()
                },
            ))
            .await
            .map(drop),
    }
}

#[apply(backends)]
#[tokio::test]
async fn every_rpc_gives_each_role_the_documented_code(backend: Backend) {
    let Some(app) = TestApp::spawn_with_keys(backend, |_| {}).await else {
        return;
    };
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
    let Some(app) = TestApp::spawn_with_keys(backend, |_| {}).await else {
        return;
    };
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
    let Some(app) = TestApp::spawn_with_keys(backend, |_| {}).await else {
        return;
    };
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
    let Some(app) = TestApp::spawn_with_keys(backend, |_| {}).await else {
        return;
    };
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
    let Some(app) = TestApp::spawn_with_keys(backend, |_| {}).await else {
        return;
    };
    let health = HealthClient::new(app.channel())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await;
    assert!(health.is_ok(), "{health:?}");

    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest,
    };
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(app.channel())
        .server_reflection_info(futures::stream::iter(vec![request]))
        .await
        .expect("reflection answers without a key")
        .into_inner();
    assert!(responses.message().await.unwrap().is_some());
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

    let Some(db) = TestDb::new(backend).await else {
        return;
    };
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
