//! Every conversion of a record from the store to its proto, in one place, as `From` impls: handlers answer with
//! `pb::Customer::from(customer)` and never convert anything themselves.

mod activity;
mod context;
mod customer;
mod notification;
mod request;
