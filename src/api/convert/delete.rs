//! Deletions parsed into a command: a well-formed id and the version the caller last saw, or every violation.

use crate::{
    api::check_version_given,
    domain::{Violations, edit::Deletion, ids},
    pb,
};

fn deletion(id: &str, version: i64) -> Result<Deletion, Violations> {
    let mut violations = Violations::new();
    let id = ids::check_id(&mut violations, "id", id);
    check_version_given(&mut violations, "version", version);
    let id = violations.into_checked(id)?;
    Ok(Deletion { id, version })
}

/// `TryFrom` for each delete request, all of the same two fields.
macro_rules! deletion_from {
    ($($message:ident),+) => {$(
        impl TryFrom<pb::$message> for Deletion {
            type Error = Violations;
            fn try_from(pb::$message { id, version }: pb::$message) -> Result<Self, Violations> {
                deletion(&id, version)
            }
        }
    )+};
}

deletion_from!(
    DeleteCustomerRequest,
    DeleteRequestRequest,
    DeleteActivityRequest
);

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
