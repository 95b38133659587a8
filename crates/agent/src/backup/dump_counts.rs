//! The rows of each table in a database's dump, read from the dump itself: what a drill
//! expects the restored database to hold. Counted from the text, so the counts are exactly the
//! dump's (one transaction's view), whatever the site wrote since. MariaDB's dumps hold rows as
//! `INSERT INTO `t` VALUES (...),(...);` statements (over several lines with `--quick`),
//! PostgreSQL's as `COPY t (...) FROM stdin;` blocks of one row a line, ended by `\.`.

use std::collections::BTreeMap;
use std::io::BufRead;

use alveole_model::DatabaseEngine;

/// Rows per table, by the table's name as the dump writes it (`kept`, `public.kept`).
pub type Counts = BTreeMap<String, u64>;

/// Reads `dump` (a file of the given engine's dump) and counts each table's rows.
pub fn count(engine: DatabaseEngine, dump: impl BufRead) -> std::io::Result<Counts> {
    let mut counts = Counts::new();
    let mut copying: Option<String> = None;
    let mut inserting: Option<Insert> = None;
    for line in dump.split(b'\n') {
        let line = line?;
        match engine {
            DatabaseEngine::Postgresql => {
                if let Some(table) = &copying {
                    if line == b"\\." {
                        copying = None;
                    } else {
                        *counts.entry(table.clone()).or_default() += 1;
                    }
                } else if let Some(table) = copy_table(&line) {
                    counts.entry(table.clone()).or_default();
                    copying = Some(table);
                }
            }
            DatabaseEngine::Mariadb => {
                let rest = match inserting.as_mut() {
                    Some(_) => &line[..],
                    None => match insert_start(&line) {
                        Some((table, rest)) => {
                            counts.entry(table.clone()).or_default();
                            inserting = Some(Insert::new(table));
                            rest
                        }
                        None => continue,
                    },
                };
                if let Some(insert) = inserting.as_mut() {
                    let ended = insert.read(rest);
                    *counts.entry(insert.table.clone()).or_default() += insert.take_rows();
                    if ended {
                        inserting = None;
                    }
                }
            }
        }
    }
    Ok(counts)
}

/// The table of a `COPY <table> (...) FROM stdin;` line.
fn copy_table(line: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(line).ok()?;
    let rest = text.strip_prefix("COPY ")?;
    if !text.ends_with("FROM stdin;") {
        return None;
    }
    let table = rest.split([' ', '(']).next()?;
    Some(table.to_owned())
}

/// The table of an `INSERT INTO `t` VALUES` line and what follows `VALUES` on it (the rows
/// start there, or on the next lines).
fn insert_start(line: &[u8]) -> Option<(String, &[u8])> {
    let rest = line.strip_prefix(b"INSERT INTO `")?;
    let end = rest.iter().position(|&b| b == b'`')?;
    let table = String::from_utf8_lossy(&rest[..end]).into_owned();
    let values = find(rest, b" VALUES")? + b" VALUES".len();
    Some((table, &rest[values..]))
}

/// An `INSERT` statement being read, over as many lines as it takes: its rows are the
/// parenthesised tuples at the top level, outside quoted strings (where `\` escapes); it ends
/// at a `;` at the top level.
struct Insert {
    table: String,
    rows: u64,
    depth: u32,
    quoted: bool,
    escaped: bool,
}

impl Insert {
    fn new(table: String) -> Self {
        Self {
            table,
            rows: 0,
            depth: 0,
            quoted: false,
            escaped: false,
        }
    }

    /// Reads more of the statement: whether it ended.
    fn read(&mut self, bytes: &[u8]) -> bool {
        for &byte in bytes {
            if self.quoted {
                match (self.escaped, byte) {
                    (true, _) => self.escaped = false,
                    (false, b'\\') => self.escaped = true,
                    (false, b'\'') => self.quoted = false,
                    _ => {}
                }
                continue;
            }
            match byte {
                b'\'' => self.quoted = true,
                b'(' => {
                    if self.depth == 0 {
                        self.rows += 1;
                    }
                    self.depth += 1;
                }
                b')' => self.depth = self.depth.saturating_sub(1),
                b';' if self.depth == 0 => return true,
                _ => {}
            }
        }
        false
    }

    fn take_rows(&mut self) -> u64 {
        std::mem::take(&mut self.rows)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// What differs between the dump's counts and the restored database's: `None` when they are
/// the same, else the first table that differs, in words.
pub fn differs(expected: &Counts, found: &Counts) -> Option<String> {
    for (table, rows) in expected {
        let got = found.get(table).copied();
        if got != Some(*rows) {
            return Some(match got {
                Some(got) => format!("{table} holds {got} rows, its backup {rows}"),
                None => format!("{table} is missing (its backup holds {rows} rows)"),
            });
        }
    }
    found
        .keys()
        .find(|table| !expected.contains_key(*table))
        .map(|table| format!("{table} is not in the backup"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mariadb_rows_spread_over_lines_are_counted() {
        let dump = b"LOCK TABLES `kept` WRITE;\nINSERT INTO `kept` VALUES\n(1,'a;b'),\n(2,'c)'),\n(3,'d');\nUNLOCK TABLES;\n";
        let counts = count(DatabaseEngine::Mariadb, &dump[..]).unwrap();
        assert_eq!(counts, Counts::from([("kept".into(), 3)]));
    }

    #[test]
    fn mariadb_rows_are_counted_outside_quotes() {
        let dump = b"-- MariaDB dump\nCREATE TABLE `kept` (n int);\n\
            INSERT INTO `kept` VALUES (1,'a (b)'),(2,'it\\'s (x),(y)'),(3,NULL);\n\
            INSERT INTO `kept` VALUES (4,'\\\\');\nINSERT INTO `other` VALUES (1);\n";
        let counts = count(DatabaseEngine::Mariadb, &dump[..]).unwrap();
        assert_eq!(
            counts,
            Counts::from([("kept".into(), 4), ("other".into(), 1)])
        );
    }

    #[test]
    fn postgresql_rows_are_the_lines_of_each_copy() {
        let dump =
            b"SET x = 1;\nCOPY public.kept (n, words) FROM stdin;\n1\trow (1)\n2\t\\\\.\n\\.\n\
            COPY public.empty (n) FROM stdin;\n\\.\n";
        let counts = count(DatabaseEngine::Postgresql, &dump[..]).unwrap();
        assert_eq!(
            counts,
            Counts::from([("public.kept".into(), 2), ("public.empty".into(), 0)])
        );
    }

    #[test]
    fn a_difference_names_the_table() {
        let expected = Counts::from([("kept".into(), 3)]);
        assert_eq!(differs(&expected, &expected.clone()), None);
        let fewer = Counts::from([("kept".into(), 2)]);
        assert_eq!(
            differs(&expected, &fewer).unwrap(),
            "kept holds 2 rows, its backup 3"
        );
        let more = Counts::from([("kept".into(), 3), ("new".into(), 0)]);
        assert_eq!(
            differs(&expected, &more).unwrap(),
            "new is not in the backup"
        );
    }
}
