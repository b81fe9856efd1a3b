//! `--send-file FILE`: one send spec a line, read and checked whole before
//! anything is sent, so a bad line stops the run before its first message.

use std::io::Read;
use std::path::Path;

use crate::peer_cli::{SendSpec, UsageError};
use reflow_distributed::names::escaped;

/// Largest send file read (standard input included): 64 MiB, a few hundred
/// thousand lines of ordinary payloads. The whole file is held in memory so
/// that every line is checked before the first send.
pub const MAX_SEND_FILE_BYTES: u64 = 64 << 20;

/// Reads the specs of `path` (`-`: standard input).
///
/// # Errors
/// A usage error naming the file: unreadable, too large, or `FILE:LINE` of
/// the first bad line.
pub fn read(path: &Path) -> Result<Vec<SendSpec>, UsageError> {
    let stdin = path.as_os_str() == "-";
    let name = if stdin {
        "<stdin>".to_string()
    } else {
        path.display().to_string()
    };
    let source: Box<dyn Read> = if stdin {
        Box::new(std::io::stdin().lock())
    } else {
        let file = std::fs::File::open(path)
            .map_err(|e| UsageError::new(format!("--send-file {name}: cannot read the file: {e}")))?;
        Box::new(file)
    };
    let mut bytes = Vec::new();
    source
        .take(MAX_SEND_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| UsageError::new(format!("--send-file {name}: cannot read the file: {e}")))?;
    if bytes.len() as u64 > MAX_SEND_FILE_BYTES {
        return Err(UsageError::new(format!(
            "--send-file {name}: larger than {} MiB; split it over several runs",
            MAX_SEND_FILE_BYTES >> 20
        )));
    }
    parse(&name, &bytes)
}

/// The specs in `bytes`, the contents of the file `name`: one a line (`\n`
/// or `\r\n`), blank lines and lines whose first non-blank character is `#`
/// skipped. The payload is the rest of the line, kept as written.
///
/// # Errors
/// `NAME:LINE: ...` for the first line that is not UTF-8 or not a spec.
pub fn parse(name: &str, bytes: &[u8]) -> Result<Vec<SendSpec>, UsageError> {
    let mut specs = Vec::new();
    for (index, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let number = index + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Ok(line) = std::str::from_utf8(line) else {
            return Err(UsageError::new(format!("{name}:{number}: not valid UTF-8")));
        };
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let spec = line.parse::<SendSpec>().map_err(|err| {
            UsageError::new(format!(
                "{name}:{number}: invalid send spec \"{}\": {err}",
                escaped(line).max_chars(60)
            ))
        })?;
        specs.push(spec);
    }
    Ok(specs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payloads(text: &str) -> Vec<String> {
        parse("lines.txt", text.as_bytes())
            .expect("valid")
            .into_iter()
            .map(|s| s.payload)
            .collect()
    }

    fn error(bytes: &[u8]) -> String {
        parse("lines.txt", bytes).expect_err("invalid").to_string()
    }

    #[test]
    fn lines_in_order_with_blanks_and_comments_skipped() {
        let text = "# numbered\nalpha:recorder:in:1\n\n   \nalpha:recorder:in:2\r\n  # indented comment\nalpha:recorder:in:#3 \n";
        assert_eq!(payloads(text), ["1", "2", "#3 "]);
        assert_eq!(payloads(""), Vec::<String>::new());
        assert_eq!(payloads("alpha:recorder:in:a:b"), ["a:b"]);
    }

    #[test]
    fn a_bad_line_is_named_by_file_and_line() {
        assert_eq!(
            error(b"alpha:recorder:in:1\n\nalpha::in:x\n"),
            "lines.txt:3: invalid send spec \"alpha::in:x\": the actor is empty (expected network:actor:port:payload)"
        );
        assert!(
            error(b"alpha:recorder:in:1\nalpha:recorder\n").starts_with("lines.txt:2: invalid send spec")
        );
        assert_eq!(error(b"alpha:recorder:in:\xff\n"), "lines.txt:1: not valid UTF-8");
    }

    #[test]
    fn hostile_lines_are_escaped_in_the_error() {
        let err = error("alp\u{202e}ha:r:in:x\n".as_bytes());
        assert!(
            err.starts_with("lines.txt:1: invalid send spec \"alp\\u{202e}ha:r:in:x\""),
            "{err}"
        );
        let err = error(b"a b\x1b[31m:r:in:x\n");
        assert!(!err.contains('\x1b'), "{err:?}");
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = read(Path::new("/nonexistent/reflow-send-file")).expect_err("missing");
        assert!(
            err.to_string()
                .starts_with("--send-file /nonexistent/reflow-send-file: cannot read the file: "),
            "{err}"
        );
    }
}
