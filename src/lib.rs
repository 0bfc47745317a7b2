//! customer-context: the whole picture of a customer for contact-center agents, over gRPC.
//!
//! Data flows one way: `api` converts and checks a call, `store` applies it in one transaction that also appends
//! to the change log, and the committed change is fanned out to watchers.

pub mod api;
pub mod auth;
pub mod codec;
pub mod config;
pub mod domain;
pub mod error;
pub mod events;
pub mod gadget;
pub mod notify;
mod readiness;
pub mod server;
pub mod shutdown;
pub mod store;
pub mod telemetry;

/// Generated protobuf types, clients and servers for `customer_context.v1`.
pub mod pb {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("customer_context.v1");

    /// The encoded descriptor set of every public proto, served by gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("customer_context_descriptor");

    include!(concat!(env!("OUT_DIR"), "/customer_context_described.rs"));
}
