//! Bounded fuzzing with proptest: generated trees and raw disks for the
//! writers' round trips, and a runner that says how many cases ran.
//!
//! The number of cases per target is `OSFORGE_FUZZ_CASES` (default: the
//! target's own) and the
//! seed `OSFORGE_FUZZ_SEED` (default: random, printed), so a failure in CI can
//! be replayed exactly; proptest then shrinks it to a small case.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

/// `OSFORGE_FUZZ_CASES` for every target, else the target's own number
/// (chosen so that all targets together take about two minutes here).
pub fn cases(default: u32) -> u32 {
    std::env::var("OSFORGE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn seed() -> [u8; 32] {
    let text = std::env::var("OSFORGE_FUZZ_SEED").unwrap_or_else(|_| {
        let mut bytes = [0u8; 8];
        std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
            .unwrap();
        u64::from_le_bytes(bytes).to_string()
    });
    let n: u64 = text
        .parse()
        .expect("OSFORGE_FUZZ_SEED is a number (the one a failed run printed)");
    let mut seed = [0u8; 32];
    seed[..8].copy_from_slice(&n.to_le_bytes());
    seed[8..16].copy_from_slice(&n.to_le_bytes());
    seed
}

/// Runs `test` over `cases()` values of `strategy`; panics with proptest's
/// minimal failing case. Prints the executions (shrinking included) and seed.
pub fn run<S: Strategy>(
    target: &str,
    default_cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), String>,
) where
    S::Value: std::fmt::Debug,
{
    let seed = seed();
    let config = Config {
        cases: cases(default_cases),
        failure_persistence: None,
        max_shrink_iters: 200,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed));
    let executions = AtomicUsize::new(0);
    let started = std::time::Instant::now();
    let result = runner.run(&strategy, |value| {
        executions.fetch_add(1, Ordering::Relaxed);
        test(value).map_err(TestCaseError::fail)
    });
    let seed_number = u64::from_le_bytes(seed[..8].try_into().unwrap());
    eprintln!(
        "fuzz {target}: {} executions in {:.1} s (OSFORGE_FUZZ_SEED={seed_number})",
        executions.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    if let Err(e) = result {
        panic!("fuzz {target} (OSFORGE_FUZZ_SEED={seed_number}): {e}");
    }
}

/// A case's work folder; kept for a look when `OSFORGE_FUZZ_KEEP` is set.
pub fn scratch(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .disable_cleanup(std::env::var_os("OSFORGE_FUZZ_KEEP").is_some())
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .expect("temp dir")
}

/// File contents, described rather than stored so that cases print small.
#[derive(Debug, Clone)]
pub enum Content {
    Zeros(usize),
    Noise(usize, u64),
    /// Compressible: words from a small vocabulary.
    Text(usize, u64),
    /// A sparse file: `len` bytes of noise at `at` in a file of `size`.
    Sparse {
        size: u64,
        at: u64,
        len: usize,
        seed: u64,
    },
}

impl Content {
    pub fn write(&self, path: &Path) {
        match *self {
            Content::Zeros(n) => std::fs::write(path, vec![0u8; n]).unwrap(),
            Content::Noise(n, seed) => std::fs::write(path, super::noise(n, seed)).unwrap(),
            Content::Text(n, seed) => std::fs::write(path, text(n, seed)).unwrap(),
            Content::Sparse {
                size,
                at,
                len,
                seed,
            } => {
                let f = std::fs::File::create(path).unwrap();
                f.set_len(size).unwrap();
                let at = at.min(size);
                let len = len.min((size - at) as usize);
                std::os::unix::fs::FileExt::write_all_at(&f, &super::noise(len, seed), at).unwrap();
            }
        }
    }
}

fn text(n: usize, seed: u64) -> Vec<u8> {
    const WORDS: [&[u8]; 8] = [
        b"the ",
        b"kernel ",
        b"package ",
        b"osforge\n",
        b"image ",
        b"= ",
        b"0x1f ",
        b"block ",
    ];
    let noise = super::noise(n / 4 + 1, seed);
    let mut out = Vec::with_capacity(n + 8);
    for b in noise {
        if out.len() >= n {
            break;
        }
        out.extend_from_slice(WORDS[(b & 7) as usize]);
    }
    out.truncate(n);
    out
}

pub fn content(max: usize) -> impl Strategy<Value = Content> {
    prop_oneof![
        2 => (0..max).prop_map(Content::Zeros),
        4 => (0..max, any::<u64>()).prop_map(|(n, s)| Content::Noise(n, s)),
        4 => (0..max, any::<u64>()).prop_map(|(n, s)| Content::Text(n, s)),
        1 => (0..(8u64 << 20), 0..(8u64 << 20), 0..65536usize, any::<u64>())
            .prop_map(|(size, at, len, seed)| Content::Sparse { size, at, len, seed }),
    ]
}

#[derive(Debug, Clone)]
pub enum Kind {
    Dir,
    File(Content),
    Symlink(String),
    /// A hard link to an earlier regular file (skipped when there is none).
    HardLink(Index),
    Fifo,
}

#[derive(Debug, Clone)]
pub struct Node {
    /// Among the directories made so far (the root first).
    pub parent: Index,
    pub name: String,
    pub kind: Kind,
    pub mode: u32,
    pub mtime: i64,
    pub xattr: Option<(String, Vec<u8>)>,
}

/// What a format can hold; the generator makes only that.
#[derive(Debug, Clone, Copy)]
pub struct Features {
    pub links: bool,
    pub special: bool,
    pub xattrs: bool,
    /// Any bytes in names (else FAT's long-name alphabet, case-insensitive).
    pub posix_names: bool,
    pub max_file: usize,
}

fn name(posix: bool) -> BoxedStrategy<String> {
    if posix {
        prop_oneof![
            4 => "[a-z]{1,8}",
            3 => "[A-Za-z0-9 ._+,=@~-]{1,40}",
            2 => "[\\PC&&[^/]]{1,16}",
            1 => "[a-z]{200,255}",
        ]
        .prop_filter("not . or ..", |n| n != "." && n != ".." && n.len() <= 255)
        .boxed()
    } else {
        prop_oneof![
            4 => "[a-z0-9]{1,8}(\\.[a-z]{1,3})?",
            3 => "[A-Za-z0-9][A-Za-z0-9 _+,=@~()-]{0,40}[A-Za-z0-9]",
            1 => "[a-zé][a-zé0-9]{0,12}",
        ]
        .boxed()
    }
}

pub fn tree(features: Features, max_nodes: usize) -> impl Strategy<Value = Vec<Node>> {
    let kind = {
        let mut choices: Vec<(u32, BoxedStrategy<Kind>)> = vec![
            (3, Just(Kind::Dir).boxed()),
            (6, content(features.max_file).prop_map(Kind::File).boxed()),
        ];
        if features.links {
            choices.push((
                2,
                prop_oneof!["[a-z./]{1,30}", "\\PC{1,60}", Just("/".to_string())]
                    .prop_map(Kind::Symlink)
                    .boxed(),
            ));
            choices.push((1, any::<Index>().prop_map(Kind::HardLink).boxed()));
        }
        if features.special {
            choices.push((1, Just(Kind::Fifo).boxed()));
        }
        proptest::strategy::Union::new_weighted(choices)
    };
    let xattr = if features.xattrs {
        proptest::option::of((
            "user\\.[a-z]{1,12}",
            proptest::collection::vec(any::<u8>(), 0..64),
        ))
        .boxed()
    } else {
        Just(None).boxed()
    };
    let node = (
        any::<Index>(),
        name(features.posix_names),
        kind,
        0u32..0o10000,
        0i64..4_000_000_000,
        xattr,
    )
        .prop_map(|(parent, name, kind, mode, mtime, xattr)| Node {
            parent,
            name,
            kind,
            mode,
            mtime,
            xattr,
        });
    proptest::collection::vec(node, 0..max_nodes)
}

/// Makes the tree under `root` (which must exist); returns the relative
/// paths made. Names that collide (case-insensitively unless POSIX names)
/// are skipped. Modes and times are set last, deepest first.
pub fn materialize(root: &Path, nodes: &[Node], features: Features) -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::new()];
    let mut files: Vec<PathBuf> = Vec::new();
    let mut made: Vec<(PathBuf, &Node)> = Vec::new();
    let mut taken = std::collections::HashSet::new();
    for node in nodes {
        let parent = node.parent.get(&dirs).clone();
        let rel = parent.join(&node.name);
        let key = if features.posix_names {
            rel.to_string_lossy().into_owned()
        } else {
            rel.to_string_lossy().to_lowercase()
        };
        if !taken.insert(key) {
            continue;
        }
        let path = root.join(&rel);
        match &node.kind {
            Kind::Dir => {
                std::fs::create_dir(&path).unwrap();
                dirs.push(rel.clone());
            }
            Kind::File(content) => {
                content.write(&path);
                files.push(rel.clone());
            }
            Kind::Symlink(target) => symlink(target, &path).unwrap(),
            Kind::HardLink(which) => {
                if files.is_empty() {
                    continue;
                }
                std::fs::hard_link(root.join(which.get(&files)), &path).unwrap();
            }
            Kind::Fifo => {
                let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
                // SAFETY: a valid path string.
                assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
            }
        }
        made.push((rel, node));
    }
    // Attributes last: a read-only directory would refuse its children, and
    // making a child changes its parent's mtime.
    for (rel, node) in made.iter().rev() {
        let path = root.join(rel);
        let is_link = matches!(node.kind, Kind::Symlink(_));
        if !is_link {
            // The kernel keeps user.* xattrs on files and directories only.
            if let Some((key, value)) = &node.xattr
                && matches!(node.kind, Kind::Dir | Kind::File(_))
            {
                xattr::set(&path, key, value).unwrap();
            }
            let mode = if matches!(node.kind, Kind::Dir) {
                node.mode | 0o700
            } else {
                node.mode
            };
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        super::tree::set_mtime(&path, node.mtime);
    }
    made.into_iter().map(|(rel, _)| rel).collect()
}
