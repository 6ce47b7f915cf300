//! Keeping credentials out of logs, reports and errors: a proxy or registry
//! URL may carry `user:password@`, and only the password is secret.

/// `http://user:secret@proxy:3128` → `http://user:***@proxy:3128`; text
/// without credentials is returned as it is.
pub fn url(text: &str) -> String {
    let Some(scheme_end) = text.find("://") else {
        return text.to_string();
    };
    let rest = &text[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return text.to_string();
    };
    let userinfo = &authority[..at];
    let user = userinfo.split(':').next().unwrap_or("");
    let hidden = if userinfo.contains(':') {
        format!("{user}:***")
    } else {
        // A lone token before @ is a credential too (https://TOKEN@host).
        "***".to_string()
    };
    format!("{}{hidden}{}", &text[..scheme_end + 3], &rest[at..])
}

/// `text` with every occurrence of each secret replaced by `***`.
pub fn secrets(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| s.len() >= 3) {
        out = out.replace(s, "***");
    }
    out
}

/// The password (or token) part of a URL, if it has one.
pub fn password_of(text: &str) -> Option<&str> {
    let rest = &text[text.find("://")? + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    Some(userinfo.split_once(':').map_or(userinfo, |(_, p)| p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_hidden_and_the_rest_kept() {
        assert_eq!(
            url("http://ops:s3cr3t@proxy.example:3128/"),
            "http://ops:***@proxy.example:3128/"
        );
        assert_eq!(url("http://proxy:3128"), "http://proxy:3128");
        assert_eq!(url("https://tok@host/x@y"), "https://***@host/x@y");
        assert_eq!(url("docker://reg/a/b:1"), "docker://reg/a/b:1");
        assert_eq!(password_of("http://ops:s3cr3t@p:1"), Some("s3cr3t"));
        assert_eq!(password_of("http://p:1"), None);
        assert_eq!(secrets("a s3cr3t b", &["s3cr3t"]), "a *** b");
    }
}
