//! Customer notifications.

use crate::{
    domain::{
        notification::{Notification, NotificationStatus},
        time::to_timestamp,
    },
    pb,
};

impl From<Notification> for pb::Notification {
    fn from(n: Notification) -> Self {
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
}
