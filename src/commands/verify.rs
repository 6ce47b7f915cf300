//! `osforge verify ARTIFACT`: one line per check (`ok`, `FAIL`), or the
//! findings as JSON. Exit 0 when every check passed, 1 when one failed,
//! 2 when the file is not an artifact. The checks are in [`crate::verify`].

use std::path::PathBuf;

use crate::cli::GlobalArgs;
use crate::error::InputError;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The artifact: ISO, qcow2, raw disk or squashfs, with its
    /// `<artifact>.manifest.json` beside it.
    pub artifact: PathBuf,
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    let report = match crate::verify::verify(&args.artifact) {
        Ok(report) => report,
        Err(e) if e.is_bad_input() => {
            let line = format!("{:#}", anyhow::Error::new(e));
            return Err(anyhow::Error::new(InputError(line)));
        }
        Err(e) => return Err(e.into()),
    };
    if global.json {
        println!("{}", serde_json::to_string(&report)?);
    } else if !global.quiet {
        for finding in &report.findings {
            println!("{finding}");
        }
    }
    let mut failed: Vec<String> = report.failures().map(|f| f.check.to_string()).collect();
    let count = failed.len();
    failed.dedup();
    if !failed.is_empty() {
        anyhow::bail!(
            "{}: {} of {} checks failed ({})",
            args.artifact.display(),
            count,
            report.findings.len(),
            failed.join(", ")
        );
    }
    Ok(())
}
