//! Rendering: tables as kubectl lays them out (upper-case headers, columns padded to the widest
//! cell, three spaces apart), JSON and YAML, and color only where a person is looking.

use std::io::IsTerminal as _;

use serde_json::Value;

use crate::cli::Output;
use crate::error::{Error, Result};

/// A table being built: headers, then rows of cells.
pub struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: Vec<&'static str>) -> Table {
        Table {
            headers,
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as text; cells in a `STATUS` column are colored when `color` is set.
    pub fn render(&self, color: bool) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(width) = widths.get_mut(i) {
                    *width = (*width).max(cell.chars().count());
                }
            }
        }
        let status_column = self.headers.iter().position(|h| *h == "STATUS");
        let mut out = String::new();
        let header_cells: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        for (index, row) in std::iter::once(&header_cells).chain(&self.rows).enumerate() {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                let last = i + 1 == row.len();
                let width = widths.get(i).copied().unwrap_or(0);
                let padding = if last {
                    0
                } else {
                    width.saturating_sub(cell.chars().count()) + 3
                };
                if color && index > 0 && Some(i) == status_column {
                    line.push_str(&paint_status(cell));
                } else {
                    line.push_str(cell);
                }
                line.push_str(&" ".repeat(padding));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// Colors a status word: green when done, red when failed, yellow while in progress.
pub fn paint_status(word: &str) -> String {
    let code = match word {
        "Ready" => "32",
        "Failed" => "31",
        _ if word.starts_with("Error") => "31",
        _ => "33",
    };
    format!("\x1b[{code}m{word}\x1b[0m")
}

/// Whether standard output is a terminal that wants color (not when `NO_COLOR` is set).
pub fn stdout_color() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Whether progress may be drawn as a live line on standard error.
pub fn stderr_live() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// JSON or YAML of one value.
pub fn structured(value: &Value, output: Output) -> Result<String> {
    match output {
        Output::Yaml => {
            serde_yaml::to_string(value).map_err(|e| Error::Local(format!("writing YAML: {e}")))
        }
        _ => serde_json::to_string_pretty(value)
            .map(|mut s| {
                s.push('\n');
                s
            })
            .map_err(|e| Error::Local(format!("writing JSON: {e}"))),
    }
}

/// Objects as `-o json|yaml` prints them: one object as itself, several as a `List`.
pub fn objects(mut items: Vec<Value>, single: bool, output: Output) -> Result<String> {
    if single && items.len() == 1 {
        return structured(&items.remove(0), output);
    }
    structured(
        &serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}),
        output,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_columns_to_the_widest_cell() {
        let mut table = Table::new(vec!["NAME", "STATUS", "URL"]);
        table.row(vec!["a".into(), "Ready".into(), "http://x".into()]);
        table.row(vec!["longer-name".into(), "".into(), "".into()]);
        assert_eq!(
            table.render(false),
            "NAME          STATUS   URL\na             Ready    http://x\nlonger-name\n"
        );
        assert!(table.render(true).contains("\x1b[32mReady\x1b[0m"));
    }
}
