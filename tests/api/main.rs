//! Black-box tests of customer-context: a real server on an ephemeral port with a fresh database per test,
//! driven through the generated gRPC clients. One test binary keeps link times low.

mod harness;

mod activities;
mod concurrency;
mod customers;
mod pagination;
mod plumbing;
mod requests;
mod restart;
mod validation;
mod watch;
