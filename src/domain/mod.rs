//! Plain types and rules of the domain: limits, tags, contact points, ids, times. No I/O.

pub mod activity;
pub mod api_key;
pub mod attributes;
pub mod change;
pub mod contact;
pub mod customer;
pub mod edit;
pub mod field_merge;
pub mod fold;
pub mod ids;
pub mod mask;
pub mod matching;
pub mod merge;
pub mod notification;
pub mod page;
pub mod principal;
pub mod request;
pub mod tags;
pub mod text;
pub mod time;
pub mod violations;

pub use violations::{Violation, Violations, reason};
