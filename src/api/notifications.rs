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
    let rows = state
        .store
        .list_notifications(
            customer_id.as_deref(),
            status,
            page.cursor.as_ref(),
            page.fetch(),
        )
        .await?;
    Ok(page.answer(
        rows,
        |n| Cursor::after(n.create_time, &n.id),
        pb::Notification::from,
    ))
}

/// A status filter from the caller: `UNSPECIFIED` is `None`, an unknown number a violation.
fn status(violations: &mut Violations, field: &str, value: i32) -> Option<NotificationStatus> {
    let number = super::optional_enum::<pb::NotificationStatus>(violations, field, value)?;
    NotificationStatus::from_i32(number)
}
