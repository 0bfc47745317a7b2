//! Customer search: every query word must start a word of the customer's `search_text` (folded names, company,
//! customer number, contact points and tags, kept by every write). Matching uses the database's full-text index,
//! maintained by the database itself (see migration `m0002_router_context`):
//!
//! - SQLite: FTS5 over `customers.search_text` keyed by the integer `customers.search_key` (insertion order).
//!   Results come newest first by that key, which FTS5 delivers in index order, so a page of a query matching
//!   half a million customers costs what a page of a rare one does. Page tokens carry the key.
//! - PostgreSQL: a GIN index over `search_vector`, the words of `search_text` and their first 2 to 5 characters
//!   marked `^` (migration `m0008_search_prefixes`): a query word of that length is one exact lexeme (`'^ha'`),
//!   a longer one a prefix term (`'harris':*`). Newest id first, in two steps. The planner estimates how many customers a prefix matches from the most common words, and gets some
//!   prefixes wrong by orders of magnitude (`c0` begins every customer number, and was estimated at 37 rows of
//!   a million); a plan chosen for a rare prefix that turns out common reads the whole table. So the first step
//!   walks down the primary key through at most [`walk_rows`] customers, whatever the estimate: a common prefix
//!   fills its page there after a few dozen rows. A page it leaves short goes to the planner's own plan (the
//!   GIN index for a rare prefix), within [`INDEX_BUDGET`]; should that run out, the page holds what the walk
//!   found and its token continues below the walked customers. Page tokens carry the id.
//!
//! An empty query lists every customer, newest id first, on both.

use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    Statement, Value,
};

use std::time::Duration;

use super::{Store, customers::from_model, entity::customers};
use crate::{
    domain::{customer::Customer, page::Cursor, reason},
    error::{Error, Result, db_error_kind},
};

/// Longest the second step of a PostgreSQL search (the planner's plan) may run; past it the page holds what
/// the first step found.
pub const INDEX_BUDGET: Duration = Duration::from_millis(250);

/// Rows the first step of a PostgreSQL search walks for a page of `limit` (a hundred per row, at most about
/// 30 ms): a prefix matching more than one customer in a hundred fills its page there.
pub fn walk_rows(limit: u64) -> u64 {
    limit.saturating_mul(100).min(MAX_WALK_ROWS)
}

/// Most rows a walk reads.
pub const MAX_WALK_ROWS: u64 = 40_000;

/// The settings of the second step's transaction: its time budget, and a plan made for the words given every
/// time (a generic plan cannot see them, and planned a rare prefix like a common one: a walk through every
/// customer). Both in one round trip.
static INDEX_STEP_SETTINGS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SET LOCAL statement_timeout = {}; SET LOCAL plan_cache_mode = force_custom_plan",
        INDEX_BUDGET.as_millis()
    )
});

/// One customer found, with the position the next page starts after.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchHit {
    pub customer: Customer,
    pub cursor: Cursor,
}

/// What one search read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SearchPage {
    pub hits: Vec<SearchHit>,
    /// Set when the search ran out of time with fewer than `limit` hits and customers left to look at: the
    /// next page starts after this position.
    pub stopped_at: Option<Cursor>,
}

impl SearchPage {
    fn complete(hits: Vec<SearchHit>) -> SearchPage {
        SearchPage {
            hits,
            stopped_at: None,
        }
    }
}

impl Store {
    /// Customers having, for every query word, a word that starts with it; newest first, after `cursor`, at
    /// most `limit`. `words` must be folded ([`crate::domain::fold::words`]); no words lists everyone.
    pub async fn search_customers(
        &self,
        words: &[String],
        cursor: Option<&Cursor>,
        limit: u64,
    ) -> Result<SearchPage> {
        if words.is_empty() {
            return Ok(SearchPage::complete(
                self.newest_customers(cursor, limit).await?,
            ));
        }
        let mut seen = std::collections::HashSet::new();
        let words: Vec<String> = words
            .iter()
            .filter(|word| seen.insert(word.as_str()))
            .cloned()
            .collect();
        match self.backend() {
            DbBackend::Postgres => self.postgres_search(&words, cursor, limit).await,
            _ => {
                let statement = sqlite_search(&words, cursor, limit)?;
                let Some(readers) = &self.group_commit else {
                    let rows = self.read.query_all_raw(statement).await?;
                    return Ok(SearchPage::complete(hits_of(rows, true)?));
                };
                let hits = readers
                    .keyed_customers(&statement)?
                    .into_iter()
                    .map(|(model, key)| hit(model, Some(key)))
                    .collect::<Result<_>>()?;
                Ok(SearchPage::complete(hits))
            }
        }
    }

    /// The two steps of a PostgreSQL search (see the module's notes).
    async fn postgres_search(
        &self,
        words: &[String],
        cursor: Option<&Cursor>,
        limit: u64,
    ) -> Result<SearchPage> {
        let query = PgQuery::of(words);
        let walk = walk_rows(limit);
        let walked = hits_of(
            self.read
                .query_all_raw(postgres_walk(&query, cursor, walk, limit))
                .await?,
            false,
        )?;
        if walked.len() as u64 >= limit {
            return Ok(SearchPage::complete(walked));
        }
        match self.postgres_index_step(&query, cursor, limit).await {
            Ok(rows) => Ok(SearchPage::complete(hits_of(rows, false)?)),
            Err(error) if db_error_kind(&error) == "statement_timeout" => {
                tracing::debug!(
                    budget_ms = INDEX_BUDGET.as_millis() as u64,
                    words = words.len(),
                    "search ran out of time; answering a short page that continues below the \
                     walked customers"
                );
                let stopped_at = self
                    .nth_newest_id(cursor, walk)
                    .await?
                    .map(|id| Cursor { time: None, id });
                Ok(SearchPage {
                    hits: walked,
                    stopped_at,
                })
            }
            Err(error) => Err(error.into()),
        }
    }

    /// The second step: the planner's plan for the matches below the cursor, newest `limit`, within
    /// [`INDEX_BUDGET`].
    async fn postgres_index_step(
        &self,
        query: &PgQuery,
        cursor: Option<&Cursor>,
        limit: u64,
    ) -> std::result::Result<Vec<sea_orm::QueryResult>, sea_orm::DbErr> {
        use sea_orm::TransactionTrait as _;
        let txn = self.read.begin().await?;
        txn.execute_unprepared(&INDEX_STEP_SETTINGS).await?;
        let rows = txn
            .query_all_raw(postgres_indexed(query, cursor, limit))
            .await;
        match rows {
            Ok(rows) => {
                txn.commit().await?;
                Ok(rows)
            }
            Err(error) => {
                txn.rollback().await?;
                Err(error)
            }
        }
    }

    /// The id of the `n`th customer below `cursor`, newest first: where a walk of `n` rows ended; None when
    /// fewer than `n` customers are left.
    async fn nth_newest_id(&self, cursor: Option<&Cursor>, n: u64) -> Result<Option<String>> {
        use sea_orm::QuerySelect as _;
        let mut query = customers::Entity::find()
            .select_only()
            .column(customers::Column::Id);
        if let Some(cursor) = cursor {
            query = query.filter(customers::Column::Id.lt(cursor.id.as_str()));
        }
        Ok(query
            .order_by_desc(customers::Column::Id)
            .offset(n.saturating_sub(1))
            .limit(1)
            .into_tuple::<String>()
            .one(&self.reader())
            .await?)
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
        super::fetch(&self.reader(), query, limit, |model| hit(model, None)).await
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

/// Longest prefix of a word the PostgreSQL index holds as a lexeme of its own.
pub const MAX_INDEXED_PREFIX: usize = 5;

/// A query word as the lexeme the PostgreSQL index holds for the words it begins (`^ha` for `ha`): for a word
/// of 2 to [`MAX_INDEXED_PREFIX`] characters, letters and digits only (a word the text-search parser keeps
/// whole, as it did when indexing).
pub(crate) fn prefix_lexeme(word: &str) -> Option<String> {
    let chars = word.chars().count();
    ((2..=MAX_INDEXED_PREFIX).contains(&chars) && word.chars().all(char::is_alphanumeric))
        .then(|| format!("^{word}"))
}

/// The words of a PostgreSQL search, split by how the index answers them.
struct PgQuery {
    /// Words the index holds a prefix lexeme for, as a tsquery literal (`'^ha' & '^ana'`).
    lexemes: Option<String>,
    /// The other words, as prefix terms for `to_tsquery` (`'harris':* & 'o''ne':*`).
    prefixes: Option<String>,
}

impl PgQuery {
    fn of(words: &[String]) -> PgQuery {
        let (lexemes, prefixes): (Vec<String>, Vec<String>) = words
            .iter()
            .cloned()
            .partition(|word| prefix_lexeme(word).is_some());
        let lexemes: Vec<String> = lexemes
            .iter()
            .filter_map(|word| prefix_lexeme(word))
            .map(|lexeme| format!("'{lexeme}'"))
            .collect();
        PgQuery {
            lexemes: (!lexemes.is_empty()).then(|| lexemes.join(" & ")),
            prefixes: (!prefixes.is_empty()).then(|| tsquery(&prefixes)),
        }
    }

    /// The tsquery as SQL, its values appended to `values`.
    fn sql(&self, values: &mut Vec<Value>) -> String {
        let mut parts = Vec::new();
        if let Some(prefixes) = &self.prefixes {
            values.push(prefixes.clone().into());
            parts.push(format!(
                "to_tsquery('simple'::regconfig, ${})",
                values.len()
            ));
        }
        if let Some(lexemes) = &self.lexemes {
            values.push(lexemes.clone().into());
            parts.push(format!("${}::tsquery", values.len()));
        }
        format!("({})", parts.join(" && "))
    }
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
    // The entity's columns in its order, then the key: a row reads as the entity's model, by name or by position.
    static COLUMNS: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let columns = COLUMNS.get_or_init(|| {
        <customers::Column as sea_orm::Iterable>::iter()
            .map(|column| format!("c.\"{}\"", sea_orm::IdenStatic::as_str(&column)))
            .collect::<Vec<_>>()
            .join(", ")
    });
    let mut sql = format!(
        "SELECT {columns}, c.search_key FROM customers_fts CROSS JOIN customers AS c \
         ON c.search_key = customers_fts.rowid WHERE customers_fts MATCH ?"
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

/// The first step: the newest `walk` customers below the cursor, down the primary key, the matches among them
/// (newest `limit`). The inner `LIMIT` keeps the walk bounded whatever the planner thinks of the prefix, and the
/// outer one stops it as soon as the page is full.
fn postgres_walk(query: &PgQuery, cursor: Option<&Cursor>, walk: u64, limit: u64) -> Statement {
    let mut values: Vec<Value> = Vec::new();
    let mut sql = String::from("SELECT * FROM (SELECT * FROM customers");
    if let Some(cursor) = cursor {
        values.push(cursor.id.clone().into());
        sql.push_str(&format!(" WHERE id < ${}", values.len()));
    }
    // The limits are written out, not bound: a plan made once for the statement (PostgreSQL reuses one) then
    // knows it reads a few thousand rows down the primary key, whatever the words.
    sql.push_str(&format!(
        " ORDER BY id DESC LIMIT {}) AS newest",
        sql_limit(walk)
    ));
    let matches = query.sql(&mut values);
    sql.push_str(&format!(
        " WHERE search_vector @@ {matches} ORDER BY id DESC LIMIT {}",
        sql_limit(limit)
    ));
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// The second step: the matches below the cursor, newest `limit`, as the planner sees fit (planned for the
/// words given, see [`INDEX_STEP_SETTINGS`]); for a rare prefix, the GIN index's matches, sorted.
fn postgres_indexed(query: &PgQuery, cursor: Option<&Cursor>, limit: u64) -> Statement {
    let mut values: Vec<Value> = Vec::new();
    let matches = query.sql(&mut values);
    let mut sql = format!("SELECT * FROM customers WHERE search_vector @@ {matches}");
    if let Some(cursor) = cursor {
        values.push(cursor.id.clone().into());
        sql.push_str(&format!(" AND id < ${}", values.len()));
    }
    values.push(sql_limit(limit).into());
    sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", values.len()));
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// Search rows as hits; `keyed`: SQLite's rows carry the FTS key their page token holds.
fn hits_of(rows: Vec<sea_orm::QueryResult>, keyed: bool) -> Result<Vec<SearchHit>> {
    rows.into_iter()
        .map(|row| {
            let model = customers::Model::from_query_result(&row, "")?;
            let time = if keyed {
                Some(row.try_get::<i64>("", "search_key")?)
            } else {
                None
            };
            hit(model, time)
        })
        .collect()
}

/// A found customer with the cursor after it (`key`: SQLite's search key).
fn hit(model: customers::Model, key: Option<i64>) -> Result<SearchHit> {
    let cursor = Cursor {
        time: key,
        id: model.id.clone(),
    };
    Ok(SearchHit {
        customer: from_model(model)?,
        cursor,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<String> {
        list.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn a_walk_reads_a_hundred_rows_per_row_of_the_page_up_to_its_bound() {
        assert_eq!(walk_rows(21), 2_100);
        assert_eq!(walk_rows(501), MAX_WALK_ROWS);
    }

    #[test]
    fn every_word_is_a_required_prefix_term() {
        assert_eq!(fts5_query(&words(&["ana", "lop"])), "\"ana\"* \"lop\"*");
        assert_eq!(tsquery(&words(&["ana", "lop"])), "'ana':* & 'lop':*");
    }

    #[test]
    fn short_words_are_exact_prefix_lexemes_and_the_rest_prefix_terms() {
        assert_eq!(prefix_lexeme("ha").as_deref(), Some("^ha"));
        assert_eq!(prefix_lexeme("søren").as_deref(), Some("^søren"));
        assert_eq!(prefix_lexeme("c0").as_deref(), Some("^c0"));
        assert_eq!(prefix_lexeme("harri").as_deref(), Some("^harri"));
        for too_short_too_long_or_split in ["h", "harris", "o'ne", "ana.l", "a-b"] {
            assert_eq!(prefix_lexeme(too_short_too_long_or_split), None);
        }
        let query = PgQuery::of(&words(&["ha", "harrison", "c0"]));
        let mut values = Vec::new();
        assert_eq!(
            query.sql(&mut values),
            "(to_tsquery('simple'::regconfig, $1) && $2::tsquery)"
        );
        assert_eq!(
            values,
            vec![Value::from("'harrison':*"), Value::from("'^ha' & '^c0'")]
        );
        let mut values = vec![Value::from("cursor")];
        assert_eq!(
            PgQuery::of(&words(&["ha"])).sql(&mut values),
            "($2::tsquery)"
        );
    }

    #[test]
    fn quotes_cannot_escape_a_term() {
        assert_eq!(fts5_query(&words(&["a\"b"])), "\"a\"\"b\"*");
        assert_eq!(tsquery(&words(&["o'neil\\"])), "'o''neil\\\\':*");
    }
}
