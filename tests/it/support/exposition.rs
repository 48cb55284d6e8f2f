//! A strict reader of the Prometheus text exposition format, so tests check metric values
//! (and that every line is well formed) instead of grepping substrings.

use std::collections::BTreeMap;

/// One sample line: `name{label="value",...} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample's name (a histogram's lines end in `_bucket`, `_sum`, `_count`).
    pub name: String,
    /// Its labels, unescaped.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// A parsed scrape.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    /// Every sample, in order.
    pub samples: Vec<Sample>,
    /// `# TYPE` of every family.
    pub types: BTreeMap<String, String>,
}

impl Exposition {
    /// Every sample named `name`.
    pub fn series(&self, name: &str) -> Vec<&Sample> {
        self.samples.iter().filter(|s| s.name == name).collect()
    }

    /// The value of the sample named `name` whose labels are exactly `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let wanted: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == wanted)
            .map(|s| s.value)
    }

    /// Like [`Exposition::value`], failing the test when the sample is missing.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.value(name, labels)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?} in the scrape"))
    }
}

fn is_name(name: &str, extra: &[char]) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || extra.contains(&c))
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || extra.contains(&c))
}

/// Parses a whole scrape; panics naming the first malformed line. Every sample must belong
/// to a family announced by a `# TYPE` line before it.
pub fn parse(text: &str) -> Exposition {
    let mut exposition = Exposition::default();
    for (number, line) in text.lines().enumerate() {
        let fail = |why: &str| -> ! { panic!("line {}: {why}: {line:?}", number + 1) };
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix("# ") {
            let mut parts = comment.splitn(3, ' ');
            match (parts.next(), parts.next(), parts.next()) {
                (Some("TYPE"), Some(name), Some(kind)) => {
                    if !is_name(name, &[':']) {
                        fail("bad metric name");
                    }
                    if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                        fail("unknown type");
                    }
                    if exposition.types.insert(name.into(), kind.into()).is_some() {
                        fail("family announced twice");
                    }
                }
                (Some("HELP"), Some(_), _) => {}
                _ => fail("unknown comment"),
            }
            continue;
        }
        let sample = parse_sample(line).unwrap_or_else(|why| fail(&why));
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                sample.name.strip_suffix(suffix).filter(|base| {
                    exposition
                        .types
                        .get(*base)
                        .is_some_and(|t| t == "histogram")
                })
            })
            .unwrap_or(&sample.name);
        if !exposition.types.contains_key(family) {
            fail("sample without a # TYPE line");
        }
        exposition.samples.push(sample);
    }
    exposition
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(['{', ' '])
        .ok_or_else(|| "no value".to_string())?;
    let name = &line[..name_end];
    if !is_name(name, &[':']) {
        return Err("bad metric name".into());
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        loop {
            match chars.peek() {
                Some((_, '}')) => {
                    chars.next();
                    break;
                }
                None => return Err("unclosed labels".into()),
                _ => {}
            }
            let start = chars.peek().map(|(i, _)| *i).unwrap_or(after.len());
            let mut end = start;
            for (i, c) in chars.by_ref() {
                if c == '=' {
                    end = i;
                    break;
                }
            }
            let label = &after[start..end];
            if !is_name(label, &[]) {
                return Err(format!("bad label name {label:?}"));
            }
            if !matches!(chars.next(), Some((_, '"'))) {
                return Err("label value must be quoted".into());
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        Some((_, 'n')) => value.push('\n'),
                        other => return Err(format!("bad escape {other:?}")),
                    },
                    Some((_, '"')) => break,
                    Some((_, '\n')) => return Err("raw newline in a label value".into()),
                    Some((_, c)) => value.push(c),
                    None => return Err("unclosed label value".into()),
                }
            }
            if labels.insert(label.to_string(), value).is_some() {
                return Err(format!("label {label} twice"));
            }
            match chars.next() {
                Some((_, ',')) => {}
                Some((_, '}')) => break,
                other => return Err(format!("expected , or }} after a label, got {other:?}")),
            }
        }
        rest = match chars.peek() {
            Some((i, _)) => &after[*i..],
            None => "",
        };
    }
    let mut fields = rest
        .strip_prefix(' ')
        .ok_or_else(|| "no space before the value".to_string())?
        .split(' ');
    let value = match fields.next() {
        Some("+Inf") => f64::INFINITY,
        Some("-Inf") => f64::NEG_INFINITY,
        Some("NaN") => f64::NAN,
        Some(v) => v.parse().map_err(|e| format!("bad value {v:?}: {e}"))?,
        None => return Err("no value".into()),
    };
    if let Some(timestamp) = fields.next() {
        timestamp
            .parse::<i64>()
            .map_err(|e| format!("bad timestamp: {e}"))?;
    }
    if fields.next().is_some() {
        return Err("trailing fields".into());
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

#[test]
fn the_reader_accepts_escapes_and_refuses_malformed_lines() {
    let text = "# HELP m help\n# TYPE m gauge\nm{key=\"a\\\"b\\\\c\\nd\",x=\"\"} 2\n";
    let parsed = parse(text);
    assert_eq!(parsed.get("m", &[("key", "a\"b\\c\nd"), ("x", "")]), 2.0);
    for bad in [
        "# TYPE m gauge\nm{key=\"a} 1\n",
        "# TYPE m gauge\nm{key=a} 1\n",
        "# TYPE m gauge\nm 1 2 3\n",
        "n 1\n",
        "# TYPE m gauge\nm{key=\"a\\q\"} 1\n",
    ] {
        let outcome = std::panic::catch_unwind(|| parse(bad));
        assert!(outcome.is_err(), "accepted {bad:?}");
    }
}
