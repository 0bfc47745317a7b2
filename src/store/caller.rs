//! Who is calling: the customers matching an interaction's contact points, best match first.

use std::collections::HashMap;

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect, sea_query::Expr};

use super::{LookupKey, MAX_LOOKUP_RESULTS, Store, context::OpenContext, entity::customers};
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
pub(super) enum Caller {
    Known(Box<Customer>),
    /// Several customers match equally well, most recently active first.
    Ambiguous(Vec<Customer>),
    Unknown,
}

impl Store {
    /// Matches the caller's contact points. Customers matching more of the given points win, so a phone shared
    /// by a household and an email of one of them name that one.
    pub(super) async fn identify(&self, input: &OpenContext) -> Result<Caller> {
        let lookup = |kind: LookupKey, key: Option<String>| async move {
            match key {
                Some(key) => self.lookup_customers(kind, &key).await,
                None => Ok(Vec::new()),
            }
        };
        let handle = input
            .handle
            .as_deref()
            .map(|h| match_key(ContactKind::Chat, h));
        let (by_phone, by_email, by_handle) = tokio::try_join!(
            lookup(LookupKey::Phone, input.phone.clone()),
            lookup(LookupKey::Email, input.email.clone()),
            lookup(LookupKey::Handle, handle),
        )?;
        let mut scores: HashMap<String, (Customer, usize)> = HashMap::new();
        for customer in by_phone.into_iter().chain(by_email).chain(by_handle) {
            scores.entry(customer.id.clone()).or_insert((customer, 0)).1 += 1;
        }
        let best = scores.values().map(|(_, score)| *score).max().unwrap_or(0);
        let mut matched: Vec<Customer> = scores
            .into_values()
            .filter(|(_, score)| *score == best)
            .map(|(customer, _)| customer)
            .collect();
        match matched.len() {
            0 => Ok(Caller::Unknown),
            1 => Ok(Caller::Known(Box::new(matched.remove(0)))),
            _ => {
                self.order_by_activity(&mut matched).await?;
                matched.truncate(MAX_LOOKUP_RESULTS as usize);
                Ok(Caller::Ambiguous(matched))
            }
        }
    }

    /// Sorts customers most recently active first: their latest activity, else their last update.
    async fn order_by_activity(&self, customers: &mut [Customer]) -> Result<()> {
        let ids: Vec<&str> = customers.iter().map(|c| c.id.as_str()).collect();
        let latest: HashMap<String, Option<Micros>> = customers::Entity::find()
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
            .into_tuple::<(String, Option<Micros>)>()
            .all(&self.read)
            .await?
            .into_iter()
            .collect();
        let active = |c: &Customer| {
            latest
                .get(&c.id)
                .copied()
                .flatten()
                .unwrap_or(c.audit.update_time)
        };
        customers.sort_by(|a, b| active(b).cmp(&active(a)).then_with(|| b.id.cmp(&a.id)));
        Ok(())
    }
}
