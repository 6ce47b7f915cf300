//! The edge between the command line and the library: each module turns parsed
//! arguments into a library call, with `anyhow` context for the user.

pub mod build;
pub mod disk;
pub mod fat;
pub mod iso;
pub mod qcow2;
pub mod profiles;
pub mod render;
pub mod squashfs;

use crate::cli::{Cli, Command};

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Build(args) => build::run(args, &cli.global),
        Command::Qcow2(args) => qcow2::run(args, &cli.global),
        Command::Disk(args) => disk::run(args, &cli.global),
        Command::Squashfs(args) => squashfs::run(args, &cli.global),
        Command::Iso(args) => iso::run(args, &cli.global),
        Command::Fat(args) => fat::run(args, &cli.global),
        Command::Profiles(args) => profiles::run(args, &cli.global),
        Command::Render(args) => render::run(args, &cli.global),
    }
}
