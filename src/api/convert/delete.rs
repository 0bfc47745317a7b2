//! Deletions parsed into a command: a well-formed id and the version the caller last saw, or every violation.

use crate::{
    api::check_version_given,
    domain::{Violations, ids},
    pb,
};

/// A record to delete at the version the caller last saw.
#[derive(Debug, PartialEq, Eq)]
pub(in crate::api) struct Deletion {
    pub id: String,
    pub version: i64,
}

impl Deletion {
    fn parse(id: &str, version: i64) -> Result<Self, Violations> {
        let mut violations = Violations::new();
        let id = ids::check_id(&mut violations, "id", id);
        check_version_given(&mut violations, "version", version);
        match (violations.into_result(()), id) {
            (Ok(()), Some(id)) => Ok(Deletion { id, version }),
            (Err(violations), _) => Err(violations),
            (Ok(()), None) => Err(Violations::one(
                "id",
                crate::domain::reason::INVALID_ID,
                "not an id",
            )),
        }
    }
}

impl TryFrom<pb::DeleteCustomerRequest> for Deletion {
    type Error = Violations;
    fn try_from(
        pb::DeleteCustomerRequest { id, version }: pb::DeleteCustomerRequest,
    ) -> Result<Self, Violations> {
        Deletion::parse(&id, version)
    }
}

impl TryFrom<pb::DeleteRequestRequest> for Deletion {
    type Error = Violations;
    fn try_from(
        pb::DeleteRequestRequest { id, version }: pb::DeleteRequestRequest,
    ) -> Result<Self, Violations> {
        Deletion::parse(&id, version)
    }
}

impl TryFrom<pb::DeleteActivityRequest> for Deletion {
    type Error = Violations;
    fn try_from(
        pb::DeleteActivityRequest { id, version }: pb::DeleteActivityRequest,
    ) -> Result<Self, Violations> {
        Deletion::parse(&id, version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deletion_needs_an_id_and_a_version_and_names_both_when_missing() {
        let id = crate::domain::ids::new_id();
        assert_eq!(
            Deletion::try_from(pb::DeleteCustomerRequest {
                id: id.clone(),
                version: 3
            }),
            Ok(Deletion { id, version: 3 })
        );
        let refused = Deletion::try_from(pb::DeleteActivityRequest {
            id: "x".into(),
            version: 0,
        })
        .unwrap_err();
        let fields: Vec<&str> = refused.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["id", "version"]);
    }
}
