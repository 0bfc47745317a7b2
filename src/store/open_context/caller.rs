//! Who is calling: the customers matching an interaction's contact points, best match first.

use std::collections::HashMap;

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect, sea_query::Expr};

use super::OpenContext;
use crate::store::{LookupKey, MAX_LOOKUP_RESULTS, Store, entity::customers};
use crate::{
    domain::{
        contact::{ContactKind, match_key},
        customer::Customer,
        time::Micros,
    },
    error::Result,
};

/// Who called.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(in crate::store) enum Caller {
    Known(Box<Customer>),
    /// Several customers match equally well, most recently active first.
    Ambiguous(Vec<Customer>),
    Unknown,
}

/// The caller's contact points as lookups: phone, email, then chat handle.
pub(in crate::store) fn lookups(input: &OpenContext) -> Vec<(LookupKey, String)> {
    let handle = input
        .handle
        .as_deref()
        .map(|h| match_key(ContactKind::Chat, h));
    [
        (LookupKey::Phone, input.phone.clone()),
        (LookupKey::Email, input.email.clone()),
        (LookupKey::Handle, handle),
    ]
    .into_iter()
    .filter_map(|(kind, key)| key.map(|key| (kind, key)))
    .collect()
}

/// The customers matching the most of the caller's contact points: customers matching more points win, so a
/// phone shared by a household and an email of one of them name that one.
pub(in crate::store) fn best_matches(
    found: impl IntoIterator<Item = Vec<Customer>>,
) -> Vec<Customer> {
    let mut scores: HashMap<String, (Customer, usize)> = HashMap::new();
    for customer in found.into_iter().flatten() {
        scores.entry(customer.id.clone()).or_insert((customer, 0)).1 += 1;
    }
    let best = scores.values().map(|(_, score)| *score).max().unwrap_or(0);
    scores
        .into_values()
        .filter(|(_, score)| *score == best)
        .map(|(customer, _)| customer)
        .collect()
}

/// The query giving each customer's latest activity time (`id`, `latest`), to order ambiguous matches.
pub(in crate::store) fn latest_activity_query(
    customers: &[Customer],
) -> sea_orm::Select<customers::Entity> {
    let ids: Vec<&str> = customers.iter().map(|c| c.id.as_str()).collect();
    customers::Entity::find()
        .select_only()
        .column(customers::Column::Id)
        .column_as(
            Expr::cust(
                "(SELECT a.occur_time FROM activities AS a WHERE a.customer_id = customers.id \
                 ORDER BY a.occur_time DESC LIMIT 1)",
            ),
            "latest",
        )
        .filter(customers::Column::Id.is_in(ids))
}

/// Sorts customers most recently active first (their latest activity in `latest`, else their last update) and
/// keeps the first [`MAX_LOOKUP_RESULTS`].
pub(in crate::store) fn ambiguous(
    mut customers: Vec<Customer>,
    latest: &HashMap<String, Option<Micros>>,
) -> Caller {
    let active = |c: &Customer| {
        latest
            .get(&c.id)
            .copied()
            .flatten()
            .unwrap_or(c.audit.update_time)
    };
    customers.sort_by(|a, b| active(b).cmp(&active(a)).then_with(|| b.id.cmp(&a.id)));
    customers.truncate(MAX_LOOKUP_RESULTS as usize);
    Caller::Ambiguous(customers)
}

impl Store {
    /// Matches the caller's contact points (see [`best_matches`]).
    pub(in crate::store) async fn identify(&self, input: &OpenContext) -> Result<Caller> {
        let lookup = |found: Option<(LookupKey, String)>| async move {
            match found {
                Some((kind, key)) => self.lookup_customers(kind, &key).await,
                None => Ok(Vec::new()),
            }
        };
        let mut keys = lookups(input).into_iter();
        let found = tokio::try_join!(
            lookup(keys.next()),
            lookup(keys.next()),
            lookup(keys.next())
        )?;
        let found = [found.0, found.1, found.2];
        let mut matched = best_matches(found);
        match matched.len() {
            0 => Ok(Caller::Unknown),
            1 => Ok(Caller::Known(Box::new(matched.remove(0)))),
            _ => {
                let latest: HashMap<String, Option<Micros>> = latest_activity_query(&matched)
                    .into_tuple::<(String, Option<Micros>)>()
                    .all(&self.reader())
                    .await?
                    .into_iter()
                    .collect();
                Ok(ambiguous(matched, &latest))
            }
        }
    }
}
