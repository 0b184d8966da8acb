//! A strict reader of the Prometheus/OpenMetrics text format, for checking
//! `/metrics`: every sample must belong to a family declared by `# TYPE`,
//! label values must be well quoted, values must be numbers, and the
//! exposition must end with `# EOF`.

use std::collections::{BTreeMap, HashMap};

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Default)]
pub struct Exposition {
    /// Family name to its type.
    pub types: HashMap<String, String>,
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// The value of the sample `name` with exactly these labels.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }
}

/// `GET /metrics` from the daemon's `metrics_listen` at `addr` in `ns`, parsed.
pub fn scrape(ns: &crate::Netns, addr: std::net::SocketAddr) -> anyhow::Result<Exposition> {
    use std::io::{Read, Write};
    let response = ns.run(move || -> std::io::Result<String> {
        let mut conn = std::net::TcpStream::connect(addr)?;
        conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: imspector\r\nConnection: close\r\n\r\n")?;
        let mut response = String::new();
        conn.read_to_string(&mut response)?;
        Ok(response)
    })??;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no end of head in {response:?}"))?;
    anyhow::ensure!(head.starts_with("HTTP/1.1 200 "), "{head}");
    parse(body)
}

pub fn parse(text: &str) -> anyhow::Result<Exposition> {
    let mut out = Exposition::default();
    let mut ended = false;
    for (i, line) in text.lines().enumerate() {
        let at = i + 1;
        anyhow::ensure!(!ended, "line {at}: text after # EOF");
        if line == "# EOF" {
            ended = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("TYPE"), Some(name), Some(kind)) => {
                    let known = [
                        "counter",
                        "gauge",
                        "histogram",
                        "summary",
                        "info",
                        "stateset",
                        "unknown",
                    ];
                    anyhow::ensure!(known.contains(&kind), "line {at}: type {kind:?}");
                    out.types.insert(name.to_string(), kind.to_string());
                }
                (Some("HELP" | "UNIT"), Some(_), _) => {}
                _ => anyhow::bail!("line {at}: bad comment {line:?}"),
            }
            continue;
        }
        anyhow::ensure!(!line.is_empty(), "line {at}: empty line");
        let sample = sample(line).map_err(|e| anyhow::anyhow!("line {at}: {e}: {line:?}"))?;
        let family = family_of(&sample.name, &out.types)
            .ok_or_else(|| anyhow::anyhow!("line {at}: {} has no # TYPE", sample.name))?;
        if out.types[family] == "counter" {
            anyhow::ensure!(
                sample.name.ends_with("_total") || sample.name.ends_with("_created"),
                "line {at}: counter sample {} without _total",
                sample.name
            );
        }
        out.samples.push(sample);
    }
    anyhow::ensure!(ended, "no # EOF at the end");
    Ok(out)
}

fn family_of<'a>(name: &str, types: &'a HashMap<String, String>) -> Option<&'a String> {
    let suffixes = ["", "_total", "_created", "_bucket", "_count", "_sum"];
    suffixes.iter().find_map(|s| {
        let base = name.strip_suffix(s)?;
        types.get_key_value(base).map(|(k, _)| k)
    })
}

fn sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    let valid_name = !name.is_empty()
        && name.chars().enumerate().all(|(i, c)| {
            c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
        });
    if !valid_name {
        return Err(format!("bad metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        loop {
            let start = chars.peek().map(|(i, _)| *i).ok_or("unclosed labels")?;
            if body[start..].starts_with('}') {
                rest = &body[start + 1..];
                break;
            }
            let eq = body[start..].find('=').ok_or("label without =")? + start;
            let key = body[start..eq].to_string();
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("bad label name {key:?}"));
            }
            while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                chars.next();
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err("label value not quoted".into());
            }
            let mut value = String::new();
            loop {
                match chars.next().ok_or("unterminated label value")?.1 {
                    '"' => break,
                    '\\' => match chars.next().ok_or("dangling escape")?.1 {
                        'n' => value.push('\n'),
                        '\\' => value.push('\\'),
                        '"' => value.push('"'),
                        c => return Err(format!("bad escape \\{c}")),
                    },
                    '\n' => return Err("newline in a label value".into()),
                    c => value.push(c),
                }
            }
            if labels.insert(key.clone(), value).is_some() {
                return Err(format!("label {key} twice"));
            }
            match chars.peek().map(|(_, c)| *c) {
                Some(',') => {
                    chars.next();
                }
                Some('}') => {}
                _ => return Err("expected , or } after a label".into()),
            }
        }
    }
    let value = rest
        .strip_prefix(' ')
        .ok_or("no space before the value")?
        .split(' ')
        .next()
        .ok_or("no value")?;
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().map_err(|_| format!("bad value {v:?}"))?,
    };
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_samples_and_refuses_malformed_text() {
        let good = "# HELP a_b Things.\n# TYPE a_b counter\na_b_total{x=\"1\",y=\"q\\\"z\"} 3\n# TYPE g gauge\ng 0\n# EOF\n";
        let e = parse(good).unwrap();
        assert_eq!(
            e.value("a_b_total", &[("x", "1"), ("y", "q\"z")]),
            Some(3.0)
        );
        assert_eq!(e.value("g", &[]), Some(0.0));
        for bad in [
            "a 1\n# EOF\n",
            "# TYPE a counter\na 1\n# EOF\n",
            "# TYPE a gauge\na{x=1} 1\n# EOF\n",
            "# TYPE a gauge\na{x=\"1\" 1\n# EOF\n",
            "# TYPE a gauge\na one\n# EOF\n",
            "# TYPE a gauge\na 1\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
