//! `CustomerService`: profiles, search and contact-point lookup.

use tonic::{Request, Response, Status};

use super::{ApiState, PageRequest, hidden, principal};
use crate::{
    domain::{
        Violations,
        change::ResourceKind,
        contact::{self},
        customer::{Customer, CustomerData},
        edit::Edit,
        fold, ids, reason, text,
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

const RESOURCE: &str = "customer";

/// The portal's own customer as a one-element list if `matches` it, else empty (also when it is gone).
async fn own_customer_if(
    state: &ApiState,
    own: &str,
    matches: impl Fn(&Customer) -> bool,
) -> Result<Vec<pb::Customer>, Error> {
    match state.store.get_customer(own).await {
        Ok(customer) if matches(&customer) => Ok(vec![pb::Customer::from(customer)]),
        // A portal whose customer was merged away finds nothing, as with lookups.
        Ok(_) | Err(Error::NotFound { .. } | Error::Merged { .. }) => Ok(Vec::new()),
        Err(other) => Err(other),
    }
}

/// Whether every query word starts one of the customer's search words (what the search index matches).
fn matches_words(customer: &Customer, words: &[String]) -> bool {
    let own = customer.data.search_words();
    words
        .iter()
        .all(|word| own.iter().any(|w| w.starts_with(word.as_str())))
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
        let agent = principal(&request)?.agent;
        let data = CustomerData::try_from((request.into_inner(), self.state.region))?;
        let created = self.state.store.create_customer(&agent, data).await?;
        super::record_view(&self.state, &agent, &created.id);
        Ok(Response::new(pb::Customer::from(created)))
    }

    async fn get_customer(
        &self,
        request: Request<pb::GetCustomerRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        let caller = principal(&request)?;
        let id = ids::require_id("id", &request.get_ref().id)?;
        if let Some(own) = caller.portal_customer()
            && own != id
        {
            return Err(hidden(RESOURCE, &id).into());
        }
        let customer = self.state.store.get_customer(&id).await?;
        // A staff read is recorded for the reader's Recent list (a portal has none).
        if caller.portal_customer().is_none() {
            super::record_view(&self.state, &caller.agent, &customer.id);
        }
        Ok(Response::new(pb::Customer::from(customer)))
    }

    async fn update_customer(
        &self,
        request: Request<pb::UpdateCustomerRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        let agent = principal(&request)?.agent;
        let edit = Edit::<CustomerData>::try_from((request.into_inner(), self.state.region))?;
        let updated = self.state.store.update_customer(&agent, edit).await?;
        super::record_view(&self.state, &agent, &updated.id);
        Ok(Response::new(pb::Customer::from(updated)))
    }

    async fn delete_customer(
        &self,
        request: Request<pb::DeleteCustomerRequest>,
    ) -> Result<Response<()>, Status> {
        super::delete_record(&self.state, ResourceKind::Customer, request).await
    }

    async fn search_customers(
        &self,
        request: Request<pb::SearchCustomersRequest>,
    ) -> Result<Response<pb::SearchCustomersResponse>, Status> {
        let (caller, message) = super::caller_and_message(request)?;
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
        violations.into_result(())?;
        if let Some(own) = caller.portal_customer() {
            // Only the portal's own customer, on the first page, if every word starts one of its words.
            let customers = match page.cursor {
                Some(_) => Vec::new(),
                None => own_customer_if(&self.state, own, |c| matches_words(c, &words)).await?,
            };
            return Ok(Response::new(pb::SearchCustomersResponse {
                customers,
                next_page_token: String::new(),
            }));
        }
        let mut hits = self
            .state
            .store
            .search_customers(&words, page.cursor.as_ref(), page.fetch())
            .await?;
        let next_page_token = page.finish(&mut hits, |hit| hit.cursor.clone());
        Ok(Response::new(pb::SearchCustomersResponse {
            customers: hits
                .into_iter()
                .map(|hit| pb::Customer::from(hit.customer))
                .collect(),
            next_page_token,
        }))
    }

    async fn lookup_customers(
        &self,
        request: Request<pb::LookupCustomersRequest>,
    ) -> Result<Response<pb::LookupCustomersResponse>, Status> {
        use pb::lookup_customers_request::Key;
        let caller = principal(&request)?;
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
        let customers = self
            .state
            .store
            .lookup_customers_among(kind, &value, caller.portal_customer())
            .await?;
        Ok(Response::new(pb::LookupCustomersResponse {
            customers: customers.into_iter().map(pb::Customer::from).collect(),
        }))
    }

    async fn find_matching_customers(
        &self,
        request: Request<pb::FindMatchingCustomersRequest>,
    ) -> Result<Response<pb::FindMatchingCustomersResponse>, Status> {
        super::identity::find_matching_customers(&self.state, request).await
    }

    async fn merge_customers(
        &self,
        request: Request<pb::MergeCustomersRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        super::identity::merge_customers(&self.state, request).await
    }

    async fn unmerge_customer(
        &self,
        request: Request<pb::UnmergeCustomerRequest>,
    ) -> Result<Response<pb::UnmergeCustomerResponse>, Status> {
        super::identity::unmerge_customer(&self.state, request).await
    }

    async fn lock_customer(
        &self,
        request: Request<pb::LockCustomerRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        super::identity::set_locked(&self.state, request.map(|m| m.id), true).await
    }

    async fn unlock_customer(
        &self,
        request: Request<pb::UnlockCustomerRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        super::identity::set_locked(&self.state, request.map(|m| m.id), false).await
    }

    async fn anonymize_customer(
        &self,
        request: Request<pb::AnonymizeCustomerRequest>,
    ) -> Result<Response<pb::Customer>, Status> {
        super::privacy::anonymize_customer(&self.state, request).await
    }

    async fn export_customer(
        &self,
        request: Request<pb::ExportCustomerRequest>,
    ) -> Result<Response<pb::ExportCustomerResponse>, Status> {
        super::privacy::export_customer(&self.state, request).await
    }

    async fn list_changes(
        &self,
        request: Request<pb::ListChangesRequest>,
    ) -> Result<Response<pb::ListChangesResponse>, Status> {
        super::privacy::list_changes(&self.state, request).await
    }

    async fn list_notifications(
        &self,
        request: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        super::notifications::list_notifications(&self.state, request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_customer_matches_when_every_word_starts_one_of_its_words() {
        let customer = Customer {
            id: "c".into(),
            version: 1,
            data: CustomerData {
                first_name: "Zoë".into(),
                last_name: "Smith".into(),
                ..Default::default()
            },
            audit: crate::domain::customer::Audit {
                create_time: 0,
                update_time: 0,
                created_by: String::new(),
                updated_by: String::new(),
            },
            locked: false,
            anonymize_time: None,
        };
        let words = |q: &str| fold::words(q);
        assert!(matches_words(&customer, &words("zo smi")));
        assert!(matches_words(&customer, &[]));
        assert!(!matches_words(&customer, &words("zoe jones")));
    }

    #[test]
    fn phone_queries_are_normalized_and_text_queries_folded() {
        let us = phonenumber::country::Id::US;
        assert_eq!(query_words("(415) 555-0100", us), ["14155550100"]);
        assert_eq!(query_words("Zoë  Smith", us), ["zoe", "smith"]);
        assert_eq!(query_words("415555", us), ["415555"]);
    }
}
