//! `CustomerService`: profiles, search and contact-point lookup.

use tonic::{Request, Response, Status};

use super::{ApiState, PageRequest, acting_agent, check_version_given, required};
use crate::{
    domain::{
        Violations, attributes,
        contact::{self, ContactPointInput},
        customer::{self, Customer, CustomerData},
        fold, ids,
        mask::parse_update_mask,
        page::Cursor,
        reason, tags, text,
        time::to_timestamp,
    },
    error::Error,
    pb::{self, customer_service_server::CustomerService},
    store::LookupKey,
};

pub struct CustomerApi {
    state: ApiState,
}

impl CustomerApi {
    pub fn new(state: ApiState) -> Self {
        Self { state }
    }
}

/// Checks every caller-settable field of `c` (paths under `customer.`) and converts it.
fn customer_data(
    violations: &mut Violations,
    c: pb::Customer,
    region: phonenumber::country::Id,
) -> CustomerData {
    for (field, value) in [
        ("customer.first_name", &c.first_name),
        ("customer.last_name", &c.last_name),
        ("customer.company", &c.company),
        ("customer.gender", &c.gender),
        ("customer.customer_number", &c.customer_number),
        ("customer.notes", &c.notes),
    ] {
        text::check_text(violations, field, value);
    }
    let points: Vec<ContactPointInput> = c
        .contact_points
        .into_iter()
        .map(|p| ContactPointInput {
            kind: p.kind,
            label: p.label,
            value: p.value,
        })
        .collect();
    attributes::check_attributes(violations, "customer.attributes", &c.attributes);
    CustomerData {
        contact_points: contact::normalize_contact_points(
            violations,
            "customer.contact_points",
            &points,
            region,
        ),
        tags: tags::normalize_tags(violations, "customer.tags", &c.tags),
        first_name: c.first_name,
        last_name: c.last_name,
        company: c.company,
        gender: c.gender,
        customer_number: c.customer_number.trim().to_owned(),
        notes: c.notes,
        credit_hold: c.credit_hold,
        attributes: c.attributes.into_iter().collect(),
    }
}

pub(crate) fn to_pb(customer: Customer) -> pb::Customer {
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
    }
}

/// The words a search query looks for. A query that reads as a phone number is normalized first, so any
/// written form of a number finds it.
fn query_words(query: &str, region: phonenumber::country::Id) -> Vec<String> {
    let looks_like_phone = query.chars().filter(char::is_ascii_digit).count() >= 6
        && query
            .chars()
            .all(|c| c.is_ascii_digit() || " +-().".contains(c) || query.starts_with("tel:"));
    if looks_like_phone && let Ok(e164) = contact::normalize_phone(query, region) {
        return fold::words(&e164);
    }
    fold::words(query)
}

#[tonic::async_trait]
impl CustomerService for CustomerApi {
    async fn create_customer(
        &self,
        request: Request<pb::CreateCustomerRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        let agent = acting_agent(&request)?;
        let customer = required(request.into_inner().customer, "customer")?;
        let mut violations = Violations::new();
        let data = customer_data(&mut violations, customer, self.state.region);
        let data = violations.into_result(data).map_err(Error::from)?;
        let created = self.state.store.create_customer(&agent, data).await?;
        Ok(Response::new(to_pb(created)))
    }

    async fn get_customer(
        &self,
        request: Request<pb::GetCustomerRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        let mut violations = Violations::new();
        let id = ids::check_id(&mut violations, "id", &request.get_ref().id);
        violations.into_result(()).map_err(Error::from)?;
        let customer = self
            .state
            .store
            .get_customer(&id.unwrap_or_default())
            .await?;
        Ok(Response::new(to_pb(customer)))
    }

    async fn update_customer(
        &self,
        request: Request<pb::UpdateCustomerRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        let agent = acting_agent(&request)?;
        let message = request.into_inner();
        let customer = required(message.customer, "customer")?;
        let mut violations = Violations::new();
        let id = ids::check_id(&mut violations, "customer.id", &customer.id);
        check_version_given(&mut violations, "customer.version", customer.version);
        let paths = message.update_mask.map(|m| m.paths).unwrap_or_default();
        let fields = parse_update_mask(
            &mut violations,
            &paths,
            customer::MUTABLE_FIELDS,
            customer::OUTPUT_ONLY_FIELDS,
        );
        let version = customer.version;
        let mut field_violations = Violations::new();
        let data = customer_data(&mut field_violations, customer, self.state.region);
        field_violations.retain_fields("customer", &fields);
        violations.extend(field_violations);
        violations.into_result(()).map_err(Error::from)?;
        let updated = self
            .state
            .store
            .update_customer(&agent, &id.unwrap_or_default(), version, &fields, data)
            .await?;
        Ok(Response::new(to_pb(updated)))
    }

    async fn delete_customer(
        &self,
        request: Request<pb::DeleteCustomerRequest>,
    ) -> Result<Response<()>, Status> {
        let agent = acting_agent(&request)?;
        let message = request.into_inner();
        let mut violations = Violations::new();
        let id = ids::check_id(&mut violations, "id", &message.id);
        check_version_given(&mut violations, "version", message.version);
        violations.into_result(()).map_err(Error::from)?;
        self.state
            .store
            .delete_customer(&agent, &id.unwrap_or_default(), message.version)
            .await?;
        Ok(Response::new(()))
    }

    async fn search_customers(
        &self,
        request: Request<pb::SearchCustomersRequest>,
    ) -> Result<Response<pb::SearchCustomersResponse>, Status> {
        let message = request.into_inner();
        let mut violations = Violations::new();
        text::check_text(&mut violations, "query", &message.query);
        let words = query_words(&message.query, self.state.region);
        let filter: Vec<&str> = std::iter::once("search")
            .chain(words.iter().map(String::as_str))
            .collect();
        let page = PageRequest::parse(
            &mut violations,
            message.page_size,
            &message.page_token,
            &filter,
        );
        violations.into_result(()).map_err(Error::from)?;
        let mut customers = self
            .state
            .store
            .search_customers(&words, page.cursor.as_ref(), page.fetch())
            .await?;
        let next_page_token = page.finish(&mut customers, |c| Cursor {
            time: None,
            id: c.id.clone(),
        });
        Ok(Response::new(pb::SearchCustomersResponse {
            customers: customers.into_iter().map(to_pb).collect(),
            next_page_token,
        }))
    }

    async fn lookup_customers(
        &self,
        request: Request<pb::LookupCustomersRequest>,
    ) -> Result<Response<pb::LookupCustomersResponse>, Status> {
        use pb::lookup_customers_request::Key;
        let key = request.into_inner().key.ok_or_else(|| {
            Error::invalid(
                "key",
                reason::REQUIRED_FIELD,
                "give one of phone, email, handle or customer_number",
            )
        })?;
        let (kind, value) = match key {
            Key::Phone(raw) => {
                let phone = contact::normalize_phone(&raw, self.state.region)
                    .map_err(|e| Error::invalid("phone", reason::INVALID_PHONE, e))?;
                (LookupKey::Phone, phone)
            }
            Key::Email(raw) => {
                let email = contact::normalize_email(&raw)
                    .map_err(|e| Error::invalid("email", reason::INVALID_EMAIL, e))?;
                (LookupKey::Email, email)
            }
            Key::Handle(raw) => {
                let handle = contact::normalize_handle(&raw);
                if handle.is_empty() {
                    return Err(Error::invalid(
                        "handle",
                        reason::REQUIRED_FIELD,
                        "the handle is empty",
                    )
                    .into());
                }
                (
                    LookupKey::Handle,
                    contact::match_key(contact::ContactKind::Chat, &handle),
                )
            }
            Key::CustomerNumber(raw) => {
                let number = raw.trim().to_owned();
                if number.is_empty() {
                    return Err(Error::invalid(
                        "customer_number",
                        reason::REQUIRED_FIELD,
                        "the customer number is empty",
                    )
                    .into());
                }
                (LookupKey::CustomerNumber, number)
            }
        };
        let customers = self.state.store.lookup_customers(kind, &value).await?;
        Ok(Response::new(pb::LookupCustomersResponse {
            customers: customers.into_iter().map(to_pb).collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phone_queries_are_normalized_and_text_queries_folded() {
        let us = phonenumber::country::Id::US;
        assert_eq!(query_words("(415) 555-0100", us), ["14155550100"]);
        assert_eq!(query_words("Zoë  Smith", us), ["zoe", "smith"]);
        assert_eq!(query_words("415555", us), ["415555"]);
    }
}
