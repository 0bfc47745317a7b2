//! Update requests parsed into [`Edit`]s, the same way for customers, requests and activities: the record's id
//! and the version the caller saw, the conflict policy, the mask, and the caller's values checked under it.

use prost_types::FieldMask;

use super::Region;
use crate::{
    api::{check_version_given, conflict_policy},
    domain::{Violations, edit::Edit, ids, mask::parse_update_mask, reason},
};

/// An update request of one kind of record.
pub trait UpdateMessage {
    /// The record with the caller's values (`pb::Customer`, ...).
    type Record;
    /// What the caller's values convert to.
    type Input;
    /// The record's field in the request, and the prefix of its fields' paths.
    const RECORD: &'static str;
    const MUTABLE: &'static [&'static str];
    const OUTPUT_ONLY: &'static [&'static str];
    /// The record, the mask and the conflict policy.
    fn into_parts(self) -> (Option<Self::Record>, Option<FieldMask>, i32);
    fn id_and_version(record: &Self::Record) -> (&str, i64);
    /// Checks the caller's values (paths under `RECORD.`) and converts them.
    fn input(violations: &mut Violations, record: Self::Record, region: Region) -> Self::Input;
}

/// Implements [`UpdateMessage`] for `$message`, whose record is in the field `$record` of type `$proto`, its
/// values checked and converted by `$input` into `$converted`, under the record's lists of mutable and
/// output-only fields.
macro_rules! update_message {
    ($message:ident { $record:ident: $proto:ty } => $converted:ty, $input:path, $mutable:expr, $output_only:expr) => {
        impl super::update::UpdateMessage for pb::$message {
            type Record = $proto;
            type Input = $converted;
            const RECORD: &'static str = stringify!($record);
            const MUTABLE: &'static [&'static str] = $mutable;
            const OUTPUT_ONLY: &'static [&'static str] = $output_only;
            fn into_parts(self) -> (Option<$proto>, Option<prost_types::FieldMask>, i32) {
                let pb::$message {
                    $record,
                    update_mask,
                    conflict_policy,
                } = self;
                ($record, update_mask, conflict_policy)
            }
            fn id_and_version(record: &$proto) -> (&str, i64) {
                (&record.id, record.version)
            }
            fn input(violations: &mut Violations, record: $proto, region: Region) -> $converted {
                $input(violations, record, region)
            }
        }
    };
}
pub(super) use update_message;

impl<M: UpdateMessage> TryFrom<(M, Region)> for Edit<M::Input> {
    type Error = Violations;

    /// Every violation of the request; only the masked fields' values are checked.
    fn try_from((message, region): (M, Region)) -> Result<Self, Violations> {
        let record_field = M::RECORD;
        let (record, mask, policy) = message.into_parts();
        let Some(record) = record else {
            return Err(Violations::one(
                record_field,
                reason::REQUIRED_FIELD,
                format!("{record_field} is required"),
            ));
        };
        let mut violations = Violations::new();
        let (id, version) = M::id_and_version(&record);
        let id = ids::check_id(&mut violations, &format!("{record_field}.id"), id);
        check_version_given(&mut violations, &format!("{record_field}.version"), version);
        let policy = conflict_policy(&mut violations, policy);
        let paths = mask.map(|m| m.paths).unwrap_or_default();
        let fields = parse_update_mask(&mut violations, &paths, M::MUTABLE, M::OUTPUT_ONLY);
        let mut field_violations = Violations::within(record_field, &fields);
        let data = M::input(&mut field_violations, record, region);
        violations.extend(field_violations);
        let id = violations.into_checked(id)?;
        Ok(Edit {
            id,
            version,
            policy,
            fields,
            data,
        })
    }
}
