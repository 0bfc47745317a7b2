//! The notification outbox as `CustomerService.ListNotifications` shows it.

use super::{Call, Paged};
use crate::{
    domain::{Violations, ids, notification::NotificationStatus, page::Cursor},
    error::Error,
    pb,
};

pub async fn list_notifications(
    Call(state, _, message): Call<'_, pb::ListNotificationsRequest>,
) -> Result<pb::ListNotificationsResponse, Error> {
    // Staff only (see auth::policy): no portal narrowing needed.
    let mut violations = Violations::new();
    let customer_id = ids::check_optional_id(&mut violations, "customer_id", &message.customer_id);
    let status = status(&mut violations, "status", message.status);
    let page = message.page(
        &mut violations,
        &[
            "notifications",
            customer_id.as_deref().unwrap_or_default(),
            &message.status.to_string(),
        ],
    );
    violations.into_result(())?;
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
    Ok(pb::ListNotificationsResponse {
        notifications: notifications
            .into_iter()
            .map(pb::Notification::from)
            .collect(),
        next_page_token,
    })
}

/// A status filter from the caller: `UNSPECIFIED` is `None`, an unknown number a violation.
fn status(violations: &mut Violations, field: &str, value: i32) -> Option<NotificationStatus> {
    let number = super::optional_enum::<pb::NotificationStatus>(violations, field, value)?;
    NotificationStatus::from_i32(number)
}
