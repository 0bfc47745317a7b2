//! Activities.

use crate::{
    domain::{activity::Activity, time::to_timestamp},
    pb,
};

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
