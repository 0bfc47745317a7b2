//! Duplicate matching, merge and unmerge, and locks: the identity half of `CustomerService`.

use std::collections::HashMap;

use super::{ApiState, Call, check_version_given};
use crate::{
    domain::{
        Violations, customer::Customer, ids, matching::MatchReason, principal::Principal, reason,
    },
    error::Error,
    pb,
    store::CustomerMatch,
};

/// Most sources one merge takes.
pub const MAX_MERGE_SOURCES: usize = 20;
/// Matches returned when the request does not say.
pub const DEFAULT_MATCHES: usize = 20;
/// Most matches one call returns.
pub const MAX_MATCHES: usize = 100;

/// More sources than [`MAX_MERGE_SOURCES`].
const TOO_MANY_SOURCES: &str = "TOO_MANY_SOURCES";
/// The same source named twice.
const DUPLICATE_SOURCE: &str = "DUPLICATE_SOURCE";
/// The target named among the sources.
const SOURCE_IS_TARGET: &str = "SOURCE_IS_TARGET";

fn reason_to_pb(reason: MatchReason) -> pb::MatchReason {
    use pb::MatchReasonKind as Kind;
    let (kind, detail) = match reason {
        MatchReason::SharedPhone(detail) => (Kind::SharedPhone, detail),
        MatchReason::SharedEmail(detail) => (Kind::SharedEmail, detail),
        MatchReason::SharedHandle(detail) => (Kind::SharedHandle, detail),
        MatchReason::SimilarName(detail) => (Kind::SimilarName, detail),
    };
    pb::MatchReason {
        kind: kind as i32,
        detail,
    }
}

fn match_to_pb(found: CustomerMatch) -> pb::CustomerMatch {
    pb::CustomerMatch {
        customer: Some(pb::Customer::from(found.customer)),
        reasons: found.reasons.into_iter().map(reason_to_pb).collect(),
        score: found.score,
    }
}

pub async fn find_matching_customers(
    Call(state, _, message): Call<'_, pb::FindMatchingCustomersRequest>,
) -> Result<pb::FindMatchingCustomersResponse, Error> {
    let mut violations = Violations::new();
    let id = ids::check_id(&mut violations, "customer_id", &message.customer_id);
    let limit = match message.page_size {
        0 => DEFAULT_MATCHES,
        n if n < 0 => {
            violations.push(
                "page_size",
                reason::INVALID_PAGE_SIZE,
                format!("must not be negative (0 means the default of {DEFAULT_MATCHES})"),
            );
            DEFAULT_MATCHES
        }
        n => (n as usize).min(MAX_MATCHES),
    };
    let id = violations.into_checked(id)?;
    let matches = state.store.find_matching_customers(&id, limit).await?;
    Ok(pb::FindMatchingCustomersResponse {
        matches: matches.into_iter().map(match_to_pb).collect(),
    })
}

/// Checks a merge request, reporting every problem at once; returns the target and the sources.
fn check_merge(message: &pb::MergeCustomersRequest) -> Result<(String, Vec<String>), Error> {
    let mut violations = Violations::new();
    let target = ids::check_id(&mut violations, "target_id", &message.target_id);
    check_version_given(&mut violations, "target_version", message.target_version);
    if message.source_ids.is_empty() {
        violations.push(
            "source_ids",
            reason::REQUIRED_FIELD,
            "name at least one customer to merge into the target",
        );
    } else if message.source_ids.len() > MAX_MERGE_SOURCES {
        violations.push(
            "source_ids",
            TOO_MANY_SOURCES,
            format!(
                "at most {MAX_MERGE_SOURCES} customers per merge (got {}); merge the rest in another call",
                message.source_ids.len()
            ),
        );
    }
    let mut first_seen: HashMap<String, usize> = HashMap::new();
    let mut sources = Vec::with_capacity(message.source_ids.len());
    for (i, raw) in message.source_ids.iter().enumerate() {
        let field = format!("source_ids[{i}]");
        let Some(id) = ids::check_id(&mut violations, &field, raw) else {
            continue;
        };
        if target.as_deref() == Some(id.as_str()) {
            violations.push(
                &field,
                SOURCE_IS_TARGET,
                "the target cannot be merged into itself",
            );
        } else if let Some(earlier) = first_seen.get(&id) {
            violations.push(
                &field,
                DUPLICATE_SOURCE,
                format!("duplicates source_ids[{earlier}]"),
            );
        } else {
            first_seen.insert(id.clone(), i);
            sources.push(id);
        }
    }
    let target = violations.into_checked(target)?;
    Ok((target, sources))
}

pub async fn merge_customers(
    Call(state, caller, message): Call<'_, pb::MergeCustomersRequest>,
) -> Result<Customer, Error> {
    let (target, sources) = check_merge(&message)?;
    state
        .store
        .merge_customers(&caller.agent, &target, message.target_version, &sources)
        .await
}

/// Checks an unmerge request, reporting every problem at once; returns the target and the source.
fn check_unmerge(message: &pb::UnmergeCustomerRequest) -> Result<(String, String), Violations> {
    Violations::collect(|violations| {
        let target = ids::check_id(violations, "target_id", &message.target_id);
        let source = ids::check_id(violations, "source_id", &message.source_id);
        if target.is_some() && target == source {
            violations.push(
                "source_id",
                SOURCE_IS_TARGET,
                "a customer cannot have been merged into itself",
            );
        }
        target.zip(source)
    })
}

pub async fn unmerge_customer(
    Call(state, caller, message): Call<'_, pb::UnmergeCustomerRequest>,
) -> Result<pb::UnmergeCustomerResponse, Error> {
    let (target, source) = check_unmerge(&message)?;
    let (target, source) = state
        .store
        .unmerge_customer(&caller.agent, &target, &source)
        .await?;
    Ok(pb::UnmergeCustomerResponse {
        target: Some(pb::Customer::from(target)),
        source: Some(pb::Customer::from(source)),
    })
}

pub async fn lock_customer(call: Call<'_, pb::LockCustomerRequest>) -> Result<Customer, Error> {
    set_locked(call.0, &call.1, &call.2.id, true).await
}

pub async fn unlock_customer(call: Call<'_, pb::UnlockCustomerRequest>) -> Result<Customer, Error> {
    set_locked(call.0, &call.1, &call.2.id, false).await
}

/// Locks (`locked`) or unlocks customer `id`.
async fn set_locked(
    state: &ApiState,
    caller: &Principal,
    id: &str,
    locked: bool,
) -> Result<Customer, Error> {
    let id = ids::require_id("id", id)?;
    state
        .store
        .set_customer_locked(&caller.agent, &id, locked)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reasons(message: pb::MergeCustomersRequest) -> Vec<(String, &'static str)> {
        match check_merge(&message) {
            Err(Error::InvalidArgument(v)) => {
                v.iter().map(|v| (v.field.clone(), v.reason)).collect()
            }
            other => panic!("expected violations, got {other:?}"),
        }
    }

    #[test]
    fn every_problem_of_a_merge_is_reported() {
        let target = ids::new_id();
        let source = ids::new_id();
        let found = reasons(pb::MergeCustomersRequest {
            target_id: target.clone(),
            target_version: 0,
            source_ids: vec![source.clone(), "nope".into(), source, target],
        });
        assert_eq!(
            found,
            [
                ("target_version".to_owned(), reason::MISSING_VERSION),
                ("source_ids[1]".to_owned(), reason::INVALID_ID),
                ("source_ids[2]".to_owned(), DUPLICATE_SOURCE),
                ("source_ids[3]".to_owned(), SOURCE_IS_TARGET),
            ]
        );
        let many = reasons(pb::MergeCustomersRequest {
            target_id: String::new(),
            target_version: 1,
            source_ids: (0..21).map(|_| ids::new_id()).collect(),
        });
        assert_eq!(
            many,
            [
                ("target_id".to_owned(), reason::REQUIRED_FIELD),
                ("source_ids".to_owned(), TOO_MANY_SOURCES),
            ]
        );
    }
}
