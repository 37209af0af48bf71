//! YAML as kubectl reads it. kubectl (and the API machinery) turn YAML into JSON with
//! sigs.k8s.io/yaml, that is with go-yaml v2's YAML 1.1 rules: `yes`/`no`/`on`/`off`/`y`/`n` in
//! the case forms go-yaml v2 lists are booleans, `0755` is octal, `0x1F` hex, `1_000` a thousand,
//! `1e3` a number, `~` null, and `<<` merges maps. A manifest must mean to strata exactly what it
//! means to kubectl, so this module reimplements those rules (go-yaml v2's `resolve`, its merge
//! order, and sigs.k8s.io/yaml's key conversion) on top of the YAML event parser, and bounds the
//! work against alias bombs and deep nesting.

mod scalar;

use scalar::{go_format_float32_g, resolve_scalar, scalar_to_json};
pub use scalar::{resolve, Scalar};

use std::rc::Rc;

use serde_json::{Map, Value};
use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle, Tag};

use super::limits::ManifestLimits;

/// Why a document could not be read, and where (line within the document text, one-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub line: Option<usize>,
    pub message: String,
}

impl YamlError {
    fn at(line: usize, message: impl Into<String>) -> Self {
        Self {
            line: Some(line),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for YamlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(l) => write!(f, "line {l}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// A parsed node; aliases share their anchor's node.
#[derive(Debug)]
enum Node {
    Scalar {
        value: String,
        /// Plain (unquoted, not a block scalar): only those are resolved to non-strings.
        plain: bool,
        /// The tag's name in the YAML namespace (`str`, `int`, …), or `Some("")` for any other tag.
        tag: Option<String>,
        line: usize,
    },
    Seq(Vec<Rc<Node>>, usize),
    Map(Vec<(Rc<Node>, Rc<Node>)>, usize),
}

const YAML_TAG_PREFIX: &str = "tag:yaml.org,2002:";

fn tag_name(tag: Option<&Tag>) -> Option<String> {
    tag.map(|t| {
        t.suffix_in_namespace(YAML_TAG_PREFIX)
            .map(|s| s.into_owned())
            .unwrap_or_default()
    })
}

enum Open {
    Seq(Vec<Rc<Node>>, usize, usize),
    Map(Vec<Rc<Node>>, usize, usize),
}

/// Parses one YAML (or JSON) document to JSON the way `kubectl apply -f` does.
///
/// # Errors
/// Invalid YAML, more than one document, values JSON can't hold (`.nan`, `.inf`, integers beyond
/// 64 bits, keys that are null or collections), merges of non-maps, explicit tags that don't fit
/// their value, and documents over `limits` (nesting, aliases, decoded size).
pub fn parse(text: &str, limits: &ManifestLimits) -> Result<Value, YamlError> {
    let root = parse_nodes(text, limits)?;
    let Some(root) = root else {
        return Ok(Value::Null);
    };
    let mut budget = Budget {
        nodes: 0,
        limits: *limits,
    };
    to_json(&root, 0, &mut budget)
}

fn parse_nodes(text: &str, limits: &ManifestLimits) -> Result<Option<Rc<Node>>, YamlError> {
    let mut anchors: std::collections::HashMap<usize, Rc<Node>> = Default::default();
    let mut stack: Vec<Open> = Vec::new();
    let mut root: Option<Rc<Node>> = None;
    let mut documents = 0usize;
    let mut aliases = 0usize;
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| {
            YamlError::at(
                e.marker().line(),
                e.info().lines().next().unwrap_or("invalid YAML"),
            )
        })?;
        let line = span.start.line();
        let done: Option<(Rc<Node>, usize)> = match event {
            Event::DocumentStart(..) => {
                documents += 1;
                if documents > 1 {
                    return Err(YamlError::at(
                        line,
                        "more than one document where one was expected",
                    ));
                }
                None
            }
            Event::Scalar(value, style, anchor, tag) => Some((
                Rc::new(Node::Scalar {
                    value: value.into_owned(),
                    plain: style == ScalarStyle::Plain,
                    tag: tag_name(tag.as_deref()),
                    line,
                }),
                anchor,
            )),
            Event::Alias(id) => {
                aliases += 1;
                if aliases > limits.max_aliases {
                    return Err(YamlError::at(
                        line,
                        format!("more than {} aliases", limits.max_aliases),
                    ));
                }
                let node = anchors
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| YamlError::at(line, "alias to an unknown anchor"))?;
                Some((node, 0))
            }
            Event::SequenceStart(_, anchor, _) | Event::MappingStart(_, anchor, _) => {
                if stack.len() >= limits.max_depth {
                    return Err(YamlError::at(
                        line,
                        format!("nesting is deeper than {} levels", limits.max_depth),
                    ));
                }
                stack.push(if matches!(event, Event::SequenceStart(..)) {
                    Open::Seq(Vec::new(), anchor, line)
                } else {
                    Open::Map(Vec::new(), anchor, line)
                });
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Open::Seq(items, anchor, l)) => Some((Rc::new(Node::Seq(items, l)), anchor)),
                _ => return Err(YamlError::at(line, "unbalanced sequence")),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Open::Map(items, anchor, l)) => {
                    let mut pairs = Vec::with_capacity(items.len() / 2);
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        pairs.push((k, v));
                    }
                    Some((Rc::new(Node::Map(pairs, l)), anchor))
                }
                _ => return Err(YamlError::at(line, "unbalanced mapping")),
            },
            _ => None,
        };
        if let Some((node, anchor)) = done {
            if anchor != 0 {
                anchors.insert(anchor, node.clone());
            }
            match stack.last_mut() {
                Some(Open::Seq(items, ..)) | Some(Open::Map(items, ..)) => items.push(node),
                None => root = Some(node),
            }
        }
    }
    Ok(root)
}

struct Budget {
    nodes: usize,
    limits: ManifestLimits,
}

impl Budget {
    fn take(&mut self) -> Result<(), YamlError> {
        self.nodes += 1;
        if self.nodes > self.limits.max_nodes {
            // A property of the whole document, so reported at its start.
            return Err(YamlError {
                line: None,
                message: format!(
                    "the document expands to more than {} values (an alias bomb?)",
                    self.limits.max_nodes
                ),
            });
        }
        Ok(())
    }
}

fn node_line(n: &Node) -> usize {
    match n {
        Node::Scalar { line, .. } | Node::Seq(_, line) | Node::Map(_, line) => *line,
    }
}

fn to_json(node: &Node, depth: usize, budget: &mut Budget) -> Result<Value, YamlError> {
    budget.take()?;
    if depth > budget.limits.max_depth {
        return Err(YamlError::at(
            node_line(node),
            format!("nesting is deeper than {} levels", budget.limits.max_depth),
        ));
    }
    match node {
        Node::Scalar {
            value,
            plain,
            tag,
            line,
        } => scalar_to_json(
            resolve_scalar(value, *plain, tag.as_deref(), *line)?,
            value,
            *line,
        ),
        Node::Seq(items, _) => items
            .iter()
            .map(|i| to_json(i, depth + 1, budget))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Node::Map(pairs, _) => {
            let mut out = Map::new();
            fill_map(&mut out, pairs, depth, budget)?;
            Ok(Value::Object(out))
        }
    }
}

/// go-yaml v2 decodes a mapping key by key in order; a `<<` sets the merged keys at its place
/// (overriding earlier ones, overridden by later ones), and a list of maps merges the last first
/// so that earlier maps win.
fn fill_map(
    out: &mut Map<String, Value>,
    pairs: &[(Rc<Node>, Rc<Node>)],
    depth: usize,
    budget: &mut Budget,
) -> Result<(), YamlError> {
    for (k, v) in pairs {
        if is_merge_key(k) {
            let want_map = || {
                YamlError::at(
                    node_line(v),
                    "map merge requires map or sequence of maps as the value",
                )
            };
            match &**v {
                Node::Map(inner, _) => fill_map(out, inner, depth, budget)?,
                Node::Seq(items, _) => {
                    for item in items.iter().rev() {
                        let Node::Map(inner, _) = &**item else {
                            return Err(want_map());
                        };
                        fill_map(out, inner, depth, budget)?;
                    }
                }
                Node::Scalar { .. } => return Err(want_map()),
            }
            continue;
        }
        let key = key_string(k)?;
        let value = to_json(v, depth + 1, budget)?;
        out.insert(key, value);
    }
    Ok(())
}

fn is_merge_key(k: &Node) -> bool {
    matches!(k, Node::Scalar { value, plain, tag, .. }
        if value == "<<" && ((*plain && tag.is_none()) || tag.as_deref() == Some("merge")))
}

/// sigs.k8s.io/yaml's conversion of a non-string key to a JSON key.
fn key_string(k: &Node) -> Result<String, YamlError> {
    let Node::Scalar {
        value,
        plain,
        tag,
        line,
    } = k
    else {
        return Err(YamlError::at(
            node_line(k),
            "invalid map key: a map or list",
        ));
    };
    Ok(
        match resolve_scalar(value, *plain, tag.as_deref(), *line)? {
            Scalar::Str => value.clone(),
            Scalar::Bool(b) => b.to_string(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => go_format_float32_g(f),
            Scalar::Null | Scalar::Uint(_) => {
                return Err(YamlError::at(
                    *line,
                    format!("unsupported map key `{value}` (JSON keys are strings)"),
                ))
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(text: &str) -> Value {
        parse(text, &ManifestLimits::default()).unwrap()
    }

    #[test]
    fn quoted_and_tagged_scalars() {
        let v = p("a: '0755'\nb: \"yes\"\nc: !!str on\nd: !!float 3\ne: |\n  yes\nf: !custom 12\n");
        assert_eq!(
            v,
            json!({"a": "0755", "b": "yes", "c": "on", "d": 3, "e": "yes\n", "f": "12"})
        );
        assert!(parse("a: !!int abc\n", &ManifestLimits::default()).is_err());
    }

    #[test]
    fn documents_read_as_kubectl_reads_them() {
        let v = p("defaultMode: 0755\nhostNetwork: yes\ntty: on\nauto: no\nd: 1e3\ne: ~\nf: 1.5\n");
        assert_eq!(
            v,
            json!({"defaultMode": 493, "hostNetwork": true, "tty": true, "auto": false,
                   "d": 1000, "e": null, "f": 1.5})
        );
    }

    #[test]
    fn keys_become_strings_as_sigs_k8s_io_yaml_writes_them() {
        // `y` is a boolean to go-yaml v2, so kubectl sends a key `y:` as "true".
        let v = p("on: a\n0755: b\n1.5: c\nplain: d\n'yes': e\ny: f\n");
        assert_eq!(
            v,
            json!({"true": "f", "493": "b", "1.5": "c", "plain": "d", "yes": "e"})
        );
        assert!(parse("~: a\n", &ManifestLimits::default()).is_err());
        assert!(parse("? [a]\n: b\n", &ManifestLimits::default()).is_err());
    }

    #[test]
    fn merge_keys_merge_in_go_yaml_v2_order() {
        let v = p(concat!(
            "base: &b {x: 1, k: 1}\nother: &o {k: 2, z: 2}\n",
            "one:\n  <<: *b\n  k: 3\n",
            "list:\n  <<: [*b, *o]\n",
            "before:\n  x: 9\n  <<: *b\n",
            "quoted:\n  '<<': *b\n",
        ));
        assert_eq!(v["one"], json!({"x": 1, "k": 3}));
        assert_eq!(v["list"], json!({"x": 1, "k": 1, "z": 2}));
        // go-yaml v2 sets merged keys where `<<` stands: it overrides the key before it.
        assert_eq!(v["before"], json!({"x": 1, "k": 1}));
        assert_eq!(v["quoted"], json!({"<<": {"x": 1, "k": 1}}));
        assert!(parse("a: &a 1\nb:\n  <<: *a\n", &ManifestLimits::default()).is_err());
    }

    #[test]
    fn values_json_cannot_hold_are_refused() {
        for text in ["a: .nan\n", "a: -.inf\n", "a: !!binary aGk=\n"] {
            assert!(parse(text, &ManifestLimits::default()).is_err(), "{text}");
        }
    }

    #[test]
    fn float_keys_print_as_go_prints_them() {
        assert_eq!(go_format_float32_g(1.5), "1.5");
        assert_eq!(go_format_float32_g(1000.0), "1000");
        assert_eq!(go_format_float32_g(1e21), "1e+21");
        assert_eq!(go_format_float32_g(1e6), "1e+06");
        assert_eq!(go_format_float32_g(123456.0), "123456");
        assert_eq!(go_format_float32_g(0.0001), "0.0001");
        assert_eq!(go_format_float32_g(0.00001), "1e-05");
    }
}
