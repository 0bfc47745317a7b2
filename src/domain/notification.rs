//! Customer notifications: which activities get one, what it says, and when a failed delivery is tried again.

use std::time::Duration;

use super::{
    activity::Activity,
    contact::{ContactKind, ContactPoint},
    time::Micros,
};

/// Proto `Direction.DIRECTION_INCOMING`: the customer contacted us.
const DIRECTION_INCOMING: i32 = 1;

/// Longest wait between two delivery attempts.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(10 * 60);

/// Where a notification stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NotificationStatus {
    /// Waiting to be sent, or to be tried again at `next_attempt_time`.
    Pending,
    /// Handed to the mail server.
    Sent,
    /// Given up: refused permanently, every attempt failed, or its activity was deleted first.
    Failed,
}

impl NotificationStatus {
    /// The value stored in the `status` column.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationStatus::Pending => "pending",
            NotificationStatus::Sent => "sent",
            NotificationStatus::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<NotificationStatus> {
        match text {
            "pending" => Some(NotificationStatus::Pending),
            "sent" => Some(NotificationStatus::Sent),
            "failed" => Some(NotificationStatus::Failed),
            _ => None,
        }
    }

    /// The proto `NotificationStatus` number.
    pub fn as_i32(self) -> i32 {
        match self {
            NotificationStatus::Pending => 1,
            NotificationStatus::Sent => 2,
            NotificationStatus::Failed => 3,
        }
    }

    /// The status with proto number `value`; `None` for 0 (unspecified) and unknown numbers.
    pub fn from_i32(value: i32) -> Option<NotificationStatus> {
        match value {
            1 => Some(NotificationStatus::Pending),
            2 => Some(NotificationStatus::Sent),
            3 => Some(NotificationStatus::Failed),
            _ => None,
        }
    }
}

/// A message telling a customer that an interaction with them was recorded, and its delivery so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    pub id: String,
    pub customer_id: String,
    pub activity_id: String,
    /// The email address it is sent to.
    pub recipient: String,
    pub subject: String,
    /// Plain text.
    pub body: String,
    pub status: NotificationStatus,
    /// Delivery attempts so far.
    pub attempts: i32,
    /// Why the last failed attempt failed; empty if none did.
    pub last_error: String,
    pub create_time: Micros,
    pub send_time: Option<Micros>,
    pub next_attempt_time: Micros,
}

/// Whether saving `activity` for its customer tells the customer: only interactions the customer started
/// (incoming) and may see (not internal), and only once a customer is known.
pub fn is_notifiable(activity: &Activity) -> bool {
    let data = &activity.data;
    !data.internal && data.direction == DIRECTION_INCOMING && data.customer_id.is_some()
}

/// The address a customer's notifications go to: their first email contact point.
pub fn recipient(contact_points: &[ContactPoint]) -> Option<&str> {
    contact_points
        .iter()
        .find(|point| point.kind == ContactKind::Email && !point.value.is_empty())
        .map(|point| point.value.as_str())
}

/// Subject and plain-text body telling the customer that `activity` was recorded. Only what the customer said
/// or already knows goes in: the channel, the day, the topic and the activity's id as the reference; never
/// notes, tags or who entered it.
pub fn compose(activity: &Activity) -> (String, String) {
    let data = &activity.data;
    let what = channel_words(data.channel);
    let day = format_day(data.occur_time);
    let subject = format!("Your {what} on {day} has been recorded");
    let topic = data.topic.trim();
    let about = if topic.is_empty() {
        String::new()
    } else {
        format!(" about \"{topic}\"")
    };
    let body = format!(
        "Hello,\n\
         \n\
         This is to confirm that your {what} with us on {day}{about} has been recorded.\n\
         \n\
         Reference: {reference}\n\
         \n\
         Please quote this reference if you contact us about it again.\n\
         \n\
         This message was sent automatically; there is no need to reply.\n",
        reference = activity.id,
    );
    (subject, body)
}

/// How the customer would call an interaction over proto `Channel` number `channel`.
fn channel_words(channel: i32) -> &'static str {
    match channel {
        1 => "phone call",
        2 => "chat",
        3 => "email",
        4 => "text message",
        5 => "social media message",
        6 => "message through our website",
        7 => "visit",
        _ => "contact",
    }
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// The UTC day of `micros` in words, e.g. "23 November 2026".
pub fn format_day(micros: Micros) -> String {
    let (year, month, day) = super::time::civil_from_days(micros.div_euclid(86_400_000_000));
    format!("{day} {} {year}", MONTHS[(month - 1) as usize])
}

/// The wait after failed attempt number `attempt` (1 for the first): `first` doubled for each further attempt,
/// at most [`MAX_RETRY_DELAY`], then scaled by `jitter` (0.0–1.0) into its upper half, so senders that failed
/// together do not retry together.
pub fn retry_delay(first: Duration, attempt: u32, jitter: f64) -> Duration {
    let doubled = first.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let capped = doubled.min(MAX_RETRY_DELAY);
    capped.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{activity::ActivityData, customer::Audit};

    fn activity(direction: i32, internal: bool, customer: Option<&str>) -> Activity {
        Activity {
            id: "0190aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee".to_owned(),
            version: 1,
            data: ActivityData {
                customer_id: customer.map(str::to_owned),
                channel: 1,
                direction,
                internal,
                topic: " Double charge ".to_owned(),
                notes: "agent-only remark".to_owned(),
                occur_time: 1_795_392_000_000_000,
                ..Default::default()
            },
            audit: Audit {
                create_time: 0,
                update_time: 0,
                created_by: "ana".to_owned(),
                updated_by: "ana".to_owned(),
            },
        }
    }

    #[test]
    fn only_public_incoming_activities_of_a_customer_notify() {
        assert!(is_notifiable(&activity(1, false, Some("c"))));
        assert!(!is_notifiable(&activity(1, true, Some("c"))));
        assert!(!is_notifiable(&activity(2, false, Some("c"))));
        assert!(!is_notifiable(&activity(0, false, Some("c"))));
        assert!(!is_notifiable(&activity(1, false, None)));
    }

    #[test]
    fn the_first_email_is_the_recipient() {
        let point = |kind, value: &str| ContactPoint {
            kind,
            label: String::new(),
            value: value.to_owned(),
        };
        assert_eq!(
            recipient(&[point(ContactKind::Phone, "+14155550100")]),
            None
        );
        assert_eq!(
            recipient(&[
                point(ContactKind::Phone, "+14155550100"),
                point(ContactKind::Email, "ana@example.com"),
                point(ContactKind::Email, "ana@work.example"),
            ]),
            Some("ana@example.com")
        );
    }

    #[test]
    fn the_message_names_channel_day_topic_and_reference_but_no_internal_data() {
        let activity = activity(1, false, Some("c"));
        let (subject, body) = compose(&activity);
        assert_eq!(
            subject,
            "Your phone call on 23 November 2026 has been recorded"
        );
        assert!(body.contains("phone call with us on 23 November 2026 about \"Double charge\""));
        assert!(body.contains(&format!("Reference: {}", activity.id)));
        assert!(
            !body.contains("agent-only") && !body.contains("ana"),
            "{body}"
        );
    }

    #[test]
    fn days_are_gregorian_utc() {
        assert_eq!(format_day(0), "1 January 1970");
        assert_eq!(format_day(-1), "31 December 1969");
        assert_eq!(format_day(951_782_400_000_000), "29 February 2000");
        assert_eq!(format_day(1_795_392_000_000_000 - 1), "22 November 2026");
    }

    #[test]
    fn retries_back_off_exponentially_with_jitter_up_to_a_cap() {
        let first = Duration::from_secs(1);
        assert_eq!(retry_delay(first, 1, 1.0), Duration::from_secs(1));
        assert_eq!(retry_delay(first, 2, 1.0), Duration::from_secs(2));
        assert_eq!(retry_delay(first, 4, 1.0), Duration::from_secs(8));
        assert_eq!(retry_delay(first, 4, 0.0), Duration::from_secs(4));
        assert_eq!(retry_delay(first, 30, 1.0), MAX_RETRY_DELAY);
        assert_eq!(
            retry_delay(first, u32::MAX, 0.5),
            MAX_RETRY_DELAY.mul_f64(0.75)
        );
    }
}
