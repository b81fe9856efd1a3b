//! What `reflow-peer` and `reflow-discovery` share on the command line, so
//! the two read and complain alike: `-h`/`-V` are found before any other
//! argument is looked at, and usage errors have one wording.
//! These are modules of the binaries, not of the library: a program that
//! embeds a peer never compiles them (nor `lexopt`, `signal-hook` and
//! `simple_logger`).

use std::ffi::OsString;

/// A flag that ends the run before anything else is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Early {
    /// `-h` or `--help`: print the help, exit 0.
    Help,
    /// `-V` or `--version`: print the version, exit 0.
    Version,
}

/// The first `-h`, `--help`, `-V` or `--version` among `args` (those after
/// the program name), up to a `--`. Looked for before parsing, so that a
/// bad or incomplete command line still gets its help, as in Reflow's CLI.
pub fn early_flag<I>(args: I) -> Option<Early>
where
    I: IntoIterator,
    I::Item: Into<OsString>,
{
    for arg in args {
        let arg: OsString = arg.into();
        match arg.to_str() {
            Some("--") => return None,
            Some("-h" | "--help") => return Some(Early::Help),
            Some("-V" | "--version") => return Some(Early::Version),
            _ => {}
        }
    }
    None
}

/// The text both binaries print on stderr for a usage error (exit 2):
/// `PROGRAM: error: WHAT` and a line pointing at `--help`.
pub fn usage_error(program: &str, what: &str) -> String {
    format!("{program}: error: {what}\nRun '{program} --help' for usage.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_flags_are_found_anywhere_before_a_double_dash() {
        assert_eq!(early_flag(["-h"]), Some(Early::Help));
        assert_eq!(early_flag(["--send", "x", "--help"]), Some(Early::Help));
        assert_eq!(early_flag(["--config", "a", "-V", "-h"]), Some(Early::Version));
        assert_eq!(early_flag(["--", "-h"]), None);
        assert_eq!(early_flag(["--config", "a"]), None);
        assert_eq!(early_flag(["--helpful"]), None);
        // Found even after an argument that would not parse.
        assert_eq!(early_flag(["--bogus", "-V"]), Some(Early::Version));
    }

    #[test]
    fn usage_errors_read_alike_in_both_binaries() {
        assert_eq!(
            usage_error("reflow-peer", "unknown option --bogus"),
            "reflow-peer: error: unknown option --bogus\nRun 'reflow-peer --help' for usage."
        );
    }
}
