//! customer-context: the whole picture of a customer for contact-center agents, over gRPC.
//!
//! Data flows one way: `api` converts and checks a call, `store` applies it in one transaction that also appends
//! to the change log, and the committed change is fanned out to watchers.

pub mod api;
pub mod auth;
pub mod codec;
pub mod config;
mod connection;
pub mod delay_proxy;
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

/// A method of a public service (`customer_context.*`), as the descriptor set the server is built from has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicMethod {
    /// `/package.Service/Method`, the HTTP/2 path of its calls.
    pub path: String,
    /// `package.Service`.
    pub service: String,
    /// `Method`.
    pub method: String,
    pub client_streaming: bool,
    pub server_streaming: bool,
}

/// Every method of the public services, read from [`pb::FILE_DESCRIPTOR_SET`].
pub fn public_methods() -> Vec<PublicMethod> {
    use prost::Message as _;
    let Ok(set) = prost_types::FileDescriptorSet::decode(pb::FILE_DESCRIPTOR_SET) else {
        return Vec::new();
    };
    let mut methods = Vec::new();
    for file in set
        .file
        .iter()
        .filter(|file| file.package().starts_with("customer_context."))
    {
        for service in &file.service {
            let service_name = format!("{}.{}", file.package(), service.name());
            methods.extend(service.method.iter().map(|method| PublicMethod {
                path: format!("/{service_name}/{}", method.name()),
                service: service_name.clone(),
                method: method.name().to_owned(),
                client_streaming: method.client_streaming(),
                server_streaming: method.server_streaming(),
            }));
        }
    }
    methods
}
