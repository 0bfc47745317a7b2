//! Likely duplicates of a customer.
//!
//! Candidates come from two indexes: `contact_keys` (customers sharing a normalized phone, email or handle) and
//! the full-text search over names (customers having the name's words, each word alone, and the first three
//! letters of each longer word, to catch a misspelling after them). Candidates are then scored in memory
//! ([`crate::domain::matching`]); only those sharing a contact point or with a similar name are kept.

use std::collections::{BTreeMap, BTreeSet};

use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QuerySelect};

use super::{
    Store, customers,
    entity::{contact_keys, customers as customer_rows, tuples},
};
use crate::{
    domain::{
        contact::{ContactKind, match_key},
        customer::Customer,
        matching::{self, MatchReason, SIMILAR_NAME_THRESHOLD},
    },
    error::Result,
};

/// Most customers read per shared contact key query (a switchboard number may be shared by many).
const MAX_CONTACT_CANDIDATES: u64 = 1_000;
/// Most customers read per name search.
const MAX_NAME_CANDIDATES: u64 = 200;
/// Most name words searched for (long names add little).
const MAX_NAME_WORDS: usize = 4;
/// Words longer than this are also searched by their first letters.
const PREFIX_CHARS: usize = 3;

/// A likely duplicate.
#[derive(Clone, Debug, PartialEq)]
pub struct CustomerMatch {
    pub customer: Customer,
    /// Shared contact points first, then the name.
    pub reasons: Vec<MatchReason>,
    /// 0..1: how likely the two are the same person.
    pub score: f64,
}

/// The searches that find customers with a similar name.
fn name_queries(words: &[String]) -> BTreeSet<Vec<String>> {
    let words: Vec<&String> = words.iter().take(MAX_NAME_WORDS).collect();
    let mut queries = BTreeSet::new();
    if words.len() > 1 {
        queries.insert(words.iter().map(|w| (*w).clone()).collect());
    }
    for word in words {
        queries.insert(vec![word.clone()]);
        if word.chars().count() > PREFIX_CHARS {
            queries.insert(vec![word.chars().take(PREFIX_CHARS).collect()]);
        }
    }
    queries
}

impl Store {
    /// The customers most likely the same person as `id`, strongest first, at most `limit`.
    pub async fn find_matching_customers(
        &self,
        id: &str,
        limit: usize,
    ) -> Result<Vec<CustomerMatch>> {
        let customer = customers::find(&self.reader(), id).await?;
        let mut reasons: BTreeMap<String, BTreeSet<MatchReason>> = BTreeMap::new();

        // Shared contact points.
        let mut keys: BTreeMap<(&'static str, String), MatchReason> = BTreeMap::new();
        for point in &customer.data.contact_points {
            let key = match_key(point.kind, &point.value);
            let reason = match point.kind {
                ContactKind::Phone => MatchReason::SharedPhone(point.value.clone()),
                ContactKind::Email => MatchReason::SharedEmail(point.value.clone()),
                _ => MatchReason::SharedHandle(point.value.clone()),
            };
            keys.insert((customers::lookup_class(point.kind), key), reason);
        }
        if !keys.is_empty() {
            let mut any = Condition::any();
            for (kind, key) in keys.keys() {
                any = any.add(
                    Condition::all()
                        .add(contact_keys::Column::Kind.eq(*kind))
                        .add(contact_keys::Column::MatchKey.eq(key.as_str())),
                );
            }
            let query = contact_keys::Entity::find()
                .filter(any)
                .filter(contact_keys::Column::CustomerId.ne(id))
                .limit(MAX_CONTACT_CANDIDATES);
            let columns = [
                contact_keys::Column::CustomerId,
                contact_keys::Column::Kind,
                contact_keys::Column::MatchKey,
            ];
            let shared: Vec<(String, String, String)> =
                tuples(&self.reader(), query, columns).await?;
            for (other, kind, key) in shared {
                if let Some(reason) = keys.get(&(lookup_class_of(&kind), key)) {
                    reasons.entry(other).or_default().insert(reason.clone());
                }
            }
        }
        let mut candidates: BTreeMap<String, Customer> = BTreeMap::new();
        let ids: Vec<&str> = reasons.keys().map(String::as_str).collect();
        for chunk in ids.chunks(500) {
            for model in customer_rows::Entity::find()
                .filter(customer_rows::Column::Id.is_in(chunk.iter().copied()))
                .all(&self.reader())
                .await?
            {
                let other = customers::from_model(model)?;
                candidates.insert(other.id.clone(), other);
            }
        }

        // Similar names.
        let own_name = matching::name_words(&customer.data.first_name, &customer.data.last_name);
        for query in name_queries(&own_name) {
            for hit in self
                .search_customers(&query, None, MAX_NAME_CANDIDATES)
                .await?
                .hits
            {
                if hit.customer.id != id {
                    candidates
                        .entry(hit.customer.id.clone())
                        .or_insert(hit.customer);
                }
            }
        }

        let mut matches: Vec<CustomerMatch> = candidates
            .into_values()
            .filter_map(|other| {
                let mut found: Vec<MatchReason> = reasons
                    .remove(&other.id)
                    .unwrap_or_default()
                    .into_iter()
                    .collect();
                let other_name =
                    matching::name_words(&other.data.first_name, &other.data.last_name);
                let similarity = matching::name_similarity(&own_name, &other_name);
                if similarity >= SIMILAR_NAME_THRESHOLD {
                    let shown = format!("{} {}", other.data.first_name, other.data.last_name);
                    found.push(MatchReason::SimilarName(shown.trim().to_owned()));
                }
                if found.is_empty() {
                    return None;
                }
                let score = matching::score(&found, similarity);
                Some(CustomerMatch {
                    customer: other,
                    reasons: found,
                    score,
                })
            })
            .collect();
        matches.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| {
                    b.customer
                        .audit
                        .update_time
                        .cmp(&a.customer.audit.update_time)
                })
                .then_with(|| a.customer.id.cmp(&b.customer.id))
        });
        matches.truncate(limit);
        Ok(matches)
    }
}

/// The `contact_keys.kind` value back as the static string used in the lookup map.
fn lookup_class_of(kind: &str) -> &'static str {
    match kind {
        "phone" => "phone",
        "email" => "email",
        _ => "handle",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_searched_whole_by_word_and_by_prefix() {
        let words = vec!["ana".to_owned(), "lopez".to_owned()];
        let queries: Vec<Vec<String>> = name_queries(&words).into_iter().collect();
        assert_eq!(
            queries,
            [
                vec!["ana".to_owned()],
                vec!["ana".to_owned(), "lopez".to_owned()],
                vec!["lop".to_owned()],
                vec!["lopez".to_owned()],
            ]
        );
        assert!(name_queries(&[]).is_empty());
    }
}
