//! `osforge profiles`: the profiles in the search path, one line each.

use crate::cli::GlobalArgs;
use crate::profile::{self, ProfileError, SearchPath};

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    let search = SearchPath::from_env();
    let profiles = profile::list(&search).map_err(ProfileError::into_input_error)?;
    if global.json {
        println!("{}", serde_json::to_string(&profiles)?);
        return Ok(());
    }
    if profiles.is_empty() && !global.quiet {
        eprintln!(
            "osforge: no profiles in {} (set {} to add directories)",
            search
                .profile_dirs
                .iter()
                .map(|d| format!("{}/", d.display()))
                .collect::<Vec<_>>()
                .join(", "),
            SearchPath::PROFILE_PATH_ENV
        );
    }
    let width = profiles.iter().map(|p| p.name.len()).max().unwrap_or(0);
    for p in &profiles {
        let line = format!("{:width$}  {}", p.name, p.description);
        println!("{}", line.trim_end());
    }
    Ok(())
}
