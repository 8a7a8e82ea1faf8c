//! `firewatch-agent`: the in-process half of firewatch. (Under construction:
//! see the module list; the `Agent` itself lands with the capture pipeline.)

mod agent;
pub mod capture;
pub mod config;
pub mod cpu;
mod error;
pub mod process;
pub mod stacks_to_profile;
pub mod symbolize;
pub mod trigger;

pub use agent::{Agent, AgentBuilder};
pub use config::Config;
pub use error::{Error, Result};
