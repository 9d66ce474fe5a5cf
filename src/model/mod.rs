//! The domain: records of the public contract and addresses.

pub mod address;
pub mod records;

pub use address::{Address, AddressError};
pub use records::*;
