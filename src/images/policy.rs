//! Which tag an `image` block selects: a semver range, or a regex with an order. Tags are fed one
//! at a time and only the best so far is kept, so a list of any length is chosen from in constant
//! memory; tags that don't parse are counted, never errors.

use std::cmp::Ordering;

use serde::Serialize;

/// The longest tag the OCI distribution spec allows.
const MAX_TAG: usize = 128;

/// An image block's `policy`, as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TagPolicy {
    /// `{ semver = ">=1.0.0 <2.0.0" }`: the highest version in the range. Pre-releases only
    /// when a comparator names a pre-release of the same version.
    Semver { range: String },
    /// `{ regex = "^main-(?P<ts>[0-9]+)$", order = "numerical" }`: the tags the regex matches,
    /// highest by the named group `ts` (else the whole tag) in `order`.
    Regex { pattern: String, order: TagOrder },
}

/// How regex-selected tags are ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TagOrder {
    /// As whole numbers of any length (`10` after `9`); a value that is no number is ignored.
    Numerical,
    /// Byte by byte (`b` after `a`, `10` before `9`).
    Alphabetical,
}

impl TagOrder {
    pub fn parse(s: &str) -> Option<TagOrder> {
        match s {
            "numerical" => Some(TagOrder::Numerical),
            "alphabetical" => Some(TagOrder::Alphabetical),
            _ => None,
        }
    }
}

impl TagPolicy {
    /// Checks the policy compiles, with the reason when it does not.
    ///
    /// # Errors
    /// The range or the regex does not parse; the reason says why.
    pub fn check(&self) -> Result<(), String> {
        Selector::new(self).map(|_| ())
    }

    /// `semver >=1.0.0 <2.0.0` or `regex ^main-(?P<ts>[0-9]+)$ (numerical)`, for reports.
    pub fn describe(&self) -> String {
        match self {
            TagPolicy::Semver { range } => format!("semver {range}"),
            TagPolicy::Regex { pattern, order } => {
                let order = match order {
                    TagOrder::Numerical => "numerical",
                    TagOrder::Alphabetical => "alphabetical",
                };
                format!("regex {pattern} ({order})")
            }
        }
    }
}

/// Parses a semver range: comparators separated by spaces or commas (`>=1.0.0 <2.0.0`,
/// `>= 1.0.0, < 2.0.0`), alternatives by `||`. A bare version means `^` (cargo's rules).
///
/// # Errors
/// An empty range, a dangling operator, or a comparator `semver` refuses.
pub fn parse_range(text: &str) -> Result<Vec<semver::VersionReq>, String> {
    let mut out = Vec::new();
    for alt in text.split("||") {
        let mut parts: Vec<String> = Vec::new();
        let mut op = String::new();
        for tok in alt
            .split(|c: char| c.is_whitespace() || c == ',')
            .filter(|t| !t.is_empty())
        {
            if tok.chars().all(|c| "<>=~^".contains(c)) {
                op.push_str(tok);
                continue;
            }
            parts.push(format!("{op}{tok}"));
            op.clear();
        }
        if !op.is_empty() {
            return Err(format!("operator \"{op}\" is not followed by a version"));
        }
        if parts.is_empty() {
            return Err(format!("\"{text}\" holds no version"));
        }
        let req = semver::VersionReq::parse(&parts.join(", "))
            .map_err(|e| format!("\"{}\": {e}", parts.join(" ")))?;
        out.push(req);
    }
    Ok(out)
}

/// Whether `tag` is a valid OCI tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_TAG
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

enum Compiled {
    Semver(Vec<semver::VersionReq>),
    Regex(regex::Regex, TagOrder),
}

/// What a tag is ranked by.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Version(semver::Version),
    /// Digits without leading zeros: longer is greater, then byte order.
    Number(String),
    Text(String),
}

impl Key {
    fn cmp(&self, other: &Key) -> Ordering {
        match (self, other) {
            (Key::Version(a), Key::Version(b)) => a.cmp(b),
            (Key::Number(a), Key::Number(b)) => a.len().cmp(&b.len()).then_with(|| a.cmp(b)),
            (Key::Text(a), Key::Text(b)) => a.cmp(b),
            // One selector makes one kind of key.
            _ => Ordering::Equal,
        }
    }
}

/// The counts of one selection, for reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TagCounts {
    /// Tags the registry listed.
    pub listed: u64,
    /// Tags the policy accepts.
    pub matched: u64,
    /// Tags that don't parse (no semver, no valid tag, a `ts` that is no number): ignored.
    pub unparseable: u64,
}

/// Picks the best tag of a stream of tags, keeping only the best so far.
pub struct Selector {
    compiled: Compiled,
    best: Option<(Key, String)>,
    pub counts: TagCounts,
}

impl Selector {
    /// # Errors
    /// The policy's range or regex does not parse.
    pub fn new(policy: &TagPolicy) -> Result<Selector, String> {
        let compiled = match policy {
            TagPolicy::Semver { range } => Compiled::Semver(parse_range(range)?),
            TagPolicy::Regex { pattern, order } => {
                let re = regex::RegexBuilder::new(pattern)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| format!("invalid regex: {e}"))?;
                Compiled::Regex(re, *order)
            }
        };
        Ok(Selector {
            compiled,
            best: None,
            counts: TagCounts::default(),
        })
    }

    /// Considers one tag.
    pub fn offer(&mut self, tag: &str) {
        self.counts.listed += 1;
        if !valid_tag(tag) {
            self.counts.unparseable += 1;
            return;
        }
        let key = match &self.compiled {
            Compiled::Semver(reqs) => {
                let text = tag.strip_prefix(['v', 'V']).unwrap_or(tag);
                let Ok(v) = semver::Version::parse(text) else {
                    self.counts.unparseable += 1;
                    return;
                };
                if !reqs.iter().any(|r| r.matches(&v)) {
                    return;
                }
                Key::Version(v)
            }
            Compiled::Regex(re, order) => {
                let Some(caps) = re.captures(tag) else {
                    return;
                };
                let value = caps.name("ts").map_or(tag, |m| m.as_str());
                match order {
                    TagOrder::Alphabetical => Key::Text(value.to_string()),
                    TagOrder::Numerical => {
                        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                            self.counts.unparseable += 1;
                            return;
                        }
                        let digits = value.trim_start_matches('0');
                        Key::Number(if digits.is_empty() { "0" } else { digits }.to_string())
                    }
                }
            }
        };
        self.counts.matched += 1;
        let better = match &self.best {
            None => true,
            // Equal ranks (`1.2.0` and `v1.2.0`): the greater tag, so the choice is the same
            // whatever order the registry lists them in.
            Some((k, t)) => key.cmp(k).then_with(|| tag.cmp(t.as_str())) == Ordering::Greater,
        };
        if better {
            self.best = Some((key, tag.to_string()));
        }
    }

    /// The best tag offered, if any matched.
    pub fn best(&self) -> Option<&str> {
        self.best.as_ref().map(|(_, t)| t.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick(policy: &TagPolicy, tags: &[&str]) -> (Option<String>, TagCounts) {
        let mut s = Selector::new(policy).unwrap();
        for t in tags {
            s.offer(t);
        }
        (s.best().map(str::to_string), s.counts)
    }

    fn semver(range: &str) -> TagPolicy {
        TagPolicy::Semver {
            range: range.into(),
        }
    }

    #[test]
    fn semver_picks_the_highest_in_range_and_skips_pre_releases_unless_named() {
        let tags = [
            "1.0.0",
            "1.2.0",
            "v1.10.1",
            "2.0.0",
            "1.11.0-rc.1",
            "latest",
            "1.2",
            "main-7",
        ];
        let (best, counts) = pick(&semver(">=1.0.0 <2.0.0"), &tags);
        assert_eq!(best.as_deref(), Some("v1.10.1"));
        assert_eq!(counts.listed, 8);
        assert_eq!(counts.matched, 3);
        assert_eq!(counts.unparseable, 3, "latest, 1.2, main-7");
        let (best, _) = pick(&semver(">=1.11.0-rc.0, <2.0.0"), &tags);
        assert_eq!(best.as_deref(), Some("1.11.0-rc.1"));
        let (best, _) = pick(&semver("< 1.0.0 || >= 2.0.0"), &tags);
        assert_eq!(best.as_deref(), Some("2.0.0"));
        let (best, _) = pick(&semver(">=3"), &tags);
        assert_eq!(best, None);
    }

    #[test]
    fn equal_versions_choose_the_same_tag_in_any_order() {
        let a = pick(&semver(">=1"), &["1.2.0", "v1.2.0"]).0;
        let b = pick(&semver(">=1"), &["v1.2.0", "1.2.0"]).0;
        assert_eq!(a, b);
    }

    #[test]
    fn bad_ranges_and_regexes_say_why() {
        assert!(parse_range(">=")
            .unwrap_err()
            .contains("not followed by a version"));
        assert!(parse_range("").unwrap_err().contains("holds no version"));
        assert!(parse_range(">=1.0.0 <two").is_err());
        let e = TagPolicy::Regex {
            pattern: "(".into(),
            order: TagOrder::Numerical,
        }
        .check()
        .unwrap_err();
        assert!(e.contains("invalid regex"), "{e}");
    }

    #[test]
    fn regex_orders_numerically_or_alphabetically_on_ts() {
        let policy = |order| TagPolicy::Regex {
            pattern: "^main-(?P<ts>[0-9a-z]+)$".into(),
            order,
        };
        let tags = ["main-9", "main-10", "main-0011", "dev-99", "main-x1"];
        let (best, counts) = pick(&policy(TagOrder::Numerical), &tags);
        assert_eq!(best.as_deref(), Some("main-0011"));
        assert_eq!(counts.matched, 3);
        assert_eq!(counts.unparseable, 1, "main-x1 has no number");
        let (best, _) = pick(&policy(TagOrder::Alphabetical), &tags);
        assert_eq!(best.as_deref(), Some("main-x1"));
        // Without a `ts` group the whole tag is ranked.
        let whole = TagPolicy::Regex {
            pattern: "^[0-9]+$".into(),
            order: TagOrder::Numerical,
        };
        assert_eq!(pick(&whole, &["7", "12", "x"]).0.as_deref(), Some("12"));
    }

    #[test]
    fn a_hundred_thousand_tags_are_chosen_from_keeping_one() {
        let mut s = Selector::new(&semver(">=1.0.0, <2.0.0")).unwrap();
        for i in 0..100_000u32 {
            s.offer(&format!("1.{}.{}", i / 100, i % 100));
            s.offer(&format!("build-{i}"));
        }
        assert_eq!(s.best(), Some("1.999.99"));
        assert_eq!(s.counts.listed, 200_000);
        assert_eq!(s.counts.unparseable, 100_000);
    }

    #[test]
    fn invalid_tags_are_ignored() {
        assert!(valid_tag("1.0.0") && valid_tag("_x") && !valid_tag("-x"));
        assert!(!valid_tag(&"a".repeat(129)) && !valid_tag("a b") && !valid_tag(""));
    }
}
