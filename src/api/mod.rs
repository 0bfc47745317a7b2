//! The gRPC layer: one file per service. Converts and checks input, calls the store, maps errors. Thin.

use std::sync::Arc;

use tonic::{Request, Status, service::RoutesBuilder};

use crate::{
    domain::{
        Violations,
        change::ResourceKind,
        edit::Deletion,
        field_merge::ConflictPolicy,
        page::{self, Cursor},
        principal::Principal,
        reason,
    },
    error::Error,
    events::Hub,
    pb,
    shutdown::Shutdown,
    store::{Store, recent::RecentViews},
};

mod activities;
mod context;
mod convert;
mod customers;
mod identity;
mod notifications;
mod privacy;
mod requests;
mod resources;
mod watch;

pub use privacy::{EXPORT_FORMAT, export_document, message_json};
pub use watch::WatchApi;

/// What every service needs.
#[derive(Clone, Debug)]
pub struct ApiState {
    pub store: Store,
    /// Region for phone numbers written without a country code.
    pub region: phonenumber::country::Id,
    /// Fans committed changes and presence out to watch streams.
    pub hub: Arc<Hub>,
    /// Fires when the server begins shutting down, so streams can end.
    pub shutdown: Shutdown,
    /// Records which customers each agent opens or reads, for their Recent list.
    pub recent: RecentViews,
}

/// Registers every public service of the API; request messages above `max_message_bytes` are refused.
pub fn add_services(routes: &mut RoutesBuilder, state: ApiState, max_message_bytes: usize) {
    use pb::{
        activity_service_server::ActivityServiceServer,
        context_service_server::ContextServiceServer,
        customer_service_server::CustomerServiceServer,
        request_service_server::RequestServiceServer, watch_service_server::WatchServiceServer,
    };
    macro_rules! add {
        ($($server:ident($api:ident)),+) => {$(
            routes.add_service(
                $server::new($api::new(state.clone())).max_decoding_message_size(max_message_bytes),
            );
        )+};
    }
    add!(
        CustomerServiceServer(CustomerApi),
        RequestServiceServer(RequestApi),
        ActivityServiceServer(ActivityApi),
        ContextServiceServer(ContextApi),
        WatchServiceServer(WatchApi)
    );
}

pub use crate::auth::{AGENT_HEADER, ANONYMOUS};

/// The caller of a call, as the guard layer (`crate::auth::GuardLayer`) resolved it. The one function handlers
/// ask who acts. A call that did not pass the guard (services served without it) is refused.
pub fn principal<T>(request: &Request<T>) -> Result<Principal, Status> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| {
            Error::unauthenticated(
                "NO_CREDENTIALS",
                "the call was not authenticated (serve the API behind auth::GuardLayer)",
            )
            .into()
        })
}

/// One unary call as its handler sees it: the service's state, the caller the guard resolved (see
/// [`principal`]) and the message. Every unary method of the API is a function
/// `async fn <method>(Call<'_, Request>) -> Result<R, Error>` reached through [`handlers`], where `R` is the
/// response message or what converts into it (`Into<Response>`, such as the domain record a message shows); the
/// generated service implementations (`build.rs`) call it and convert its answer, and the one
/// `From<Error> for Status` map does the rest.
pub struct Call<'a, T>(pub &'a ApiState, pub Principal, pub T);

impl<'a, T> Call<'a, T> {
    fn new(state: &'a ApiState, request: Request<T>) -> Result<Self, Status> {
        let caller = principal(&request)?;
        Ok(Self(state, caller, request.into_inner()))
    }
}

/// A unary handler's answer as its call's response: what it returned, converted into the response message, or
/// its error as a status.
fn respond<R, M: From<R>>(answer: Result<R, Error>) -> Result<tonic::Response<M>, Status> {
    Ok(tonic::Response::new(M::from(answer?)))
}

/// Every unary handler, by the name of its method.
mod handlers {
    pub(super) use super::{
        activities::*, context::*, customers::*, delete_activity, delete_customer, delete_request,
        identity::*, notifications::*, privacy::*, requests::*,
    };
}

include!(concat!(env!("OUT_DIR"), "/customer_context_services.rs"));

/// NOT_FOUND for a record a portal key may not see: the same answer as for an id that does not exist, so a
/// portal cannot learn which ids exist.
fn hidden(resource: &'static str, id: &str) -> Error {
    Error::not_found(resource, id)
}

/// Records that `agent` opened or read `customer_id`, for their Recent list. Calls without an agent
/// (`anonymous`) are not recorded: nobody's list would show them.
fn record_view(state: &ApiState, agent: &str, customer_id: &str) {
    if agent != ANONYMOUS {
        state.recent.record(agent, customer_id);
    }
}

/// The delete handlers, one per record kind: each deletes the record its request names, as the calling agent.
macro_rules! delete_handlers {
    ($($handler:ident($message:ident) => $kind:ident),+ $(,)?) => {$(
        pub async fn $handler(call: Call<'_, pb::$message>) -> Result<(), Error> {
            let Call(state, caller, message) = call;
            let target = Deletion::try_from(message)?;
            state.store.delete(ResourceKind::$kind, &caller.agent, target).await
        }
    )+};
}

delete_handlers!(
    delete_customer(DeleteCustomerRequest) => Customer,
    delete_request(DeleteRequestRequest) => Request,
    delete_activity(DeleteActivityRequest) => Activity,
);

/// Whether the generated enum `E` knows `value`; if not, an `INVALID_ENUM_VALUE` violation naming the enum. The
/// proto is the only list of values.
fn known_enum<E: TryFrom<i32>>(violations: &mut Violations, field: &str, value: i32) -> bool {
    let known = E::try_from(value).is_ok();
    if !known {
        let name = std::any::type_name::<E>()
            .rsplit("::")
            .next()
            .unwrap_or("enum");
        violations.push(
            field,
            reason::INVALID_ENUM_VALUE,
            format!("{value} is not a {name}"),
        );
    }
    known
}

/// A proto enum number from the caller, checked against the generated enum `E`: passed on as it is (an unknown
/// one also adds a violation).
pub(in crate::api) fn enum_number<E: TryFrom<i32>>(
    violations: &mut Violations,
    field: &str,
    value: i32,
) -> i32 {
    known_enum::<E>(violations, field, value);
    value
}

/// A proto enum number from the caller where `UNSPECIFIED` (0) means none: `None` for 0 and for a number `E`
/// does not know (a violation), else the number.
pub(in crate::api) fn optional_enum<E: TryFrom<i32>>(
    violations: &mut Violations,
    field: &str,
    value: i32,
) -> Option<i32> {
    (value != 0 && known_enum::<E>(violations, field, value)).then_some(value)
}

/// What an update based on an older version asks for; an unknown value is `INVALID_ENUM_VALUE`.
pub(in crate::api) fn conflict_policy(violations: &mut Violations, value: i32) -> ConflictPolicy {
    match pb::ConflictPolicy::try_from(value) {
        Ok(pb::ConflictPolicy::Merge) => ConflictPolicy::Merge,
        Ok(pb::ConflictPolicy::Unspecified | pb::ConflictPolicy::Refuse) => ConflictPolicy::Refuse,
        Err(_) => {
            violations.push(
                "conflict_policy",
                reason::INVALID_ENUM_VALUE,
                format!("{value} is not a ConflictPolicy (REFUSE or MERGE)"),
            );
            ConflictPolicy::Refuse
        }
    }
}

/// The version an update or delete is based on; 0 (not sent) or negative is `MISSING_VERSION`.
pub(in crate::api) fn check_version_given(violations: &mut Violations, field: &str, version: i64) {
    if version <= 0 {
        violations.push(
            field,
            reason::MISSING_VERSION,
            "the version you last read is required, so that a change made meanwhile is not overwritten",
        );
    }
}

/// A page request: how many rows, and after which one.
struct PageRequest {
    size: u64,
    cursor: Option<Cursor>,
    filter: u64,
}

/// A list request: its `page_size` and `page_token` read as a [`PageRequest`].
trait Paged {
    fn page_size(&self) -> i32;
    fn page_token(&self) -> &str;

    /// The page this request asks for; `filter` names what the list is of, so that a token is honoured only
    /// by the same list.
    fn page(&self, violations: &mut Violations, filter: &[&str]) -> PageRequest {
        let filter = page::fingerprint(filter);
        PageRequest {
            size: page::page_size(violations, "page_size", self.page_size()),
            cursor: page::decode_token(violations, "page_token", self.page_token(), filter),
            filter,
        }
    }
}

macro_rules! paged {
    ($($message:ident),+ $(,)?) => {$(
        impl Paged for pb::$message {
            fn page_size(&self) -> i32 {
                self.page_size
            }

            fn page_token(&self) -> &str {
                &self.page_token
            }
        }
    )+};
}

paged!(
    SearchCustomersRequest,
    ListRequestsRequest,
    ListCommentsRequest,
    ListActivitiesRequest,
    ListChangesRequest,
    ListNotificationsRequest,
);

impl PageRequest {
    /// How many rows to read: one more than a page, to learn whether another page follows.
    fn fetch(&self) -> u64 {
        self.size + 1
    }

    /// The token of a page that starts after `cursor`.
    fn token_after(&self, cursor: &Cursor) -> String {
        page::encode_token(self.filter, cursor)
    }

    /// Trims `rows` to the page and returns the token of the next page (empty on the last one).
    fn finish<T>(&self, rows: &mut Vec<T>, cursor_of: impl Fn(&T) -> Cursor) -> String {
        if rows.len() as u64 <= self.size {
            return String::new();
        }
        rows.truncate(self.size as usize);
        rows.last()
            .map(|last| self.token_after(&cursor_of(last)))
            .unwrap_or_default()
    }

    /// The list response holding the page of `rows` (read with [`Self::fetch`]) as messages, with the token of
    /// the next page (see [`Self::finish`]).
    fn answer<T, M, R: PageOf<M>>(
        &self,
        mut rows: Vec<T>,
        cursor_of: impl Fn(&T) -> Cursor,
        to_message: impl FnMut(T) -> M,
    ) -> R {
        let next_page_token = self.finish(&mut rows, cursor_of);
        R::page_of(rows.into_iter().map(to_message).collect(), next_page_token)
    }
}

/// A list response: one page of messages `M` and the token of the next page.
trait PageOf<M> {
    fn page_of(messages: Vec<M>, next_page_token: String) -> Self;
}

macro_rules! page_of {
    ($($response:ident { $field:ident: $message:ident }),+ $(,)?) => {$(
        impl PageOf<pb::$message> for pb::$response {
            fn page_of($field: Vec<pb::$message>, next_page_token: String) -> Self {
                Self {
                    $field,
                    next_page_token,
                }
            }
        }
    )+};
}

page_of!(
    SearchCustomersResponse {
        customers: Customer
    },
    ListRequestsResponse { requests: Request },
    ListCommentsResponse { comments: Comment },
    ListActivitiesResponse {
        activities: Activity
    },
    ListChangesResponse { changes: Change },
    ListNotificationsResponse {
        notifications: Notification
    },
);

#[cfg(test)]
mod tests {
    use prost_reflect::DescriptorPool;

    use super::*;

    /// Every number each enum of the proto declares is accepted, and the next one after the highest is not.
    #[test]
    fn enum_checks_follow_the_proto() {
        let pool = DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET).expect("descriptors");
        let check = |name: &str, accepts: &dyn Fn(&mut Violations, i32) -> i32| {
            let values: Vec<i32> = pool
                .get_enum_by_name(&format!("customer_context.v1.{name}"))
                .expect("the enum")
                .values()
                .map(|value| value.number())
                .collect();
            for number in &values {
                let mut violations = Violations::new();
                accepts(&mut violations, *number);
                assert!(violations.is_empty(), "{name} {number}");
            }
            let next = values.iter().max().expect("values") + 1;
            for bad in [next, -1] {
                let mut violations = Violations::new();
                accepts(&mut violations, bad);
                assert_eq!(violations.len(), 1, "{name} {bad}");
            }
        };
        check("Channel", &|v, n| {
            enum_number::<pb::Channel>(v, "channel", n)
        });
        check("Direction", &|v, n| {
            enum_number::<pb::Direction>(v, "direction", n)
        });
        check("ConflictPolicy", &|v, n| {
            conflict_policy(v, n);
            n
        });
        check("RequestStatus", &|v, n| {
            optional_enum::<pb::RequestStatus>(v, "status", n);
            n
        });
        check("NotificationStatus", &|v, n| {
            optional_enum::<pb::NotificationStatus>(v, "status", n);
            n
        });
    }
}
