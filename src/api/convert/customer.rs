//! Customers.

use super::{Region, create_message, update::update_message};
use crate::{
    domain::{
        Violations, attributes,
        contact::{self, ContactPointInput},
        customer::{self, Customer, CustomerData},
        tags, text,
        time::to_timestamp,
    },
    pb,
};

/// Checks every caller-settable field of `c` (paths under `customer.`) and converts it.
fn customer_data(violations: &mut Violations, c: pb::Customer, region: Region) -> CustomerData {
    let pb::Customer {
        // Set by the service.
        id: _,
        version: _,
        create_time: _,
        update_time: _,
        created_by: _,
        updated_by: _,
        locked: _,
        anonymize_time: _,
        first_name,
        last_name,
        company,
        gender,
        customer_number,
        contact_points,
        notes,
        tags,
        credit_hold,
        attributes,
    } = c;
    for (field, value) in [
        ("customer.first_name", &first_name),
        ("customer.last_name", &last_name),
        ("customer.company", &company),
        ("customer.gender", &gender),
        ("customer.notes", &notes),
    ] {
        text::check_text(violations, field, value);
    }
    let customer_number = customer_number.trim().to_owned();
    text::check_key_text(violations, "customer.customer_number", &customer_number);
    let points: Vec<ContactPointInput> = contact_points
        .into_iter()
        .map(|pb::ContactPoint { kind, label, value }| ContactPointInput { kind, label, value })
        .collect();
    attributes::check_attributes(violations, "customer.attributes", &attributes);
    CustomerData {
        contact_points: contact::normalize_contact_points(
            violations,
            "customer.contact_points",
            &points,
            region,
        ),
        tags: tags::normalize_tags(violations, "customer.tags", &tags),
        first_name,
        last_name,
        company,
        gender,
        customer_number,
        notes,
        credit_hold,
        attributes: attributes.into_iter().collect(),
    }
}

create_message!(CreateCustomerRequest { customer } => CustomerData, customer_data);

update_message!(
    UpdateCustomerRequest { customer: pb::Customer } => CustomerData,
    customer_data,
    customer::MUTABLE_FIELDS,
    customer::OUTPUT_ONLY_FIELDS
);

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
