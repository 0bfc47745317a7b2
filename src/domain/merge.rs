//! Merging duplicate customers: which values the surviving customer (the target) takes from each duplicate (a
//! source), and how unmerging gives them back.
//!
//! - Names, company, gender, customer number and notes: the target keeps its own value where it has one and
//!   takes the source's where it has none.
//! - Credit hold: set if either had it.
//! - Contact points: the union, a point counting as present when the target has one of the same kind and match
//!   key ([`match_key`]).
//! - Tags: the union, compared trimmed and case-insensitively ([`tag_key`]).
//! - Attributes: the union; the target's value wins when both have a key.
//!
//! What the target took from a source is recorded ([`Taken`]), so unmerging removes exactly that, and only
//! where it is still as the merge left it.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use super::{
    attributes::MAX_ATTRIBUTES,
    contact::{ContactKind, ContactPoint, MAX_CONTACT_POINTS, match_key},
    customer::{CustomerData, contact_points_json},
    tags::{MAX_TAGS, tag_key},
};

/// What the target took from one source.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Taken {
    #[serde(with = "contact_points_json")]
    pub contact_points: Vec<ContactPoint>,
    pub tags: Vec<String>,
    pub attributes: BTreeMap<String, String>,
    /// Text fields the target had empty, with the value it took (`first_name`, `customer_number`, ...).
    pub fields: BTreeMap<String, String>,
    /// The target had no credit hold and took the source's.
    pub credit_hold: bool,
}

impl Taken {
    /// Whether the target took the source's customer number.
    pub fn customer_number(&self) -> bool {
        self.fields.contains_key("customer_number")
    }
}

/// The text fields merged "target wins where set".
pub const TEXT_FIELDS: &[&str] = &[
    "first_name",
    "last_name",
    "company",
    "gender",
    "customer_number",
    "notes",
];

fn text_field<'a>(data: &'a mut CustomerData, field: &str) -> Option<&'a mut String> {
    Some(match field {
        "first_name" => &mut data.first_name,
        "last_name" => &mut data.last_name,
        "company" => &mut data.company,
        "gender" => &mut data.gender,
        "customer_number" => &mut data.customer_number,
        "notes" => &mut data.notes,
        _ => return None,
    })
}

fn point_key(point: &ContactPoint) -> (ContactKind, String) {
    (point.kind, match_key(point.kind, &point.value))
}

/// Merges `source` into `target` and returns what the target took from it.
pub fn absorb(target: &mut CustomerData, source: &CustomerData) -> Taken {
    let mut taken = Taken::default();
    let mut source = source.clone();
    for field in TEXT_FIELDS {
        let (Some(own), Some(theirs)) = (text_field(target, field), text_field(&mut source, field))
        else {
            continue;
        };
        if own.trim().is_empty() && !theirs.trim().is_empty() {
            *own = theirs.clone();
            taken.fields.insert((*field).to_owned(), theirs.clone());
        }
    }
    if source.credit_hold && !target.credit_hold {
        target.credit_hold = true;
        taken.credit_hold = true;
    }
    let mut points: HashSet<_> = target.contact_points.iter().map(point_key).collect();
    for point in &source.contact_points {
        if points.insert(point_key(point)) {
            target.contact_points.push(point.clone());
            taken.contact_points.push(point.clone());
        }
    }
    let mut tags: HashSet<String> = target.tags.iter().map(|t| tag_key(t)).collect();
    for tag in &source.tags {
        if tags.insert(tag_key(tag)) {
            target.tags.push(tag.trim().to_owned());
            taken.tags.push(tag.trim().to_owned());
        }
    }
    for (key, value) in &source.attributes {
        if !target.attributes.contains_key(key) {
            target.attributes.insert(key.clone(), value.clone());
            taken.attributes.insert(key.clone(), value.clone());
        }
    }
    taken
}

/// Removes from `target` what it took from a source, where it is still as the merge left it: a text field still
/// holding the taken value is emptied, a contact point or tag with the same key is removed, an attribute still
/// holding the taken value is removed, and a credit hold set by the merge is lifted.
pub fn give_back(target: &mut CustomerData, taken: &Taken) {
    for (field, value) in &taken.fields {
        if let Some(own) = text_field(target, field)
            && own == value
        {
            own.clear();
        }
    }
    if taken.credit_hold {
        target.credit_hold = false;
    }
    let points: HashSet<_> = taken.contact_points.iter().map(point_key).collect();
    target
        .contact_points
        .retain(|point| !points.contains(&point_key(point)));
    let tags: HashSet<String> = taken.tags.iter().map(|t| tag_key(t)).collect();
    target.tags.retain(|tag| !tags.contains(&tag_key(tag)));
    for (key, value) in &taken.attributes {
        if target.attributes.get(key) == Some(value) {
            target.attributes.remove(key);
        }
    }
}

/// A merged profile breaking a limit of a single customer: `(reason, message)`.
pub fn check_limits(merged: &CustomerData) -> Result<(), (&'static str, String)> {
    let over = |what: &str, count: usize, max: usize| {
        format!(
            "the merged customer would have {count} {what}, more than the {max} one customer may have; \
             remove some from the target or the sources first"
        )
    };
    if merged.contact_points.len() > MAX_CONTACT_POINTS {
        return Err((
            "TOO_MANY_CONTACT_POINTS",
            over(
                "contact points",
                merged.contact_points.len(),
                MAX_CONTACT_POINTS,
            ),
        ));
    }
    if merged.tags.len() > MAX_TAGS {
        return Err(("TOO_MANY_TAGS", over("tags", merged.tags.len(), MAX_TAGS)));
    }
    if merged.attributes.len() > MAX_ATTRIBUTES {
        return Err((
            "TOO_MANY_ATTRIBUTES",
            over("attributes", merged.attributes.len(), MAX_ATTRIBUTES),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(kind: ContactKind, value: &str) -> ContactPoint {
        ContactPoint {
            kind,
            label: "x".into(),
            value: value.into(),
        }
    }

    fn target() -> CustomerData {
        CustomerData {
            first_name: "Carla".into(),
            notes: "target notes".into(),
            contact_points: vec![point(ContactKind::Phone, "+14155550100")],
            tags: vec!["VIP".into()],
            attributes: [("plan".to_owned(), "gold".to_owned())].into(),
            ..Default::default()
        }
    }

    fn source() -> CustomerData {
        CustomerData {
            first_name: "Karla".into(),
            last_name: "Diaz".into(),
            customer_number: "C-7".into(),
            credit_hold: true,
            contact_points: vec![
                point(ContactKind::Phone, "+14155550100"),
                point(ContactKind::Email, "Carla@Example.com"),
            ],
            tags: vec![" vip ".into(), "billing".into()],
            attributes: [
                ("plan".to_owned(), "silver".to_owned()),
                ("region".to_owned(), "west".to_owned()),
            ]
            .into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_target_wins_where_set_and_takes_the_rest() {
        let mut merged = target();
        let taken = absorb(&mut merged, &source());
        assert_eq!(merged.first_name, "Carla");
        assert_eq!(merged.last_name, "Diaz");
        assert_eq!(merged.customer_number, "C-7");
        assert_eq!(merged.notes, "target notes");
        assert!(merged.credit_hold);
        assert_eq!(merged.contact_points.len(), 2);
        assert_eq!(merged.tags, ["VIP", "billing"]);
        assert_eq!(merged.attributes["plan"], "gold");
        assert_eq!(merged.attributes["region"], "west");
        assert!(taken.customer_number());
        assert_eq!(taken.tags, ["billing"]);
        assert_eq!(taken.contact_points.len(), 1);
        assert_eq!(taken.attributes.len(), 1);
    }

    #[test]
    fn giving_back_restores_the_target_unless_changed_since() {
        let mut merged = target();
        let taken = absorb(&mut merged, &source());
        let mut back = merged.clone();
        give_back(&mut back, &taken);
        assert_eq!(back, target());

        // A value changed after the merge stays.
        let mut edited = merged;
        edited.last_name = "Díaz-Ruiz".into();
        edited
            .attributes
            .insert("region".to_owned(), "east".to_owned());
        give_back(&mut edited, &taken);
        assert_eq!(edited.last_name, "Díaz-Ruiz");
        assert_eq!(edited.attributes["region"], "east");
        assert!(edited.customer_number.is_empty());
    }

    #[test]
    fn limits_of_one_customer_apply_to_the_merged_one() {
        let mut merged = CustomerData {
            tags: (0..60).map(|i| format!("a{i}")).collect(),
            ..Default::default()
        };
        let source = CustomerData {
            tags: (0..60).map(|i| format!("b{i}")).collect(),
            ..Default::default()
        };
        absorb(&mut merged, &source);
        let (reason, message) = check_limits(&merged).unwrap_err();
        assert_eq!(reason, "TOO_MANY_TAGS");
        assert!(message.contains("120 tags"), "{message}");
    }
}
