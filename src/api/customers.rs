//! `CustomerService`: profiles, search and contact-point lookup.

use super::{ApiState, Call, Paged, hidden};
use crate::{
    domain::{
        Violations,
        contact::{self},
        customer::{Customer, CustomerData},
        edit::Edit,
        fold, ids,
        principal::Principal,
        reason, text,
    },
    error::Error,
    pb,
    store::LookupKey,
};

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

/// `customer`, opened by a staff caller, recorded for the caller's Recent list.
fn viewed(state: &ApiState, caller: &Principal, customer: Customer) -> Customer {
    super::record_view(state, &caller.agent, &customer.id);
    customer
}

pub async fn create_customer(
    Call(state, caller, message): Call<'_, pb::CreateCustomerRequest>,
) -> Result<Customer, Error> {
    let data = CustomerData::try_from((message, state.region))?;
    let created = state.store.create_customer(&caller.agent, data).await?;
    Ok(viewed(state, &caller, created))
}

pub async fn get_customer(
    Call(state, caller, message): Call<'_, pb::GetCustomerRequest>,
) -> Result<Customer, Error> {
    let id = ids::require_id("id", &message.id)?;
    if let Some(own) = caller.portal_customer()
        && own != id
    {
        return Err(hidden(RESOURCE, &id));
    }
    let customer = state.store.get_customer(&id).await?;
    // A staff read is recorded for the reader's Recent list (a portal has none).
    Ok(match caller.portal_customer() {
        None => viewed(state, &caller, customer),
        Some(_) => customer,
    })
}

pub async fn update_customer(
    Call(state, caller, message): Call<'_, pb::UpdateCustomerRequest>,
) -> Result<Customer, Error> {
    let edit = Edit::<CustomerData>::try_from((message, state.region))?;
    let updated = state.store.update_customer(&caller.agent, edit).await?;
    Ok(viewed(state, &caller, updated))
}

pub async fn search_customers(
    Call(state, caller, message): Call<'_, pb::SearchCustomersRequest>,
) -> Result<pb::SearchCustomersResponse, Error> {
    let mut violations = Violations::new();
    text::check_text(&mut violations, "query", &message.query);
    let words = query_words(&message.query, state.region);
    let filter: Vec<&str> = std::iter::once("search")
        .chain(words.iter().map(String::as_str))
        .collect();
    let page = message.page(&mut violations, &filter);
    violations.into_result(())?;
    if let Some(own) = caller.portal_customer() {
        // Only the portal's own customer, on the first page, if every word starts one of its words.
        let customers = match page.cursor {
            Some(_) => Vec::new(),
            None => own_customer_if(state, own, |c| matches_words(c, &words)).await?,
        };
        return Ok(pb::SearchCustomersResponse {
            customers,
            next_page_token: String::new(),
        });
    }
    let found = state
        .store
        .search_customers(&words, page.cursor.as_ref(), page.fetch())
        .await?;
    let mut answer: pb::SearchCustomersResponse = page.answer(
        found.hits,
        |hit| hit.cursor.clone(),
        |hit| pb::Customer::from(hit.customer),
    );
    if let Some(stopped_at) = found.stopped_at {
        // Out of time before the page was full: the next page goes on from where this one stopped.
        answer.next_page_token = page.token_after(&stopped_at);
    }
    Ok(answer)
}

pub async fn lookup_customers(
    Call(state, caller, message): Call<'_, pb::LookupCustomersRequest>,
) -> Result<pb::LookupCustomersResponse, Error> {
    use pb::lookup_customers_request::Key;
    let key = message.key.ok_or_else(|| {
        Error::invalid(
            "key",
            reason::REQUIRED_FIELD,
            "give one of phone, email, handle or customer_number",
        )
    })?;
    let (kind, value) = match key {
        Key::Phone(raw) => {
            let phone = contact::normalize_phone(&raw, state.region)
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
                ));
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
                ));
            }
            (LookupKey::CustomerNumber, number)
        }
    };
    let customers = state
        .store
        .lookup_customers_among(kind, &value, caller.portal_customer())
        .await?;
    Ok(pb::LookupCustomersResponse {
        customers: customers.into_iter().map(pb::Customer::from).collect(),
    })
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
