//! The role table: which roles may call which method. The one place that says so; handlers add only the
//! data-dependent part (a portal key's customer scoping).
//!
//! | method                              | admin | agent | router | portal                              |
//! |-------------------------------------|-------|-------|--------|-------------------------------------|
//! | CreateCustomer, UpdateCustomer      | yes   | yes   |        |                                     |
//! | DeleteCustomer                      | yes   |       |        |                                     |
//! | GetCustomer                         | yes   | yes   |        | its own customer                    |
//! | SearchCustomers                     | yes   | yes   |        | its own customer, if it matches     |
//! | LookupCustomers                     | yes   | yes   | yes    | its own customer, if it matches     |
//! | FindMatchingCustomers               | yes   | yes   |        |                                     |
//! | MergeCustomers, UnmergeCustomer     | yes   | yes   |        |                                     |
//! | Lock/UnlockCustomer                 | yes   |       |        |                                     |
//! | AnonymizeCustomer, ExportCustomer   | yes   |       |        |                                     |
//! | ListChanges, ListNotifications      | yes   | yes   |        |                                     |
//! | Create/Update/DeleteRequest         | yes   | yes   |        |                                     |
//! | GetRequest, ListRequests            | yes   | yes   |        | its customer's requests             |
//! | AddComment                          | yes   | yes   |        |                                     |
//! | ListComments                        | yes   | yes   |        | comments of its customer's requests |
//! | CreateActivity                      | yes   | yes   | yes    | incoming, not internal, its customer|
//! | Update/DeleteActivity               | yes   | yes   |        |                                     |
//! | GetActivity, ListActivities         | yes   | yes   |        | its customer's non-internal ones    |
//! | OpenContext                         | yes   | yes   | yes    |                                     |
//! | ListRecentCustomers                 | yes   | own   |        |                                     |
//! | Watch, OpenWatch, UpdateWatch       | yes   | yes   |        | its own records; no internal events, no presence |
//!
//! Health and reflection are open to everyone (no key needed).

use crate::domain::principal::Role::{self, Admin, Agent, Portal, Router};

const STAFF: &[Role] = &[Admin, Agent];
const STAFF_AND_PORTAL: &[Role] = &[Admin, Agent, Portal];
const STAFF_AND_ROUTER: &[Role] = &[Admin, Agent, Router];
const EVERYONE: &[Role] = &[Admin, Agent, Router, Portal];

/// Every method of the public API (`/package.Service/Method`) with the roles that may call it. A method
/// missing here cannot be called by anyone (a unit test checks that every method of the protos is listed).
pub const METHODS: &[(&str, &[Role])] = &[
    ("/customer_context.v1.CustomerService/CreateCustomer", STAFF),
    (
        "/customer_context.v1.CustomerService/GetCustomer",
        STAFF_AND_PORTAL,
    ),
    ("/customer_context.v1.CustomerService/UpdateCustomer", STAFF),
    (
        "/customer_context.v1.CustomerService/DeleteCustomer",
        &[Admin],
    ),
    (
        "/customer_context.v1.CustomerService/SearchCustomers",
        STAFF_AND_PORTAL,
    ),
    (
        "/customer_context.v1.CustomerService/LookupCustomers",
        EVERYONE,
    ),
    (
        "/customer_context.v1.CustomerService/FindMatchingCustomers",
        STAFF,
    ),
    ("/customer_context.v1.CustomerService/MergeCustomers", STAFF),
    (
        "/customer_context.v1.CustomerService/UnmergeCustomer",
        STAFF,
    ),
    (
        "/customer_context.v1.CustomerService/LockCustomer",
        &[Admin],
    ),
    (
        "/customer_context.v1.CustomerService/UnlockCustomer",
        &[Admin],
    ),
    (
        "/customer_context.v1.CustomerService/AnonymizeCustomer",
        &[Admin],
    ),
    (
        "/customer_context.v1.CustomerService/ExportCustomer",
        &[Admin],
    ),
    ("/customer_context.v1.CustomerService/ListChanges", STAFF),
    (
        "/customer_context.v1.CustomerService/ListNotifications",
        STAFF,
    ),
    ("/customer_context.v1.RequestService/CreateRequest", STAFF),
    (
        "/customer_context.v1.RequestService/GetRequest",
        STAFF_AND_PORTAL,
    ),
    ("/customer_context.v1.RequestService/UpdateRequest", STAFF),
    ("/customer_context.v1.RequestService/DeleteRequest", STAFF),
    (
        "/customer_context.v1.RequestService/ListRequests",
        STAFF_AND_PORTAL,
    ),
    ("/customer_context.v1.RequestService/AddComment", STAFF),
    (
        "/customer_context.v1.RequestService/ListComments",
        STAFF_AND_PORTAL,
    ),
    (
        "/customer_context.v1.ActivityService/CreateActivity",
        EVERYONE,
    ),
    (
        "/customer_context.v1.ActivityService/GetActivity",
        STAFF_AND_PORTAL,
    ),
    ("/customer_context.v1.ActivityService/UpdateActivity", STAFF),
    ("/customer_context.v1.ActivityService/DeleteActivity", STAFF),
    (
        "/customer_context.v1.ActivityService/ListActivities",
        STAFF_AND_PORTAL,
    ),
    (
        "/customer_context.v1.ContextService/OpenContext",
        STAFF_AND_ROUTER,
    ),
    (
        "/customer_context.v1.ContextService/ListRecentCustomers",
        STAFF,
    ),
    ("/customer_context.v1.WatchService/Watch", STAFF_AND_PORTAL),
    (
        "/customer_context.v1.WatchService/OpenWatch",
        STAFF_AND_PORTAL,
    ),
    (
        "/customer_context.v1.WatchService/UpdateWatch",
        STAFF_AND_PORTAL,
    ),
];

/// Services anyone may call without a key: health checks and reflection.
const OPEN_SERVICES: &[&str] = &[
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// Who may call a method.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without credentials.
    Open,
    /// Authenticated callers with one of these roles.
    Roles(&'static [Role]),
    /// Not a method of this service.
    Unknown,
}

/// Whether the method at `path` streams (requests or responses), read from the descriptor set: its request is
/// not read in full before the call starts, and it counts as a stream, not a call, against the limits.
pub fn is_streaming(path: &str) -> bool {
    static STREAMING: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
        crate::public_methods()
            .into_iter()
            .filter(|method| method.client_streaming || method.server_streaming)
            .map(|method| method.path)
            .collect()
    });
    STREAMING.iter().any(|method| method == path)
}

/// Who may call the method at `path` (`/package.Service/Method`).
pub fn access(path: &str) -> Access {
    if OPEN_SERVICES.iter().any(|open| path.starts_with(open)) {
        return Access::Open;
    }
    METHODS
        .iter()
        .find(|(method, _)| *method == path)
        .map_or(Access::Unknown, |(_, roles)| Access::Roles(roles))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every method of every public service, from the descriptor set the server is built from.
    fn public_methods() -> Vec<String> {
        crate::public_methods()
            .into_iter()
            .map(|method| method.path)
            .collect()
    }

    #[test]
    fn streaming_methods_come_from_the_descriptors() {
        assert!(is_streaming("/customer_context.v1.WatchService/Watch"));
        assert!(!is_streaming(
            "/customer_context.v1.CustomerService/GetCustomer"
        ));
        assert!(!is_streaming("/customer_context.v1.WatchService/Nope"));
    }

    #[test]
    fn every_public_method_has_a_row_and_every_row_a_method() {
        let methods = public_methods();
        assert!(methods.len() >= 20, "{methods:?}");
        for method in &methods {
            assert!(
                matches!(access(method), Access::Roles(_)),
                "{method} is missing from the role table"
            );
        }
        for (method, _) in METHODS {
            assert!(
                methods.iter().any(|m| m == method),
                "{method} is not in the protos"
            );
        }
    }

    #[test]
    fn only_admins_delete_customers_and_health_is_open() {
        assert_eq!(
            access("/customer_context.v1.CustomerService/DeleteCustomer"),
            Access::Roles(&[Admin])
        );
        assert_eq!(access("/grpc.health.v1.Health/Check"), Access::Open);
        assert_eq!(
            access("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            Access::Open
        );
        assert_eq!(access("/customer_context.v1.Nope/Nothing"), Access::Unknown);
        assert_eq!(access("/grpc.health.v1.HealthX/Check"), Access::Unknown);
    }
}
