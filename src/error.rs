//! Exit codes. Bad input (a file the user gave, a flag value, a profile) exits 2,
//! like clap's usage errors; everything else that fails exits 1.

use std::fmt;

/// Marks an error as the user's input being wrong, not the build failing.
/// Wrap with `anyhow::Error::new(InputError(..))` or `bail_input!`.
#[derive(Debug)]
pub struct InputError(pub String);

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputError {}

/// Returns early with an [`InputError`] built from a format string.
#[macro_export]
macro_rules! bail_input {
    ($($arg:tt)*) => {
        return Err(anyhow::Error::new($crate::error::InputError(format!($($arg)*))))
    };
}

pub fn exit_code_for(err: &anyhow::Error) -> u8 {
    if err.chain().any(|cause| cause.is::<InputError>()) {
        2
    } else {
        1
    }
}
