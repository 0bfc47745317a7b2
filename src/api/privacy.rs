//! Anonymization, export and the audit history: the privacy half of `CustomerService`.

use tonic::{Request, Response, Status};

use super::ApiState;
use crate::pb;

pub(super) async fn anonymize_customer(
    _state: &ApiState,
    _request: Request<pb::AnonymizeCustomerRequest>,
) -> Result<Response<pb::Customer>, Status> {
    Err(Status::unimplemented("anonymize_customer is being built"))
}

pub(super) async fn export_customer(
    _state: &ApiState,
    _request: Request<pb::ExportCustomerRequest>,
) -> Result<Response<pb::ExportCustomerResponse>, Status> {
    Err(Status::unimplemented("export_customer is being built"))
}

pub(super) async fn list_changes(
    _state: &ApiState,
    _request: Request<pb::ListChangesRequest>,
) -> Result<Response<pb::ListChangesResponse>, Status> {
    Err(Status::unimplemented("list_changes is being built"))
}
