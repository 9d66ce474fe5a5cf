//! The domain: records of the public contract, addresses and keys.

pub mod address;
pub mod records;

pub use address::{Address, AddressError, Mailbox, SenderDomain, Tenant};
pub use records::*;
