//! Anonymization, export and the audit history: the privacy half of `CustomerService`.
//!
//! The export is built from the same messages the API returns (`Customer`, `Request`, `Comment`, `Activity`,
//! `Notification`, `Change`), turned into JSON by walking their descriptors: every field of the proto appears
//! under its proto name, so a field added to the contract is exported without a change here.

use std::sync::LazyLock;

use super::{
    Call, Paged,
    resources::{change_kind, resource_kind, resource_ref},
};
use crate::{
    codec::Described,
    domain::{
        Violations,
        change::ResourceKind,
        customer::Customer,
        ids,
        page::Cursor,
        reason,
        time::{now_micros, to_timestamp},
    },
    error::Error,
    pb,
    store::{LoggedChange, Store},
};
use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, Kind, MapKey, ReflectMessage};
use serde_json::{Map, Number, Value};

/// The `format` of an export document; changes only with an incompatible layout.
pub const EXPORT_FORMAT: &str = "customer-context.export.v1";

static DESCRIPTORS: LazyLock<Result<DescriptorPool, String>> =
    LazyLock::new(|| DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET).map_err(|e| e.to_string()));

pub async fn anonymize_customer(
    Call(state, caller, message): Call<'_, pb::AnonymizeCustomerRequest>,
) -> Result<Customer, Error> {
    let id = ids::require_id("id", &message.id)?;
    state.store.anonymize_customer(&caller.agent, &id).await
}

pub async fn export_customer(
    Call(state, caller, message): Call<'_, pb::ExportCustomerRequest>,
) -> Result<pb::ExportCustomerResponse, Error> {
    let id = ids::require_id("id", &message.id)?;
    let document = export_document(&state.store, &id).await?;
    tracing::info!(customer = %id, agent = caller.agent, "customer exported");
    Ok(pb::ExportCustomerResponse {
        json: document.to_string(),
    })
}

pub async fn list_changes(
    Call(state, _, message): Call<'_, pb::ListChangesRequest>,
) -> Result<pb::ListChangesResponse, Error> {
    let resource = message.resource.clone().unwrap_or_default();
    let mut violations = Violations::new();
    let kind = resource_kind(resource.r#type);
    if kind.is_none() {
        if resource.r#type == pb::ResourceType::Unspecified as i32 {
            violations.push(
                "resource.type",
                reason::REQUIRED_FIELD,
                "the record's type is required: RESOURCE_TYPE_CUSTOMER, _REQUEST or _ACTIVITY",
            );
        } else {
            violations.push(
                "resource.type",
                reason::INVALID_ENUM_VALUE,
                format!(
                    "{} is not a ResourceType (RESOURCE_TYPE_CUSTOMER, _REQUEST or _ACTIVITY)",
                    resource.r#type
                ),
            );
        }
    }
    let id = ids::check_id(&mut violations, "resource.id", &resource.id);
    let kind_name = kind.map_or("", ResourceKind::as_str);
    let page = message.page(
        &mut violations,
        &["changes", kind_name, id.as_deref().unwrap_or_default()],
    );
    let (kind, id) = violations.into_checked(kind.zip(id))?;
    let after = page.cursor.as_ref().and_then(|c| c.time);
    let rows = state
        .store
        .record_history(kind, &id, after, page.fetch())
        .await?;
    if rows.is_empty() && page.cursor.is_none() {
        return Err(Error::not_found(kind.as_str(), id));
    }
    Ok(page.answer(
        rows,
        |row| Cursor::after(row.change.seq, &id),
        |row| change_to_pb(&row),
    ))
}

/// Everything held about customer `id` as one JSON document (see `ExportCustomerResponse`). Used by
/// `ExportCustomer` and by `customer-context export`.
pub async fn export_document(store: &Store, id: &str) -> Result<Value, Error> {
    let records = store.customer_records(id).await?;
    let requests = records
        .requests
        .into_iter()
        .map(|(request, comments)| {
            let mut json = message_json(&pb::Request::from(request))?;
            let comments = json_objects(comments.into_iter().map(pb::Comment::from))?;
            json.insert("comments".to_owned(), Value::Array(comments));
            Ok(Value::Object(json))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let activities = json_objects(records.activities.into_iter().map(pb::Activity::from))?;
    let notifications = records
        .notifications
        .into_iter()
        .map(|n| {
            let body = n.body.clone();
            let mut json = message_json(&pb::Notification::from(n))?;
            json.insert("body".to_owned(), Value::String(body));
            Ok(Value::Object(json))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let merged = records
        .merged
        .into_iter()
        .map(|m| {
            let stored =
                |text: &str| serde_json::from_str(text).unwrap_or(Value::String(text.to_owned()));
            serde_json::json!({
                "customer_id": m.source_id,
                "merged_into": m.target_id,
                "merge_time": rfc3339(m.merge_time),
                "merged_by": m.merged_by,
                "customer": stored(&m.source),
                "moved": stored(&m.moved),
            })
        })
        .collect::<Vec<_>>();
    let changes = json_objects(records.changes.iter().map(change_to_pb))?;
    let mut document = Map::new();
    document.insert("format".to_owned(), EXPORT_FORMAT.into());
    document.insert("export_time".to_owned(), rfc3339(now_micros()).into());
    document.insert(
        "customer".to_owned(),
        Value::Object(message_json(&pb::Customer::from(records.customer))?),
    );
    document.insert("requests".to_owned(), Value::Array(requests));
    document.insert("activities".to_owned(), Value::Array(activities));
    document.insert("notifications".to_owned(), Value::Array(notifications));
    document.insert("merged_customers".to_owned(), Value::Array(merged));
    document.insert("changes".to_owned(), Value::Array(changes));
    Ok(Value::Object(document))
}

/// Each of `messages` as a JSON object (see [`message_json`]).
fn json_objects<M: Message + Described>(
    messages: impl IntoIterator<Item = M>,
) -> Result<Vec<Value>, Error> {
    messages
        .into_iter()
        .map(|m| message_json(&m).map(Value::Object))
        .collect()
}

fn rfc3339(micros: i64) -> String {
    to_timestamp(micros).to_string()
}

fn change_to_pb(entry: &LoggedChange) -> pb::Change {
    let change = &entry.change;
    let kind = change_kind(change.kind);
    let fields = change
        .changed_fields
        .iter()
        .map(|field| {
            let (old_value, new_value) = match entry.values_of(field) {
                Some((old, new)) if !entry.redacted => (
                    field_value(change.resource, field, old),
                    field_value(change.resource, field, new),
                ),
                _ => (None, None),
            };
            pb::FieldChange {
                field: field.clone(),
                old_value,
                new_value,
                redacted: entry.redacted,
            }
        })
        .collect();
    pb::Change {
        cursor: change.seq,
        resource: Some(resource_ref(
            change.resource,
            &change.resource_id,
            change.version,
        )),
        kind: kind as i32,
        parent: change
            .parent_id
            .as_deref()
            .map(|parent| resource_ref(ResourceKind::Customer, parent, 0)),
        changed_by: change.agent.clone(),
        change_time: Some(to_timestamp(change.time)),
        fields,
    }
}

/// A recorded value in the form the record's own message uses (times as RFC 3339, enums by name); `None` for
/// no value.
fn field_value(resource: ResourceKind, field: &str, value: &Value) -> Option<prost_types::Value> {
    if value.is_null() {
        return None;
    }
    let presented = match (resource, field, value) {
        (_, field, Value::Number(n)) if field.ends_with("_time") => n
            .as_i64()
            .map_or_else(|| value.clone(), |micros| rfc3339(micros).into()),
        (ResourceKind::Activity, "channel", Value::Number(n)) => enum_name(n, |v| {
            pb::Channel::try_from(v).ok().map(|e| e.as_str_name())
        })
        .unwrap_or_else(|| value.clone()),
        (ResourceKind::Activity, "direction", Value::Number(n)) => enum_name(n, |v| {
            pb::Direction::try_from(v).ok().map(|e| e.as_str_name())
        })
        .unwrap_or_else(|| value.clone()),
        (ResourceKind::Request, "status", Value::String(s)) => {
            Value::String(format!("REQUEST_STATUS_{}", s.to_ascii_uppercase()))
        }
        (ResourceKind::Customer, "contact_points", Value::Array(points)) => Value::Array(
            points
                .iter()
                .map(|point| {
                    let mut point = point.clone();
                    if let Some(Value::String(kind)) = point.get_mut("kind") {
                        *kind = format!("CONTACT_KIND_{}", kind.to_ascii_uppercase());
                    }
                    point
                })
                .collect(),
        ),
        _ => value.clone(),
    };
    Some(to_proto_value(presented))
}

fn enum_name(n: &Number, name: impl Fn(i32) -> Option<&'static str>) -> Option<Value> {
    let v = i32::try_from(n.as_i64()?).ok()?;
    name(v).map(Value::from)
}

fn to_proto_value(value: Value) -> prost_types::Value {
    use prost_types::value::Kind as V;
    let kind = match value {
        Value::Null => V::NullValue(0),
        Value::Bool(b) => V::BoolValue(b),
        Value::Number(n) => V::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => V::StringValue(s),
        Value::Array(items) => V::ListValue(prost_types::ListValue {
            values: items.into_iter().map(to_proto_value).collect(),
        }),
        Value::Object(map) => V::StructValue(prost_types::Struct {
            fields: map
                .into_iter()
                .map(|(k, v)| (k, to_proto_value(v)))
                .collect(),
        }),
    };
    prost_types::Value { kind: Some(kind) }
}

fn from_proto_value(value: prost_types::Value) -> Value {
    use prost_types::value::Kind as V;
    match value.kind {
        None | Some(V::NullValue(_)) => Value::Null,
        Some(V::BoolValue(b)) => Value::Bool(b),
        Some(V::NumberValue(n)) => Number::from_f64(n).map_or(Value::Null, Value::Number),
        Some(V::StringValue(s)) => Value::String(s),
        Some(V::ListValue(list)) => {
            Value::Array(list.values.into_iter().map(from_proto_value).collect())
        }
        Some(V::StructValue(s)) => Value::Object(
            s.fields
                .into_iter()
                .map(|(k, v)| (k, from_proto_value(v)))
                .collect(),
        ),
    }
}

/// `message` as a JSON object: every field of its descriptor under its
/// proto name, with its value or the proto default; unset messages are `null`, times RFC 3339 strings, enums
/// their names, `google.protobuf.Value` the JSON it holds.
pub fn message_json<M: Message + Described>(message: &M) -> Result<Map<String, Value>, Error> {
    let pool = DESCRIPTORS
        .as_ref()
        .map_err(|e| Error::internal(format!("descriptor set unreadable: {e}")))?;
    let full_name = M::FULL_NAME.ok_or_else(|| Error::internal("not a message of the API"))?;
    let descriptor = pool
        .get_message_by_name(full_name)
        .ok_or_else(|| Error::internal(format!("no message {full_name} in the descriptor set")))?;
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())
        .map_err(|e| Error::internal(format!("{full_name} does not decode: {e}")))?;
    match dynamic_json(&dynamic) {
        Value::Object(map) => Ok(map),
        other => Err(Error::internal(format!(
            "{full_name} became {other} instead of an object"
        ))),
    }
}

fn dynamic_json(message: &DynamicMessage) -> Value {
    match message.descriptor().full_name() {
        "google.protobuf.Timestamp" => match message.transcode_to::<prost_types::Timestamp>() {
            Ok(ts) => Value::String(ts.to_string()),
            Err(_) => Value::Null,
        },
        "google.protobuf.Value" => message
            .transcode_to::<prost_types::Value>()
            .map_or(Value::Null, from_proto_value),
        _ => {
            let mut object = Map::new();
            for field in message.descriptor().fields() {
                // An absent `google.protobuf.Value` is left out: in proto3 JSON its `null` is a present
                // NullValue, so a parser would read a value the record never had.
                if let Kind::Message(kind) = field.kind()
                    && kind.full_name() == "google.protobuf.Value"
                    && !field.is_list()
                    && !message.has_field(&field)
                {
                    continue;
                }
                let value = if field.is_list() || field.is_map() {
                    reflect_json(&field.kind(), &message.get_field(&field))
                } else if matches!(field.kind(), Kind::Message(_)) && !message.has_field(&field) {
                    Value::Null
                } else {
                    reflect_json(&field.kind(), &message.get_field(&field))
                };
                object.insert(field.name().to_owned(), value);
            }
            Value::Object(object)
        }
    }
}

fn reflect_json(kind: &Kind, value: &prost_reflect::Value) -> Value {
    use prost_reflect::Value as R;
    match value {
        R::Bool(b) => Value::Bool(*b),
        R::I32(n) => Value::from(*n),
        R::I64(n) => Value::from(*n),
        R::U32(n) => Value::from(*n),
        R::U64(n) => Value::from(*n),
        R::F32(n) => Number::from_f64(f64::from(*n)).map_or(Value::Null, Value::Number),
        R::F64(n) => Number::from_f64(*n).map_or(Value::Null, Value::Number),
        R::String(s) => Value::String(s.clone()),
        R::Bytes(b) => {
            use base64::Engine;
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        R::EnumNumber(n) => match kind {
            Kind::Enum(e) => e
                .get_value(*n)
                .map_or_else(|| Value::from(*n), |v| Value::String(v.name().to_owned())),
            _ => Value::from(*n),
        },
        R::Message(m) => dynamic_json(m),
        R::List(items) => Value::Array(items.iter().map(|item| reflect_json(kind, item)).collect()),
        R::Map(entries) => {
            let value_kind = match kind {
                Kind::Message(entry) => entry.map_entry_value_field().kind(),
                other => other.clone(),
            };
            let mut object = Map::new();
            for (key, value) in entries {
                let key = match key {
                    MapKey::Bool(b) => b.to_string(),
                    MapKey::I32(n) => n.to_string(),
                    MapKey::I64(n) => n.to_string(),
                    MapKey::U32(n) => n.to_string(),
                    MapKey::U64(n) => n.to_string(),
                    MapKey::String(s) => s.clone(),
                };
                object.insert(key, reflect_json(&value_kind, value));
            }
            Value::Object(object)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_become_json_by_proto_field_names() {
        let activity = pb::Activity {
            id: "a".into(),
            channel: pb::Channel::InPerson as i32,
            direction: 7,
            tags: vec!["x".into()],
            occur_time: Some(prost_types::Timestamp {
                seconds: 1_700_000_000,
                nanos: 250_000_000,
            }),
            ..Default::default()
        };
        let json = message_json(&activity).unwrap();
        assert_eq!(json["channel"], "CHANNEL_IN_PERSON");
        assert_eq!(
            json["direction"], 7,
            "an unknown enum number stays a number"
        );
        assert_eq!(json["occur_time"], "2023-11-14T22:13:20.250Z");
        assert_eq!(json["follow_up_time"], Value::Null);
        assert_eq!(json["tags"], serde_json::json!(["x"]));
        assert_eq!(json["internal"], false);
        assert_eq!(json["notes"], "");
        let customer = pb::Customer {
            attributes: [("vat".to_owned(), "X1".to_owned())].into(),
            contact_points: vec![pb::ContactPoint {
                kind: pb::ContactKind::Phone as i32,
                label: "m".into(),
                value: "+1".into(),
            }],
            ..Default::default()
        };
        let json = message_json(&customer).unwrap();
        assert_eq!(json["attributes"], serde_json::json!({"vat": "X1"}));
        assert_eq!(json["contact_points"][0]["kind"], "CONTACT_KIND_PHONE");
    }

    #[test]
    fn recorded_values_take_the_form_of_the_records_messages() {
        let json = |resource, field, value: Value| {
            field_value(resource, field, &value).map(from_proto_value)
        };
        assert_eq!(
            json(
                ResourceKind::Activity,
                "occur_time",
                1_700_000_000_250_000i64.into()
            ),
            Some("2023-11-14T22:13:20.250Z".into())
        );
        assert_eq!(
            json(ResourceKind::Activity, "channel", 1.into()),
            Some("CHANNEL_VOICE".into())
        );
        assert_eq!(
            json(ResourceKind::Request, "status", "closed".into()),
            Some("REQUEST_STATUS_CLOSED".into())
        );
        assert_eq!(
            json(
                ResourceKind::Customer,
                "contact_points",
                serde_json::json!([{"kind": "email", "label": "", "value": "a@b.c"}])
            ),
            Some(
                serde_json::json!([{"kind": "CONTACT_KIND_EMAIL", "label": "", "value": "a@b.c"}])
            )
        );
        assert_eq!(json(ResourceKind::Customer, "notes", Value::Null), None);
        assert_eq!(
            json(ResourceKind::Customer, "tags", serde_json::json!(["vip"])),
            Some(serde_json::json!(["vip"]))
        );
    }
}
