//! Subcommands of the `bellhop` command line that need more than a few lines
//! (main.rs keeps the argument parsing and the small ones).

pub(crate) mod certs;
pub(crate) mod pid_file;
pub(crate) mod upgrade;
