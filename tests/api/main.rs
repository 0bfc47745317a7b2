//! Black-box tests of customer-context: a real server on an ephemeral port with a fresh database per test,
//! driven through the generated gRPC clients. One test binary keeps link times low.

mod harness;
mod postgres;
mod replicas;
mod smtp;

mod abuse;
mod activities;
mod auth;
mod browser;
mod concurrency;
mod context;
mod crash;
mod customers;
mod gadget;
mod hostile;
mod identity;
mod limits;
mod merge;
mod metrics;
mod notifications;
mod open_watch;
mod otlp;
mod pagination;
mod plumbing;
mod portal;
mod privacy;
mod race;
mod recent;
mod requests;
mod restart;
mod search;
mod seed;
mod text_rule;
mod tls;
mod validation;
mod watch;
