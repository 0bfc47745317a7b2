//! Statements rendered once: the SQL text of a statement sea-orm builds depends only on its shape (which table,
//! which columns, which conditions), never on the values bound to it. The `OpenContext` path runs the same dozen
//! shapes on every call, so it renders each one the first time it is needed, keeps the text (by which SQLite's
//! prepared statement is cached too) and binds each call's values to it, instead of building and rendering a
//! statement tree per statement per call.
//!
//! Inserts take their values from the row's active model, in the order sea-orm's `Insert::one` binds them; a
//! select's values are listed where it is run, and a unit test there checks them against the values sea-orm
//! binds for the same query.

use std::{borrow::Cow, sync::OnceLock};

use rusqlite::types::Value as SqlValue;
use sea_orm::{ActiveModelTrait, ActiveValue, EntityTrait, Iterable, sea_query::Value};

use crate::error::{Error, Result};

/// The SQL text of one statement shape, rendered the first time it is run.
pub(in crate::store) struct Shape(OnceLock<(u64, String)>);

impl Shape {
    pub(in crate::store) const fn new() -> Shape {
        Shape(OnceLock::new())
    }

    /// The text for a statement of this shape binding the columns in `columns` (a set of column positions; 0 for
    /// a select), rendered by `render` the first time. A statement binding other columns than the first one did
    /// is rendered afresh and not kept.
    pub(in crate::store) fn sql(
        &self,
        columns: u64,
        render: impl FnOnce() -> String,
    ) -> Cow<'_, str> {
        match self.0.get() {
            Some((kept, sql)) if *kept == columns => Cow::Borrowed(sql),
            Some(_) => Cow::Owned(render()),
            // The first statement of this shape. A concurrent first one may keep its text instead; this one's is
            // then used once if it differs.
            None => match self.0.set((columns, render())) {
                Ok(()) => self.kept_or(columns, String::new()),
                Err((_, sql)) => self.kept_or(columns, sql),
            },
        }
    }

    /// The kept text if it binds `columns`, else `sql`.
    fn kept_or(&self, columns: u64, sql: String) -> Cow<'_, str> {
        match self.0.get() {
            Some((kept, text)) if *kept == columns => Cow::Borrowed(text),
            _ => Cow::Owned(sql),
        }
    }
}

/// Which columns `Insert::one(row)` binds: bit `i` for the entity's `i`-th column, when `row` sets it.
pub(in crate::store) fn set_columns<A: ActiveModelTrait>(row: &A) -> Result<u64> {
    let mut columns = 0;
    for (position, column) in <A::Entity as EntityTrait>::Column::iter().enumerate() {
        if !row.is_not_set(column) {
            columns |= u32::try_from(position)
                .ok()
                .and_then(|position| 1u64.checked_shl(position))
                .ok_or_else(|| Error::internal("a table with more than 64 columns"))?;
        }
    }
    Ok(columns)
}

/// The values `Insert::one(row)` binds, in its order: the set columns, in the order the entity declares them.
pub(in crate::store) fn insert_values<A: ActiveModelTrait>(mut row: A) -> Result<Vec<SqlValue>> {
    let mut values = Vec::new();
    for column in <A::Entity as EntityTrait>::Column::iter() {
        match row.take(column) {
            ActiveValue::Set(value) | ActiveValue::Unchanged(value) => {
                values.push(into_sql_value(value)?);
            }
            ActiveValue::NotSet => {}
        }
    }
    Ok(values)
}

/// A bound value as SQLite stores it.
pub(in crate::store) fn into_sql_value(value: Value) -> Result<SqlValue> {
    fn int(value: Option<impl Into<i64>>) -> SqlValue {
        value.map_or(SqlValue::Null, |v| SqlValue::Integer(v.into()))
    }
    Ok(match value {
        Value::Bool(v) => int(v),
        Value::TinyInt(v) => int(v),
        Value::SmallInt(v) => int(v),
        Value::Int(v) => int(v),
        Value::BigInt(v) => int(v),
        Value::TinyUnsigned(v) => int(v),
        Value::SmallUnsigned(v) => int(v),
        Value::Unsigned(v) => int(v),
        // Limits and offsets.
        Value::BigUnsigned(Some(v)) => SqlValue::Integer(
            i64::try_from(v)
                .map_err(|_| Error::internal(format!("{v} is out of SQLite's integer range")))?,
        ),
        Value::BigUnsigned(None) => SqlValue::Null,
        Value::Float(v) => v.map_or(SqlValue::Null, |v| SqlValue::Real(v.into())),
        Value::Double(v) => v.map_or(SqlValue::Null, SqlValue::Real),
        Value::String(v) => v.map_or(SqlValue::Null, SqlValue::Text),
        Value::Char(v) => v.map_or(SqlValue::Null, |c| SqlValue::Text(c.to_string())),
        Value::Bytes(v) => v.map_or(SqlValue::Null, SqlValue::Blob),
        other => {
            return Err(Error::internal(format!(
                "no SQLite binding for the value {other:?}"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shape_keeps_the_text_it_rendered_first() {
        let shape = Shape::new();
        assert_eq!(shape.sql(0b11, || "first".to_owned()), "first");
        assert_eq!(
            shape.sql(0b11, || unreachable!("kept, not rendered again")),
            "first"
        );
        // Other columns: rendered for this statement only.
        assert_eq!(shape.sql(0b01, || "other".to_owned()), "other");
        assert_eq!(shape.sql(0b11, || "again".to_owned()), "first");
    }

    #[test]
    fn bound_values_keep_their_sqlite_types() {
        assert_eq!(
            into_sql_value(Value::Bool(Some(true))).unwrap(),
            SqlValue::Integer(1)
        );
        assert_eq!(into_sql_value(Value::Int(None)).unwrap(), SqlValue::Null);
        assert_eq!(
            into_sql_value(Value::String(Some("Zoë".to_owned()))).unwrap(),
            SqlValue::Text("Zoë".to_owned())
        );
        assert_eq!(
            into_sql_value(Value::BigInt(Some(-7))).unwrap(),
            SqlValue::Integer(-7)
        );
        assert_eq!(
            into_sql_value(Value::BigUnsigned(Some(20))).unwrap(),
            SqlValue::Integer(20)
        );
        assert!(into_sql_value(Value::BigUnsigned(Some(u64::MAX))).is_err());
    }
}
