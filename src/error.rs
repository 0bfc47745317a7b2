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

    /// A save merged onto a newer version touches fields someone else changed since (`ABORTED`,
    /// `EDIT_CONFLICT`); nothing was written.
    #[error("{}", edit_conflict_text(resource, id, *given_version, *current_version, conflicts))]
    EditConflict {
        resource: &'static str,
        id: String,
        given_version: i64,
        current_version: i64,
        updated_by: String,
        conflicts: Vec<crate::domain::field_merge::Conflict>,
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

    /// The request of a unary call did not arrive in full within `--request-timeout`.
    #[error("the request did not arrive in full within {0:?}")]
    RequestTimeout(Duration),

    /// A value is outside what the service accepts (a request larger than its limit).
    #[error("{message}")]
    OutOfRange {
        reason: &'static str,
        message: String,
    },

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

/// The message of [`Error::EditConflict`]: which fields, changed by whom.
fn edit_conflict_text(
    resource: &str,
    id: &str,
    given: i64,
    current: i64,
    conflicts: &[crate::domain::field_merge::Conflict],
) -> String {
    let named: Vec<String> = conflicts
        .iter()
        .map(|c| format!("{} (by {})", c.field, c.agent))
        .collect();
    format!(
        "{resource} {id} changed since version {given} (now version {current}) in what this save changes: {}",
        named.join(", ")
    )
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

    /// The same error again, for another call it answers: its code and message (an unavailable database stays
    /// `UNAVAILABLE`, anything else is `INTERNAL`).
    pub fn copied(&self) -> Self {
        match self {
            Error::Unavailable(detail) => Error::Unavailable(detail.clone()),
            Error::Internal(detail) | Error::Config(detail) => Error::Internal(detail.clone()),
            other => Error::Internal(other.to_string()),
        }
    }

    /// The gRPC code this error maps to.
    pub fn code(&self) -> Code {
        match self {
            Error::InvalidArgument(_) => Code::InvalidArgument,
            Error::NotFound { .. } | Error::Merged { .. } => Code::NotFound,
            Error::VersionMismatch { .. } | Error::EditConflict { .. } => Code::Aborted,
            Error::FailedPrecondition { .. } => Code::FailedPrecondition,
            Error::AlreadyExists { .. } => Code::AlreadyExists,
            Error::Unauthenticated { .. } => Code::Unauthenticated,
            Error::PermissionDenied { .. } => Code::PermissionDenied,
            Error::DeadlineExceeded | Error::RequestTimeout(_) => Code::DeadlineExceeded,
            Error::OutOfRange { .. } => Code::OutOfRange,
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
        crate::telemetry::metrics::count_db_error(db_error_kind(&err));
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

/// The kind of a database error, as `customer_context_db_errors_total` counts it: one of
/// [`crate::telemetry::metrics::DB_ERROR_KINDS`].
pub fn db_error_kind(err: &sea_orm::DbErr) -> &'static str {
    use sea_orm::{DbErr, RuntimeErr, sqlx::Error as Sqlx};
    let sqlx = match err {
        DbErr::Conn(_) => return "connection",
        DbErr::ConnectionAcquire(_) => return "pool_timeout",
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            e.as_ref()
        }
        DbErr::RecordNotFound(_) | DbErr::RecordNotInserted | DbErr::RecordNotUpdated => {
            return "no_row";
        }
        _ => return "other",
    };
    match sqlx {
        Sqlx::Io(_) | Sqlx::Tls(_) | Sqlx::PoolClosed => "connection",
        Sqlx::PoolTimedOut => "pool_timeout",
        Sqlx::Database(db) => match db.code().unwrap_or_default().as_ref() {
            "57P01" | "57P02" | "57P03" => "server_shutdown",
            "57014" => "statement_timeout",
            "40001" => "serialization_failure",
            "40P01" => "deadlock",
            "23505" => "unique_violation",
            "23503" => "foreign_key_violation",
            code if code.starts_with("08") => "connection",
            // SQLite's extended result codes; no PostgreSQL code reads as one of the numbers those name.
            code => code.parse().map_or("other_database", sqlite_error_kind),
        },
        _ => "other",
    }
}

/// The kind of a SQLite error by its extended result code, as `customer_context_db_errors_total` counts it,
/// whether sqlx or a connection run in place met it.
pub fn sqlite_error_kind(extended_code: i32) -> &'static str {
    match extended_code {
        // SQLITE_BUSY, SQLITE_LOCKED, SQLITE_BUSY_RECOVERY, SQLITE_BUSY_SNAPSHOT, SQLITE_BUSY_TIMEOUT.
        5 | 6 | 261 | 517 | 773 => "busy",
        // SQLITE_CONSTRAINT_UNIQUE, SQLITE_CONSTRAINT_PRIMARYKEY.
        2067 | 1555 => "unique_violation",
        // SQLITE_CONSTRAINT_FOREIGNKEY.
        787 => "foreign_key_violation",
        _ => "other_database",
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

/// Most bytes the status of an error may take on the wire: `grpc-status`, the percent-encoded `grpc-message` and
/// the base64 `grpc-status-details-bin`, counted as HTTP/2 does (name, value and 32 bytes per entry). gRPC
/// clients refuse metadata past 8 KiB by default (gRPC's C core: a soft limit of 8 KiB, then 16 KiB), and the
/// response's other headers need room too.
pub const MAX_STATUS_BYTES: usize = 6 * 1024;

/// How much of an `INVALID_ARGUMENT` reply lists its violations. Paths and descriptions may quote the input (an
/// unknown mask path, an attribute key), so a reply first lists up to `bytes` of them, each cut at `field_chars`
/// and `description_chars`; a reply still over [`MAX_STATUS_BYTES`] is built again with the next, smaller
/// listing. The rest are counted (`ErrorInfo` metadata `unlisted`), so every client gets the answer.
#[derive(Clone, Copy)]
struct Listing {
    bytes: usize,
    field_chars: usize,
    description_chars: usize,
}

const LISTINGS: [Listing; 4] = [
    Listing {
        bytes: 2048,
        field_chars: 160,
        description_chars: 240,
    },
    Listing {
        bytes: 1024,
        field_chars: 120,
        description_chars: 160,
    },
    Listing {
        bytes: 256,
        field_chars: 80,
        description_chars: 80,
    },
    Listing {
        bytes: 0,
        field_chars: 40,
        description_chars: 40,
    },
];

/// `text` cut to `max` characters, the cut marked with an ellipsis.
fn clipped(text: &str, max: usize) -> String {
    match text.char_indices().nth(max.saturating_sub(1)) {
        Some((end, _)) if text[end..].chars().nth(1).is_some() => format!("{}…", &text[..end]),
        _ => text.to_owned(),
    }
}

/// An `INVALID_ARGUMENT` status: a `BadRequest` with the violations, an `ErrorInfo` with the first reason, every
/// distinct reason and the listed fields, and a message listing them; the first [`LISTINGS`] entry whose reply
/// fits in [`MAX_STATUS_BYTES`] (the last one lists a single violation, which always fits).
fn invalid_argument(violations: &Violations) -> Status {
    let [larger @ .., last] = &LISTINGS;
    larger
        .iter()
        .map(|listing| invalid_argument_listing(violations, *listing))
        .find(|status| status_bytes(status) <= MAX_STATUS_BYTES)
        .unwrap_or_else(|| invalid_argument_listing(violations, *last))
}

/// Bytes `status` takes in HTTP/2 header accounting; an unencodable status counts as too big.
pub fn status_bytes(status: &Status) -> usize {
    let mut headers = http::HeaderMap::new();
    match status.add_header(&mut headers) {
        Ok(()) => headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 32)
            .sum(),
        Err(_) => usize::MAX,
    }
}

fn invalid_argument_listing(violations: &Violations, limits: Listing) -> Status {
    let mut details = ErrorDetails::new();
    let mut listed = Vec::new();
    let mut bytes = 0;
    for violation in violations.iter() {
        let field = clipped(&violation.field, limits.field_chars);
        let description = clipped(&violation.description, limits.description_chars);
        bytes += field.len() + description.len();
        if bytes > limits.bytes && !listed.is_empty() {
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
    // Each reason once, in the order of its first violation (collected and listed or not).
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
    let message = match (violations.len(), unlisted) {
        (1, _) => format!("invalid argument: {listing}"),
        (n, 0) => format!("{n} invalid fields: {listing}"),
        (n, more) => format!("{n} invalid fields: {listing}; and {more} more"),
    };
    Status::with_error_details(Code::InvalidArgument, message, details)
}

impl From<Violations> for Status {
    fn from(violations: Violations) -> Self {
        invalid_argument(&violations)
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        let code = err.code();
        let mut details = ErrorDetails::new();
        let message = match &err {
            Error::InvalidArgument(violations) => return invalid_argument(violations),
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
            Error::EditConflict {
                resource,
                id,
                given_version,
                current_version,
                updated_by,
                conflicts,
            } => {
                let fields: Vec<&str> = conflicts.iter().map(|c| c.field.as_str()).collect();
                details.set_error_info(
                    "EDIT_CONFLICT",
                    ERROR_DOMAIN,
                    [
                        ("resource".to_owned(), (*resource).to_owned()),
                        ("id".to_owned(), id.clone()),
                        ("conflicting_fields".to_owned(), fields.join(",")),
                        ("given_version".to_owned(), given_version.to_string()),
                        ("current_version".to_owned(), current_version.to_string()),
                        ("updated_by".to_owned(), updated_by.clone()),
                    ],
                );
                details.set_bad_request(
                    conflicts
                        .iter()
                        .map(|c| {
                            let mut violation = tonic_types::FieldViolation::new(
                                format!("{resource}.{}", c.field),
                                format!(
                                    "changed by {} at {} (version {})",
                                    c.agent,
                                    crate::domain::time::to_rfc3339(c.time),
                                    c.version
                                ),
                            );
                            violation.reason = "EDIT_CONFLICT".to_owned();
                            violation
                        })
                        .collect::<Vec<_>>(),
                );
                format!("{err}; reload it, or keep your value and save again")
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
            Error::RequestTimeout(_) => {
                details.set_error_info("REQUEST_TIMEOUT", ERROR_DOMAIN, []);
                err.to_string()
            }
            Error::OutOfRange { reason, message } => {
                details.set_error_info(*reason, ERROR_DOMAIN, []);
                message.clone()
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
        let status = Status::with_error_details(code, message.clone(), details.clone());
        if status_bytes(&status) <= MAX_STATUS_BYTES {
            return status;
        }
        // A message or detail quoting long input (a taken customer number of 2,000 four-byte characters):
        // the message cut short and the reason alone still reach every client.
        let mut short = ErrorDetails::new();
        if let Some(info) = details.error_info() {
            short.set_error_info(info.reason.clone(), ERROR_DOMAIN, []);
        }
        Status::with_error_details(code, clipped(&message, 200), short)
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
        let trailers = status_bytes(&status);
        assert!(trailers <= MAX_STATUS_BYTES, "{trailers} bytes");
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

    /// Quoted input that percent-encoding and base64 blow up (four-byte characters, quotes, spaces) still gives
    /// a reply within the budget, however many violations there are.
    #[test]
    fn every_reply_fits_the_status_budget() {
        for count in [1, 12, 100, 1_000] {
            let mut violations = Violations::new();
            for i in 0..count {
                violations.push(
                    format!("customer.attributes[\"{}\"]", "😀 \"".repeat(300 + i)),
                    "INVALID_ATTRIBUTE_KEY",
                    format!("unknown field {:?}", "ü %".repeat(2_000)),
                );
            }
            let status = Status::from(Error::InvalidArgument(violations));
            assert_eq!(status.code(), Code::InvalidArgument);
            let bytes = status_bytes(&status);
            assert!(
                bytes <= MAX_STATUS_BYTES,
                "{count} violations: {bytes} bytes"
            );
            let details = status.get_error_details();
            assert!(
                !details
                    .bad_request()
                    .expect("BadRequest")
                    .field_violations
                    .is_empty()
            );
            let info = details.error_info().expect("ErrorInfo");
            let listed = details.bad_request().unwrap().field_violations.len();
            let unlisted: usize = info
                .metadata
                .get("unlisted")
                .map_or(0, |n| n.parse().unwrap());
            assert_eq!(
                listed + unlisted,
                count,
                "every violation is listed or counted"
            );
        }
    }

    #[test]
    fn an_error_quoting_long_input_is_cut_to_fit() {
        let taken = "𝄞".repeat(2_000);
        let status = Status::from(Error::AlreadyExists {
            reason: "CUSTOMER_NUMBER_TAKEN",
            message: format!("customer number {taken} is taken"),
        });
        assert!(
            status_bytes(&status) <= MAX_STATUS_BYTES,
            "{} bytes",
            status_bytes(&status)
        );
        assert_eq!(status.code(), Code::AlreadyExists);
        assert_eq!(
            status.get_error_details().error_info().unwrap().reason,
            "CUSTOMER_NUMBER_TAKEN"
        );
        assert!(status.message().starts_with("customer number 𝄞"));
    }

    #[test]
    fn clipping_counts_characters_and_marks_the_cut() {
        assert_eq!(clipped("héllo", 5), "héllo");
        assert_eq!(clipped("héllo!", 5), "héll…");
        assert_eq!(clipped("😀😀😀", 2), "😀…");
        assert_eq!(clipped("", 3), "");
    }
}
