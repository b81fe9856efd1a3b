//! What `reflow-peer` and `reflow-discovery` share on the command line, so
//! the two read and complain alike: `-h`/`-V` are found before any other
//! argument is looked at, and usage errors have one wording.
//! These are modules of the binaries, not of the library: a program that
//! embeds a peer never compiles them (nor `lexopt`, `signal-hook` and
//! `simple_logger`).

use std::ffi::OsString;
use std::io::Read;
use std::path::Path;

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

/// The usage error for an argument the binary does not take, worded alike
/// in both: `unknown option --NAME`, `unknown option -C`, `unexpected
/// argument "VALUE"`.
pub fn unknown_argument(arg: lexopt::Arg<'_>) -> String {
    match arg {
        lexopt::Arg::Short(c) => format!("unknown option -{c}"),
        lexopt::Arg::Long(name) => format!("unknown option --{name}"),
        lexopt::Arg::Value(value) => format!("unexpected argument {:?}", value.to_string_lossy()),
    }
}

/// Largest secret file read: a token is tens of bytes; anything this big
/// is the wrong file.
// reflow-discovery's alone: each binary compiles this file as its own module.
#[allow(dead_code)]
const MAX_SECRET_BYTES: u64 = 4096;

/// Reads a secret (a token) from `path`: at most 4 KiB of UTF-8, white
/// space around it trimmed (a trailing newline is usual), not empty. The
/// error names the file, never its content. A file that others than its
/// owner may read is accepted with a warning.
#[allow(dead_code)]
pub fn read_secret_file(path: &Path) -> Result<String, String> {
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    if let Ok(meta) = file.metadata() {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            log::warn!("{shown} can be read by users other than its owner; chmod 600 it");
        }
    }
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if bytes.len() as u64 > MAX_SECRET_BYTES {
        return Err(format!(
            "{shown} is larger than {MAX_SECRET_BYTES} bytes: not a token file"
        ));
    }
    let text = String::from_utf8(bytes).map_err(|_| format!("{shown} is not UTF-8 text"))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("{shown} is empty"));
    }
    Ok(token.to_string())
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

    #[test]
    fn secret_files_are_trimmed_and_checked() {
        let dir = std::env::temp_dir().join(format!("reflow-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let write = |name: &str, content: &[u8]| {
            let path = dir.join(name);
            std::fs::write(&path, content).expect("write");
            path
        };
        let good = write("good", b"  s3cret-token\n");
        assert_eq!(read_secret_file(&good), Ok("s3cret-token".to_string()));
        let empty = write("empty", b" \n");
        assert!(read_secret_file(&empty).expect_err("empty").ends_with("is empty"));
        let big = write("big", &[b'a'; 5000]);
        assert!(read_secret_file(&big).expect_err("big").contains("larger than"));
        let err = read_secret_file(&dir.join("missing")).expect_err("missing");
        assert!(err.starts_with("cannot read"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
