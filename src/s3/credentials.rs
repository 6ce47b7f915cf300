//! Where S3 credentials come from, in this order: `--s3-credentials FILE`
//! (an explicit flag beats the ambient environment), `S3_ACCESS`/`S3_SECRET`
//! (as OpenCHAMI's tools take them), `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`.
//!
//! The file is the AWS CLI's credentials format, so an existing
//! `~/.aws/credentials` works as it is: the `[default]` section's
//! `aws_access_key_id` and `aws_secret_access_key` (`#`/`;` comments).
//! Both values are registered as secrets ([`crate::util::redact`]) as soon
//! as they are read.

use std::fmt;
use std::path::Path;

use super::S3Error;

#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// Never prints the values, whatever formats it.
impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials(***)")
    }
}

const ENV_PAIRS: [(&str, &str); 2] = [
    ("S3_ACCESS", "S3_SECRET"),
    ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
];

impl Credentials {
    /// From the file if given, else the environment.
    pub fn find(file: Option<&Path>) -> Result<Credentials, S3Error> {
        let found = match file {
            Some(path) => Credentials::from_file(path)?,
            None => Credentials::from_env(|name| std::env::var(name).ok())?,
        };
        found.register();
        Ok(found)
    }

    fn register(&self) {
        crate::util::redact::register_secret(&self.access_key_id);
        crate::util::redact::register_secret(&self.secret_access_key);
    }

    /// The first pair of [`ENV_PAIRS`] with either variable set; both of
    /// it must then be.
    fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Credentials, S3Error> {
        for (id_var, secret_var) in ENV_PAIRS {
            let id = var(id_var).filter(|v| !v.is_empty());
            let secret = var(secret_var).filter(|v| !v.is_empty());
            match (id, secret) {
                (Some(access_key_id), Some(secret_access_key)) => {
                    return Ok(Credentials {
                        access_key_id,
                        secret_access_key,
                    });
                }
                (Some(_), None) => return Err(S3Error::HalfCredentials(id_var, secret_var)),
                (None, Some(_)) => return Err(S3Error::HalfCredentials(secret_var, id_var)),
                (None, None) => {}
            }
        }
        Err(S3Error::NoCredentials)
    }

    pub fn from_file(path: &Path) -> Result<Credentials, S3Error> {
        let text = std::fs::read_to_string(path).map_err(|e| S3Error::CredentialsFile {
            path: path.to_path_buf(),
            why: crate::commands::io_reason(&e),
        })?;
        parse_file(&text).map_err(|why| S3Error::CredentialsFile {
            path: path.to_path_buf(),
            why,
        })
    }
}

fn parse_file(text: &str) -> Result<Credentials, String> {
    let expected = "expected the AWS credentials format: [default], then aws_access_key_id = ... and aws_secret_access_key = ...";
    let mut section: Option<String> = None;
    let (mut id, mut secret) = (None, None);
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = Some(name.trim().to_string());
            continue;
        }
        // Never echo the line: it may hold a secret.
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!(
                "line {}: not a key = value line ({expected})",
                n + 1
            ));
        };
        if section.as_deref() != Some("default") {
            continue;
        }
        let value = value.trim().to_string();
        match key.trim() {
            "aws_access_key_id" => id = Some(value),
            "aws_secret_access_key" => secret = Some(value),
            _ => {}
        }
    }
    match (
        id.filter(|v| !v.is_empty()),
        secret.filter(|v| !v.is_empty()),
    ) {
        (Some(access_key_id), Some(secret_access_key)) => Ok(Credentials {
            access_key_id,
            secret_access_key,
        }),
        (None, _) => Err(format!("no aws_access_key_id in [default] ({expected})")),
        (_, None) => Err(format!(
            "no aws_secret_access_key in [default] ({expected})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_section_of_an_aws_credentials_file_is_read() {
        let c = parse_file(
            "# site keys\n[other]\naws_access_key_id = NOTTHIS\n\n[default]\n\
             aws_access_key_id = GK1234\n; comment\naws_secret_access_key=s3cr3t-value \n\
             region = garage\n",
        )
        .unwrap();
        assert_eq!(c.access_key_id, "GK1234");
        assert_eq!(c.secret_access_key, "s3cr3t-value");
        assert_eq!(format!("{c:?}"), "Credentials(***)");
    }

    #[test]
    fn a_bad_credentials_file_says_what_is_missing_and_never_echoes_a_line() {
        let err = parse_file("[default]\naws_access_key_id = GK1\n").unwrap_err();
        assert!(
            err.contains("no aws_secret_access_key in [default]"),
            "{err}"
        );
        let err = parse_file("[prod]\naws_access_key_id = GK1\n").unwrap_err();
        assert!(err.contains("no aws_access_key_id in [default]"), "{err}");
        let err = parse_file("[default]\nsecret-without-equals\n").unwrap_err();
        assert!(err.starts_with("line 2: not a key = value line"), "{err}");
        assert!(!err.contains("secret-without-equals"), "{err}");
        let path = Path::new("/nonexistent/osforge-creds");
        let err = Credentials::from_file(path).unwrap_err().to_string();
        assert!(
            err.contains("/nonexistent/osforge-creds") && err.contains("no such file"),
            "{err}"
        );
    }

    #[test]
    fn s3_variables_come_before_aws_ones_and_half_a_pair_is_an_error() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let both = Credentials::from_env(env(&[
            ("S3_ACCESS", "a1"),
            ("S3_SECRET", "s1"),
            ("AWS_ACCESS_KEY_ID", "a2"),
            ("AWS_SECRET_ACCESS_KEY", "s2"),
        ]))
        .unwrap();
        assert_eq!(
            (both.access_key_id.as_str(), both.secret_access_key.as_str()),
            ("a1", "s1")
        );
        let aws = Credentials::from_env(env(&[
            ("AWS_ACCESS_KEY_ID", "a2"),
            ("AWS_SECRET_ACCESS_KEY", "s2"),
        ]))
        .unwrap();
        assert_eq!(aws.access_key_id, "a2");
        let half = Credentials::from_env(env(&[("S3_ACCESS", "a1")])).unwrap_err();
        assert!(
            half.to_string()
                .contains("S3_ACCESS is set but S3_SECRET is not"),
            "{half}"
        );
        let none = Credentials::from_env(env(&[])).unwrap_err().to_string();
        assert!(
            none.contains("S3_ACCESS") && none.contains("--s3-credentials"),
            "{none}"
        );
    }

    #[test]
    fn credentials_found_are_registered_as_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        std::fs::write(
            &path,
            "[default]\naws_access_key_id = GKregistered77\naws_secret_access_key = sk-registered-0d9e\n",
        )
        .unwrap();
        Credentials::find(Some(&path)).unwrap();
        let text = "id GKregistered77 key sk-registered-0d9e";
        assert_eq!(crate::util::redact::hide(text), "id *** key ***");
    }
}
