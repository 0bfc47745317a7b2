//! sea-orm's statements run in place on a SQLite connection the caller owns (the database writer's), without a
//! round trip to a pooled connection's thread per statement.
//!
//! The store's write code is written once against [`ConnectionTrait`]: on PostgreSQL it runs on a pooled
//! transaction, on SQLite its statements run here, on the writer thread, inside the batch's transaction. Each
//! statement is the one sea-orm built and rendered, prepared once and kept by the connection; rows come back as
//! sea-orm query results, each value typed as the column is declared, so the entities decode them as they decode
//! sqlx's rows.
//!
//! sea-orm's result types can be made only by its drivers and its mock database (its proxy connection, made for
//! this, does not build alongside its sqlx SQLite driver), so each statement's outcome is handed to sea-orm through
//! a throwaway mock database: a few small allocations per statement, no I/O.

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex, OnceLock, PoisonError},
};

use rusqlite::{Connection, types::ValueRef};
use sea_orm::{
    ColumnTrait, ColumnType, ConnectionTrait, DbBackend, DbErr, EntityTrait, ExecResult,
    IdenStatic, Iterable, MockDatabase, MockExecResult, QueryResult, RuntimeErr, Statement,
    sea_query::Value,
};

use super::shape::into_sql_value;
use crate::store::entity;

/// Lends a SQLite connection for one statement.
pub(in crate::store) trait Lender: Sync {
    /// Runs `f` on a connection; an error names a connection that could not be had.
    fn lend<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<rusqlite::Result<T>, String>;
}

/// The database writer's connection, shared (behind a lock) with the thread that owns it, which begins and
/// commits the transaction the statements run in.
impl Lender for Arc<Mutex<Connection>> {
    fn lend<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<rusqlite::Result<T>, String> {
        Ok(f(&self.lock().unwrap_or_else(PoisonError::into_inner)))
    }
}

/// A write's statements on the database writer's connection.
pub(in crate::store) type OnWriter = InPlace<Arc<Mutex<Connection>>>;

/// sea-orm's statements run in place, in the calling thread, on the connections `L` lends.
#[derive(Clone, Debug)]
pub(in crate::store) struct InPlace<L>(L);

impl<L: Lender> InPlace<L> {
    pub(in crate::store) fn new(lender: L) -> InPlace<L> {
        InPlace(lender)
    }

    /// What lends the connections, for reads the store decodes itself.
    pub(in crate::store) fn lender(&self) -> &L {
        &self.0
    }

    /// Runs `f` on a lent connection; an error is the database's, or why no connection could be had.
    fn with<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, RuntimeErr> {
        match self.0.lend(f) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(RuntimeErr::Internal(format!("database: {err}"))),
            Err(err) => Err(RuntimeErr::Internal(err)),
        }
    }

    /// The rows `stmt` selects, at most `limit` of them. A bound `LIMIT` (sea-orm's `one()` binds `LIMIT 1`) is
    /// written into the statement, which SQLite would otherwise plan again on every run (see
    /// [`crate::store::literal_limit`]).
    fn rows(&self, stmt: Statement, limit: usize) -> Result<Vec<Row>, DbErr> {
        let stmt = crate::store::literal_limit(stmt);
        let params = parameters(&stmt).map_err(DbErr::Query)?;
        self.with(|conn| {
            let mut prepared = conn.prepare_cached(&stmt.sql)?;
            let columns: Vec<(String, String, Kind)> = prepared
                .columns()
                .iter()
                .enumerate()
                .map(|(index, column)| {
                    (
                        column.name().to_owned(),
                        positional(index),
                        Kind::declared(column),
                    )
                })
                .collect();
            let mut rows = prepared.query(rusqlite::params_from_iter(params))?;
            let mut results = Vec::new();
            while results.len() < limit {
                let Some(row) = rows.next()? else { break };
                let mut values = BTreeMap::new();
                for (index, (name, position, kind)) in columns.iter().enumerate() {
                    let value = kind.value(row.get_ref(index)?);
                    values.insert(position.clone(), value.clone());
                    values.insert(name.clone(), value);
                }
                results.push(values);
            }
            Ok(results)
        })
        .map_err(DbErr::Query)
    }
}

#[async_trait::async_trait]
impl<L: Lender> ConnectionTrait for InPlace<L> {
    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Sqlite
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        let params = parameters(&stmt).map_err(DbErr::Exec)?;
        self.with(|conn| {
            let rows_affected = conn
                .prepare_cached(&stmt.sql)?
                .execute(rusqlite::params_from_iter(params))?;
            Ok(MockExecResult {
                last_insert_id: u64::try_from(conn.last_insert_rowid()).unwrap_or_default(),
                rows_affected: u64::try_from(rows_affected).unwrap_or_default(),
            })
        })
        .map_err(DbErr::Exec)
        .map(executed)?
        .await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.with(|conn| {
            conn.execute_batch(sql)?;
            Ok(MockExecResult {
                last_insert_id: u64::try_from(conn.last_insert_rowid()).unwrap_or_default(),
                rows_affected: conn.changes(),
            })
        })
        .map_err(DbErr::Exec)
        .map(executed)?
        .await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        Ok(results(self.rows(stmt, 1)?).await?.pop())
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        results(self.rows(stmt, usize::MAX)?).await
    }
}

/// One row, its values keyed by column name, and by position too.
///
/// sea-orm reads a column by name from the row, or by position (a tuple) as the row's `position`-th entry in key
/// order. Each value is therefore also kept under a key that sorts before every column name (a NUL, then the
/// position in fixed width), so the first entries are the columns in the order they were selected.
type Row = BTreeMap<String, Value>;

/// The key of the column at `index` in a [`Row`].
fn positional(index: usize) -> String {
    format!("\0{index:05}")
}

/// sea-orm's result of a statement that changed `result`'s rows.
async fn executed(result: MockExecResult) -> Result<ExecResult, DbErr> {
    MockDatabase::new(DbBackend::Sqlite)
        .append_exec_results([result])
        .into_connection()
        .execute_raw(handed_over())
        .await
}

/// sea-orm's results of a select that read `rows`.
async fn results(rows: Vec<Row>) -> Result<Vec<QueryResult>, DbErr> {
    MockDatabase::new(DbBackend::Sqlite)
        .append_query_results([rows])
        .into_connection()
        .query_all_raw(handed_over())
        .await
}

/// The statement a mock database is asked to run: it answers with what it was given, whatever the statement.
fn handed_over() -> Statement {
    Statement::from_string(DbBackend::Sqlite, String::new())
}

/// The values bound to `stmt`, as SQLite takes them.
fn parameters(stmt: &Statement) -> Result<Vec<rusqlite::types::Value>, RuntimeErr> {
    stmt.values
        .iter()
        .flat_map(|values| values.0.iter())
        .map(|value| into_sql_value(value.clone()))
        .collect::<crate::error::Result<_>>()
        .map_err(|err| RuntimeErr::Internal(err.to_string()))
}

/// How a column's values are typed for sea-orm, which takes each Rust type from one kind of value only.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Bool,
    /// A 32-bit integer column (`INTEGER` declared for an `i32` field).
    Int,
    BigInt,
    Double,
    Text,
    Bytes,
    /// An expression: typed by the value it yields.
    Dynamic,
}

impl Kind {
    fn declared(column: &rusqlite::Column<'_>) -> Kind {
        let Some(declared) = column.decl_type() else {
            return Kind::Dynamic;
        };
        match declared.to_ascii_uppercase().as_str() {
            "BOOLEAN" | "BOOL" => Kind::Bool,
            "INTEGER" | "INT" if int_columns().contains(column.name()) => Kind::Int,
            "INTEGER" | "INT" | "BIGINT" | "INT8" => Kind::BigInt,
            "REAL" | "DOUBLE" | "FLOAT" => Kind::Double,
            "BLOB" => Kind::Bytes,
            "TEXT" | "VARCHAR" | "CHAR" | "JSON" | "JSON_TEXT" => Kind::Text,
            other if other.starts_with("VARCHAR") || other.starts_with("CHAR") => Kind::Text,
            _ => Kind::Dynamic,
        }
    }

    fn value(self, value: ValueRef<'_>) -> Value {
        match (self, value) {
            (Kind::Bool, ValueRef::Null) => Value::Bool(None),
            (Kind::Bool, ValueRef::Integer(i)) => Value::Bool(Some(i != 0)),
            (Kind::Int, ValueRef::Null) => Value::Int(None),
            (Kind::Int, ValueRef::Integer(i)) => match i32::try_from(i) {
                Ok(i) => Value::Int(Some(i)),
                Err(_) => Value::BigInt(Some(i)),
            },
            (Kind::BigInt, ValueRef::Null) => Value::BigInt(None),
            (Kind::Double, ValueRef::Null) => Value::Double(None),
            (Kind::Text, ValueRef::Null) => Value::String(None),
            (Kind::Bytes, ValueRef::Null) => Value::Bytes(None),
            // An expression that yields nothing: the counts and maxima the store reads are integers.
            (Kind::Dynamic, ValueRef::Null) => Value::BigInt(None),
            (_, ValueRef::Integer(i)) => Value::BigInt(Some(i)),
            (_, ValueRef::Real(r)) => Value::Double(Some(r)),
            (_, ValueRef::Text(text)) => {
                Value::String(Some(String::from_utf8_lossy(text).into_owned()))
            }
            (_, ValueRef::Blob(bytes)) => Value::Bytes(Some(bytes.to_vec())),
        }
    }
}

/// The names of the columns the entities declare as 32-bit integers. SQLite declares them `INTEGER`, like the
/// 64-bit rowid aliases (`change_log.seq`); no name is both (a unit test checks it).
fn int_columns() -> &'static HashSet<String> {
    static NAMES: OnceLock<HashSet<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        entity_columns()
            .into_iter()
            .filter(|(_, column_type)| matches!(column_type, ColumnType::Integer))
            .map(|(name, _)| name)
            .collect()
    })
}

/// The entities' columns, with their declared types. The `interactions` table (of `OpenContext`) declares no
/// 32-bit integer.
fn entity_columns() -> Vec<(String, ColumnType)> {
    fn of<E: EntityTrait>() -> impl Iterator<Item = (String, ColumnType)> {
        E::Column::iter().map(|column| {
            (
                column.as_str().to_owned(),
                column.def().get_column_type().clone(),
            )
        })
    }
    use entity::*;
    of::<customers::Entity>()
        .chain(of::<contact_keys::Entity>())
        .chain(of::<requests::Entity>())
        .chain(of::<comments::Entity>())
        .chain(of::<activities::Entity>())
        .chain(of::<change_log::Entity>())
        .chain(of::<api_keys::Entity>())
        .chain(of::<customer_merges::Entity>())
        .chain(of::<notifications::Entity>())
        .chain(of::<crate::store::recent::recent_views::Entity>())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn rows_decode_by_name_and_by_position() {
        use sea_orm::TryGetableMany;
        // Like every connection the store opens: after SQLite's allocator is set, which no other thread may race.
        crate::store::sqlite::allocator::configure();
        let conn = Connection::open_in_memory().expect("database");
        conn.execute_batch(
            "CREATE TABLE t (b TEXT, a BIGINT, c BOOLEAN, d INTEGER); \
             INSERT INTO t VALUES ('x', 7, 1, NULL);",
        )
        .expect("table");
        let db = InPlace::new(Arc::new(Mutex::new(conn)));
        let stmt =
            Statement::from_string(DbBackend::Sqlite, "SELECT b, a, c, d, 2 * a AS e FROM t");
        let row = db
            .query_one_raw(stmt.clone())
            .await
            .expect("query")
            .expect("a row");
        assert_eq!(row.try_get::<String>("", "b").expect("b"), "x");
        assert_eq!(row.try_get::<i64>("", "a").expect("a"), 7);
        assert!(row.try_get::<bool>("", "c").expect("c"));
        assert_eq!(row.try_get::<Option<i64>>("", "d").expect("d"), None);
        assert_eq!(row.try_get::<i64>("", "e").expect("e"), 14);
        let by_position = <(String, i64, bool)>::try_get_many_by_index(&row).expect("by position");
        assert_eq!(by_position, ("x".to_owned(), 7, true));
        let changed = db
            .execute_raw(Statement::from_string(
                DbBackend::Sqlite,
                "UPDATE t SET a = a + 1",
            ))
            .await
            .expect("update");
        assert_eq!(changed.rows_affected(), 1);
    }

    /// A select that binds its limit, as sea-orm's `one()` does, is prepared once and not planned again on the
    /// runs after it.
    #[tokio::test]
    async fn a_bound_limit_does_not_make_a_statement_planned_again_on_every_run() {
        use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
        crate::store::sqlite::allocator::configure();
        let conn = Connection::open_in_memory().expect("database");
        conn.execute_batch(
            "CREATE TABLE t (id TEXT PRIMARY KEY, name TEXT); \
             INSERT INTO t VALUES ('c1', 'Ana'), ('c2', 'Ben');",
        )
        .expect("table");
        let shared = Arc::new(Mutex::new(conn));
        let db = InPlace::new(shared.clone());
        let by_id = |id: &str| {
            DbBackend::Sqlite.build(
                Query::select()
                    .column(Alias::new("name"))
                    .from(Alias::new("t"))
                    .and_where(Expr::col(Alias::new("id")).eq(id))
                    .limit(1),
            )
        };
        let bound = by_id("c1");
        assert!(bound.sql.ends_with(" LIMIT ?"), "{}", bound.sql);
        for (id, name) in [("c1", "Ana"), ("c2", "Ben"), ("c1", "Ana")] {
            let row = db
                .query_one_raw(by_id(id))
                .await
                .expect("query")
                .expect("a row");
            assert_eq!(row.try_get::<String>("", "name").expect("name"), name);
        }
        let run = crate::store::literal_limit(bound).sql;
        assert!(run.ends_with(" LIMIT 1"), "{run}");
        let conn = shared.lock().expect("connection");
        let prepared = conn
            .prepare_cached(&run)
            .expect("the statement run, still cached");
        assert_eq!(
            prepared.get_status(rusqlite::StatementStatus::Run),
            3,
            "{run}"
        );
        assert_eq!(
            prepared.get_status(rusqlite::StatementStatus::RePrepare),
            0,
            "{run}"
        );
    }

    /// Every table's rows, written by the store's writes on the writer's thread, decode in place into the same
    /// models as through sea-orm's sqlx driver: booleans, 32- and 64-bit integers, absent values, JSON text.
    #[tokio::test]
    async fn rows_written_in_place_read_the_same_as_through_sqlx() {
        use crate::{
            domain::{
                activity::ActivityData,
                contact::{ContactKind, ContactPoint},
                customer::CustomerData,
                request::{RequestData, RequestStatus},
            },
            store::recent::View,
        };
        let (dir, store) = crate::store::scratch_store().await;
        let file = dir.path().join("cc.db");
        let customer = |first_name: &str, email: &str| CustomerData {
            first_name: first_name.to_owned(),
            contact_points: vec![ContactPoint {
                kind: ContactKind::Email,
                label: "work".to_owned(),
                value: email.to_owned(),
            }],
            tags: vec!["vip".to_owned()],
            credit_hold: true,
            attributes: [("tier".to_owned(), "gold".to_owned())].into(),
            ..CustomerData::default()
        };
        let ana = store
            .create_customer("ana", customer("Ana", "ana@example.com"))
            .await
            .expect("a customer");
        let duplicate = store
            .create_customer("ana", customer("Anna", "anna@example.com"))
            .await
            .expect("another");
        let request = store
            .create_request(
                "ana",
                &ana.id,
                RequestData {
                    title: "Refund".to_owned(),
                    description: String::new(),
                    status: RequestStatus::Open,
                    tags: Vec::new(),
                },
            )
            .await
            .expect("a request");
        store
            .add_comment("ana", &request.id, "called back".to_owned())
            .await
            .expect("a comment");
        store
            .create_activity(
                "ana",
                ActivityData {
                    customer_id: Some(ana.id.clone()),
                    request_id: Some(request.id.clone()),
                    channel: 1,
                    direction: 1,
                    topic: "refund".to_owned(),
                    follow_up_time: Some(1_700_000_000_000_000),
                    ..ActivityData::default()
                },
            )
            .await
            .expect("an activity, with its notification");
        store
            .merge_customers("ana", &ana.id, 1, std::slice::from_ref(&duplicate.id))
            .await
            .expect("a merge");
        store
            .create_key("portal", "portal", Some(ana.id.as_str()))
            .await
            .expect("a key");
        store
            .record_views(
                &[View {
                    agent: "ana".to_owned(),
                    customer_id: ana.id.clone(),
                    time: crate::domain::time::now_micros(),
                }],
                &["ana".to_owned()],
            )
            .await
            .expect("a view");

        let conn = Connection::open(&file).expect("a connection");
        let in_place = InPlace::new(Arc::new(Mutex::new(conn)));
        macro_rules! same_rows {
            ($($entity:path),* $(,)?) => {$(
                let through_sqlx = <$entity>::find().all(&store.read).await.expect("read through sqlx");
                let read_in_place = <$entity>::find().all(&in_place).await.expect("read in place");
                assert!(!through_sqlx.is_empty(), "{} has rows", stringify!($entity));
                assert_eq!(read_in_place, through_sqlx, "{}", stringify!($entity));
            )*};
        }
        same_rows!(
            entity::customers::Entity,
            entity::contact_keys::Entity,
            entity::requests::Entity,
            entity::comments::Entity,
            entity::activities::Entity,
            entity::change_log::Entity,
            entity::api_keys::Entity,
            entity::customer_merges::Entity,
            entity::notifications::Entity,
            crate::store::recent::recent_views::Entity,
        );
        store.close().await;
    }

    #[test]
    fn no_column_name_is_a_32_bit_integer_in_one_entity_and_wider_in_another() {
        let ints = int_columns();
        assert!(ints.contains("status") && ints.contains("channel"));
        for (name, column_type) in entity_columns() {
            if ints.contains(&name) {
                assert!(
                    !matches!(column_type, ColumnType::BigInteger),
                    "{name} is declared both as a 32-bit and a 64-bit integer"
                );
            }
        }
    }
}
