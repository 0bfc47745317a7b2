//! Conversions between the protos and the service's types, in one place: every record to its proto as `From`
//! impls (handlers answer with `pb::Customer::from(customer)`), and requests parsed into commands as `TryFrom`
//! impls whose error is every violation found.

mod activity;
mod context;
mod customer;
mod delete;
mod notification;
mod request;
mod update;

pub(super) use delete::Deletion;
pub(super) use update::{UpdateRequest, UpdateTarget};
