//! The change bus: committed change-log rows fanned out to watch streams, with presence.

pub mod catch_up;
pub mod feed;
pub mod hub;
pub mod presence;

pub use hub::Hub;
