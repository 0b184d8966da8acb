//! imspector.conf(5), made from the option tables of README.md (`| option |
//! default | meaning |`), each under the heading it stands below, so the page
//! says what the README says.

use clap_mangen::roff::{bold, italic, roman, Inline, Roff};

/// One row of an option table.
struct Row {
    options: String,
    default: String,
    meaning: String,
}

/// The option tables of `readme`, each with the heading above it.
fn tables(readme: &str) -> Vec<(String, Vec<Row>)> {
    let mut tables: Vec<(String, Vec<Row>)> = Vec::new();
    let mut heading = String::new();
    let mut in_table = false;
    for line in readme.lines() {
        if let Some(title) = line.strip_prefix("## ").or(line.strip_prefix("### ")) {
            heading = title.trim().to_string();
        }
        let cells = cells(line);
        if cells.first().is_some_and(|c| c == "option") {
            tables.push((heading.clone(), Vec::new()));
            in_table = true;
        } else if !line.starts_with('|') {
            in_table = false;
        } else if in_table && cells.len() == 3 && !cells[0].starts_with("--") {
            let mut cells = cells.into_iter();
            let mut next = || cells.next().unwrap_or_default();
            let row = Row {
                options: next(),
                default: next(),
                meaning: next(),
            };
            tables
                .last_mut()
                .expect("a header row came first")
                .1
                .push(row);
        }
    }
    tables
}

/// The cells of a table row; `\|` is a `|` inside a cell.
fn cells(line: &str) -> Vec<String> {
    let Some(inner) = line
        .trim()
        .strip_prefix('|')
        .and_then(|l| l.strip_suffix('|'))
    else {
        return Vec::new();
    };
    let mut cells = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cells.last_mut().expect("one cell").push('|');
                chars.next();
            }
            '|' => cells.push(String::new()),
            c => cells.last_mut().expect("one cell").push(c),
        }
    }
    cells.into_iter().map(|c| c.trim().to_string()).collect()
}

/// Markdown inline text as roff: `code` in bold, [text](link) as its text.
fn inline(markdown: &str) -> Vec<Inline> {
    let mut out = Vec::new();
    let mut rest = markdown;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('`') {
            let end = after.find('`').unwrap_or(after.len());
            out.push(bold(&after[..end]));
            rest = after.get(end + 1..).unwrap_or("");
        } else if let Some((text, after)) = link(rest) {
            out.extend(inline(text));
            rest = after;
        } else {
            let end = rest[1..].find(['`', '[']).map_or(rest.len(), |i| i + 1);
            out.push(roman(&rest[..end]));
            rest = &rest[end..];
        }
    }
    out
}

/// `[text](target)rest` -> (text, rest).
fn link(text: &str) -> Option<(&str, &str)> {
    let inner = text.strip_prefix('[')?;
    let close = inner.find("](")?;
    let after = &inner[close + 2..];
    let end = after.find(')')?;
    Some((&inner[..close], &after[end + 1..]))
}

pub fn render(readme: &str) -> String {
    let mut page = Roff::new();
    page.control("TH", ["IMSPECTOR.CONF", "5", "", "IMSpector"])
        .control("SH", ["NAME"])
        .text([roman(
            "imspector.conf - configuration file of imspector and imspector-web",
        )])
        .control("SH", ["DESCRIPTION"])
        .text([
            roman("One "),
            italic("key"),
            roman("="),
            italic("value"),
            roman(
                " per line; a line starting with # is a comment. An unknown key is a warning \
                 naming file and line; a bad value stops the start with file, line and key. \
                 Options marked (new) did not exist in the original IMSpector. ",
            ),
            bold("imspector --check-config"),
            roman(" checks a file. The package installs a commented example as "),
            bold("/etc/imspector/imspector.conf"),
            roman("."),
        ]);
    for (heading, rows) in tables(readme) {
        page.control("SH", [heading.to_uppercase().as_str()]);
        for row in rows {
            page.control("TP", []).text(inline(&row.options));
            let mut text = inline(&row.meaning);
            if !row.default.is_empty() {
                if !text.is_empty() {
                    text.push(roman(". "));
                }
                text.push(roman("Default: "));
                text.extend(inline(&row.default));
                text.push(roman("."));
            }
            page.text(text);
        }
    }
    page.control("SH", ["SEE ALSO"]).text([
        bold("imspector"),
        roman("(8), "),
        bold("imspector-rules"),
        roman("(8), "),
        bold("imspector-web"),
        roman("(8)"),
    ]);
    page.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_of_the_readme_tables_is_on_the_page() {
        let readme = include_str!("../../README.md");
        let page = render(readme);
        let rows: Vec<Row> = tables(readme).into_iter().flat_map(|(_, r)| r).collect();
        assert!(rows.len() > 50, "only {} options found", rows.len());
        for row in &rows {
            let first = row.options.split('`').nth(1).expect("a `name`");
            assert!(page.contains(first), "{first} is not on the page");
        }
        let acl = rows.iter().find(|r| r.options == "`acl_filename`").unwrap();
        assert!(acl.meaning.starts_with("rules `allow|deny <localid|all>"));
    }

    #[test]
    fn markdown_becomes_roff() {
        let mut page = Roff::new();
        page.text(inline("see [docs/tls.md](docs/tls.md) for `ssl`"));
        assert!(page
            .render()
            .ends_with("\nsee docs/tls.md for \\fBssl\\fR\n"));
    }
}
