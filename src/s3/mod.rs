//! S3-compatible object stores: publishing artifacts ([`publish`]) and the
//! remote stage cache ([`crate::pipeline`]'s `remote`), through the
//! `object_store` crate.
//!
//! object_store is async; osforge is not. A [`Store`] owns a small
//! current-thread tokio runtime and blocks on it, so the async world stays
//! inside this module.
//!
//! Uploads never leave an object that looks complete when they are
//! interrupted: a large file goes up as a multipart upload, which the store
//! shows only once it is completed, and a small one in a single PUT, which
//! is atomic. Each object's size is checked with a HEAD afterwards. Callers
//! that upload a set write the object that vouches for the others (a
//! `.sha256`, a cache descriptor) last.

pub mod credentials;
mod location;
pub mod publish;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};

pub use credentials::Credentials;
pub use location::S3Url;

/// S3's smallest part (except the last); osforge's default is larger, for
/// fewer requests on GiB-sized images.
pub const MIN_PART_SIZE: usize = 5 << 20;
pub const DEFAULT_PART_SIZE: usize = 16 << 20;
/// S3's largest part.
pub const MAX_PART_SIZE: usize = 5 << 30;
/// Parts in flight at once: two keep the link busy while the next part is
/// read, without holding much memory (2 × part size).
const PARTS_IN_FLIGHT: usize = 2;
/// AWS's and most S3 servers' default; Garage's own is `garage`.
pub const DEFAULT_REGION: &str = "us-east-1";

#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    #[error("invalid S3 URL '{url}': {why} (expected s3://BUCKET[/PREFIX])")]
    Url { url: String, why: String },
    #[error(
        "invalid --s3-endpoint '{0}': expected http://HOST[:PORT] or https://HOST[:PORT] of an S3-compatible server"
    )]
    Endpoint(String),
    #[error(
        "no S3 credentials: set S3_ACCESS and S3_SECRET (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), or give --s3-credentials FILE"
    )]
    NoCredentials,
    #[error("{0} is set but {1} is not: S3 credentials need both")]
    HalfCredentials(&'static str, &'static str),
    #[error("--s3-credentials {}: {why}", path.display())]
    CredentialsFile { path: PathBuf, why: String },
    #[error("--s3-part-size {0} MiB: expected 5 to 5120 (S3's smallest and largest part)")]
    PartSize(usize),
    /// What the store answered; `what` names the object, the bucket and the
    /// endpoint, `why` is one line with secrets hidden.
    #[error("{what}: {why}")]
    Store { what: String, why: String },
    #[error("{what}: {}: {source}", path.display())]
    Io {
        what: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what}: the store holds {stored} bytes, {expected} were sent")]
    SizeMismatch {
        what: String,
        stored: u64,
        expected: u64,
    },
    #[error("starting the S3 client: {0}")]
    Runtime(std::io::Error),
}

/// Where the store is and how to talk to it.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `--s3-endpoint`; None for AWS itself.
    pub endpoint: Option<String>,
    pub region: String,
    pub part_size: usize,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            endpoint: None,
            region: DEFAULT_REGION.to_string(),
            part_size: DEFAULT_PART_SIZE,
        }
    }
}

impl Settings {
    fn check(&self) -> Result<(), S3Error> {
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.part_size) {
            return Err(S3Error::PartSize(self.part_size >> 20));
        }
        if let Some(endpoint) = &self.endpoint {
            let host = endpoint
                .strip_prefix("http://")
                .or_else(|| endpoint.strip_prefix("https://"))
                .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or(""));
            if host.is_none_or(|h| h.is_empty() || h.contains(char::is_whitespace)) {
                return Err(S3Error::Endpoint(crate::util::redact::url(endpoint)));
            }
        }
        Ok(())
    }
}

/// One bucket of one S3 endpoint.
pub struct Store {
    inner: AmazonS3,
    runtime: tokio::runtime::Runtime,
    /// For messages: the endpoint (credentials in it hidden) and bucket.
    endpoint: String,
    bucket: String,
    part_size: usize,
}

/// An object's key and size, as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub key: String,
    pub bytes: u64,
}

impl Store {
    pub fn connect(
        bucket: &str,
        settings: &Settings,
        credentials: &Credentials,
    ) -> Result<Store, S3Error> {
        settings.check()?;
        let endpoint = settings
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", settings.region));
        let options = ClientOptions::new()
            .with_allow_http(endpoint.starts_with("http://"))
            .with_connect_timeout(Duration::from_secs(10))
            // A part of a large image on a slow link: minutes, not seconds.
            .with_timeout(Duration::from_secs(600));
        let retry = object_store::RetryConfig {
            backoff: object_store::BackoffConfig::default(),
            max_retries: 4,
            retry_timeout: Duration::from_secs(120),
        };
        // new(), not from_env(): the AWS_* variables osforge does not read
        // (AWS_ENDPOINT, AWS_SESSION_TOKEN, ...) must not change where it writes.
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(&settings.region)
            .with_access_key_id(&credentials.access_key_id)
            .with_secret_access_key(&credentials.secret_access_key)
            .with_virtual_hosted_style_request(false)
            .with_client_options(options)
            .with_retry(retry);
        if settings.endpoint.is_some() {
            builder = builder.with_endpoint(&endpoint);
        }
        let shown = crate::util::redact::url(&endpoint);
        let inner = builder.build().map_err(|e| S3Error::Store {
            what: format!("s3://{bucket} at {shown}"),
            why: one_line(&e),
        })?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(S3Error::Runtime)?;
        Ok(Store {
            inner,
            runtime,
            endpoint: shown,
            bucket: bucket.to_string(),
            part_size: settings.part_size,
        })
    }

    /// "s3://bucket/key at http://endpoint", for messages.
    pub fn describe(&self, key: &str) -> String {
        let key = if key.is_empty() {
            String::new()
        } else {
            format!("/{key}")
        };
        format!("s3://{}{key} at {}", self.bucket, self.endpoint)
    }

    fn fail(&self, doing: &str, key: &str, e: &object_store::Error) -> S3Error {
        S3Error::Store {
            what: format!("{doing} {}", self.describe(key)),
            why: explain(e),
        }
    }

    /// One listing request under `prefix`: answers whether the endpoint is
    /// reachable, the credentials good and the bucket there, before any
    /// work is done.
    pub fn probe(&self, prefix: &str) -> Result<(), S3Error> {
        let location = (!prefix.is_empty()).then(|| ObjectPath::from(prefix));
        self.runtime.block_on(async {
            let mut stream = self.inner.list(location.as_ref());
            match stream.next().await {
                Some(Err(e)) => Err(self.fail("listing", prefix, &e)),
                _ => Ok(()),
            }
        })
    }

    /// The object's size, or None when there is none.
    pub fn head(&self, key: &str) -> Result<Option<u64>, S3Error> {
        match self
            .runtime
            .block_on(self.inner.head(&ObjectPath::from(key)))
        {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.fail("looking up", key, &e)),
        }
    }

    /// Small objects in one PUT, which the store makes visible whole or not at all.
    pub fn put_bytes(&self, key: &str, bytes: Vec<u8>) -> Result<(), S3Error> {
        let expected = bytes.len() as u64;
        self.runtime
            .block_on(
                self.inner
                    .put(&ObjectPath::from(key), PutPayload::from(bytes)),
            )
            .map_err(|e| self.fail("uploading", key, &e))?;
        self.check_size(key, expected)
    }

    /// Uploads a file: one PUT up to the part size, multipart above it.
    /// `progress(done, total)` is called after each part is handed over.
    /// Returns the bytes uploaded.
    pub fn put_file(
        &self,
        key: &str,
        path: &Path,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<u64, S3Error> {
        let io = |source| S3Error::Io {
            what: format!("uploading {}", self.describe(key)),
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let total = file.metadata().map_err(io)?.len();
        if total <= self.part_size as u64 {
            let mut bytes = Vec::with_capacity(total as usize);
            file.read_to_end(&mut bytes).map_err(io)?;
            let sent = bytes.len() as u64;
            self.put_bytes(key, bytes)?;
            progress(sent, sent);
            return Ok(sent);
        }
        let location = ObjectPath::from(key);
        let sent = self.runtime.block_on(async {
            let upload = self
                .inner
                .put_multipart(&location)
                .await
                .map_err(|e| self.fail("starting the upload of", key, &e))?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, self.part_size);
            let mut buf = vec![0u8; self.part_size];
            let mut sent = 0u64;
            loop {
                let n = match read_full(&mut file, &mut buf) {
                    Ok(n) => n,
                    Err(e) => {
                        let _ = writer.abort().await;
                        return Err(io(e));
                    }
                };
                if n == 0 {
                    break;
                }
                if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                    // The parts already sent are dropped with the upload;
                    // nothing was ever visible at the key.
                    let _ = writer.abort().await;
                    return Err(self.fail("uploading", key, &e));
                }
                writer.write(&buf[..n]);
                sent += n as u64;
                progress(sent, total);
            }
            writer
                .finish()
                .await
                .map_err(|e| self.fail("completing the upload of", key, &e))?;
            Ok(sent)
        })?;
        self.check_size(key, sent)?;
        Ok(sent)
    }

    fn check_size(&self, key: &str, expected: u64) -> Result<(), S3Error> {
        let stored = self.head(key)?.unwrap_or(0);
        if stored != expected {
            return Err(S3Error::SizeMismatch {
                what: format!("uploading {}", self.describe(key)),
                stored,
                expected,
            });
        }
        Ok(())
    }

    /// A small object's bytes, or None when there is none.
    pub fn get_bytes(&self, key: &str) -> Result<Option<Vec<u8>>, S3Error> {
        let location = ObjectPath::from(key);
        self.runtime.block_on(async {
            match self.inner.get(&location).await {
                Ok(got) => got
                    .bytes()
                    .await
                    .map(|b| Some(b.to_vec()))
                    .map_err(|e| self.fail("downloading", key, &e)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(self.fail("downloading", key, &e)),
            }
        })
    }

    /// Downloads an object into `path` (created), returning its size and sha256.
    pub fn get_to_file(&self, key: &str, path: &Path) -> Result<(u64, String), S3Error> {
        use std::io::Write;
        let io = |source| S3Error::Io {
            what: format!("downloading {}", self.describe(key)),
            path: path.to_path_buf(),
            source,
        };
        let mut file = std::fs::File::create_new(path).map_err(io)?;
        let location = ObjectPath::from(key);
        let (bytes, sha) = self.runtime.block_on(async {
            let got = self
                .inner
                .get(&location)
                .await
                .map_err(|e| self.fail("downloading", key, &e))?;
            let mut stream = got.into_stream();
            let mut sha = Sha256::new();
            let mut bytes = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| self.fail("downloading", key, &e))?;
                sha.update(&chunk);
                file.write_all(&chunk).map_err(io)?;
                bytes += chunk.len() as u64;
            }
            Ok::<_, S3Error>((bytes, crate::util::hex(&sha.finalize())))
        })?;
        file.sync_all().map_err(io)?;
        Ok((bytes, sha))
    }

    /// Every object under `prefix` (a key prefix, `/`-separated), sorted.
    pub fn list(&self, prefix: &str) -> Result<Vec<Listed>, S3Error> {
        let location = (!prefix.is_empty()).then(|| ObjectPath::from(prefix));
        let mut listed = self.runtime.block_on(async {
            let mut stream = self.inner.list(location.as_ref());
            let mut out = Vec::new();
            while let Some(meta) = stream.next().await {
                let meta = meta.map_err(|e| self.fail("listing", prefix, &e))?;
                out.push(Listed {
                    key: meta.location.to_string(),
                    bytes: meta.size,
                });
            }
            Ok::<_, S3Error>(out)
        })?;
        listed.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(listed)
    }

    pub fn delete(&self, key: &str) -> Result<(), S3Error> {
        self.runtime
            .block_on(self.inner.delete(&ObjectPath::from(key)))
            .map_err(|e| self.fail("deleting", key, &e))
    }
}

/// Fills `buf` unless the file ends first; the bytes read.
fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// What went wrong, in one line a user can act on, with secrets hidden
/// (a server may quote the access key id back): what it means, then the
/// server's own code and message when it sent one, else the client's error.
fn explain(e: &object_store::Error) -> String {
    let chain = one_line(e);
    let server = match (xml_tag(&chain, "Code"), xml_tag(&chain, "Message")) {
        (Some(code), Some(message)) => Some(format!("{code}: {message}")),
        (code, message) => code.or(message).map(str::to_string),
    };
    // object_store maps statuses to variants for some requests only (a
    // listing's 403 is Generic), so the status in the text counts too.
    let status = |code: &str| chain.contains(&format!("status code: {code}"));
    let hint = match e {
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => {
            Some("access denied (check the credentials and the key's permissions on the bucket)")
        }
        object_store::Error::NotFound { .. } => Some("not found (does the bucket exist?)"),
        _ if status("403") || status("401") => {
            Some("access denied (check the credentials and the key's permissions on the bucket)")
        }
        _ if status("404") => Some("not found (does the bucket exist?)"),
        _ if chain.contains("onnection refused")
            || chain.contains("dns error")
            || chain.contains("error trying to connect")
            || chain.contains("error sending request") =>
        {
            Some("cannot connect (is the endpoint right and the server up?)")
        }
        _ => None,
    };
    // Of a network error, the socket's own words are what helps.
    let socket = ["tcp connect error: ", "dns error: "]
        .iter()
        .find_map(|p| chain.find(p).map(|i| chain[i..].to_string()));
    let detail = server
        .or(socket)
        .unwrap_or_else(|| chain.clone())
        .chars()
        .take(300)
        .collect::<String>();
    match hint {
        Some(hint) => format!("{hint}: {detail}"),
        None => detail,
    }
}

/// The text of the first `<tag>...</tag>` in an S3 error body.
fn xml_tag<'a>(text: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = text.find(&open)? + open.len();
    let len = text[start..].find(&format!("</{tag}>"))?;
    Some(text[start..start + len].trim()).filter(|t| !t.is_empty())
}

/// An error and its causes on one line, secrets hidden.
fn one_line(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut current: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = current {
        let text = err.to_string();
        // object_store repeats its source's text in its own.
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        current = err.source();
    }
    let joined = parts.join(": ");
    let flat: String = joined.split_whitespace().collect::<Vec<_>>().join(" ");
    crate::util::redact::hide(&flat)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_part_sizes_are_checked_before_anything_is_sent() {
        let with = |endpoint: &str, part_size| Settings {
            endpoint: Some(endpoint.to_string()),
            region: DEFAULT_REGION.into(),
            part_size,
        };
        assert!(with("http://127.0.0.1:3900", MIN_PART_SIZE).check().is_ok());
        assert!(
            with("https://s3.example.org/", DEFAULT_PART_SIZE)
                .check()
                .is_ok()
        );
        for bad in ["127.0.0.1:3900", "ftp://host", "http://", "http:// x"] {
            let err = with(bad, DEFAULT_PART_SIZE)
                .check()
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("--s3-endpoint") && err.contains("expected http://"),
                "{err}"
            );
        }
        let err = with("http://h:1", 1 << 20).check().unwrap_err().to_string();
        assert!(
            err.contains("--s3-part-size 1 MiB") && err.contains("expected 5 to 5120"),
            "{err}"
        );
        assert!(with("http://h:1", 6 << 30).check().is_err());
        // A password in the endpoint is not echoed.
        let err = with("ftp://u:pw-9c1@h", DEFAULT_PART_SIZE)
            .check()
            .unwrap_err();
        assert!(!err.to_string().contains("pw-9c1"), "{err}");
    }

    #[test]
    fn store_errors_are_one_line_without_registered_secrets() {
        crate::util::redact::register_secret("sk-explain-3b7a");
        let e = object_store::Error::Generic {
            store: "S3",
            source: "403 Forbidden:\n<Error>bad signature for sk-explain-3b7a</Error>\n".into(),
        };
        let line = explain(&e);
        assert!(
            !line.contains('\n') && !line.contains("sk-explain-3b7a"),
            "{line}"
        );
        assert!(line.contains("bad signature for ***"), "{line}");
    }
}
