//! The notification outbox as `CustomerService.ListNotifications` shows it.

use tonic::{Request, Response, Status};

use super::{ApiState, PageRequest, principal};
use crate::{
    domain::{
        Violations, ids,
        notification::{Notification, NotificationStatus},
        page::Cursor,
        reason,
        time::to_timestamp,
    },
    error::Error,
    pb,
};

pub(super) async fn list_notifications(
    state: &ApiState,
    request: Request<pb::ListNotificationsRequest>,
) -> Result<Response<pb::ListNotificationsResponse>, Status> {
    // Staff only (see auth::policy): no portal narrowing needed.
    principal(&request)?;
    let message = request.into_inner();
    let mut violations = Violations::new();
    let customer_id = ids::check_optional_id(&mut violations, "customer_id", &message.customer_id);
    let status = status(&mut violations, "status", message.status);
    let page = PageRequest::parse(
        &mut violations,
        message.page_size,
        &message.page_token,
        &[
            "notifications",
            customer_id.as_deref().unwrap_or_default(),
            &message.status.to_string(),
        ],
    );
    violations.into_result(()).map_err(Error::from)?;
    let mut notifications = state
        .store
        .list_notifications(
            customer_id.as_deref(),
            status,
            page.cursor.as_ref(),
            page.fetch(),
        )
        .await?;
    let next_page_token = page.finish(&mut notifications, |n| Cursor {
        time: Some(n.create_time),
        id: n.id.clone(),
    });
    Ok(Response::new(pb::ListNotificationsResponse {
        notifications: notifications.into_iter().map(to_pb).collect(),
        next_page_token,
    }))
}

/// A status filter from the caller: `UNSPECIFIED` is `None`, an unknown number a violation.
fn status(violations: &mut Violations, field: &str, value: i32) -> Option<NotificationStatus> {
    if value == 0 {
        return None;
    }
    let status = NotificationStatus::from_i32(value);
    if status.is_none() {
        violations.push(
            field,
            reason::INVALID_ENUM_VALUE,
            format!("{value} is not a NotificationStatus"),
        );
    }
    status
}

pub(super) fn to_pb(n: Notification) -> pb::Notification {
    pb::Notification {
        id: n.id,
        customer_id: n.customer_id,
        activity_id: n.activity_id,
        recipient: n.recipient,
        subject: n.subject,
        status: n.status.as_i32(),
        attempts: n.attempts,
        last_error: n.last_error,
        create_time: Some(to_timestamp(n.create_time)),
        send_time: n.send_time.map(to_timestamp),
        next_attempt_time: (n.status == NotificationStatus::Pending)
            .then(|| to_timestamp(n.next_attempt_time)),
    }
}
