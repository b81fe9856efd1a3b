//! `docs/configuration.md` against the code: every key of the format has a
//! row in the document's "Keys" tables, every row is a key the reader
//! knows, and every default written there reads back as the code's default.

use std::collections::BTreeMap;

use super::document::TABLES;
use super::{ConfigErrorKind, PeerConfig};

/// Defaults that are a rule rather than a value; any other default must be
/// a TOML value in backticks.
const DESCRIPTIVE: &[&str] = &[
    "required",
    "none",
    "the machine's parallelism",
    "top-level `legacy_auth`",
];

/// One row of a "Keys" table.
struct Row {
    line: usize,
    default: String,
}

/// Where a section's keys are written in a file: top level, `[name]` or `[[name]]`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Form {
    Top,
    Table,
    Array,
}

/// The rows of the "Keys" part of the document, by table (`""` for the top
/// level) and key, with each table's form.
fn documented(doc: &str) -> BTreeMap<String, (Form, BTreeMap<String, Row>)> {
    let mut tables: BTreeMap<String, (Form, BTreeMap<String, Row>)> = BTreeMap::new();
    let mut in_keys = false;
    let mut section = (String::new(), Form::Top);
    for (index, line) in doc.lines().enumerate() {
        if let Some(heading) = line.strip_prefix("## ") {
            in_keys = heading == "Keys";
            continue;
        }
        if !in_keys {
            continue;
        }
        if let Some(heading) = line.strip_prefix("### ") {
            section = heading_section(heading);
            continue;
        }
        let Some(row) = line.strip_prefix("| `") else {
            continue;
        };
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert!(
            cells.len() >= 4,
            "line {}: a key row has 4 columns: {line}",
            index + 1
        );
        let key = cells[0].trim_end_matches('`').to_string();
        let entry = tables
            .entry(section.0.clone())
            .or_insert_with(|| (section.1, BTreeMap::new()));
        let row = Row {
            line: index + 1,
            default: cells[2].to_string(),
        };
        assert!(
            entry.1.insert(key.clone(), row).is_none(),
            "line {}: `{key}` is documented twice",
            index + 1
        );
    }
    tables
}

/// `Identity` → top level; ``` `[reconnect]` ``` → table `reconnect`;
/// ``` `[[connect]]`: links to hold ``` → array `connect`.
fn heading_section(heading: &str) -> (String, Form) {
    let name = |open: &str, close: &str| {
        let start = heading.find(open)? + open.len();
        let end = start + heading[start..].find(close)?;
        Some(heading[start..end].to_string())
    };
    if let Some(array) = name("`[[", "]]`") {
        (array, Form::Array)
    } else if let Some(table) = name("`[", "]`") {
        (table, Form::Table)
    } else {
        (String::new(), Form::Top)
    }
}

/// The first value in backticks of a default cell, with `<network_id>`
/// standing for the test's network, as TOML.
fn literal(default: &str) -> Option<String> {
    let start = default.find('`')? + 1;
    let end = start + default[start..].find('`')?;
    let value = default[start..end].replace("<network_id>", "alpha");
    let is_toml = |v: &str| toml::from_str::<toml::Table>(&format!("k = {v}")).is_ok();
    if is_toml(&value) {
        Some(value)
    } else {
        Some(format!("{value:?}")).filter(|quoted| is_toml(quoted))
    }
}

fn read(text: &str) -> Result<PeerConfig, super::ConfigError> {
    PeerConfig::from_str_with_env(text, "documented.toml", |_| None)
}

fn doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/configuration.md");
    std::fs::read_to_string(path).expect("docs/configuration.md")
}

#[test]
fn every_key_has_a_row_and_every_row_is_a_key() {
    let tables = documented(&doc());
    for (table, keys) in TABLES {
        let rows = tables.get(*table).map(|(_, rows)| rows);
        for key in *keys {
            let is_table = table.is_empty() && TABLES.iter().any(|(name, _)| name == key);
            if is_table {
                assert!(
                    tables.contains_key(*key),
                    "docs/configuration.md has no \"### `[{key}]`\" section under \"## Keys\""
                );
                continue;
            }
            assert!(
                rows.is_some_and(|rows| rows.contains_key(*key)),
                "docs/configuration.md has no row for `{key}` in {}",
                if table.is_empty() {
                    "the top-level tables".to_string()
                } else {
                    format!("[{table}]")
                }
            );
        }
    }
    for (table, (_, rows)) in &tables {
        let known = TABLES
            .iter()
            .find(|(name, _)| name == table)
            .map(|(_, keys)| *keys)
            .unwrap_or_else(|| {
                panic!("docs/configuration.md documents a table `{table}` the reader does not know")
            });
        for (key, row) in rows {
            assert!(
                known.contains(&key.as_str()),
                "docs/configuration.md:{}: `{key}` is not a key of the format",
                row.line
            );
        }
    }
}

#[test]
fn every_documented_default_is_the_codes() {
    let defaults = PeerConfig::new("alpha");
    for (table, (form, rows)) in documented(&doc()) {
        for (key, row) in rows {
            let at = format!(
                "docs/configuration.md:{} (`{key}`, default {})",
                row.line, row.default
            );
            if DESCRIPTIVE.contains(&row.default.as_str()) {
                continue;
            }
            assert_ne!(
                form,
                Form::Array,
                "{at}: a default in a [[{table}]] row must be one of {DESCRIPTIVE:?}"
            );
            let value = literal(&row.default).unwrap_or_else(|| {
                panic!("{at}: a default is a TOML value in backticks or one of {DESCRIPTIVE:?}")
            });
            let header = if form == Form::Table {
                format!("[{table}]\n")
            } else {
                String::new()
            };
            let text = format!("network_id = \"alpha\"\n{header}{key} = {value}\n");
            match read(&text) {
                Ok(config) => assert_eq!(config, defaults, "{at}: the code's default differs"),
                Err(err) => panic!("{at}: the documented default is not accepted: {err}"),
            }
        }
    }
}

#[test]
fn the_descriptive_defaults_hold() {
    // "required": a file without the key is refused for that key.
    let err = read("").expect_err("network_id is required");
    assert!(matches!(err.kind(), ConfigErrorKind::MissingKey { key } if key == "network_id"));
    // "the machine's parallelism".
    let parallelism = std::thread::available_parallelism().map_or(2, |n| n.get());
    assert_eq!(PeerConfig::new("alpha").distributed.network.workers, parallelism);
    // "none" for the top-level keys that have one.
    let d = PeerConfig::new("alpha").distributed;
    assert_eq!((d.advertise_address, d.auth_token), (None, None));
}

#[test]
fn the_rows_are_read_as_written() {
    let doc = "## Keys\n\n### Bridge\n\n| key | type | default | meaning |\n|---|---|---|---|\n\
               | `bind_port` | integer | `0` | Port. |\n\n### `[[connect]]`: links\n\n\
               | `endpoint` | string | required | Where. |\n\n## Environment\n\n| `X` | y |\n";
    let tables = documented(doc);
    assert_eq!(tables[""].1["bind_port"].default, "`0`");
    assert_eq!(tables["connect"].0, Form::Array);
    assert_eq!(tables.len(), 2, "rows outside \"## Keys\" are not keys");
    assert_eq!(literal("`1048576` (1 MiB)").as_deref(), Some("1048576"));
    assert_eq!(literal("`\"127.0.0.1\"`").as_deref(), Some("\"127.0.0.1\""));
    assert_eq!(literal("`<network_id>-1`").as_deref(), Some("\"alpha-1\""));
}
