//! CQL2-JSON filters for triggers: parsed into a typed expression when a trigger is saved
//! (malformed filters are refused there, never at event time), then evaluated against an
//! event's data and its CloudEvent attributes (`ce.<attribute>`).
//!
//! Supported: `and`, `or`, `not`, `=`, `<>`, `<`, `<=`, `>`, `>=`, `between`, `in`, `like`
//! (`%` any run, `_` one character, `\` escapes) and `isNull`, with operator names compared
//! case-insensitively. Operands are literals or `{"property": "a.b.0.c"}` dotted paths
//! (digits index arrays). `{"timestamp": "..."}` and `{"date": "..."}` literals compare as their
//! strings, which orders RFC 3339 times correctly. The empty filter `{}` matches every event
//! (the reference's matched none).
//!
//! Comparisons are null-safe: a missing property is `null`; `=` is true for two nulls, `<>` for
//! exactly one; ordering operators and `like` are false when either side is null or the kinds
//! differ. Numbers compare numerically (`1 = 1.0`).

use serde_json::Value;
use std::cmp::Ordering;

/// Deepest nesting of operators accepted in a filter.
pub const MAX_DEPTH: usize = 32;
/// Most nodes (operators plus operands) accepted in a filter.
pub const MAX_NODES: usize = 2000;
/// Longest property path or `like` pattern accepted (bytes).
pub const MAX_TEXT: usize = 1024;

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// The empty filter: matches everything.
    All,
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Cmp(CmpOp, Operand, Operand),
    Between(Operand, Operand, Operand),
    In(Operand, Vec<Operand>),
    Like(Operand, Vec<LikeToken>),
    IsNull(Operand),
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A value in a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// Dotted path split into segments; `ce.` paths read the CloudEvent attributes.
    Property(Vec<String>),
    Literal(Value),
}

/// A compiled `like` pattern element.
#[derive(Debug, Clone, PartialEq)]
pub enum LikeToken {
    Char(char),
    /// `_`
    One,
    /// `%`
    Any,
}

/// What a filter is evaluated against: the event data and the CloudEvent attributes.
pub struct Context<'a> {
    /// The event data (any JSON; properties are looked up in it).
    pub data: &'a Value,
    /// The attributes and extensions as an object (`{"id", "source", "type", ...}`).
    pub ce: &'a Value,
}

impl Context<'_> {
    /// Resolves a dotted path: `ce.x` in the attributes, anything else in the data.
    pub fn resolve(&self, path: &[String]) -> Option<&Value> {
        match path.split_first() {
            Some((first, rest)) if first == "ce" && !rest.is_empty() => walk(self.ce, rest),
            _ => walk(self.data, path),
        }
    }
}

/// Walks `path` through objects (and arrays, for digit segments).
pub fn walk<'v>(mut value: &'v Value, path: &[String]) -> Option<&'v Value> {
    for seg in path {
        value = match value {
            Value::Object(map) => map.get(seg)?,
            Value::Array(items) => items.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}

/// Splits and checks a dotted path (`a.b.c`): non-empty segments, bounded length.
pub fn parse_path(path: &str) -> Result<Vec<String>, String> {
    if path.is_empty() || path.len() > MAX_TEXT {
        return Err(format!(
            "A property path must have 1 to {MAX_TEXT} characters."
        ));
    }
    let segments: Vec<String> = path.split('.').map(str::to_owned).collect();
    if segments.iter().any(String::is_empty) {
        return Err(format!("Invalid property path {path:?}: empty segment."));
    }
    Ok(segments)
}

/// Parses a CQL2-JSON filter. `{}` and `null` give [`Expr::All`].
pub fn parse(filter: &Value) -> Result<Expr, String> {
    match filter {
        Value::Null => return Ok(Expr::All),
        Value::Object(m) if m.is_empty() => return Ok(Expr::All),
        _ => {}
    }
    let mut nodes = 0usize;
    parse_node(filter, 0, &mut nodes)
}

fn count(nodes: &mut usize) -> Result<(), String> {
    *nodes += 1;
    if *nodes > MAX_NODES {
        Err(format!("The filter has more than {MAX_NODES} nodes."))
    } else {
        Ok(())
    }
}

fn parse_node(node: &Value, depth: usize, nodes: &mut usize) -> Result<Expr, String> {
    count(nodes)?;
    if depth > MAX_DEPTH {
        return Err(format!(
            "The filter is nested deeper than {MAX_DEPTH} levels."
        ));
    }
    let Some(obj) = node.as_object() else {
        return Err(format!(
            "Expected an operation {{\"op\": ..., \"args\": [...]}}, got {node}."
        ));
    };
    let op = obj
        .get("op")
        .and_then(Value::as_str)
        .ok_or("Every operation needs an \"op\" string.")?
        .to_ascii_lowercase();
    let args = match obj.get("args") {
        Some(Value::Array(a)) => a.as_slice(),
        None => &[],
        Some(_) => return Err(format!("\"args\" of {op:?} must be an array.")),
    };
    let arity = |n: usize| {
        if args.len() == n {
            Ok(())
        } else {
            Err(format!("{op:?} takes {n} argument(s), got {}.", args.len()))
        }
    };
    let operand = |v: &Value, nodes: &mut usize| parse_operand(v, nodes);
    Ok(match op.as_str() {
        "and" | "or" => {
            let items = args
                .iter()
                .map(|a| parse_node(a, depth + 1, nodes))
                .collect::<Result<Vec<_>, _>>()?;
            if op == "and" {
                Expr::And(items)
            } else {
                Expr::Or(items)
            }
        }
        "not" => {
            arity(1)?;
            Expr::Not(Box::new(parse_node(&args[0], depth + 1, nodes)?))
        }
        "=" | "<>" | "<" | "<=" | ">" | ">=" => {
            arity(2)?;
            let cmp = match op.as_str() {
                "=" => CmpOp::Eq,
                "<>" => CmpOp::Ne,
                "<" => CmpOp::Lt,
                "<=" => CmpOp::Le,
                ">" => CmpOp::Gt,
                _ => CmpOp::Ge,
            };
            Expr::Cmp(cmp, operand(&args[0], nodes)?, operand(&args[1], nodes)?)
        }
        "between" => {
            arity(3)?;
            Expr::Between(
                operand(&args[0], nodes)?,
                operand(&args[1], nodes)?,
                operand(&args[2], nodes)?,
            )
        }
        "in" => {
            arity(2)?;
            let Value::Array(list) = &args[1] else {
                return Err("The second argument of \"in\" must be an array.".into());
            };
            let list = list
                .iter()
                .map(|v| operand(v, nodes))
                .collect::<Result<Vec<_>, _>>()?;
            Expr::In(operand(&args[0], nodes)?, list)
        }
        "like" => {
            arity(2)?;
            let Some(pattern) = args[1].as_str() else {
                return Err("The pattern of \"like\" must be a string.".into());
            };
            if pattern.len() > MAX_TEXT {
                return Err(format!(
                    "A like pattern must have at most {MAX_TEXT} characters."
                ));
            }
            Expr::Like(operand(&args[0], nodes)?, compile_like(pattern))
        }
        "isnull" => {
            arity(1)?;
            Expr::IsNull(operand(&args[0], nodes)?)
        }
        other => return Err(format!("Unsupported CQL2 operator {other:?}.")),
    })
}

fn parse_operand(v: &Value, nodes: &mut usize) -> Result<Operand, String> {
    count(nodes)?;
    match v {
        Value::Object(m) if m.len() == 1 && m.contains_key("property") => {
            let path = m["property"]
                .as_str()
                .ok_or("\"property\" must be a string.")?;
            Ok(Operand::Property(parse_path(path)?))
        }
        Value::Object(m)
            if m.len() == 1 && (m.contains_key("timestamp") || m.contains_key("date")) =>
        {
            let s = m
                .values()
                .next()
                .and_then(Value::as_str)
                .ok_or("A timestamp or date literal must be a string.".to_string())?;
            Ok(Operand::Literal(Value::String(s.to_owned())))
        }
        Value::Object(_) | Value::Array(_) => Err(format!(
            "Expected a literal or {{\"property\": \"a.b\"}}, got {v}."
        )),
        literal => Ok(Operand::Literal(literal.clone())),
    }
}

fn compile_like(pattern: &str) -> Vec<LikeToken> {
    let mut out = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        out.push(match c {
            '%' => LikeToken::Any,
            '_' => LikeToken::One,
            '\\' => LikeToken::Char(chars.next().unwrap_or('\\')),
            c => LikeToken::Char(c),
        });
    }
    out
}

const NULL: Value = Value::Null;

impl Operand {
    fn value<'a>(&'a self, ctx: &'a Context<'a>) -> &'a Value {
        match self {
            Operand::Literal(v) => v,
            Operand::Property(path) => ctx.resolve(path).unwrap_or(&NULL),
        }
    }
}

impl Expr {
    /// Whether the event described by `ctx` satisfies the filter.
    pub fn matches(&self, ctx: &Context<'_>) -> bool {
        match self {
            Expr::All => true,
            Expr::And(items) => items.iter().all(|e| e.matches(ctx)),
            Expr::Or(items) => items.iter().any(|e| e.matches(ctx)),
            Expr::Not(e) => !e.matches(ctx),
            Expr::Cmp(op, a, b) => compare(*op, a.value(ctx), b.value(ctx)),
            Expr::Between(v, lo, hi) => {
                let v = v.value(ctx);
                compare(CmpOp::Ge, v, lo.value(ctx)) && compare(CmpOp::Le, v, hi.value(ctx))
            }
            Expr::In(v, list) => {
                let v = v.value(ctx);
                !v.is_null() && list.iter().any(|x| equal(v, x.value(ctx)))
            }
            Expr::Like(v, pattern) => match v.value(ctx) {
                Value::String(s) => {
                    let chars: Vec<char> = s.chars().collect();
                    like(&chars, pattern)
                }
                _ => false,
            },
            Expr::IsNull(v) => v.value(ctx).is_null(),
        }
    }
}

/// JSON equality with numbers compared by value (`1 == 1.0`).
fn equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        _ => a == b,
    }
}

fn order(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => Some(i.cmp(&j)),
            _ => x.as_f64()?.partial_cmp(&y.as_f64()?),
        },
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn compare(op: CmpOp, a: &Value, b: &Value) -> bool {
    match op {
        CmpOp::Eq => equal(a, b),
        CmpOp::Ne => !equal(a, b),
        CmpOp::Lt => order(a, b) == Some(Ordering::Less),
        CmpOp::Le => matches!(order(a, b), Some(Ordering::Less | Ordering::Equal)),
        CmpOp::Gt => order(a, b) == Some(Ordering::Greater),
        CmpOp::Ge => matches!(order(a, b), Some(Ordering::Greater | Ordering::Equal)),
    }
}

/// Iterative wildcard matching (linear backtracking on the last `%`), so hostile patterns
/// cannot blow up.
fn like(s: &[char], p: &[LikeToken]) -> bool {
    let (mut i, mut j) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while i < s.len() {
        match p.get(j) {
            Some(LikeToken::Any) => {
                star = Some((j, i));
                j += 1;
            }
            Some(LikeToken::One) => {
                i += 1;
                j += 1;
            }
            Some(LikeToken::Char(c)) if *c == s[i] => {
                i += 1;
                j += 1;
            }
            _ => match star {
                Some((sj, si)) => {
                    j = sj + 1;
                    i = si + 1;
                    star = Some((sj, si + 1));
                }
                None => return false,
            },
        }
    }
    p[j..].iter().all(|t| *t == LikeToken::Any)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(filter: Value, data: &Value) -> bool {
        let ce = json!({"id": "1", "source": "https://github.com/o/r", "type": "org.eoepca.webhook.github.push"});
        let expr = parse(&filter).unwrap_or_else(|e| panic!("{filter}: {e}"));
        expr.matches(&Context { data, ce: &ce })
    }

    fn push() -> Value {
        json!({
            "ref": "refs/heads/main",
            "repository": {"full_name": "EOEPCA/application-quality", "stargazers_count": 12, "private": false},
            "sender": {"login": "alice"},
            "commits": [{"id": "abc"}, {"id": "def"}],
            "size": 2.0,
            "deleted": null
        })
    }

    fn op(name: &str, args: Value) -> Value {
        json!({"op": name, "args": args})
    }

    fn prop(p: &str) -> Value {
        json!({"property": p})
    }

    #[test]
    fn empty_filter_matches_everything() {
        assert!(check(json!({}), &push()));
        assert!(check(Value::Null, &json!(null)));
    }

    #[test]
    fn equality_and_inequality() {
        let d = push();
        assert!(check(op("=", json!([prop("ref"), "refs/heads/main"])), &d));
        assert!(!check(op("=", json!([prop("ref"), "refs/heads/dev"])), &d));
        assert!(check(op("<>", json!([prop("ref"), "refs/heads/dev"])), &d));
        assert!(!check(
            op("<>", json!([prop("ref"), "refs/heads/main"])),
            &d
        ));
        // numbers compare by value, missing equals null
        assert!(check(op("=", json!([prop("size"), 2])), &d));
        assert!(check(op("=", json!([prop("nope.deeper"), null])), &d));
        assert!(check(op("<>", json!([prop("nope"), "x"])), &d));
    }

    #[test]
    fn ordering() {
        let d = push();
        let stars = prop("repository.stargazers_count");
        assert!(check(op("<", json!([stars, 13])), &d));
        assert!(!check(op("<", json!([stars, 12])), &d));
        assert!(check(op("<=", json!([stars, 12])), &d));
        assert!(check(op(">", json!([stars, 11.5])), &d));
        assert!(!check(op(">", json!([stars, 12])), &d));
        assert!(check(op(">=", json!([stars, 12])), &d));
        assert!(check(op(">", json!([prop("ref"), "refs/heads/a"])), &d));
        // kinds differ or null: false either way
        assert!(!check(op("<", json!([prop("ref"), 3])), &d));
        assert!(!check(op(">=", json!([prop("missing"), 0])), &d));
        assert!(check(op("between", json!([stars, 10, 12])), &d));
        assert!(!check(op("between", json!([stars, 13, 20])), &d));
    }

    #[test]
    fn boolean_combinators() {
        let d = push();
        let a = op("=", json!([prop("sender.login"), "alice"]));
        let b = op("=", json!([prop("sender.login"), "bob"]));
        assert!(check(op("and", json!([a, a])), &d));
        assert!(!check(op("and", json!([a, b])), &d));
        assert!(check(op("or", json!([b, a])), &d));
        assert!(!check(op("or", json!([b, b])), &d));
        assert!(check(op("not", json!([b])), &d));
        assert!(!check(op("not", json!([a])), &d));
        assert!(check(op("and", json!([])), &d));
        assert!(!check(op("or", json!([])), &d));
        // operator names are case-insensitive
        assert!(check(
            json!({"op": "AND", "args": [{"op": "Not", "args": [b]}]}),
            &d
        ));
    }

    #[test]
    fn in_like_isnull() {
        let d = push();
        assert!(check(
            op("in", json!([prop("sender.login"), ["bob", "alice"]])),
            &d
        ));
        assert!(!check(op("in", json!([prop("sender.login"), ["bob"]])), &d));
        assert!(!check(op("in", json!([prop("missing"), [null]])), &d));
        assert!(check(op("like", json!([prop("ref"), "refs/heads/%"])), &d));
        assert!(check(
            op("like", json!([prop("ref"), "refs/heads/ma_n"])),
            &d
        ));
        assert!(check(op("like", json!([prop("ref"), "%main"])), &d));
        assert!(!check(op("like", json!([prop("ref"), "refs/tags/%"])), &d));
        assert!(!check(
            op("like", json!([prop("ref"), "refs/heads/ma_"])),
            &d
        ));
        assert!(check(
            op(
                "like",
                json!([prop("repository.full_name"), "EOEPCA/%-quality"])
            ),
            &d
        ));
        assert!(check(op("like", json!(["50%", "50\\%"])), &d));
        assert!(!check(op("like", json!(["50x", "50\\%"])), &d));
        assert!(check(op("isNull", json!([prop("deleted")])), &d));
        assert!(check(op("isnull", json!([prop("no.such.path")])), &d));
        assert!(!check(op("isNull", json!([prop("ref")])), &d));
    }

    #[test]
    fn arrays_and_cloudevent_attributes() {
        let d = push();
        assert!(check(op("=", json!([prop("commits.1.id"), "def"])), &d));
        assert!(check(op("isNull", json!([prop("commits.5.id")])), &d));
        assert!(check(
            op("=", json!([prop("ce.source"), "https://github.com/o/r"])),
            &d
        ));
        assert!(check(
            op(
                "like",
                json!([prop("ce.type"), "org.eoepca.webhook.github.%"])
            ),
            &d
        ));
        assert!(check(
            op(
                "<",
                json!([{"timestamp": "2026-01-01T00:00:00Z"}, {"timestamp": "2026-02-01T00:00:00Z"}])
            ),
            &d
        ));
    }

    #[test]
    fn malformed_filters_are_refused() {
        for bad in [
            json!([1, 2]),
            json!("x"),
            json!({"args": []}),
            json!({"op": "~=", "args": [1, 2]}),
            op("=", json!([prop("a")])),
            op("=", json!([{"property": 3}, 1])),
            op("=", json!([{"property": "a..b"}, 1])),
            op("in", json!([prop("a"), "b"])),
            op("like", json!([prop("a"), 3])),
            op("not", json!([])),
            op("and", json!([1])),
            json!({"op": "and", "args": {"a": 1}}),
        ] {
            assert!(parse(&bad).is_err(), "{bad} should be refused");
        }
        let mut deep = op("=", json!([1, 1]));
        for _ in 0..40 {
            deep = op("not", json!([deep]));
        }
        assert!(parse(&deep).unwrap_err().contains("deeper"));
        let wide = op("or", Value::Array(vec![op("=", json!([1, 1])); 1000]));
        assert!(parse(&wide).unwrap_err().contains("nodes"));
    }

    #[test]
    fn like_is_linear_on_hostile_patterns() {
        let s: Vec<char> = "a".repeat(5000).chars().collect();
        let p = compile_like(&("%a".repeat(200) + "b"));
        assert!(!like(&s, &p));
    }
}
