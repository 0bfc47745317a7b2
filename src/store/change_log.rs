//! Appending to and reading the change log.

use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait};
use serde_json::{Map, Value};

use super::entity::change_log;
use crate::{
    domain::change::{Change, ChangeKind, NewChange, ResourceKind},
    error::{Error, Result},
};

/// Appends `change` inside the caller's transaction and returns its log position.
pub(super) async fn append(db: &impl ConnectionTrait, change: NewChange) -> Result<i64> {
    let names: Vec<&str> = change.fields.iter().map(|f| f.field.as_str()).collect();
    let values: Map<String, Value> = change
        .fields
        .iter()
        .map(|f| {
            (
                f.field.clone(),
                Value::Array(vec![f.old.clone(), f.new.clone()]),
            )
        })
        .collect();
    let row = change_log::ActiveModel {
        resource_type: Set(change.resource.as_str().to_owned()),
        resource_id: Set(change.resource_id),
        version: Set(change.version),
        kind: Set(change.kind.as_str().to_owned()),
        agent: Set(change.agent),
        changed_fields: Set(serde_json::to_string(&names).map_err(Error::internal)?),
        changes: Set(Value::Object(values).to_string()),
        parent_id: Set(change.parent_id),
        internal: Set(change.internal),
        change_time: Set(change.time),
        ..Default::default()
    };
    let result = change_log::Entity::insert(row).exec(db).await?;
    Ok(result.last_insert_id)
}

pub(super) fn from_model(model: change_log::Model) -> Result<Change> {
    Ok(Change {
        seq: model.seq,
        resource: ResourceKind::parse(&model.resource_type).ok_or_else(|| {
            Error::internal(format!(
                "change {}: unknown resource {}",
                model.seq, model.resource_type
            ))
        })?,
        resource_id: model.resource_id,
        version: model.version,
        kind: ChangeKind::parse(&model.kind).ok_or_else(|| {
            Error::internal(format!("change {}: unknown kind {}", model.seq, model.kind))
        })?,
        agent: model.agent,
        changed_fields: serde_json::from_str(&model.changed_fields).map_err(Error::internal)?,
        parent_id: model.parent_id,
        internal: model.internal,
        time: model.change_time,
    })
}
