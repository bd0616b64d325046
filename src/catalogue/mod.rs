//! The catalogue: users, the built-in demo pipelines (`seed`), and reference fixture import.

pub mod fixtures;
pub mod seed;
pub mod users;
