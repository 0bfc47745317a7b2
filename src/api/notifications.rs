//! The notification outbox as `CustomerService.ListNotifications` shows it.

use tonic::{Request, Response, Status};

use super::ApiState;
use crate::pb;

pub(super) async fn list_notifications(
    _state: &ApiState,
    _request: Request<pb::ListNotificationsRequest>,
) -> Result<Response<pb::ListNotificationsResponse>, Status> {
    Err(Status::unimplemented("list_notifications is being built"))
}
