//! `osforge cache ls|prune|clear`: what the stage cache holds, and making
//! room in it while builds run.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Context;

use crate::blockcache::{self, BlockStore};
use crate::cli::GlobalArgs;
use crate::pipeline::cache::{Cache, PrunePolicy, PruneReport, Removal, Rule};
use crate::util::duration::{parse_duration, short_duration};
use crate::util::size::{human_bytes, parse_size};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: CacheCommand,
    /// The cache (default: $OSFORGE_CACHE_DIR, else ~/.cache/osforge), as for `osforge build`.
    #[arg(long, value_name = "DIR", global = true)]
    pub cache_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
pub enum CacheCommand {
    /// One line per entry: stage, key, profile, size, age and last use.
    #[command(visible_alias = "list")]
    Ls,
    /// Remove entries, least recently used first, and what interrupted builds
    /// left behind; entries a running build holds are kept.
    Prune(PruneArgs),
    /// Remove every entry no running build holds.
    Clear(ClearArgs),
}

#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// Keep the N most recently used entries of each stage.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<usize>,
    /// Remove entries not used for this long: 30m, 12h, 7d, 2w.
    #[arg(long, value_name = "AGE", value_parser = parse_duration)]
    pub older_than: Option<Duration>,
    /// Remove least recently used entries until the cache is at most this big: 20G, 500M.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_size: Option<u64>,
    /// The block cache's bound (blocks/, shared by the squashfs and qcow2
    /// writers): least recently used blocks go until it fits; --older-than
    /// applies to its blocks too.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value_t = blockcache::DEFAULT_MAX_BYTES)]
    pub block_cache_max_size: u64,
    /// Say what would be removed, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, clap::Args)]
pub struct ClearArgs {
    /// Say what would be removed, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    let cache = Cache::new(args.cache_dir.unwrap_or_else(Cache::default_root));
    match args.command {
        CacheCommand::Ls => list(&cache, global),
        CacheCommand::Prune(p) => {
            let policy = PrunePolicy {
                keep_last: p.keep_last,
                older_than: p.older_than,
                max_size: p.max_size,
            };
            let report = cache
                .prune(&policy, p.dry_run)
                .with_context(|| format!("pruning the cache in {}", cache.root().display()))?;
            let blocks = open_blocks(&cache)?
                .prune(Some(p.block_cache_max_size), p.older_than, p.dry_run)
                .context("pruning the block cache")?;
            print_report(&cache, &report, &blocks, policy.max_size, global)
        }
        CacheCommand::Clear(c) => {
            let report = cache
                .clear(c.dry_run)
                .with_context(|| format!("clearing the cache in {}", cache.root().display()))?;
            let blocks = open_blocks(&cache)?
                .clear(c.dry_run)
                .context("clearing the block cache")?;
            print_report(&cache, &report, &blocks, None, global)
        }
    }
}

fn list(cache: &Cache, global: &GlobalArgs) -> anyhow::Result<()> {
    let entries = cache
        .list()
        .with_context(|| format!("listing the cache in {}", cache.root().display()))?;
    let total: u64 = entries.iter().map(|e| e.bytes).sum();
    if global.json {
        let value = serde_json::json!({
            "cache_dir": cache.root(),
            "total_bytes": total,
            "entries": entries,
        });
        println!("{value}");
        return Ok(());
    }
    if global.quiet {
        return Ok(());
    }
    if entries.is_empty() {
        eprintln!("osforge: no cache entries in {}", cache.root().display());
        return Ok(());
    }
    let now = now_seconds();
    let mut rows = vec![[
        "stage".to_string(),
        "key".to_string(),
        "profile".to_string(),
        "size".to_string(),
        "age".to_string(),
        "last use".to_string(),
        String::new(),
    ]];
    rows.extend(entries.iter().map(|e| {
        [
            e.stage.clone(),
            short_key(&e.key),
            e.profile.clone().unwrap_or_else(|| "-".to_string()),
            human_bytes(e.bytes),
            ago(now, e.created),
            format!("{} ago", ago(now, e.last_used)),
            if e.in_use { "in use" } else { "" }.to_string(),
        ]
    }));
    print_table(&rows);
    eprintln!(
        "osforge: {}, {} in {}",
        n_entries(entries.len()),
        human_bytes(total),
        cache.root().display()
    );
    Ok(())
}

/// Pruning creates nothing: a cache without blocks/ has an empty store.
fn open_blocks(cache: &Cache) -> anyhow::Result<BlockStore> {
    Ok(BlockStore::at(&cache.block_store_dir()))
}

fn print_report(
    cache: &Cache,
    report: &PruneReport,
    blocks: &blockcache::PruneReport,
    max_size: Option<u64>,
    global: &GlobalArgs,
) -> anyhow::Result<()> {
    if global.json {
        let mut value = serde_json::to_value(report)?;
        value["cache_dir"] = serde_json::json!(cache.root());
        value["block_cache"] = serde_json::to_value(blocks)?;
        println!("{value}");
        return Ok(());
    }
    if global.quiet {
        return Ok(());
    }
    let verb = if report.dry_run {
        "would remove"
    } else {
        "removed"
    };
    let mut rows: Vec<[String; 6]> = report
        .removed
        .iter()
        .map(|r| {
            let e = &r.entry;
            [
                verb.to_string(),
                e.stage.clone(),
                short_key(&e.key),
                human_bytes(e.bytes),
                e.profile.clone().unwrap_or_else(|| "-".to_string()),
                // Every entry goes on `clear`: no reason to give.
                if r.rule == Rule::Clear {
                    String::new()
                } else {
                    r.reason.clone()
                },
            ]
        })
        .collect();
    rows.extend(report.stale.iter().map(|s| {
        [
            verb.to_string(),
            s.stage.clone(),
            short_key(&s.key),
            human_bytes(s.bytes),
            "-".to_string(),
            format!("left by an interrupted build: {}", s.path.display()),
        ]
    }));
    print_table(&rows);
    for Removal { entry, .. } in &report.in_use {
        eprintln!(
            "osforge: note: kept {} {}: in use by a running build",
            entry.stage,
            short_key(&entry.key)
        );
    }
    println!(
        "{} {}; {}, {} left in {}",
        if report.dry_run {
            "would free"
        } else {
            "freed"
        },
        human_bytes(report.freed_bytes),
        n_entries(report.remaining_entries),
        human_bytes(report.remaining_bytes),
        cache.root().display()
    );
    let index_files = match blocks.removed_index_files {
        0 => String::new(),
        n => format!(" and {n} segment index files"),
    };
    println!(
        "block cache: {} {} blocks ({}){index_files}; {} blocks, {} left",
        verb,
        blocks.removed_entries,
        human_bytes(blocks.freed_bytes),
        blocks.remaining_entries,
        human_bytes(blocks.remaining_bytes),
    );
    if let Some(max) = max_size.filter(|max| report.remaining_bytes > *max) {
        eprintln!(
            "osforge: note: still over --max-size {}: what is left is in use",
            human_bytes(max)
        );
    }
    Ok(())
}

/// Columns padded to their widest cell, the last one as it is.
fn print_table<const N: usize>(rows: &[[String; N]]) {
    let mut widths = [0; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == N {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:w$}  ", w = widths[i]));
            }
        }
        println!("{}", line.trim_end());
    }
}

fn n_entries(n: usize) -> String {
    if n == 1 {
        "1 entry".to_string()
    } else {
        format!("{n} entries")
    }
}

/// As the build log shows keys.
fn short_key(key: &str) -> String {
    key.chars().take(12).collect()
}

fn ago(now: u64, then: u64) -> String {
    short_duration(Duration::from_secs(now.saturating_sub(then)))
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
