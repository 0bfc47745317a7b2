//! Which customer owns a set of records, in one query per kind: what a portal's watch subscription needs to
//! know before it may follow them, however many records it names.

use std::collections::HashMap;

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::{
    Store,
    entity::{activities, requests, tuples},
};
use crate::error::Result;

/// Who owns an activity, and whether a customer may see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActivityOwner {
    pub customer_id: Option<String>,
    pub internal: bool,
}

impl Store {
    /// The customer of each of these requests that exists.
    pub async fn request_owners(&self, ids: &[String]) -> Result<HashMap<String, String>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let query =
            requests::Entity::find().filter(requests::Column::Id.is_in(ids.iter().cloned()));
        let columns = [requests::Column::Id, requests::Column::CustomerId];
        let rows: Vec<(String, String)> = tuples(&self.reader(), query, columns).await?;
        Ok(rows.into_iter().collect())
    }

    /// The customer and visibility of each of these activities that exists.
    pub async fn activity_owners(&self, ids: &[String]) -> Result<HashMap<String, ActivityOwner>> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let query =
            activities::Entity::find().filter(activities::Column::Id.is_in(ids.iter().cloned()));
        let columns = [
            activities::Column::Id,
            activities::Column::CustomerId,
            activities::Column::Internal,
        ];
        let rows: Vec<(String, Option<String>, bool)> =
            tuples(&self.reader(), query, columns).await?;
        Ok(rows
            .into_iter()
            .map(|(id, customer_id, internal)| {
                (
                    id,
                    ActivityOwner {
                        customer_id,
                        internal,
                    },
                )
            })
            .collect())
    }
}
