//! Who may call what: API keys, roles, the per-call guard (authentication, authorization, concurrency and rate
//! limits, deadlines), and TLS settings for the server.
//!
//! Handlers learn the caller from the [`Principal`] the guard puts in each request's extensions
//! (`crate::api::principal`); the data-dependent part of authorization (a portal key sees only its own
//! customer's records) is done by the handlers, everything else here.

mod credentials;
mod guard;
pub mod policy;
mod rate;
mod tls;

pub use credentials::{
    AGENT_HEADER, ANONYMOUS, Authenticator, agent_from_headers, unauthenticated,
};
pub use guard::{Guard, GuardLayer, GuardService, KeySlots, Meter};
pub use rate::RateLimiter;
pub use tls::server_tls;

pub use crate::domain::principal::{Audience, Principal, Role};
