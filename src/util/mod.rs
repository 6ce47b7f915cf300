//! Small pieces shared by the commands and the pipeline.

pub mod cleanup;
pub mod duration;
pub mod output;
pub mod process;
pub mod progress;
pub mod redact;
pub mod size;
pub mod time;
pub mod userns;
