//! Reading Prometheus's text exposition format (the proxies' `/metrics`): the samples
//! of the series we need, with their labels. Comments, `# TYPE`/`# HELP` lines and
//! timestamps are skipped; a malformed line is skipped, not fatal (the format is the
//! proxies' own, and one odd line must not stop a release).
//! Format: https://prometheus.io/docs/instrumenting/exposition_formats/#text-based-format

/// One sample: metric name, labels, value.
#[derive(Debug, PartialEq)]
pub struct Sample<'a> {
    /// The series' metric name.
    pub name: &'a str,
    /// Its labels, unescaped.
    pub labels: Vec<(&'a str, String)>,
    /// Its value.
    pub value: f64,
}

impl Sample<'_> {
    /// The value of label `key`.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// The samples of `text` whose metric name is one of `names`.
pub fn samples<'a>(text: &'a str, names: &[&str]) -> Vec<Sample<'a>> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| names.iter().any(|n| l.starts_with(n)))
        .filter_map(line)
        .filter(|s| names.contains(&s.name))
        .collect()
}

fn line(l: &str) -> Option<Sample<'_>> {
    let name_end = l.find(['{', ' '])?;
    let name = &l[..name_end];
    let (labels, rest) = if l[name_end..].starts_with('{') {
        labels(&l[name_end + 1..])?
    } else {
        (Vec::new(), &l[name_end..])
    };
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// `key="value",...}` → the labels and what follows the `}`.
fn labels(mut s: &str) -> Option<(Vec<(&str, String)>, &str)> {
    let mut out = Vec::new();
    loop {
        s = s.trim_start_matches([',', ' ']);
        if let Some(rest) = s.strip_prefix('}') {
            return Some((out, rest));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim();
        let body = s[eq + 1..].trim_start().strip_prefix('"')?;
        let mut chars = body.char_indices();
        let mut value = String::new();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        };
        out.push((key, value));
        s = &body[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_labels_values_and_skips_the_rest() {
        let text = "# HELP istio_requests_total x\n# TYPE istio_requests_total counter\nistio_requests_total{reporter=\"source\",path=\"a\\\"b,c}\"} 12 1700000000\nistio_request_duration_milliseconds_bucket{le=\"+Inf\"} 3\nother_total 5\nistio_requests_total{broken 1\nistio_requests_total_extra 9\n";
        let s = samples(
            text,
            &[
                "istio_requests_total",
                "istio_request_duration_milliseconds_bucket",
            ],
        );
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(s[0].label("reporter"), Some("source"));
        assert_eq!(s[0].label("path"), Some("a\"b,c}"));
        assert_eq!(s[0].value, 12.0);
        assert_eq!(s[1].label("le"), Some("+Inf"));
    }
}
