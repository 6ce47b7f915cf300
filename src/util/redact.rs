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

/// `text` with every occurrence of each secret, and of every registered
/// one, replaced by `***`.
pub fn secrets(text: &str, secrets: &[&str]) -> String {
    let mut out = scrub_log(text);
    for s in secrets.iter().filter(|s| s.len() >= 3) {
        out = out.replace(s, "***");
    }
    out
}

/// Secret values this process knows (profile `secret:` variables): they are
/// replaced wherever osforge writes text for people or caches.
static SECRETS: std::sync::RwLock<Vec<String>> = std::sync::RwLock::new(Vec::new());
/// Set when a secret's value reached [`scrub_log`]: the build then fails.
static LEAKED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Remembers a secret value; [`hide`] and [`scrub_log`] replace it from now on.
pub fn register_secret(value: &str) {
    let mut known = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    if !known.iter().any(|k| k == value) {
        known.push(value.to_string());
    }
}

/// `text` with every registered secret replaced by `***`, and whether it
/// held one.
fn replace_known(text: &str) -> (String, bool) {
    let known = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    let mut out = None::<String>;
    for secret in known.iter() {
        let current = out.as_deref().unwrap_or(text);
        if current.contains(secret.as_str()) {
            out = Some(current.replace(secret.as_str(), "***"));
        }
    }
    match out {
        Some(hidden) => (hidden, true),
        None => (text.to_string(), false),
    }
}

/// For caches and reports: registered secrets hidden, nothing else happens.
pub fn hide(text: &str) -> String {
    replace_known(text).0
}

/// For logs and errors: registered secrets hidden, and a secret that got
/// this far is recorded, so that the build fails ([`secret_leaked`]): a value
/// that reached a log line may also have reached places osforge cannot scrub.
pub fn scrub_log(text: &str) -> String {
    let (out, found) = replace_known(text);
    if found {
        LEAKED.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    out
}

/// Whether a secret's value was about to be logged in this process.
pub fn secret_leaked() -> bool {
    LEAKED.load(std::sync::atomic::Ordering::SeqCst)
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

    #[test]
    fn registered_secrets_are_hidden_and_a_logged_one_is_recorded() {
        register_secret("tok-6f1e2d3c");
        assert_eq!(hide("a tok-6f1e2d3c b"), "a *** b");
        assert_eq!(scrub_log("nothing here"), "nothing here");
        assert_eq!(scrub_log("x=tok-6f1e2d3c"), "x=***");
        assert!(secret_leaked());
    }
}
