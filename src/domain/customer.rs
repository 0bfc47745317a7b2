//! The customer profile.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    contact::{ContactKind, ContactPoint},
    fold,
    time::Micros,
};

/// Who created and last changed a record, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Audit {
    pub create_time: Micros,
    pub update_time: Micros,
    pub created_by: String,
    pub updated_by: String,
}

impl Audit {
    /// A record `agent` creates at `now`.
    pub fn created(agent: &str, now: Micros) -> Self {
        Audit {
            create_time: now,
            update_time: now,
            created_by: agent.to_owned(),
            updated_by: agent.to_owned(),
        }
    }

    /// This record as `agent` changed it at `now`.
    pub fn touched(&self, agent: &str, now: Micros) -> Self {
        Audit {
            update_time: now,
            updated_by: agent.to_owned(),
            ..self.clone()
        }
    }
}

/// The fields of a customer a caller can set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerData {
    pub first_name: String,
    pub last_name: String,
    pub company: String,
    pub gender: String,
    pub customer_number: String,
    #[serde(with = "contact_points_json")]
    pub contact_points: Vec<ContactPoint>,
    pub notes: String,
    pub tags: Vec<String>,
    pub credit_hold: bool,
    pub attributes: BTreeMap<String, String>,
}

/// Field names an update mask may name.
pub const MUTABLE_FIELDS: &[&str] = &[
    "first_name",
    "last_name",
    "company",
    "gender",
    "customer_number",
    "contact_points",
    "notes",
    "tags",
    "credit_hold",
    "attributes",
];

/// Field names that exist but only the service sets, besides those of every record
/// ([`super::mask::RECORD_OUTPUT_ONLY_FIELDS`]).
pub const OUTPUT_ONLY_FIELDS: &[&str] = &["locked", "anonymize_time"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Customer {
    pub id: String,
    pub version: i64,
    pub data: CustomerData,
    pub audit: Audit,
    /// Refuses profile edits, merge, anonymization and deletion.
    pub locked: bool,
    /// When the personal data was removed, if it was.
    pub anonymize_time: Option<Micros>,
}

impl Customer {
    /// A new customer with `data`, created by `agent` at `now`.
    pub fn created(data: CustomerData, agent: &str, now: Micros) -> Self {
        Customer {
            id: super::ids::new_id(),
            version: 1,
            data,
            audit: Audit::created(agent, now),
            locked: false,
            anonymize_time: None,
        }
    }

    /// This customer with `data`, one version on, changed by `agent` at `now`.
    pub fn next_version(&self, data: CustomerData, agent: &str, now: Micros) -> Customer {
        Customer {
            version: self.version + 1,
            audit: self.audit.touched(agent, now),
            data,
            ..self.clone()
        }
    }
}

impl CustomerData {
    /// The folded words a search matches: names, company, customer number, emails, phones (with and without
    /// the country code), handles and tags.
    pub fn search_words(&self) -> Vec<String> {
        let mut text = String::new();
        for part in [
            &self.first_name,
            &self.last_name,
            &self.company,
            &self.customer_number,
        ] {
            text.push_str(part);
            text.push(' ');
        }
        for point in &self.contact_points {
            text.push_str(&point.value);
            text.push(' ');
        }
        for tag in &self.tags {
            text.push_str(tag);
            text.push(' ');
        }
        let mut words = fold::words(&text);
        // A phone is also findable by its digits as dialled nationally ("4155550100" for "+14155550100").
        for point in &self.contact_points {
            if let Some(national) = national_digits(point) {
                words.push(national);
            }
        }
        let mut seen = std::collections::HashSet::new();
        words.retain(|w| seen.insert(w.clone()));
        words
    }
}

/// The national significant number of a phone contact point, as digits.
fn national_digits(point: &ContactPoint) -> Option<String> {
    if point.kind != ContactKind::Phone {
        return None;
    }
    let number = phonenumber::parse(None, &point.value).ok()?;
    Some(number.national().value().to_string())
}

/// The JSON form of contact points, as stored and as recorded in the change log.
pub mod contact_points_json {
    use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error};

    use crate::domain::contact::{ContactKind, ContactPoint};

    #[derive(Serialize, Deserialize)]
    struct Json {
        kind: String,
        label: String,
        value: String,
    }

    fn to_json(points: &[ContactPoint]) -> Vec<Json> {
        points
            .iter()
            .map(|p| Json {
                kind: p.kind.as_str().to_owned(),
                label: p.label.clone(),
                value: p.value.clone(),
            })
            .collect()
    }

    fn from_json(points: Vec<Json>) -> Result<Vec<ContactPoint>, String> {
        points
            .into_iter()
            .map(|p| {
                Ok(ContactPoint {
                    kind: ContactKind::parse(&p.kind)
                        .ok_or_else(|| format!("unknown contact kind {:?}", p.kind))?,
                    label: p.label,
                    value: p.value,
                })
            })
            .collect()
    }

    pub fn serialize<S: Serializer>(
        points: &[ContactPoint],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        to_json(points).serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<ContactPoint>, D::Error> {
        from_json(Vec::<Json>::deserialize(deserializer)?).map_err(D::Error::custom)
    }

    /// The stored text form.
    pub fn encode(points: &[ContactPoint]) -> String {
        serde_json::to_string(&to_json(points)).unwrap_or_else(|_| "[]".to_owned())
    }

    /// Reads the stored text form.
    pub fn decode(text: &str) -> Result<Vec<ContactPoint>, String> {
        from_json(serde_json::from_str(text).map_err(|e| e.to_string())?)
    }
}
