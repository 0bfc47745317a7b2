//! `RequestService`: requests (cases) and their comments.

use tonic::{Request, Response, Status};

use super::{
    ApiState, PageRequest,
    convert::{NewRequest, RequestInput, request_status},
    hidden, principal,
};
use crate::{
    domain::{
        Violations,
        change::ResourceKind,
        edit::Edit,
        ids,
        page::Cursor,
        principal::Principal,
        request::{self},
        text,
    },
    error::Error,
    pb::{self, request_service_server::RequestService},
};

pub struct RequestApi {
    state: ApiState,
}

impl RequestApi {
    pub fn new(state: ApiState) -> Self {
        Self { state }
    }
}

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

#[tonic::async_trait]
impl RequestService for RequestApi {
    async fn create_request(
        &self,
        request: Request<pb::CreateRequestRequest>,
    ) -> Result<Response<pb::Request>, Status> {
        let agent = principal(&request)?.agent;
        let NewRequest { customer_id, data } =
            NewRequest::try_from((request.into_inner(), self.state.region))?;
        let created = self
            .state
            .store
            .create_request(&agent, &customer_id, data)
            .await?;
        Ok(Response::new(pb::Request::from(created)))
    }

    async fn get_request(
        &self,
        request: Request<pb::GetRequestRequest>,
    ) -> Result<Response<pb::Request>, Status> {
        let caller = principal(&request)?;
        let id = ids::require_id("id", &request.get_ref().id)?;
        let found = visible_request(&self.state, caller.portal_customer(), &id).await?;
        Ok(Response::new(pb::Request::from(found)))
    }

    async fn update_request(
        &self,
        request: Request<pb::UpdateRequestRequest>,
    ) -> Result<Response<pb::Request>, Status> {
        let agent = principal(&request)?.agent;
        let edit = Edit::<RequestInput>::try_from((request.into_inner(), self.state.region))?;
        let edit = edit.map(|input, fields| {
            if input.status_missing {
                // UNSPECIFIED keeps the current status, also under a "*" mask.
                fields.retain(|f| *f != "status");
            }
            input.data
        });
        let updated = self.state.store.update_request(&agent, edit).await?;
        Ok(Response::new(pb::Request::from(updated)))
    }

    async fn delete_request(
        &self,
        request: Request<pb::DeleteRequestRequest>,
    ) -> Result<Response<()>, Status> {
        super::delete_record(&self.state, ResourceKind::Request, request).await
    }

    async fn list_requests(
        &self,
        request: Request<pb::ListRequestsRequest>,
    ) -> Result<Response<pb::ListRequestsResponse>, Status> {
        let (caller, message) = super::caller_and_message(request)?;
        let mut violations = Violations::new();
        let customer_id = ids::check_id(&mut violations, "customer_id", &message.customer_id);
        let status = request_status(&mut violations, "status", message.status);
        let status_filter = message.status.to_string();
        let page = PageRequest::parse(
            &mut violations,
            message.page_size,
            &message.page_token,
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
            return Err(hidden("customer", &customer_id).into());
        }
        let mut requests = self
            .state
            .store
            .list_requests(&customer_id, status, page.cursor.as_ref(), page.fetch())
            .await?;
        let next_page_token = page.finish(&mut requests, |r| Cursor {
            time: None,
            id: r.id.clone(),
        });
        Ok(Response::new(pb::ListRequestsResponse {
            requests: requests.into_iter().map(pb::Request::from).collect(),
            next_page_token,
        }))
    }

    async fn add_comment(
        &self,
        request: Request<pb::AddCommentRequest>,
    ) -> Result<Response<pb::Comment>, Status> {
        let (Principal { agent, .. }, message) = super::caller_and_message(request)?;
        let mut violations = Violations::new();
        let request_id = ids::check_id(&mut violations, "request_id", &message.request_id);
        text::check_required_text(&mut violations, "text", &message.text);
        let request_id = violations.into_checked(request_id)?;
        let comment = self
            .state
            .store
            .add_comment(&agent, &request_id, message.text)
            .await?;
        Ok(Response::new(pb::Comment::from(comment)))
    }

    async fn list_comments(
        &self,
        request: Request<pb::ListCommentsRequest>,
    ) -> Result<Response<pb::ListCommentsResponse>, Status> {
        let (caller, message) = super::caller_and_message(request)?;
        let mut violations = Violations::new();
        let request_id = ids::check_id(&mut violations, "request_id", &message.request_id);
        let page = PageRequest::parse(
            &mut violations,
            message.page_size,
            &message.page_token,
            &["comments", request_id.as_deref().unwrap_or_default()],
        );
        let request_id = violations.into_checked(request_id)?;
        if caller.portal_customer().is_some() {
            visible_request(&self.state, caller.portal_customer(), &request_id).await?;
        }
        let mut comments = self
            .state
            .store
            .list_comments(&request_id, page.cursor.as_ref(), page.fetch())
            .await?;
        let next_page_token = page.finish(&mut comments, |c| Cursor {
            time: None,
            id: c.id.clone(),
        });
        Ok(Response::new(pb::ListCommentsResponse {
            comments: comments.into_iter().map(pb::Comment::from).collect(),
            next_page_token,
        }))
    }
}
