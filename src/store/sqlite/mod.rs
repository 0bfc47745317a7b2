//! Machinery only SQLite needs: the thread that copies the write-ahead log into the database file, and statements
//! rendered once from sea-orm and bound per call by the OpenContext batch writer.

pub(super) mod allocator;
pub(super) mod checkpoint;
pub(super) mod connection;
pub(super) mod shape;
pub(super) mod wal_writes;
