//! Duplicate matching, merge and unmerge, and locks: the identity half of `CustomerService`.

use tonic::{Request, Response, Status};

use super::ApiState;
use crate::pb;

pub(super) async fn find_matching_customers(
    _state: &ApiState,
    _request: Request<pb::FindMatchingCustomersRequest>,
) -> Result<Response<pb::FindMatchingCustomersResponse>, Status> {
    Err(Status::unimplemented(
        "find_matching_customers is being built",
    ))
}

pub(super) async fn merge_customers(
    _state: &ApiState,
    _request: Request<pb::MergeCustomersRequest>,
) -> Result<Response<pb::Customer>, Status> {
    Err(Status::unimplemented("merge_customers is being built"))
}

pub(super) async fn unmerge_customer(
    _state: &ApiState,
    _request: Request<pb::UnmergeCustomerRequest>,
) -> Result<Response<pb::UnmergeCustomerResponse>, Status> {
    Err(Status::unimplemented("unmerge_customer is being built"))
}

pub(super) async fn lock_customer(
    _state: &ApiState,
    _request: Request<pb::LockCustomerRequest>,
) -> Result<Response<pb::Customer>, Status> {
    Err(Status::unimplemented("lock_customer is being built"))
}

pub(super) async fn unlock_customer(
    _state: &ApiState,
    _request: Request<pb::UnlockCustomerRequest>,
) -> Result<Response<pb::Customer>, Status> {
    Err(Status::unimplemented("unlock_customer is being built"))
}
