//! The write steps every versioned record (customer, request, activity) takes the same way: insert it with its
//! "created" log row, apply an edit onto the current version, save a new version only over the one it was read
//! at, delete it at the version the caller saw. Each repository adds only what is particular to its record.

use sea_orm::{
    ActiveModelBehavior, ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, EntityName,
    EntityTrait, IntoActiveModel, PrimaryKeyTrait, QueryFilter, QueryTrait,
    sea_query::{InsertStatement, SelectStatement, WithQuery},
};

use super::{change_log, check_version, lock_row, rebase, sqlite::shape::Shape};
use crate::{
    domain::{
        change::{Logged, NewChange, ResourceKind},
        edit::{Deletion, Edit},
        mask::{self, FieldChange},
        time::Micros,
    },
    error::{Error, Result},
};

/// A record kept in one table of its own, through its sea-orm entity.
pub(super) trait Stored: Logged + Sized {
    type Entity: EntityTrait<ActiveModel = Self::Active>;
    type Active: ActiveModelTrait<Entity = Self::Entity>
        + ActiveModelBehavior
        + IntoActiveModel<Self::Active>
        + Clone
        + Send;
    const ID: <Self::Entity as EntityTrait>::Column;
    const VERSION: <Self::Entity as EntityTrait>::Column;
    fn to_active(&self) -> Result<Self::Active>;
    fn from_model(model: <Self::Entity as EntityTrait>::Model) -> Result<Self>;
    /// The text of this record's insert, rendered once where statements are run in place (SQLite's writer).
    fn insert_shape() -> &'static Shape;
}

/// The record `id`, `NOT_FOUND` if there is none.
pub(super) async fn find<R: Stored>(db: &impl ConnectionTrait, id: &str) -> Result<R>
where
    Key<R>: From<String>,
{
    let model = R::Entity::find_by_id(id.to_owned())
        .one(db)
        .await?
        .ok_or_else(|| Error::not_found(R::RESOURCE.as_str(), id))?;
    R::from_model(model)
}

/// Locks the record `id` for the rest of the write transaction (see [`lock_row`]) and reads it.
pub(super) async fn find_for_update<R: Stored>(db: &impl ConnectionTrait, id: &str) -> Result<R>
where
    Key<R>: From<String>,
{
    if !lock_row(db, R::Entity::default().table_name(), id).await? {
        return Err(Error::not_found(R::RESOURCE.as_str(), id));
    }
    find(db, id).await
}

/// The type of a record's primary key.
type Key<R> = <<<R as Stored>::Entity as EntityTrait>::PrimaryKey as PrimaryKeyTrait>::ValueType;

/// Implements [`Stored`] for `$record`, kept in the table of the entity module `$table`, whose row its
/// repository's `to_active` builds.
macro_rules! stored_in {
    ($record:ty, $table:ident) => {
        impl super::record::Stored for $record {
            type Entity = $table::Entity;
            type Active = $table::ActiveModel;
            const ID: $table::Column = $table::Column::Id;
            const VERSION: $table::Column = $table::Column::Version;
            fn to_active(&self) -> Result<$table::ActiveModel> {
                to_active(self)
            }
            fn from_model(model: $table::Model) -> Result<Self> {
                from_model(model)
            }
            fn insert_shape() -> &'static crate::store::sqlite::shape::Shape {
                static INSERT: crate::store::sqlite::shape::Shape =
                    crate::store::sqlite::shape::Shape::new();
                &INSERT
            }
        }
    };
}
pub(super) use stored_in;

/// Inserts a new `record`, its "created" log row and the rows of `along` (on PostgreSQL in one statement, so one
/// round trip to a database a network hop away). A write's transaction does it through
/// [`Tx::insert_created`](super::Tx::insert_created).
pub(super) async fn insert_along<R: Stored>(
    db: &impl ConnectionTrait,
    agent: &str,
    record: &R,
    now: Micros,
    along: Vec<InsertStatement>,
) -> Result<()> {
    if db.get_database_backend() == DbBackend::Postgres {
        db.execute(&insert_statement(agent, record, now, along)?)
            .await?;
        return Ok(());
    }
    let insert = R::Entity::insert(record.to_active()?).into_query();
    for statement in std::iter::once(insert).chain(along) {
        db.execute(&statement).await?;
    }
    change_log::append(db, NewChange::created(agent, record, now)).await
}

/// What [`insert_along`] runs on PostgreSQL: one statement inserting `record`, the rows of `along` and the
/// "created" log row.
pub(super) fn insert_statement<R: Stored>(
    agent: &str,
    record: &R,
    now: Micros,
    along: Vec<InsertStatement>,
) -> Result<WithQuery> {
    insert_all_statement([(agent, record, now)], along)
}

/// Like [`insert_statement`], for several new records of one kind, each `(agent, record, now)`: one statement
/// inserting them (in the given order), the rows of `along` and their "created" log rows.
pub(super) fn insert_all_statement<'a, R: Stored + 'a>(
    created: impl IntoIterator<Item = (&'a str, &'a R, Micros)>,
    along: Vec<InsertStatement>,
) -> Result<WithQuery> {
    let (mut rows, mut changes) = (Vec::new(), Vec::new());
    for (agent, record, now) in created {
        rows.push(record.to_active()?);
        changes.push(NewChange::created(agent, record, now));
    }
    let insert = R::Entity::insert_many(rows).into_query();
    let writes = std::iter::once(insert)
        .chain(along)
        .map(Into::into)
        .collect();
    change_log::logged_with(writes, changes)
}

/// [`insert_statement`] made only while `guard` yields a row (see [`change_log::append_guarded`]), on
/// PostgreSQL: `along` must be inserts from the guard ([`change_log::insert_from`]). It writes one log row when
/// the guard held, none otherwise.
pub(super) fn insert_guarded<R: Stored>(
    agent: &str,
    record: &R,
    now: Micros,
    along: Vec<InsertStatement>,
    guard: SelectStatement,
) -> Result<WithQuery> {
    let rows = std::iter::once(change_log::insert_from(record.to_active()?))
        .chain(along.into_iter().map(Ok))
        .collect::<Result<Vec<_>>>()?;
    change_log::append_guarded(guard, rows, NewChange::created(agent, record, now))
}

/// What `edit` leaves of `current` (locked by the caller): the caller's values rebased onto it (see
/// [`rebase`]) and applied under the edit's mask, with the fields that changed. `None` when nothing changes.
pub(super) async fn apply_edit<R: Logged>(
    db: &impl ConnectionTrait,
    current: &R,
    edit: Edit<R::Data>,
) -> Result<Option<(R::Data, Vec<FieldChange>)>> {
    let Edit {
        id: _,
        version,
        policy,
        fields,
        data,
    } = edit;
    let new = rebase(db, current, version, policy, &fields, data).await?;
    let data = mask::apply(current.data(), &new, &fields).map_err(Error::internal)?;
    let changes = mask::diff(current.data(), &data);
    Ok((!changes.is_empty()).then_some((data, changes)))
}

/// Saves `updated` over the version `previous` it was made from.
pub(super) async fn save_version<R: Stored>(
    db: &impl ConnectionTrait,
    updated: &R,
    previous: i64,
) -> Result<()> {
    R::Entity::update_many()
        .set(updated.to_active()?)
        .filter(R::ID.eq(updated.id()))
        .filter(R::VERSION.eq(previous))
        .exec(db)
        .await?;
    Ok(())
}

/// Refuses a write to `current` by a caller who saw it at another version than its current one.
pub(super) fn check_seen<R: Logged>(current: &R, expected: i64) -> Result<()> {
    check_version(
        R::RESOURCE.as_str(),
        current.id(),
        expected,
        current.version(),
        current.updated_by(),
    )
}

/// Deletes `current` (locked and checked by the caller), with its "deleted" log row.
pub(super) async fn delete<R: Stored>(
    db: &impl ConnectionTrait,
    agent: &str,
    current: &R,
    now: Micros,
) -> Result<()>
where
    Key<R>: From<String>,
{
    R::Entity::delete_by_id(current.id().to_owned())
        .exec(db)
        .await?;
    change_log::append(db, NewChange::deleted(agent, current, now)).await?;
    Ok(())
}

/// Appends the "updated" log row of `updated` (made by `agent` at `now`, changing `changes`) and answers with
/// `updated`.
pub(super) async fn log_update<R: Logged>(
    db: &impl ConnectionTrait,
    agent: &str,
    updated: R,
    changes: Vec<FieldChange>,
    now: Micros,
) -> Result<R> {
    change_log::append(db, NewChange::updated(agent, &updated, changes, now)).await?;
    Ok(updated)
}

impl super::Store {
    /// Deletes the record of `kind` that `target` names, as its repository deletes it.
    pub async fn delete(&self, kind: ResourceKind, agent: &str, target: Deletion) -> Result<()> {
        match kind {
            ResourceKind::Customer => self.delete_customer(agent, target).await,
            ResourceKind::Request => self.delete_request(agent, target).await,
            ResourceKind::Activity => self.delete_activity(agent, target).await,
        }
    }
}
