//! Customer search: every query word must start a word of the customer's `search_text` (folded names, company,
//! customer number, contact points and tags, kept by every write). Matching uses the database's full-text index,
//! maintained by the database itself (see migration `m0002_router_context`):
//!
//! - SQLite: FTS5 over `customers.search_text` keyed by the integer `customers.search_key` (insertion order).
//!   Results come newest first by that key, which FTS5 delivers in index order, so a page of a query matching
//!   half a million customers costs what a page of a rare one does. Page tokens carry the key.
//! - PostgreSQL: `search_vector @@ to_tsquery('simple', 'w1:* & w2:*')` on a GIN index, newest id first. Page
//!   tokens carry the id.
//!
//! An empty query lists every customer, newest id first, on both.

use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    Statement, Value,
};

use super::{Store, customers::from_model, entity::customers};
use crate::{
    domain::{customer::Customer, page::Cursor, reason},
    error::{Error, Result},
};

/// One customer found, with the position the next page starts after.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchHit {
    pub customer: Customer,
    pub cursor: Cursor,
}

impl Store {
    /// Customers having, for every query word, a word that starts with it; newest first, after `cursor`, at
    /// most `limit`. `words` must be folded ([`crate::domain::fold::words`]); no words lists everyone.
    pub async fn search_customers(
        &self,
        words: &[String],
        cursor: Option<&Cursor>,
        limit: u64,
    ) -> Result<Vec<SearchHit>> {
        if words.is_empty() {
            return self.newest_customers(cursor, limit).await;
        }
        let mut seen = std::collections::HashSet::new();
        let words: Vec<String> = words
            .iter()
            .filter(|word| seen.insert(word.as_str()))
            .cloned()
            .collect();
        let statement = match self.backend() {
            DbBackend::Postgres => postgres_search(&words, cursor, limit),
            _ => sqlite_search(&words, cursor, limit)?,
        };
        let backend = self.backend();
        self.read
            .query_all_raw(statement)
            .await?
            .into_iter()
            .map(|row| {
                let model = customers::Model::from_query_result(&row, "")?;
                let time = match backend {
                    DbBackend::Postgres => None,
                    _ => Some(row.try_get::<i64>("", "search_key")?),
                };
                let cursor = Cursor {
                    time,
                    id: model.id.clone(),
                };
                Ok(SearchHit {
                    customer: from_model(model)?,
                    cursor,
                })
            })
            .collect()
    }

    /// Every customer, newest id first (UUIDv7 ids are in creation order).
    async fn newest_customers(
        &self,
        cursor: Option<&Cursor>,
        limit: u64,
    ) -> Result<Vec<SearchHit>> {
        let mut query = customers::Entity::find();
        if let Some(cursor) = cursor {
            query = query.filter(customers::Column::Id.lt(cursor.id.as_str()));
        }
        let query = query.order_by_desc(customers::Column::Id);
        super::fetch(&self.read, query, limit, |model| {
            let cursor = Cursor {
                time: None,
                id: model.id.clone(),
            };
            Ok(SearchHit {
                customer: from_model(model)?,
                cursor,
            })
        })
        .await
    }
}

/// The FTS5 query: each word a quoted prefix term, all of them required (`"ana"* "lop"*`).
pub(crate) fn fts5_query(words: &[String]) -> String {
    words
        .iter()
        .map(|word| format!("\"{}\"*", word.replace('"', "\"\"")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The PostgreSQL tsquery: each word a quoted prefix lexeme, all of them required (`'ana':* & 'lop':*`).
pub(crate) fn tsquery(words: &[String]) -> String {
    words
        .iter()
        .map(|word| format!("'{}':*", word.replace('\\', "\\\\").replace('\'', "''")))
        .collect::<Vec<_>>()
        .join(" & ")
}

/// FTS5 first, then one customer per match by its unique key: `CROSS JOIN` keeps that order, so the matches
/// stream from the index newest first and the scan stops at `limit`.
fn sqlite_search(words: &[String], cursor: Option<&Cursor>, limit: u64) -> Result<Statement> {
    let mut values: Vec<Value> = vec![fts5_query(words).into()];
    let mut sql = String::from(
        "SELECT c.* FROM customers_fts CROSS JOIN customers AS c ON c.search_key = customers_fts.rowid \
         WHERE customers_fts MATCH ?",
    );
    if let Some(cursor) = cursor {
        let key = cursor.time.ok_or_else(|| {
            Error::invalid(
                "page_token",
                reason::INVALID_PAGE_TOKEN,
                "not a search page token; start again without a token",
            )
        })?;
        sql.push_str(" AND customers_fts.rowid < ?");
        values.push(key.into());
    }
    sql.push_str(" ORDER BY customers_fts.rowid DESC LIMIT ?");
    values.push(sql_limit(limit).into());
    Ok(Statement::from_sql_and_values(
        DbBackend::Sqlite,
        sql,
        values,
    ))
}

/// A row limit as the signed integer both backends bind.
fn sql_limit(limit: u64) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn postgres_search(words: &[String], cursor: Option<&Cursor>, limit: u64) -> Statement {
    let mut values: Vec<Value> = vec![tsquery(words).into()];
    let mut sql = String::from(
        "SELECT * FROM customers WHERE search_vector @@ to_tsquery('simple'::regconfig, $1)",
    );
    if let Some(cursor) = cursor {
        values.push(cursor.id.clone().into());
        sql.push_str(&format!(" AND id < ${}", values.len()));
    }
    values.push(sql_limit(limit).into());
    sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", values.len()));
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn every_word_is_a_required_prefix_term() {
        assert_eq!(fts5_query(&words(&["ana", "lop"])), "\"ana\"* \"lop\"*");
        assert_eq!(tsquery(&words(&["ana", "lop"])), "'ana':* & 'lop':*");
    }

    #[test]
    fn quotes_cannot_escape_a_term() {
        assert_eq!(fts5_query(&words(&["a\"b"])), "\"a\"\"b\"*");
        assert_eq!(tsquery(&words(&["o'neil\\"])), "'o''neil\\\\':*");
    }
}
