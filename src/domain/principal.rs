//! Who is calling: the acting agent, their role, and (for a customer portal) the one customer they are bound
//! to; and what a watch session of theirs may see of the change log.

use std::borrow::Cow;

use super::change::{Change, ChangeKind, ResourceKind};

/// What a caller may do. The method-by-method table is `crate::auth::policy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Everything, including deleting customers.
    Admin,
    /// Reads and writes customers, requests, activities and comments; watches; no customer deletion.
    Agent,
    /// The telephony/chat router: OpenContext, LookupCustomers, CreateActivity.
    Router,
    /// A customer portal, bound to one customer: reads that customer, its requests and comments and its
    /// non-internal activities; adds incoming activities.
    Portal,
}

impl Role {
    /// Whether a key of this role may name another agent as an activity's `entered_by`: an admin correcting a
    /// record, a router logging the interaction an agent handled. An agent or portal key always enters as
    /// itself.
    pub fn may_enter_for_others(self) -> bool {
        matches!(self, Role::Admin | Role::Router)
    }

    pub const ALL: [Role; 4] = [Role::Admin, Role::Agent, Role::Router, Role::Portal];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Agent => "agent",
            Role::Router => "router",
            Role::Portal => "portal",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|role| role.as_str() == text)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The authenticated caller of one call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The acting agent: the key's name (or `x-agent-id` with `--auth none`). Written to `created_by`,
    /// `updated_by`, `entered_by`, comment authors, watch `changed_by` and presence.
    pub agent: String,
    pub role: Role,
    /// The customer a portal key is bound to; None for every other role.
    pub customer_id: Option<String>,
}

impl Principal {
    /// The customer this caller is confined to, if any (portal keys).
    pub fn portal_customer(&self) -> Option<&str> {
        match self.role {
            Role::Portal => self.customer_id.as_deref(),
            _ => None,
        }
    }

    /// What this caller's watch sessions may see.
    pub fn audience(&self) -> Audience {
        match self.role {
            // A portal key always has a customer (checked when it is created); one without sees nothing.
            Role::Portal => Audience::Customer(self.customer_id.clone().unwrap_or_default()),
            _ => Audience::Staff,
        }
    }
}

/// Who reads a watch stream: staff see every change and presence; a customer sees only changes to their own
/// records that are not internal, and no presence (which agents look at a record is staff business).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Audience {
    #[default]
    Staff,
    Customer(String),
}

impl Audience {
    /// The change as this audience sees it, or None when it may not see it. Staff see every change. A customer
    /// sees the non-internal changes of its own records, and an activity switched between internal and public
    /// leaves or enters its view: an update that made it internal reaches it as a deletion (without the fields),
    /// one that made it public as a creation.
    pub fn view<'a>(&self, change: &'a Change) -> Option<Cow<'a, Change>> {
        let Audience::Customer(customer_id) = self else {
            return Some(Cow::Borrowed(change));
        };
        let own = match change.resource {
            ResourceKind::Customer => change.resource_id == *customer_id,
            ResourceKind::Request | ResourceKind::Activity => {
                change.parent_id.as_deref() == Some(customer_id.as_str())
            }
        };
        if !own {
            return None;
        }
        let switched = change.resource == ResourceKind::Activity
            && change.kind == ChangeKind::Updated
            && change.changed_fields.iter().any(|f| f == "internal");
        match (change.internal, switched) {
            (false, false) => Some(Cow::Borrowed(change)),
            (true, false) => None,
            (true, true) => Some(Cow::Owned(Change {
                kind: ChangeKind::Deleted,
                changed_fields: Vec::new(),
                ..change.clone()
            })),
            (false, true) => Some(Cow::Owned(Change {
                kind: ChangeKind::Created,
                ..change.clone()
            })),
        }
    }

    /// [`view`](Self::view) of a change the caller owns: the change itself when the audience sees it as it is.
    pub fn into_view(&self, change: Change) -> Option<Change> {
        if let Cow::Owned(seen) = self.view(&change)? {
            return Some(seen);
        }
        Some(change)
    }

    /// Whether presence (who views or edits a record) is shown to, and made of, this audience.
    pub fn shares_presence(&self) -> bool {
        matches!(self, Audience::Staff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::change::ChangeKind;

    fn change(resource: ResourceKind, id: &str, parent: Option<&str>, internal: bool) -> Change {
        Change {
            seq: 1,
            resource,
            resource_id: id.to_owned(),
            version: 1,
            kind: ChangeKind::Created,
            agent: "ana".to_owned(),
            changed_fields: Vec::new(),
            parent_id: parent.map(str::to_owned),
            internal,
            time: 0,
        }
    }

    /// Whether `audience` gets `change` at all.
    fn sees(audience: &Audience, change: &Change) -> bool {
        audience.view(change).is_some()
    }

    #[test]
    fn roles_round_trip_their_names() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
        assert_eq!(Role::parse("Admin"), None);
    }

    #[test]
    fn a_customer_sees_only_its_own_non_internal_changes() {
        let me = Audience::Customer("c".to_owned());
        assert!(sees(&me, &change(ResourceKind::Customer, "c", None, false)));
        assert!(!sees(
            &me,
            &change(ResourceKind::Customer, "x", None, false)
        ));
        assert!(sees(
            &me,
            &change(ResourceKind::Activity, "a", Some("c"), false)
        ));
        assert!(!sees(
            &me,
            &change(ResourceKind::Activity, "a", Some("c"), true)
        ));
        assert!(!sees(
            &me,
            &change(ResourceKind::Activity, "a", None, false)
        ));
        assert!(!sees(
            &me,
            &change(ResourceKind::Request, "r", Some("x"), false)
        ));
        assert!(sees(
            &Audience::Staff,
            &change(ResourceKind::Activity, "a", Some("x"), true)
        ));
        assert!(!me.shares_presence());
    }

    #[test]
    fn an_activity_switched_to_internal_leaves_a_customers_view_and_one_made_public_enters_it() {
        let me = Audience::Customer("c".to_owned());
        let switch = |internal: bool, fields: &[&str]| Change {
            kind: ChangeKind::Updated,
            changed_fields: fields.iter().map(|f| (*f).to_owned()).collect(),
            ..change(ResourceKind::Activity, "a", Some("c"), internal)
        };
        let hidden = switch(true, &["internal", "notes"]);
        let seen = me.view(&hidden).expect("the portal hears it left");
        assert_eq!(seen.kind, ChangeKind::Deleted);
        assert!(seen.changed_fields.is_empty(), "{seen:?}");
        let shown = switch(false, &["internal"]);
        assert_eq!(me.view(&shown).expect("shown").kind, ChangeKind::Created);
        // Other updates of an internal activity stay unseen; staff see every change as it is.
        assert!(me.view(&switch(true, &["notes"])).is_none());
        assert_eq!(
            Audience::Staff.view(&hidden).expect("staff").kind,
            ChangeKind::Updated
        );
        // Another customer's activity stays unseen, switched or not.
        let foreign = Change {
            parent_id: Some("x".to_owned()),
            ..switch(false, &["internal"])
        };
        assert!(me.view(&foreign).is_none());
    }

    #[test]
    fn only_portal_principals_are_confined() {
        let portal = Principal {
            agent: "p".into(),
            role: Role::Portal,
            customer_id: Some("c".into()),
        };
        assert_eq!(portal.portal_customer(), Some("c"));
        assert_eq!(portal.audience(), Audience::Customer("c".into()));
        let agent = Principal {
            role: Role::Agent,
            customer_id: None,
            ..portal
        };
        assert_eq!(agent.portal_customer(), None);
        assert_eq!(agent.audience(), Audience::Staff);
    }
}
