//! Small pieces shared by the commands and the pipeline.

pub mod cleanup;
pub mod output;
pub mod progress;
pub mod size;
pub mod time;
