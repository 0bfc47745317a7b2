//! The crate's one error type and its single mapping to gRPC status codes with rich details.

use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::violations::Violations;

/// `ErrorInfo.domain` of every error this service returns.
pub const ERROR_DOMAIN: &str = "customer-context";

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input breaks one or more rules; nothing was written.
    #[error("invalid argument: {0}")]
    InvalidArgument(Violations),

    #[error("{resource} {id} not found")]
    NotFound { resource: &'static str, id: String },

    /// The customer was merged into another and is only a tombstone now (`NOT_FOUND`, reason `CUSTOMER_MERGED`).
    #[error("customer {id} was merged into customer {merged_into}")]
    Merged { id: String, merged_into: String },

    /// A write was based on a version other than the record's current one: a stale version (someone else
    /// changed it since), or one the record never had.
    #[error("{}", version_mismatch_text(resource, id, *given_version, *current_version, updated_by))]
    VersionMismatch {
        resource: &'static str,
        id: String,
        /// The version the call was based on.
        given_version: i64,
        current_version: i64,
        updated_by: String,
    },

    /// The record is in a state that forbids the operation.
    #[error("{message}")]
    FailedPrecondition {
        reason: &'static str,
        message: String,
    },

    /// A unique value is taken by another record.
    #[error("{message}")]
    AlreadyExists {
        reason: &'static str,
        message: String,
    },

    /// The call carries no valid credentials (missing, malformed, unknown or revoked key).
    #[error("{message}")]
    Unauthenticated {
        reason: &'static str,
        message: String,
    },

    /// The caller is known but their role may not do this.
    #[error("{message}")]
    PermissionDenied {
        reason: &'static str,
        message: String,
    },

    /// The client's deadline passed before the call finished.
    #[error("the deadline of the call passed before it finished")]
    DeadlineExceeded,

    /// A limit of the service is reached.
    #[error("{message}")]
    ResourceExhausted {
        reason: &'static str,
        message: String,
        retry_after: Option<Duration>,
    },

    /// The database cannot be reached right now; the call may be retried.
    #[error("database unavailable: {0}")]
    Unavailable(String),

    /// The service is set up wrongly (a bad flag or URL); found at start, never sent to callers.
    #[error("{0}")]
    Config(String),

    /// A fault of the service itself. The detail is logged, never sent to the caller.
    #[error("internal error: {0}")]
    Internal(String),
}

/// The message of [`Error::VersionMismatch`]: who changed a record since the caller's version, or, for a version
/// the record never had (ahead of the current one), that version and the current one.
fn version_mismatch_text(
    resource: &str,
    id: &str,
    given: i64,
    current: i64,
    updated_by: &str,
) -> String {
    if given < current {
        format!(
            "{resource} {id} was changed by {updated_by} since version {given} (now version {current})"
        )
    } else {
        format!(
            "{resource} {id} has no version {given}: it is at version {current}, last changed by {updated_by}"
        )
    }
}

impl Error {
    pub fn not_found(resource: &'static str, id: impl Into<String>) -> Self {
        Error::NotFound {
            resource,
            id: id.into(),
        }
    }

    pub fn invalid(
        field: impl Into<String>,
        reason: &'static str,
        description: impl Into<String>,
    ) -> Self {
        Error::InvalidArgument(Violations::one(field, reason, description))
    }

    pub fn failed_precondition(reason: &'static str, message: impl Into<String>) -> Self {
        Error::FailedPrecondition {
            reason,
            message: message.into(),
        }
    }

    pub fn unauthenticated(reason: &'static str, message: impl Into<String>) -> Self {
        Error::Unauthenticated {
            reason,
            message: message.into(),
        }
    }

    pub fn permission_denied(reason: &'static str, message: impl Into<String>) -> Self {
        Error::PermissionDenied {
            reason,
            message: message.into(),
        }
    }

    pub fn internal(detail: impl std::fmt::Display) -> Self {
        Error::Internal(detail.to_string())
    }

    /// The gRPC code this error maps to.
    pub fn code(&self) -> Code {
        match self {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::NotFound { .. } | Error::Merged { .. } => Code::NotFound,
            Error::VersionMismatch { .. } => Code::Aborted,
            Error::FailedPrecondition { .. } => Code::FailedPrecondition,
            Error::AlreadyExists { .. } => Code::AlreadyExists,
            Error::Unauthenticated { .. } => Code::Unauthenticated,
            Error::PermissionDenied { .. } => Code::PermissionDenied,
            Error::DeadlineExceeded => Code::DeadlineExceeded,
            Error::ResourceExhausted { .. } => Code::ResourceExhausted,
            Error::Unavailable(_) => Code::Unavailable,
            Error::Config(_) | Error::Internal(_) => Code::Internal,
        }
    }
}

impl From<Violations> for Error {
    fn from(violations: Violations) -> Self {
        Error::InvalidArgument(violations)
    }
}

impl From<sea_orm::DbErr> for Error {
    fn from(err: sea_orm::DbErr) -> Self {
        use sea_orm::{DbErr, RuntimeErr};
        let unavailable = match &err {
            DbErr::Conn(_) | DbErr::ConnectionAcquire(_) => true,
            DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
                matches!(
                    e.as_ref(),
                    sea_orm::sqlx::Error::Io(_)
                        | sea_orm::sqlx::Error::PoolTimedOut
                        | sea_orm::sqlx::Error::PoolClosed
                        | sea_orm::sqlx::Error::Tls(_)
                ) || is_transient_database_error(e.as_ref())
            }
            _ => false,
        };
        if unavailable {
            Error::Unavailable(err.to_string())
        } else {
            Error::Internal(err.to_string())
        }
    }
}

/// Database errors that go away by themselves: a busy SQLite file, a PostgreSQL server shutting down,
/// a statement timeout or a serialization failure.
fn is_transient_database_error(err: &sea_orm::sqlx::Error) -> bool {
    let sea_orm::sqlx::Error::Database(db) = err else {
        return false;
    };
    let code = db.code().unwrap_or_default();
    matches!(
        code.as_ref(),
        // SQLite: SQLITE_BUSY (5) and its extended codes, SQLITE_LOCKED (6).
        "5" | "6" | "261" | "517" | "773"
        // PostgreSQL: admin shutdown, crash shutdown, cannot connect now, statement timeout / query canceled,
        // serialization failure, deadlock.
        | "57P01" | "57P02" | "57P03" | "57014" | "40001" | "40P01"
    ) || code.starts_with("08")
}

/// Bytes of field paths and descriptions an `INVALID_ARGUMENT` reply lists. Paths and descriptions may quote the
/// input (an unknown mask path, an attribute key), and the reply travels in the trailers, which gRPC clients cap
/// (8 KiB soft and 16 KiB hard in gRPC's C core): past this budget the reply counts the remaining violations
/// instead of listing them, so a hostile call cannot blow up the answer and every client still gets it.
const LISTED_VIOLATIONS_BYTES: usize = 2048;
/// Longest field path and description listed, in characters.
const LISTED_FIELD_CHARS: usize = 160;
const LISTED_DESCRIPTION_CHARS: usize = 240;

/// `text` cut to `max` characters, the cut marked with an ellipsis.
fn clipped(text: &str, max: usize) -> String {
    match text.char_indices().nth(max.saturating_sub(1)) {
        Some((end, _)) if text[end..].chars().nth(1).is_some() => format!("{}…", &text[..end]),
        _ => text.to_owned(),
    }
}

/// Fills the details of an `INVALID_ARGUMENT` (a `BadRequest` with the violations, an `ErrorInfo` with the first
/// reason, every distinct reason and the fields) and returns its message. Every violation is listed unless the
/// listing passes [`LISTED_VIOLATIONS_BYTES`]; then the rest are counted (`ErrorInfo` metadata `unlisted`).
fn invalid_argument(details: &mut ErrorDetails, violations: &Violations) -> String {
    let mut listed = Vec::new();
    let mut bytes = 0;
    for violation in violations.iter() {
        let field = clipped(&violation.field, LISTED_FIELD_CHARS);
        let description = clipped(&violation.description, LISTED_DESCRIPTION_CHARS);
        bytes += field.len() + description.len();
        if bytes > LISTED_VIOLATIONS_BYTES && !listed.is_empty() {
            break;
        }
        listed.push((field, violation.reason, description));
    }
    let unlisted = violations.len() - listed.len();
    details.set_bad_request(
        listed
            .iter()
            .map(|(field, reason, description)| {
                let mut violation =
                    tonic_types::FieldViolation::new(field.clone(), description.clone());
                violation.reason = (*reason).to_owned();
                violation
            })
            .collect::<Vec<_>>(),
    );
    let first = violations
        .iter()
        .next()
        .map_or("INVALID_ARGUMENT", |v| v.reason);
    // Each reason once, in the order of its first violation (listed or not).
    let mut reasons: Vec<&str> = Vec::new();
    for violation in violations.iter() {
        if !reasons.contains(&violation.reason) {
            reasons.push(violation.reason);
        }
    }
    let fields: Vec<&str> = listed.iter().map(|(field, _, _)| field.as_str()).collect();
    let mut metadata = std::collections::HashMap::from([
        ("reasons".to_owned(), reasons.join(",")),
        ("fields".to_owned(), fields.join(",")),
    ]);
    if unlisted > 0 {
        metadata.insert("unlisted".to_owned(), unlisted.to_string());
    }
    details.set_error_info(first, ERROR_DOMAIN, metadata);
    let listing = listed
        .iter()
        .map(|(field, _, description)| format!("{field}: {description}"))
        .collect::<Vec<_>>()
        .join("; ");
    match (violations.len(), unlisted) {
        (1, _) => format!("invalid argument: {listing}"),
        (n, 0) => format!("{n} invalid fields: {listing}"),
        (n, more) => format!("{n} invalid fields: {listing}; and {more} more"),
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        let code = err.code();
        let mut details = ErrorDetails::new();
        let message = match &err {
            Error::InvalidArgument(violations) => invalid_argument(&mut details, violations),
            Error::NotFound { resource, id } => {
                details.set_error_info(
                    "NOT_FOUND",
                    ERROR_DOMAIN,
                    [
                        ("resource".to_owned(), (*resource).to_owned()),
                        ("id".to_owned(), id.clone()),
                    ],
                );
                details.set_resource_info(*resource, id.clone(), "", "no such record");
                err.to_string()
            }
            Error::Merged { id, merged_into } => {
                details.set_error_info(
                    "CUSTOMER_MERGED",
                    ERROR_DOMAIN,
                    [
                        ("resource".to_owned(), "customer".to_owned()),
                        ("id".to_owned(), id.clone()),
                        ("merged_into".to_owned(), merged_into.clone()),
                    ],
                );
                details.set_resource_info("customer", id.clone(), "", err.to_string());
                format!("{err}; open that customer instead")
            }
            Error::VersionMismatch {
                resource,
                id,
                given_version,
                current_version,
                updated_by,
            } => {
                details.set_error_info(
                    "VERSION_MISMATCH",
                    ERROR_DOMAIN,
                    [
                        ("resource".to_owned(), (*resource).to_owned()),
                        ("id".to_owned(), id.clone()),
                        ("given_version".to_owned(), given_version.to_string()),
                        ("current_version".to_owned(), current_version.to_string()),
                        ("updated_by".to_owned(), updated_by.clone()),
                    ],
                );
                format!("{err}; reload it and apply your change again")
            }
            Error::FailedPrecondition { reason, message } => {
                details.set_error_info(*reason, ERROR_DOMAIN, []);
                details.add_precondition_failure_violation(*reason, "", message.clone());
                message.clone()
            }
            Error::AlreadyExists { reason, message }
            | Error::Unauthenticated { reason, message }
            | Error::PermissionDenied { reason, message } => {
                details.set_error_info(*reason, ERROR_DOMAIN, []);
                message.clone()
            }
            Error::DeadlineExceeded => {
                details.set_error_info("DEADLINE_EXCEEDED", ERROR_DOMAIN, []);
                err.to_string()
            }
            Error::ResourceExhausted {
                reason,
                message,
                retry_after,
            } => {
                details.set_error_info(*reason, ERROR_DOMAIN, []);
                if let Some(delay) = retry_after {
                    details.set_retry_info(Some(*delay));
                }
                message.clone()
            }
            Error::Unavailable(detail) => {
                tracing::warn!(error = %detail, "database unavailable");
                details.set_error_info("DATABASE_UNAVAILABLE", ERROR_DOMAIN, []);
                details.set_retry_info(Some(Duration::from_secs(1)));
                "the database is unavailable; retry shortly".to_owned()
            }
            Error::Config(detail) | Error::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                details.set_error_info("INTERNAL", ERROR_DOMAIN, []);
                "internal error; the service logged the details".to_owned()
            }
        };
        Status::with_error_details(code, message, details)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_info_lists_each_reason_once_and_every_field() {
        let mut violations = Violations::new();
        violations.push("customer.first_name", "FIELD_TOO_LONG", "too long");
        violations.push("customer.contact_points[0].value", "INVALID_PHONE", "bad");
        violations.push("customer.notes", "FIELD_TOO_LONG", "too long");
        let status = Status::from(Error::InvalidArgument(violations));
        let info = status
            .get_error_details()
            .error_info()
            .cloned()
            .expect("ErrorInfo");
        assert_eq!(info.reason, "FIELD_TOO_LONG");
        assert_eq!(
            info.metadata.get("reasons").map(String::as_str),
            Some("FIELD_TOO_LONG,INVALID_PHONE")
        );
        assert_eq!(
            info.metadata.get("fields").map(String::as_str),
            Some("customer.first_name,customer.contact_points[0].value,customer.notes")
        );
        let request = status
            .get_error_details()
            .bad_request()
            .cloned()
            .expect("BadRequest");
        assert_eq!(request.field_violations.len(), 3);
        assert_eq!(info.metadata.get("unlisted"), None);
    }

    #[test]
    fn a_reply_listing_hostile_input_stays_small() {
        let mut violations = Violations::new();
        for i in 0..10_000 {
            violations.push(
                format!("update_mask.paths[{i}]"),
                "INVALID_UPDATE_MASK",
                format!("unknown field {:?}", "x".repeat(5_000)),
            );
        }
        let status = Status::from(Error::InvalidArgument(violations));
        let trailers = status.details().len() + status.message().len();
        assert!(trailers < 8 * 1024, "{trailers} bytes");
        let message = status.message();
        assert!(
            message.starts_with("10000 invalid fields: update_mask.paths[0]: unknown field"),
            "{message}"
        );
        assert!(message.ends_with(" more"), "{message}");
        let details = status.get_error_details();
        let listed = details
            .bad_request()
            .expect("BadRequest")
            .field_violations
            .len();
        assert!(listed >= 1, "{listed}");
        let info = details.error_info().expect("ErrorInfo");
        assert_eq!(
            info.metadata.get("unlisted"),
            Some(&(10_000 - listed).to_string())
        );
        assert_eq!(
            info.metadata.get("reasons").map(String::as_str),
            Some("INVALID_UPDATE_MASK")
        );
        assert_eq!(
            info.metadata.get("fields").map(|f| f.split(',').count()),
            Some(listed)
        );
    }

    #[test]
    fn clipping_counts_characters_and_marks_the_cut() {
        assert_eq!(clipped("héllo", 5), "héllo");
        assert_eq!(clipped("héllo!", 5), "héll…");
        assert_eq!(clipped("😀😀😀", 2), "😀…");
        assert_eq!(clipped("", 3), "");
    }
}
