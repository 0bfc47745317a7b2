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
) -> Result<pb::Request, Error> {
    let NewRequest { customer_id, data } = NewRequest::try_from((message, state.region))?;
    let created = state
        .store
        .create_request(&caller.agent, &customer_id, data)
        .await?;
    Ok(pb::Request::from(created))
}

pub async fn get_request(
    Call(state, caller, message): Call<'_, pb::GetRequestRequest>,
) -> Result<pb::Request, Error> {
    let id = ids::require_id("id", &message.id)?;
    let found = visible_request(state, caller.portal_customer(), &id).await?;
    Ok(pb::Request::from(found))
}

pub async fn update_request(
    Call(state, caller, message): Call<'_, pb::UpdateRequestRequest>,
) -> Result<pb::Request, Error> {
    let edit = Edit::<RequestInput>::try_from((message, state.region))?;
    let edit = edit.map(|input, fields| {
        if input.status_missing {
            // UNSPECIFIED keeps the current status, also under a "*" mask.
            fields.retain(|f| *f != "status");
        }
        input.data
    });
    let updated = state.store.update_request(&caller.agent, edit).await?;
    Ok(pb::Request::from(updated))
}

pub async fn list_requests(
    Call(state, caller, message): Call<'_, pb::ListRequestsRequest>,
) -> Result<pb::ListRequestsResponse, Error> {
    let mut violations = Violations::new();
    let customer_id = ids::check_id(&mut violations, "customer_id", &message.customer_id);
    let status = request_status(&mut violations, "status", message.status);
    let status_filter = message.status.to_string();
    let page = message.page(
        &mut violations,
        &[
            "requests",
            customer_id.as_deref().unwrap_or_default(),
            &status_filter,
        ],
    );
    let customer_id = violations.into_checked(customer_id)?;
    if let Some(own) = caller.portal_customer()
        && own != customer_id
    {
        return Err(hidden("customer", &customer_id));
    }
    let mut requests = state
        .store
        .list_requests(&customer_id, status, page.cursor.as_ref(), page.fetch())
        .await?;
    let next_page_token = page.finish(&mut requests, |r| Cursor {
        time: None,
        id: r.id.clone(),
    });
    Ok(pb::ListRequestsResponse {
        requests: requests.into_iter().map(pb::Request::from).collect(),
        next_page_token,
    })
}

pub async fn add_comment(
    Call(state, caller, message): Call<'_, pb::AddCommentRequest>,
) -> Result<pb::Comment, Error> {
    let mut violations = Violations::new();
    let request_id = ids::check_id(&mut violations, "request_id", &message.request_id);
    text::check_required_text(&mut violations, "text", &message.text);
    let request_id = violations.into_checked(request_id)?;
    let comment = state
        .store
        .add_comment(&caller.agent, &request_id, message.text)
        .await?;
    Ok(pb::Comment::from(comment))
}

pub async fn list_comments(
    Call(state, caller, message): Call<'_, pb::ListCommentsRequest>,
) -> Result<pb::ListCommentsResponse, Error> {
    let mut violations = Violations::new();
    let request_id = ids::check_id(&mut violations, "request_id", &message.request_id);
    let page = message.page(
        &mut violations,
        &["comments", request_id.as_deref().unwrap_or_default()],
    );
    let request_id = violations.into_checked(request_id)?;
    if caller.portal_customer().is_some() {
        visible_request(state, caller.portal_customer(), &request_id).await?;
    }
    let mut comments = state
        .store
        .list_comments(&request_id, page.cursor.as_ref(), page.fetch())
        .await?;
    let next_page_token = page.finish(&mut comments, |c| Cursor {
        time: None,
        id: c.id.clone(),
    });
    Ok(pb::ListCommentsResponse {
        comments: comments.into_iter().map(pb::Comment::from).collect(),
        next_page_token,
    })
}
