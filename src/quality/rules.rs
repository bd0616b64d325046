//! The quality-rule language: boolean expressions over the six issue counters, e.g.
//! `error == 0 and critical == 0 and (info > 0 or warning > 0)`.
//!
//! A hand-written tokenizer, recursive-descent parser and evaluator, and nothing else: numbers,
//! the six counter names, `true`/`false`, `== != < <= > >=`, `+ - * /`, unary minus,
//! `and`/`or`/`not` and parentheses. Expressions are bounded in length and nesting depth and
//! type-checked when parsed, so a rule that is saved is a rule that evaluates (short of a
//! division by zero). The reference used a general-purpose rule engine and found bad rules only
//! when a run ended.

use std::fmt;

/// The counters a rule can name, in the order digests list them.
pub const COUNTERS: [&str; 6] = [
    "info",
    "convention",
    "warning",
    "error",
    "security",
    "critical",
];

/// Longest rule text in bytes.
pub const MAX_LEN: usize = 1000;
/// Deepest nesting of sub-expressions.
pub const MAX_DEPTH: usize = 32;

/// Why a rule does not parse or evaluate; the message names the problem and its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError(pub String);

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RuleError {}

fn err<T>(msg: impl Into<String>) -> Result<T, RuleError> {
    Err(RuleError(msg.into()))
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Name(usize),
    Bool(bool),
    And,
    Or,
    Not,
    Cmp(CmpOp),
    Add,
    Sub,
    Mul,
    Div,
    LParen,
    RParen,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

fn tokenize(text: &str) -> Result<Vec<(usize, Tok)>, RuleError> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let two = |a: u8, b: u8| c == a && bytes.get(i + 1) == Some(&b);
        let tok = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => Tok::LParen,
            b')' => Tok::RParen,
            b'+' => Tok::Add,
            b'-' => Tok::Sub,
            b'*' => Tok::Mul,
            b'/' => Tok::Div,
            _ if two(b'=', b'=') => Tok::Cmp(CmpOp::Eq),
            _ if two(b'!', b'=') => Tok::Cmp(CmpOp::Ne),
            _ if two(b'<', b'=') => Tok::Cmp(CmpOp::Le),
            _ if two(b'>', b'=') => Tok::Cmp(CmpOp::Ge),
            b'<' => Tok::Cmp(CmpOp::Lt),
            b'>' => Tok::Cmp(CmpOp::Gt),
            b'0'..=b'9' | b'.' => {
                while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                    i += 1;
                }
                let lit = &text[start..i];
                let n: f64 = lit.parse().map_err(|_| {
                    RuleError(format!("invalid number '{lit}' at position {}", start + 1))
                })?;
                out.push((start, Tok::Num(n)));
                continue;
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'_' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                let word = &text[start..i];
                let tok = match word {
                    "and" => Tok::And,
                    "or" => Tok::Or,
                    "not" => Tok::Not,
                    "true" => Tok::Bool(true),
                    "false" => Tok::Bool(false),
                    _ => match COUNTERS.iter().position(|n| *n == word) {
                        Some(k) => Tok::Name(k),
                        None => {
                            return err(format!(
                                "unknown name '{word}' at position {}: a rule may only use {}",
                                start + 1,
                                COUNTERS.join(", ")
                            ));
                        }
                    },
                };
                out.push((start, tok));
                continue;
            }
            _ => {
                let ch = text[start..].chars().next().unwrap_or('?');
                return err(format!(
                    "unexpected character '{ch}' at position {}",
                    start + 1
                ));
            }
        };
        i += match tok {
            Tok::Cmp(CmpOp::Eq | CmpOp::Ne | CmpOp::Le | CmpOp::Ge) => 2,
            _ => 1,
        };
        out.push((start, tok));
    }
    Ok(out)
}

/// A parsed, type-checked rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule(Node);

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Num(f64),
    Counter(usize),
    Bool(bool),
    Neg(Box<Node>),
    Arith(char, Box<Node>, Box<Node>),
    Cmp(CmpOp, Box<Node>, Box<Node>),
    Not(Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Num,
    Bool,
}

impl Node {
    fn ty(&self) -> Ty {
        match self {
            Node::Num(_) | Node::Counter(_) | Node::Neg(_) | Node::Arith(..) => Ty::Num,
            _ => Ty::Bool,
        }
    }
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }

    fn at(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end, |(p, _)| *p) + 1
    }

    fn depth_check(depth: usize) -> Result<(), RuleError> {
        if depth > MAX_DEPTH {
            return err(format!("the rule is nested deeper than {MAX_DEPTH} levels"));
        }
        Ok(())
    }

    fn or(&mut self, d: usize) -> Result<Node, RuleError> {
        Self::depth_check(d)?;
        let mut left = self.and(d)?;
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            let right = self.and(d)?;
            left = Node::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self, d: usize) -> Result<Node, RuleError> {
        Self::depth_check(d)?;
        let mut left = self.not(d)?;
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            let right = self.not(d)?;
            left = Node::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn not(&mut self, d: usize) -> Result<Node, RuleError> {
        Self::depth_check(d)?;
        if self.peek() == Some(&Tok::Not) {
            self.pos += 1;
            return Ok(Node::Not(Box::new(self.not(d + 1)?)));
        }
        self.cmp(d)
    }

    fn cmp(&mut self, d: usize) -> Result<Node, RuleError> {
        Self::depth_check(d)?;
        let left = self.sum(d)?;
        let Some(Tok::Cmp(op)) = self.peek().cloned() else {
            return Ok(left);
        };
        let op_at = self.at();
        self.pos += 1;
        let right = self.sum(d)?;
        if matches!(self.peek(), Some(Tok::Cmp(_))) {
            return err(format!(
                "chained comparison at position {}: combine comparisons with 'and'",
                self.at()
            ));
        }
        let ordering = !matches!(op, CmpOp::Eq | CmpOp::Ne);
        if left.ty() != right.ty() || (ordering && left.ty() != Ty::Num) {
            return err(format!(
                "the comparison at position {op_at} needs numbers on both sides"
            ));
        }
        Ok(Node::Cmp(op, Box::new(left), Box::new(right)))
    }

    fn sum(&mut self, d: usize) -> Result<Node, RuleError> {
        Self::depth_check(d)?;
        let mut left = self.term(d)?;
        while let Some(op @ (Tok::Add | Tok::Sub)) = self.peek().cloned() {
            let at = self.at();
            self.pos += 1;
            let right = self.term(d)?;
            left = Self::arith(if op == Tok::Add { '+' } else { '-' }, left, right, at)?;
        }
        Ok(left)
    }

    fn term(&mut self, d: usize) -> Result<Node, RuleError> {
        Self::depth_check(d)?;
        let mut left = self.unary(d)?;
        while let Some(op @ (Tok::Mul | Tok::Div)) = self.peek().cloned() {
            let at = self.at();
            self.pos += 1;
            let right = self.unary(d)?;
            left = Self::arith(if op == Tok::Mul { '*' } else { '/' }, left, right, at)?;
        }
        Ok(left)
    }

    fn arith(op: char, left: Node, right: Node, at: usize) -> Result<Node, RuleError> {
        if left.ty() != Ty::Num || right.ty() != Ty::Num {
            return err(format!(
                "'{op}' at position {at} needs numbers on both sides"
            ));
        }
        Ok(Node::Arith(op, Box::new(left), Box::new(right)))
    }

    fn unary(&mut self, d: usize) -> Result<Node, RuleError> {
        Self::depth_check(d)?;
        if self.peek() == Some(&Tok::Sub) {
            let at = self.at();
            self.pos += 1;
            let inner = self.unary(d + 1)?;
            if inner.ty() != Ty::Num {
                return err(format!("'-' at position {at} needs a number"));
            }
            return Ok(Node::Neg(Box::new(inner)));
        }
        self.atom(d)
    }

    fn atom(&mut self, d: usize) -> Result<Node, RuleError> {
        Self::depth_check(d)?;
        let at = self.at();
        let Some(tok) = self.peek().cloned() else {
            return err(format!("the rule ends early at position {at}"));
        };
        self.pos += 1;
        match tok {
            Tok::Num(n) => Ok(Node::Num(n)),
            Tok::Name(k) => Ok(Node::Counter(k)),
            Tok::Bool(b) => Ok(Node::Bool(b)),
            Tok::LParen => {
                let inner = self.or(d + 1)?;
                if self.peek() != Some(&Tok::RParen) {
                    return err(format!(
                        "missing ')' at position {} for the '(' at position {at}",
                        self.at()
                    ));
                }
                self.pos += 1;
                Ok(inner)
            }
            other => err(format!("unexpected {} at position {at}", describe(&other))),
        }
    }
}

fn describe(t: &Tok) -> &'static str {
    match t {
        Tok::And => "'and'",
        Tok::Or => "'or'",
        Tok::Not => "'not'",
        Tok::Cmp(_) => "comparison",
        Tok::Add | Tok::Sub | Tok::Mul | Tok::Div => "operator",
        Tok::RParen => "')'",
        Tok::LParen => "'('",
        Tok::Num(_) | Tok::Name(_) | Tok::Bool(_) => "value",
    }
}

impl Rule {
    /// Parses and type-checks a rule.
    pub fn parse(text: &str) -> Result<Rule, RuleError> {
        if text.len() > MAX_LEN {
            return err(format!("the rule is longer than {MAX_LEN} characters"));
        }
        let toks = tokenize(text)?;
        if toks.is_empty() {
            return err("the rule is empty");
        }
        let mut p = Parser {
            toks,
            pos: 0,
            end: text.len(),
        };
        let node = p.or(0)?;
        if p.pos < p.toks.len() {
            let t = p.toks[p.pos].1.clone();
            return err(format!(
                "unexpected {} at position {}",
                describe(&t),
                p.at()
            ));
        }
        Ok(Rule(node))
    }

    /// Evaluates the rule over `counters` (in [`COUNTERS`] order); a number result is true
    /// when non-zero. Fails only on a division by zero.
    pub fn matches(&self, counters: &[f64; 6]) -> Result<bool, RuleError> {
        match eval(&self.0, counters)? {
            Val::Bool(b) => Ok(b),
            Val::Num(n) => Ok(n != 0.0),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Val {
    Num(f64),
    Bool(bool),
}

fn num(n: &Node, c: &[f64; 6]) -> Result<f64, RuleError> {
    match eval(n, c)? {
        Val::Num(x) => Ok(x),
        Val::Bool(_) => err("a number was expected"),
    }
}

fn truth(n: &Node, c: &[f64; 6]) -> Result<bool, RuleError> {
    Ok(match eval(n, c)? {
        Val::Bool(b) => b,
        Val::Num(x) => x != 0.0,
    })
}

fn eval(n: &Node, c: &[f64; 6]) -> Result<Val, RuleError> {
    Ok(match n {
        Node::Num(x) => Val::Num(*x),
        Node::Counter(k) => Val::Num(c[*k]),
        Node::Bool(b) => Val::Bool(*b),
        Node::Neg(x) => Val::Num(-num(x, c)?),
        Node::Arith(op, a, b) => {
            let (a, b) = (num(a, c)?, num(b, c)?);
            Val::Num(match op {
                '+' => a + b,
                '-' => a - b,
                '*' => a * b,
                _ => {
                    if b == 0.0 {
                        return err("division by zero");
                    }
                    a / b
                }
            })
        }
        Node::Cmp(op, a, b) => {
            let (a, b) = (eval(a, c)?, eval(b, c)?);
            Val::Bool(match (op, a, b) {
                (CmpOp::Eq, a, b) => a == b,
                (CmpOp::Ne, a, b) => a != b,
                (op, Val::Num(a), Val::Num(b)) => match op {
                    CmpOp::Lt => a < b,
                    CmpOp::Le => a <= b,
                    CmpOp::Gt => a > b,
                    _ => a >= b,
                },
                _ => return err("an ordering needs numbers"),
            })
        }
        Node::Not(x) => Val::Bool(!truth(x, c)?),
        Node::And(a, b) => Val::Bool(truth(a, c)? && truth(b, c)?),
        Node::Or(a, b) => Val::Bool(truth(a, c)? || truth(b, c)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(rule: &str, c: [f64; 6]) -> bool {
        Rule::parse(rule).unwrap().matches(&c).unwrap()
    }

    #[test]
    fn default_rules() {
        let pass = "error == 0 and critical == 0 and security == 0 and warning == 0";
        let pwc = "error == 0 and critical == 0 and security == 0 and (info > 0 or warning > 0 or convention > 0)";
        assert!(m(pass, [0.0; 6]));
        assert!(!m(pwc, [0.0; 6]));
        assert!(m(pwc, [3.0, 0.0, 1.0, 0.0, 0.0, 0.0]));
        assert!(!m(pass, [3.0, 0.0, 1.0, 0.0, 0.0, 0.0]));
        assert!(!m(pwc, [0.0, 0.0, 1.0, 0.0, 1.0, 0.0]));
    }

    #[test]
    fn precedence_and_arithmetic() {
        let c = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        assert!(m("info + convention * warning == 7", c));
        assert!(m("(info + convention) * warning == 9", c));
        assert!(m("-info + 2 == 1", c));
        assert!(m("error / 2 == 2", c));
        assert!(m("not error == 0", c));
        assert!(m("true and not false", c));
        assert!(m("false or info < 2 and convention >= 2", c));
        assert!(m("info", c));
        assert!(m("1.5 * 2 == 3", c));
        assert!(m("critical != 5", c));
        assert!(!m("critical <= 5", c));
    }

    /// Random texts over the language's alphabet (a fixed-seed generator, so failures repeat):
    /// parsing never panics, and whatever parses evaluates without panicking.
    #[test]
    fn random_texts_never_panic() {
        const PIECES: [&str; 24] = [
            "info",
            "error",
            "warning",
            "critical",
            "security",
            "convention",
            "and",
            "or",
            "not",
            "true",
            "false",
            "(",
            ")",
            "==",
            "!=",
            "<",
            "<=",
            ">",
            ">=",
            "+",
            "-",
            "*",
            "/",
            "1.5",
        ];
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let (mut parsed, mut refused) = (0, 0);
        for _ in 0..20_000 {
            let len = (next() % 12) as usize + 1;
            let text: Vec<&str> = (0..len)
                .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
                .collect();
            match Rule::parse(&text.join(" ")) {
                Ok(rule) => {
                    parsed += 1;
                    let _ = rule.matches(&[0.0, 1.0, 2.0, 0.0, 3.0, 0.5]);
                }
                Err(e) => {
                    refused += 1;
                    assert!(!e.0.is_empty());
                }
            }
        }
        assert!(
            parsed > 100 && refused > 100,
            "{parsed} parsed, {refused} refused"
        );
    }

    #[test]
    fn division_by_zero_fails_at_evaluation() {
        let r = Rule::parse("info / error > 1").unwrap();
        assert!(r.matches(&[1.0, 0.0, 0.0, 0.0, 0.0, 0.0]).is_err());
    }

    #[test]
    fn malformed_rules_name_the_problem() {
        for (rule, expected) in [
            ("", "empty"),
            ("errors == 0", "unknown name 'errors'"),
            ("__import__('os')", "unknown name '__import__'"),
            ("error = 0", "unexpected character '='"),
            ("error == 0 and", "ends early"),
            ("(error == 0", "missing ')'"),
            ("error == 0)", "unexpected ')'"),
            ("0 < error < 3", "chained comparison"),
            ("error + (info > 0)", "needs numbers"),
            ("true < 1", "needs numbers"),
            ("1.2.3 > 0", "invalid number"),
            ("error == 'x'", "unexpected character '''"),
            ("error =~ 1", "unexpected character '='"),
        ] {
            let e = Rule::parse(rule).unwrap_err().0;
            assert!(e.contains(expected), "{rule:?}: {e}");
        }
        let long = format!("{}1", "info + ".repeat(200));
        assert!(Rule::parse(&long).unwrap_err().0.contains("longer"));
        let deep = format!("{}1{}", "(".repeat(40), ")".repeat(40));
        assert!(Rule::parse(&deep).unwrap_err().0.contains("nested"));
        let nots = format!("{}true", "not ".repeat(40));
        assert!(Rule::parse(&nots).unwrap_err().0.contains("nested"));
    }
}
