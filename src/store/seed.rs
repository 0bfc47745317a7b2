//! Bulk seeding for benchmarks and demos: many customers, with their requests and activities, written in one
//! large transaction of multi-row inserts (contact lookup rows included), through the same row conversions as
//! the repository (so the schema is known in one place only).
//!
//! Seeded records are history, as an import would be: no change-log rows are written and no watcher is told.
//! The caller supplies complete records (ids, versions, times, normalized contact points); nothing is validated
//! here beyond what the database enforces (unique ids and customer numbers, foreign keys).

use sea_orm::{ActiveModelTrait, ConnectionTrait, DbBackend, EntityTrait};

use super::{
    Store, activities, customers,
    entity::{self},
    requests,
};
use crate::{
    domain::{activity::Activity, customer::Customer, request::Request},
    error::Result,
};

/// Rows per `INSERT`: the widest table (activities) has 23 columns, so 200 rows bind 4,600 values, well under
/// SQLite's limit of 32,766 bound parameters per statement.
const ROWS_PER_STATEMENT: usize = 200;

/// Page cache of the write connection while seeding (negative: KiB), 256 MiB instead of SQLite's 2 MiB.
const SQLITE_SEED_CACHE: &str = "PRAGMA cache_size = -262144";

/// One customer to seed, with its journey. The requests and activities must belong to the customer.
#[derive(Clone, Debug)]
pub struct SeedCustomer {
    pub customer: Customer,
    pub requests: Vec<Request>,
    pub activities: Vec<Activity>,
}

/// What one [`Store::seed`] call wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeedCounts {
    pub customers: u64,
    pub requests: u64,
    pub activities: u64,
}

/// The rows of a batch, table by table, in the order they are inserted.
struct SeedRows {
    customers: Vec<entity::customers::ActiveModel>,
    contact_keys: Vec<entity::contact_keys::ActiveModel>,
    requests: Vec<entity::requests::ActiveModel>,
    activities: Vec<entity::activities::ActiveModel>,
}

impl SeedRows {
    fn of(batch: &[SeedCustomer]) -> Result<SeedRows> {
        Ok(SeedRows {
            customers: batch
                .iter()
                .map(|seed| customers::to_active(&seed.customer))
                .collect::<Result<_>>()?,
            // Seeded customers are new: their lookup rows are only inserted.
            contact_keys: batch
                .iter()
                .flat_map(|seed| {
                    customers::contact_key_rows(
                        &seed.customer.id,
                        &seed.customer.data.contact_points,
                    )
                })
                .collect(),
            requests: rows_of(batch, |seed| &seed.requests, requests::to_active)?,
            activities: rows_of(batch, |seed| &seed.activities, activities::to_active)?,
        })
    }
}

/// The rows of every record `records` picks from the customers of `batch`.
fn rows_of<'a, R: 'a, A>(
    batch: &'a [SeedCustomer],
    records: impl Fn(&'a SeedCustomer) -> &'a Vec<R>,
    to_active: impl Fn(&R) -> Result<A>,
) -> Result<Vec<A>> {
    batch.iter().flat_map(records).map(to_active).collect()
}

impl Store {
    /// Refreshes the planner's statistics after a bulk load (PostgreSQL; its autovacuum would get there later).
    pub async fn analyze(&self) -> Result<()> {
        if self.backend == DbBackend::Postgres {
            self.write
                .execute_unprepared("ANALYZE customers, contact_keys, requests, activities")
                .await?;
        }
        Ok(())
    }

    /// Inserts `batch` in one write transaction: all of it or, on error, none of it. Writes no change-log rows.
    pub async fn seed(&self, batch: &[SeedCustomer]) -> Result<SeedCounts> {
        let rows = SeedRows::of(batch)?;
        let txn = self.begin_write("seed").await?;
        if self.backend == DbBackend::Sqlite {
            // A big page cache keeps a large transaction from spilling pages to the WAL before it commits.
            txn.execute_unprepared(SQLITE_SEED_CACHE).await?;
        }
        let customers =
            insert_chunked::<entity::customers::Entity, _>(&txn, rows.customers).await?;
        insert_chunked::<entity::contact_keys::Entity, _>(&txn, rows.contact_keys).await?;
        let counts = SeedCounts {
            customers,
            requests: insert_chunked::<entity::requests::Entity, _>(&txn, rows.requests).await?,
            activities: insert_chunked::<entity::activities::Entity, _>(&txn, rows.activities)
                .await?,
        };
        self.commit(txn).await?;
        Ok(counts)
    }
}

/// Inserts `rows` in statements of [`ROWS_PER_STATEMENT`] rows; returns how many were inserted.
async fn insert_chunked<E, A>(db: &impl ConnectionTrait, rows: Vec<A>) -> Result<u64>
where
    E: EntityTrait,
    A: ActiveModelTrait<Entity = E>,
{
    let mut inserted = 0;
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let chunk: Vec<A> = rows.by_ref().take(ROWS_PER_STATEMENT).collect();
        inserted += E::insert_many(chunk).exec_without_returning(db).await?;
    }
    Ok(inserted)
}
