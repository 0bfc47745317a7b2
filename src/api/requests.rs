//! `RequestService`: requests (cases) and their comments.

use super::{
    ApiState, Call, Paged,
    convert::{NewRequest, RequestInput, request_status},
    hidden,
};
use crate::{
    domain::{
        Violations,
        edit::Edit,
        ids,
        page::Cursor,
        request::{self},
        text,
    },
    error::Error,
    pb,
};

/// The request `id`, if the caller may see it: any request for staff, only its own customer's for a portal
/// (another customer's is NOT_FOUND, as if it did not exist).
pub(super) async fn visible_request(
    state: &ApiState,
    portal_customer: Option<&str>,
    id: &str,
) -> Result<request::Request, Error> {
    let found = state.store.get_request(id).await?;
    match portal_customer {
        Some(own) if own != found.customer_id => Err(hidden("request", id)),
        _ => Ok(found),
    }
}

pub async fn create_request(
    Call(state, caller, message): Call<'_, pb::CreateRequestRequest>,
) -> Result<request::Request, Error> {
    let NewRequest { customer_id, data } = NewRequest::try_from((message, state.region))?;
    state
        .store
        .create_request(&caller.agent, &customer_id, data)
        .await
}

pub async fn get_request(
    Call(state, caller, message): Call<'_, pb::GetRequestRequest>,
) -> Result<request::Request, Error> {
    let id = ids::require_id("id", &message.id)?;
    visible_request(state, caller.portal_customer(), &id).await
}

pub async fn update_request(
    Call(state, caller, message): Call<'_, pb::UpdateRequestRequest>,
) -> Result<request::Request, Error> {
    let edit = Edit::<RequestInput>::try_from((message, state.region))?;
    let edit = edit.map(|input, fields| {
        if input.status_missing {
            // UNSPECIFIED keeps the current status, also under a "*" mask.
            fields.retain(|f| *f != "status");
        }
        input.data
    });
    state.store.update_request(&caller.agent, edit).await
}

pub async fn list_requests(
    Call(state, caller, message): Call<'_, pb::ListRequestsRequest>,
) -> Result<pb::ListRequestsResponse, Error> {
    let status_filter = message.status.to_string();
    let (customer_id, status, page) = Violations::collect(|violations| {
        let customer_id = ids::check_id(violations, "customer_id", &message.customer_id);
        let status = request_status(violations, "status", message.status);
        let filter = [
            "requests",
            customer_id.as_deref().unwrap_or_default(),
            &status_filter,
        ];
        let page = message.page(violations, &filter);
        Some((customer_id?, status, page))
    })?;
    if let Some(own) = caller.portal_customer()
        && own != customer_id
    {
        return Err(hidden("customer", &customer_id));
    }
    let rows = state
        .store
        .list_requests(&customer_id, status, page.cursor.as_ref(), page.fetch())
        .await?;
    Ok(page.answer(rows, |r| Cursor::after_id(&r.id), pb::Request::from))
}

pub async fn add_comment(
    Call(state, caller, message): Call<'_, pb::AddCommentRequest>,
) -> Result<request::Comment, Error> {
    let request_id = Violations::collect(|violations| {
        let request_id = ids::check_id(violations, "request_id", &message.request_id);
        text::check_required_text(violations, "text", &message.text);
        request_id
    })?;
    state
        .store
        .add_comment(&caller.agent, &request_id, message.text)
        .await
}

pub async fn list_comments(
    Call(state, caller, message): Call<'_, pb::ListCommentsRequest>,
) -> Result<pb::ListCommentsResponse, Error> {
    let (request_id, page) = Violations::collect(|violations| {
        let request_id = ids::check_id(violations, "request_id", &message.request_id);
        let filter = ["comments", request_id.as_deref().unwrap_or_default()];
        let page = message.page(violations, &filter);
        Some((request_id?, page))
    })?;
    if caller.portal_customer().is_some() {
        visible_request(state, caller.portal_customer(), &request_id).await?;
    }
    let rows = state
        .store
        .list_comments(&request_id, page.cursor.as_ref(), page.fetch())
        .await?;
    Ok(page.answer(rows, |c| Cursor::after_id(&c.id), pb::Comment::from))
}
