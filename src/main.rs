//! The `osforge` binary: parse the command line, run, print the error chain once,
//! pick the exit code. Everything else lives in the library.

use std::process::ExitCode;

use clap::Parser;
use osforge::cli::{Cli, Command, parse_error_line};
use osforge::error::exit_code_for;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            use clap::error::ErrorKind;
            // Help and version are not errors; print them as clap formats them.
            if matches!(
                err.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = err.print();
                return ExitCode::SUCCESS;
            }
            eprintln!("osforge: error: {}", parse_error_line(&err));
            return ExitCode::from(2);
        }
    };
    // Builds and the cache they leave need root; without it, a user namespace.
    if matches!(
        cli.command,
        Command::Build(_) | Command::Cache(_) | Command::AirshipBuilder(_)
    ) && let Err(err) = osforge::util::userns::enter_if_unprivileged()
    {
        eprintln!("osforge: error: {err:#}");
        return ExitCode::from(1);
    }
    osforge::util::cleanup::install_signal_handler();
    match osforge::commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) if osforge::util::cleanup::interrupted() => {
            // The signal handler is removing temporaries and exits with 130.
            osforge::util::cleanup::park_forever()
        }
        Err(err) => {
            // One line: the chain joined with ": ", as `{:#}` prints it.
            let line = osforge::util::redact::hide(&format!("{err:#}"));
            eprintln!("osforge: error: {line}");
            ExitCode::from(exit_code_for(&err))
        }
    }
}
