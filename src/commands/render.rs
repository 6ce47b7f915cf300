//! `osforge render --profile NAME`: what a host would get, built from nothing.
//!
//! Prints the merged profile as YAML, each rendered cloud-init file and the
//! kernel command line, so a profile can be reviewed (or diffed) before a build.

use std::path::PathBuf;

use crate::cli::GlobalArgs;
use crate::profile::{self, ProfileError, SearchPath};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A profile name (looked up in ./profiles and $OSFORGE_PROFILE_PATH) or a path.
    #[arg(long, short, value_name = "NAME|PATH")]
    pub profile: String,
    /// Sets a template variable; VALUE is read as a YAML scalar (4, true, text) or
    /// flow list ([a, b]). Repeatable.
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// Kernel parameters to add after the profile's, checked like them.
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    pub cmdline_append: Option<String>,
    /// The host's network: OpenStack network_data.json or netplan v2
    /// network-config, checked and written in the form the datasource reads.
    #[arg(long, value_name = "FILE")]
    pub network_data: Option<PathBuf>,
    /// The host's user-data, used as written instead of the profile's template.
    #[arg(long, value_name = "FILE")]
    pub user_data: Option<PathBuf>,
}

fn parse_var(arg: &str) -> Result<(String, String), String> {
    profile::parse_var_arg(arg)
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    let search = SearchPath::from_env();
    let profile = profile::load(&args.profile, &search, &args.vars)
        .map_err(ProfileError::into_input_error)?;
    let files = profile::HostFiles::load(args.network_data.as_deref(), args.user_data.as_deref())
        .map_err(ProfileError::into_input_error)?;
    let host = profile
        .render_host_with(args.cmdline_append.as_deref(), &files)
        .map_err(ProfileError::into_input_error)?;
    if global.json {
        let value = serde_json::json!({ "profile": profile, "host": host });
        println!("{value}");
        return Ok(());
    }
    let sources: Vec<String> = profile
        .source_files
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    println!("# osforge render: profile {}", profile.name);
    println!("# from {}", sources.join(", "));
    println!("==> profile <==");
    print!("{}", serde_saphyr::to_string(&profile)?);
    for (path, contents) in host.seed_files() {
        println!("==> {path} <==");
        print!("{contents}");
        if !contents.ends_with('\n') {
            println!();
        }
    }
    println!("==> kernel cmdline <==");
    println!("{}", host.kernel_cmdline);
    Ok(())
}
