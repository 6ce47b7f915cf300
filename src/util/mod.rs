//! Small pieces shared by the commands and the pipeline.

pub mod base64;
pub mod cleanup;
pub mod duration;
pub mod image_ref;
pub mod output;
pub mod process;
pub mod progress;
pub mod redact;
pub mod size;
pub mod time;
pub mod userns;

/// `text` as one single-quoted POSIX shell word.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Lower-case hexadecimal, two digits per byte.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}
