//! Conversions between the protos and the service's types, in one place: every record to its proto as `From`
//! impls (handlers answer with `pb::Customer::from(customer)`), and requests parsed into commands as `TryFrom`
//! impls whose error is every violation found.

use crate::domain::Violations;

mod activity;
mod context;
mod customer;
mod delete;
mod notification;
mod request;
mod update;

pub(super) use activity::ActivityInput;
pub(super) use request::{NewRequest, RequestInput, request_status};

/// The sub-message `field` of a request, which must be given.
fn required<T>(value: Option<T>, field: &str) -> Result<T, Violations> {
    value.ok_or_else(|| {
        Violations::one(
            field,
            crate::domain::reason::REQUIRED_FIELD,
            format!("{field} is required"),
        )
    })
}

/// What `check` returns if it found nothing wrong, else every violation it found.
fn checked<T>(check: impl FnOnce(&mut Violations) -> T) -> Result<T, Violations> {
    let mut violations = Violations::new();
    let value = check(&mut violations);
    violations.into_result(value)
}

/// Implements `TryFrom<($message, Region)>` for `$converted`: the request's record `$record`, required, checked
/// and converted by `$input`.
macro_rules! create_message {
    ($message:ident { $record:ident } => $converted:ty, $input:path) => {
        impl TryFrom<(pb::$message, Region)> for $converted {
            type Error = Violations;
            fn try_from(
                (pb::$message { $record }, region): (pb::$message, Region),
            ) -> Result<Self, Violations> {
                let record = super::required($record, stringify!($record))?;
                super::checked(|violations| $input(violations, record, region))
            }
        }
    };
}
use create_message;

/// The region of phone numbers written without a country code.
pub(super) type Region = phonenumber::country::Id;
