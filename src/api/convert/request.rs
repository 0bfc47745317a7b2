//! Requests and their comments.

use super::{Region, required, update::update_message};
use crate::{
    domain::{
        Violations, ids,
        request::{self, Comment, RequestData, RequestStatus},
        tags, text,
        time::to_timestamp,
    },
    pb,
};

/// A request's values from the caller.
pub struct RequestInput {
    pub data: RequestData,
    /// The status was `UNSPECIFIED` (create: the default; update: keep the current one).
    pub status_missing: bool,
}

/// A request to create for the customer `customer_id`.
pub struct NewRequest {
    pub customer_id: String,
    pub data: RequestData,
}

/// A status from the caller: `UNSPECIFIED` is `None`, an unknown number a violation.
pub fn request_status(
    violations: &mut Violations,
    field: &str,
    value: i32,
) -> Option<RequestStatus> {
    let number = crate::api::optional_enum::<pb::RequestStatus>(violations, field, value)?;
    RequestStatus::from_i32(number)
}

/// Checks every caller-settable field of `r` (paths under `request.`) and converts it.
/// Takes the region as the other records do, though a request has no phone numbers.
fn request_input(violations: &mut Violations, r: pb::Request, _: Region) -> RequestInput {
    let pb::Request {
        // Set by the service.
        id: _,
        version: _,
        create_time: _,
        update_time: _,
        close_time: _,
        created_by: _,
        updated_by: _,
        // Given at creation only (checked there), never changed.
        customer_id: _,
        title,
        description,
        status,
        tags,
    } = r;
    text::check_required_text(violations, "request.title", &title);
    text::check_text(violations, "request.description", &description);
    let status = request_status(violations, "request.status", status);
    let data = RequestData {
        tags: tags::normalize_tags(violations, "request.tags", &tags),
        title,
        description,
        status: status.unwrap_or_default(),
    };
    RequestInput {
        data,
        status_missing: status.is_none(),
    }
}

impl TryFrom<(pb::CreateRequestRequest, Region)> for NewRequest {
    type Error = Violations;
    fn try_from(
        (pb::CreateRequestRequest { request }, region): (pb::CreateRequestRequest, Region),
    ) -> Result<Self, Violations> {
        let request = required(request, "request")?;
        let mut violations = Violations::new();
        let customer_id =
            ids::check_id(&mut violations, "request.customer_id", &request.customer_id);
        let input = request_input(&mut violations, request, region);
        let customer_id = violations.into_checked(customer_id)?;
        Ok(NewRequest {
            customer_id,
            data: input.data,
        })
    }
}

update_message!(
    UpdateRequestRequest { request: pb::Request } => RequestInput,
    request_input,
    request::MUTABLE_FIELDS,
    request::IMMUTABLE_FIELDS
);

impl From<request::Request> for pb::Request {
    fn from(r: request::Request) -> Self {
        pb::Request {
            id: r.id,
            version: r.version,
            customer_id: r.customer_id,
            title: r.data.title,
            description: r.data.description,
            status: r.data.status.as_i32(),
            tags: r.data.tags,
            create_time: Some(to_timestamp(r.audit.create_time)),
            update_time: Some(to_timestamp(r.audit.update_time)),
            close_time: r.close_time.map(to_timestamp),
            created_by: r.audit.created_by,
            updated_by: r.audit.updated_by,
        }
    }
}

impl From<Comment> for pb::Comment {
    fn from(c: Comment) -> Self {
        pb::Comment {
            id: c.id,
            request_id: c.request_id,
            text: c.text,
            author: c.author,
            create_time: Some(to_timestamp(c.create_time)),
        }
    }
}
