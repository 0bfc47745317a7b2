//! Activities.

use super::{Region, create_message, update::update_message};
use crate::{
    api::enum_number,
    domain::{
        Violations,
        activity::{self, Activity, ActivityData},
        contact, ids, reason, tags, text,
        time::{check_timestamp, to_timestamp},
    },
    pb,
};

/// An activity from the caller, with the defaults it did not give.
pub struct ActivityInput {
    pub data: ActivityData,
    /// `occur_time` was not given (create: now; update: keep).
    pub occur_time_missing: bool,
    /// `entered_by` was empty (create: the acting agent; update: keep).
    pub entered_by_missing: bool,
}

/// Checks every caller-settable field of `a` (paths under `activity.`) and converts it.
fn activity_input(violations: &mut Violations, a: pb::Activity, region: Region) -> ActivityInput {
    let pb::Activity {
        // Set by the service.
        id: _,
        version: _,
        create_time: _,
        update_time: _,
        created_by: _,
        updated_by: _,
        customer_id,
        request_id,
        channel,
        direction,
        internal,
        topic,
        notes,
        tags,
        occur_time,
        follow_up_time,
        entered_by,
        contact_name,
        contact_phone,
        contact_email,
        sales_contact,
        salesperson,
        reference,
    } = a;
    for (field, value) in [
        ("activity.topic", &topic),
        ("activity.notes", &notes),
        ("activity.entered_by", &entered_by),
        ("activity.contact_name", &contact_name),
        ("activity.sales_contact", &sales_contact),
        ("activity.salesperson", &salesperson),
        ("activity.reference", &reference),
    ] {
        text::check_text(violations, field, value);
    }
    let contact_phone = match contact_phone.trim() {
        "" => String::new(),
        raw => contact::normalize_phone(raw, region).unwrap_or_else(|e| {
            violations.push("activity.contact_phone", reason::INVALID_PHONE, e);
            String::new()
        }),
    };
    let contact_email = match contact_email.trim() {
        "" => String::new(),
        raw => contact::normalize_email(raw).unwrap_or_else(|e| {
            violations.push("activity.contact_email", reason::INVALID_EMAIL, e);
            String::new()
        }),
    };
    let occur_time_missing = occur_time.is_none();
    let occur_time = occur_time
        .as_ref()
        .and_then(|t| check_timestamp(violations, "activity.occur_time", t));
    let follow_up_time = follow_up_time
        .as_ref()
        .and_then(|t| check_timestamp(violations, "activity.follow_up_time", t));
    let data = ActivityData {
        customer_id: ids::check_optional_id(violations, "activity.customer_id", &customer_id),
        request_id: ids::check_optional_id(violations, "activity.request_id", &request_id),
        channel: enum_number::<pb::Channel>(violations, "activity.channel", channel),
        direction: enum_number::<pb::Direction>(violations, "activity.direction", direction),
        internal,
        tags: tags::normalize_tags(violations, "activity.tags", &tags),
        topic,
        notes,
        occur_time: occur_time.unwrap_or_default(),
        follow_up_time,
        entered_by: entered_by.trim().to_owned(),
        contact_name,
        contact_phone,
        contact_email,
        sales_contact,
        salesperson,
        reference,
    };
    ActivityInput {
        occur_time_missing,
        entered_by_missing: data.entered_by.is_empty(),
        data,
    }
}

create_message!(CreateActivityRequest { activity } => ActivityInput, activity_input);

update_message!(
    UpdateActivityRequest { activity: pb::Activity } => ActivityInput,
    activity_input,
    activity::MUTABLE_FIELDS,
    activity::OUTPUT_ONLY_FIELDS
);

impl From<Activity> for pb::Activity {
    fn from(a: Activity) -> Self {
        let d = a.data;
        pb::Activity {
            id: a.id,
            version: a.version,
            customer_id: d.customer_id.unwrap_or_default(),
            request_id: d.request_id.unwrap_or_default(),
            channel: d.channel,
            direction: d.direction,
            internal: d.internal,
            topic: d.topic,
            notes: d.notes,
            tags: d.tags,
            occur_time: Some(to_timestamp(d.occur_time)),
            follow_up_time: d.follow_up_time.map(to_timestamp),
            entered_by: d.entered_by,
            contact_name: d.contact_name,
            contact_phone: d.contact_phone,
            contact_email: d.contact_email,
            sales_contact: d.sales_contact,
            salesperson: d.salesperson,
            reference: d.reference,
            create_time: Some(to_timestamp(a.audit.create_time)),
            update_time: Some(to_timestamp(a.audit.update_time)),
            created_by: a.audit.created_by,
            updated_by: a.audit.updated_by,
        }
    }
}
