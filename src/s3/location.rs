//! `s3://BUCKET/PREFIX` as the command line gives it.

use std::fmt;
use std::str::FromStr;

use super::S3Error;

/// A bucket and a key prefix (without leading or trailing `/`; may be empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    pub prefix: String,
}

impl S3Url {
    /// The object key of `name` under the prefix.
    pub fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    /// The URL of `name` under the prefix, for messages.
    pub fn url_of(&self, name: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.key(name))
    }
}

impl fmt::Display for S3Url {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

impl FromStr for S3Url {
    type Err = S3Error;

    fn from_str(text: &str) -> Result<S3Url, S3Error> {
        let bad = |why: &str| S3Error::Url {
            url: text.to_string(),
            why: why.to_string(),
        };
        let rest = text
            .strip_prefix("s3://")
            .ok_or_else(|| bad("it does not start with s3://"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        check_bucket(bucket).map_err(bad)?;
        let prefix = prefix.trim_end_matches('/');
        // object_store's paths have no empty, `.` or `..` segments, and a
        // key with them means something else to every other S3 client.
        if !prefix.is_empty()
            && prefix
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == ".." || s.chars().any(char::is_control))
        {
            return Err(bad("the prefix has an empty, '.' or '..' segment"));
        }
        Ok(S3Url {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }
}

/// S3's bucket naming rules (the ones path-style requests rely on).
fn check_bucket(bucket: &str) -> Result<(), &'static str> {
    if bucket.is_empty() {
        return Err("no bucket name");
    }
    if !(3..=63).contains(&bucket.len()) {
        return Err("a bucket name has 3 to 63 characters");
    }
    if !bucket
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    {
        return Err("a bucket name has only lower-case letters, digits, '-' and '.'");
    }
    let first_last = [bucket.as_bytes()[0], bucket.as_bytes()[bucket.len() - 1]];
    if !first_last.iter().all(|b| b.is_ascii_alphanumeric()) {
        return Err("a bucket name starts and ends with a letter or digit");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<S3Url, String> {
        text.parse::<S3Url>().map_err(|e| e.to_string())
    }

    #[test]
    fn buckets_and_prefixes_are_split_and_trimmed() {
        let u = parse("s3://images/site-a/builds/").unwrap();
        assert_eq!(
            (u.bucket.as_str(), u.prefix.as_str()),
            ("images", "site-a/builds")
        );
        assert_eq!(u.key("a.iso"), "site-a/builds/a.iso");
        assert_eq!(u.to_string(), "s3://images/site-a/builds");
        let bare = parse("s3://images").unwrap();
        assert_eq!(bare.prefix, "");
        assert_eq!(bare.key("a.iso"), "a.iso");
        assert_eq!(bare.url_of("a.iso"), "s3://images/a.iso");
        assert_eq!(parse("s3://images/").unwrap(), bare);
    }

    #[test]
    fn bad_urls_are_refused_with_what_was_expected() {
        for (text, why) in [
            ("http://images/x", "does not start with s3://"),
            ("s3://", "no bucket name"),
            ("s3:///x", "no bucket name"),
            ("s3://ab", "3 to 63"),
            ("s3://Images", "lower-case"),
            ("s3://im_ages", "lower-case"),
            ("s3://-images", "starts and ends"),
            ("s3://images/a//b", "empty, '.' or '..'"),
            ("s3://images/a/../b", "empty, '.' or '..'"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
            assert!(
                err.contains(text) && err.contains("expected s3://BUCKET"),
                "{err}"
            );
        }
    }
}
