//! `firewatch-agent`: the in-process half of firewatch. (Under construction:
//! see the module list; the `Agent` itself lands with the capture pipeline.)

pub mod capture;
pub mod config;
pub mod cpu;
mod error;
pub mod process;
pub mod stacks_to_profile;
pub mod symbolize;
pub mod trigger;

pub use error::{Error, Result};
