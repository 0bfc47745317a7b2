//! Customers.

use crate::{
    domain::{customer::Customer, time::to_timestamp},
    pb,
};

impl From<Customer> for pb::Customer {
    fn from(customer: Customer) -> Self {
        let d = customer.data;
        pb::Customer {
            id: customer.id,
            version: customer.version,
            first_name: d.first_name,
            last_name: d.last_name,
            company: d.company,
            gender: d.gender,
            customer_number: d.customer_number,
            contact_points: d
                .contact_points
                .into_iter()
                .map(|p| pb::ContactPoint {
                    kind: p.kind.as_i32(),
                    label: p.label,
                    value: p.value,
                })
                .collect(),
            notes: d.notes,
            tags: d.tags,
            credit_hold: d.credit_hold,
            attributes: d.attributes.into_iter().collect(),
            create_time: Some(to_timestamp(customer.audit.create_time)),
            update_time: Some(to_timestamp(customer.audit.update_time)),
            created_by: customer.audit.created_by,
            updated_by: customer.audit.updated_by,
            locked: customer.locked,
            anonymize_time: customer.anonymize_time.map(to_timestamp),
        }
    }
}
