//! The router's answer.

use crate::{pb, store::ContextResult};

impl From<ContextResult> for pb::OpenContextResponse {
    fn from(result: ContextResult) -> Self {
        pb::OpenContextResponse {
            customer: result.customer.map(pb::Customer::from),
            candidates: result
                .candidates
                .into_iter()
                .map(pb::Customer::from)
                .collect(),
            activity: result.activity.map(pb::Activity::from),
            request: result.request.map(pb::Request::from),
            open_requests: result
                .open_requests
                .into_iter()
                .map(pb::Request::from)
                .collect(),
            recent_activities: result
                .recent_activities
                .into_iter()
                .map(pb::Activity::from)
                .collect(),
            prefill: result.prefill.map(|p| pb::Prefill {
                first_name: p.first_name,
                last_name: p.last_name,
                email: p.email,
                phone: p.phone,
            }),
        }
    }
}
