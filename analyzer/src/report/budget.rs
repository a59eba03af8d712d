//! Memory budgets: expressions such as `leaked_bytes > 0`,
//! `peak_bytes > 64MiB`, `peak_bytes > baseline.peak_bytes * 1.10` or
//! `leaked_bytes[call_site ~ "my_crate::cache"] > 1KiB`, parsed here and
//! evaluated by [`super::metrics`].
//!
//! # Syntax
//!
//! ```text
//! budget     := expr comparison expr          fails when true
//! comparison := '>' | '>=' | '<' | '<=' | '==' | '!='
//! expr       := term (('+' | '-') term)*
//! term       := factor (('*' | '/') factor)*
//! factor     := number [unit] | metric | '(' expr ')' | '-' factor
//! metric     := ['baseline.'] name ['[' condition (',' condition)* ']']
//! condition  := column ('~' | '!~' | '=' | '!=') "string"
//! column     := call_site | type | thread | file
//! unit       := B | KB | MB | GB | TB | KiB | MiB | GiB | TiB
//!             | ns | us | ms | s | %
//! string     := '"' text '"' | "'" text "'"   (\" or \' and \\ escape)
//! ```
//!
//! `~` is a regular-expression match (Rust `regex` syntax), `=` exact
//! equality; conditions in one `[...]`, separated by `,` or `and`, must all
//! hold. Allocations without a
//! call site, type or thread name match as the text `(unknown)`. Decimal
//! units are powers of 1000, binary ones powers of 1024; `%` divides by 100
//! (`baseline.peak_bytes * 110%`).

use std::fmt;

use crate::error::{Error, Result};

/// A quantity a budget can test. Counts and bytes are weighted, so they
/// estimate the true values in a sampled trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// Number of allocations, reallocations included.
    Allocations,
    /// Bytes requested by all allocations, reallocations included.
    AllocatedBytes,
    /// The most bytes live at one moment (the peak of the heap, or of the
    /// matching allocations alone when filtered).
    PeakBytes,
    /// Allocations never freed before the trace ended.
    LeakedAllocations,
    /// Bytes never freed before the trace ended.
    LeakedBytes,
    /// Allocations that were temporary (see `--temporary`).
    TemporaryAllocations,
    /// The largest resident set size sampled, in bytes; no filter.
    PeakRssBytes,
    /// Length of the trace in nanoseconds; no filter.
    DurationNs,
}

impl Metric {
    /// Every metric, in the order the documentation lists them.
    pub const ALL: [Metric; 8] = [
        Metric::Allocations,
        Metric::AllocatedBytes,
        Metric::PeakBytes,
        Metric::LeakedAllocations,
        Metric::LeakedBytes,
        Metric::TemporaryAllocations,
        Metric::PeakRssBytes,
        Metric::DurationNs,
    ];

    /// The name used in budgets, SQL columns and reports.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Allocations => "allocations",
            Metric::AllocatedBytes => "allocated_bytes",
            Metric::PeakBytes => "peak_bytes",
            Metric::LeakedAllocations => "leaked_allocations",
            Metric::LeakedBytes => "leaked_bytes",
            Metric::TemporaryAllocations => "temporary_allocations",
            Metric::PeakRssBytes => "peak_rss_bytes",
            Metric::DurationNs => "duration_ns",
        }
    }

    /// What its values count, for formatting.
    pub fn unit(self) -> Unit {
        match self {
            Metric::Allocations | Metric::LeakedAllocations | Metric::TemporaryAllocations => {
                Unit::Count
            }
            Metric::AllocatedBytes
            | Metric::PeakBytes
            | Metric::LeakedBytes
            | Metric::PeakRssBytes => Unit::Bytes,
            Metric::DurationNs => Unit::Nanoseconds,
        }
    }

    /// Whether it can be restricted to allocations with `[...]`.
    pub fn filterable(self) -> bool {
        !matches!(self, Metric::PeakRssBytes | Metric::DurationNs)
    }

    fn from_name(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == name)
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a number counts, for formatting it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// A plain count.
    Count,
    /// Bytes.
    Bytes,
    /// Nanoseconds.
    Nanoseconds,
    /// A quotient of like quantities (`leaked_bytes / allocated_bytes`).
    Ratio,
}

/// A column of `allocations` a budget can filter on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Column {
    /// `allocations.call_site`.
    CallSite,
    /// `allocations.type_name`.
    Type,
    /// The allocating thread's name (`threads.name`).
    Thread,
    /// `allocations.call_site_file`.
    File,
}

impl Column {
    /// The name used in budgets.
    pub fn name(self) -> &'static str {
        match self {
            Column::CallSite => "call_site",
            Column::Type => "type",
            Column::Thread => "thread",
            Column::File => "file",
        }
    }

    /// The SQL expression it stands for, over `allocations a` joined with
    /// `threads t`; NULL reads as `(unknown)`.
    pub fn sql(self) -> &'static str {
        match self {
            Column::CallSite => "coalesce(CAST(a.call_site AS VARCHAR), '(unknown)')",
            Column::Type => "coalesce(CAST(a.type_name AS VARCHAR), '(unknown)')",
            Column::Thread => "coalesce(CAST(t.name AS VARCHAR), '(unknown)')",
            Column::File => "coalesce(CAST(a.call_site_file AS VARCHAR), '(unknown)')",
        }
    }
}

/// How a condition compares a column with its text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Match {
    /// `~`: the regular expression matches somewhere in the value.
    Regex,
    /// `!~`: it does not.
    NotRegex,
    /// `=`: equal.
    Equal,
    /// `!=`: not equal.
    NotEqual,
}

/// One condition of a filter: `column op "text"`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Condition {
    /// The column tested.
    pub column: Column,
    /// How.
    pub op: Match,
    /// The text or regular expression.
    pub value: String,
}

impl Condition {
    /// The condition as a SQL predicate, the text quoted.
    pub fn sql(&self) -> String {
        let op = match self.op {
            Match::Regex => "~",
            Match::NotRegex => "!~",
            Match::Equal => "=",
            Match::NotEqual => "<>",
        };
        format!("{} {op} '{}'", self.column.sql(), self.value.replace('\'', "''"))
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            Match::Regex => "~",
            Match::NotRegex => "!~",
            Match::Equal => "=",
            Match::NotEqual => "!=",
        };
        write!(f, "{} {op} {:?}", self.column.name(), self.value)
    }
}

/// A metric, perhaps restricted to some allocations, of the trace under
/// test or of the baseline.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetricRef {
    /// Whether it is read from the baseline (`baseline.` prefix).
    pub baseline: bool,
    /// The metric.
    pub metric: Metric,
    /// Conditions every counted allocation meets (empty: all).
    pub filter: Vec<Condition>,
}

impl fmt::Display for MetricRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.baseline {
            f.write_str("baseline.")?;
        }
        f.write_str(self.metric.name())?;
        if !self.filter.is_empty() {
            let conditions: Vec<String> = self.filter.iter().map(ToString::to_string).collect();
            write!(f, "[{}]", conditions.join(", "))?;
        }
        Ok(())
    }
}

/// An arithmetic expression over numbers and metrics.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// A number, its unit already applied.
    Number(f64),
    /// A metric's value.
    Metric(MetricRef),
    /// `-e`.
    Negate(Box<Expr>),
    /// `a op b`.
    Binary(Box<Expr>, Arith, Box<Expr>),
}

/// An arithmetic operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arith {
    /// `+`.
    Add,
    /// `-`.
    Sub,
    /// `*`.
    Mul,
    /// `/`.
    Div,
}

/// A comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compare {
    /// `>`.
    Greater,
    /// `>=`.
    GreaterEqual,
    /// `<`.
    Less,
    /// `<=`.
    LessEqual,
    /// `==`.
    Equal,
    /// `!=`.
    NotEqual,
}

impl Compare {
    /// Whether `a op b` holds.
    pub fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Compare::Greater => a > b,
            Compare::GreaterEqual => a >= b,
            Compare::Less => a < b,
            Compare::LessEqual => a <= b,
            Compare::Equal => a == b,
            Compare::NotEqual => a != b,
        }
    }

    /// Its symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            Compare::Greater => ">",
            Compare::GreaterEqual => ">=",
            Compare::Less => "<",
            Compare::LessEqual => "<=",
            Compare::Equal => "==",
            Compare::NotEqual => "!=",
        }
    }
}

impl Expr {
    /// Every metric the expression reads, in order of appearance.
    pub fn metrics(&self) -> Vec<&MetricRef> {
        match self {
            Expr::Number(_) => Vec::new(),
            Expr::Metric(m) => vec![m],
            Expr::Negate(e) => e.metrics(),
            Expr::Binary(a, _, b) => {
                let mut v = a.metrics();
                v.extend(b.metrics());
                v
            }
        }
    }

    /// The expression's value, reading metrics through `value`.
    pub fn eval(&self, value: &dyn Fn(&MetricRef) -> f64) -> f64 {
        match self {
            Expr::Number(n) => *n,
            Expr::Metric(m) => value(m),
            Expr::Negate(e) => -e.eval(value),
            Expr::Binary(a, op, b) => {
                let (a, b) = (a.eval(value), b.eval(value));
                match op {
                    Arith::Add => a + b,
                    Arith::Sub => a - b,
                    Arith::Mul => a * b,
                    Arith::Div => a / b,
                }
            }
        }
    }

    /// The unit of the expression's value; `None` for a plain number.
    /// Scaling keeps a unit (`peak_bytes * 1.1` is bytes), a quotient of
    /// like units is a [`Unit::Ratio`], anything else mixed is a count.
    pub fn unit(&self) -> Option<Unit> {
        match self {
            Expr::Number(_) => None,
            Expr::Metric(m) => Some(m.metric.unit()),
            Expr::Negate(e) => e.unit(),
            Expr::Binary(a, op, b) => match (a.unit(), op, b.unit()) {
                (u, _, None) | (None, Arith::Add | Arith::Sub | Arith::Mul, u) => u,
                (Some(x), Arith::Add | Arith::Sub, Some(y)) if x == y => Some(x),
                (Some(x), Arith::Div, Some(y)) if x == y => Some(Unit::Ratio),
                _ => Some(Unit::Count),
            },
        }
    }
}

/// A parsed budget: it fails when `left compare right` holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Budget {
    /// Its name: given in a budgets file, else the text.
    pub name: String,
    /// The text as written.
    pub text: String,
    /// Left side; its first metric is what the budget limits.
    pub left: Expr,
    /// The left side as written.
    pub left_text: String,
    /// The comparison.
    pub compare: Compare,
    /// Right side: the limit.
    pub right: Expr,
}

impl Budget {
    /// Parses a budget such as `peak_bytes > 64MiB`.
    ///
    /// # Errors
    ///
    /// [`Error::Usage`] naming the budget and the column (from 1) where it
    /// stops making sense.
    pub fn parse(text: &str) -> Result<Budget> {
        let mut p = Parser { text, tokens: lex(text)?, at: 0 };
        let left = p.expr()?;
        let (compare, compare_at) = match p.next() {
            Some((Token::Compare(c), at)) => (c, at),
            other => return Err(p.error(other, "a comparison (>, >=, <, <=, ==, !=)")),
        };
        let right = p.expr()?;
        if let Some(t) = p.next() {
            return Err(p.error(Some(t), "the end of the budget"));
        }
        let budget = Budget {
            name: text.trim().to_string(),
            text: text.trim().to_string(),
            left_text: text[..compare_at].trim().to_string(),
            left,
            compare,
            right,
        };
        if budget.left.metrics().is_empty() && budget.right.metrics().is_empty() {
            return Err(Error::Usage(format!("budget {text:?}: it tests no metric")));
        }
        Ok(budget)
    }

    /// Every metric the budget reads.
    pub fn metrics(&self) -> Vec<&MetricRef> {
        let mut v = self.left.metrics();
        v.extend(self.right.metrics());
        v
    }

    /// The metric the budget limits: the first on the left, else the first
    /// on the right.
    pub fn subject(&self) -> &MetricRef {
        self.left
            .metrics()
            .into_iter()
            .chain(self.right.metrics())
            .next()
            .expect("Budget::parse rejects budgets without a metric")
    }
}

/// A budgets file (`--budgets memscope.toml`), so a repository keeps its
/// limits in one place:
///
/// ```toml
/// [report]               # optional defaults for `report`
/// temporary = "next"     # or a duration: "10us"
/// top = 10
///
/// [[budget]]
/// name = "no leaks"      # optional; the expression by default
/// fail_on = "leaked_bytes > 0"
///
/// [[budget]]
/// fail_on = "peak_bytes > 64MiB"
/// ```
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetsFile {
    /// Defaults for the report's options.
    #[serde(default)]
    pub report: ReportDefaults,
    /// The budgets.
    #[serde(default, rename = "budget")]
    entries: Vec<BudgetEntry>,
}

/// The `[report]` table of a budgets file.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportDefaults {
    /// Default of `--temporary`.
    pub temporary: Option<String>,
    /// Default of `--top`.
    pub top: Option<usize>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetEntry {
    name: Option<String>,
    fail_on: String,
}

impl BudgetsFile {
    /// Reads and parses a budgets file.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] or [`Error::Io`] when it cannot be read;
    /// [`Error::Usage`] naming the file, line and column of a TOML error,
    /// or the file and budget of an expression error.
    pub fn load(path: &std::path::Path) -> Result<(BudgetsFile, Vec<Budget>)> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let file: BudgetsFile = toml::from_str(&text).map_err(|e| {
            let at = e.span().map_or(String::new(), |s| {
                let line = text[..s.start].matches('\n').count() + 1;
                let col = text[..s.start].rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                format!(":{line}:{col}")
            });
            Error::Usage(format!("{}{at}: {}", path.display(), e.message()))
        })?;
        let mut budgets = Vec::new();
        for entry in &file.entries {
            let mut b = Budget::parse(&entry.fail_on)
                .map_err(|e| Error::Usage(format!("{}: {e}", path.display())))?;
            if let Some(name) = &entry.name {
                b.name = name.clone();
            }
            budgets.push(b);
        }
        Ok((file, budgets))
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Number(f64),
    Ident(String),
    Text(String),
    Compare(Compare),
    Match(Match),
    Arith(Arith),
    Open,
    Close,
    OpenBracket,
    CloseBracket,
    Comma,
}

/// Splits `text` into tokens with their byte offsets.
fn lex(text: &str) -> Result<Vec<(Token, usize)>> {
    let error = |at: usize, what: &str| {
        Error::Usage(format!("budget {text:?}: at column {}: {what}", column(text, at)))
    };
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let two = |s: &str| text[i..].starts_with(s);
        let token = if c.is_ascii_whitespace() {
            i += 1;
            continue;
        } else if c.is_ascii_digit()
            || (c == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            while i < bytes.len()
                && (bytes[i].is_ascii_digit() || bytes[i] == b'.' || bytes[i] == b'_')
            {
                i += 1;
            }
            let digits: String = text[start..i].chars().filter(|&c| c != '_').collect();
            let mut n: f64 =
                digits.parse().map_err(|_| error(start, &format!("bad number {digits:?}")))?;
            while i < bytes.len() && bytes[i] == b' ' {
                i += 1;
            }
            let unit_start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphabetic() || bytes[i] == b'%') {
                i += 1;
            }
            let unit = &text[unit_start..i];
            if !unit.is_empty() {
                n *= match unit_factor(unit) {
                    Some(f) => f,
                    None => {
                        return Err(error(
                            unit_start,
                            &format!(
                                "unknown unit {unit:?} (use B, KB, MB, GB, TB, KiB, MiB, GiB, TiB, ns, us, ms, s or %)"
                            ),
                        ));
                    }
                };
            }
            Token::Number(n)
        } else if c.is_ascii_alphabetic() || c == b'_' {
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'.')
            {
                i += 1;
            }
            Token::Ident(text[start..i].to_string())
        } else if c == b'"' || c == b'\'' {
            let mut value = String::new();
            i += 1;
            loop {
                match text[i..].chars().next() {
                    None => return Err(error(start, "string without its closing quote")),
                    Some(q) if q as u32 == u32::from(c) => {
                        i += 1;
                        break;
                    }
                    Some('\\') if matches!(text[i + 1..].chars().next(), Some(q) if q as u32 == u32::from(c) || q == '\\') =>
                    {
                        value.push(text[i + 1..].chars().next().unwrap_or('\\'));
                        i += 2;
                    }
                    Some(ch) => {
                        value.push(ch);
                        i += ch.len_utf8();
                    }
                }
            }
            Token::Text(value)
        } else {
            let (token, len) = if two(">=") {
                (Token::Compare(Compare::GreaterEqual), 2)
            } else if two("<=") {
                (Token::Compare(Compare::LessEqual), 2)
            } else if two("==") {
                (Token::Compare(Compare::Equal), 2)
            } else if two("!=") {
                (Token::Compare(Compare::NotEqual), 2)
            } else if two("!~") {
                (Token::Match(Match::NotRegex), 2)
            } else {
                let t = match c {
                    b'>' => Token::Compare(Compare::Greater),
                    b'<' => Token::Compare(Compare::Less),
                    b'=' => Token::Match(Match::Equal),
                    b'~' => Token::Match(Match::Regex),
                    b'+' => Token::Arith(Arith::Add),
                    b'-' => Token::Arith(Arith::Sub),
                    b'*' => Token::Arith(Arith::Mul),
                    b'/' => Token::Arith(Arith::Div),
                    b'(' => Token::Open,
                    b')' => Token::Close,
                    b'[' => Token::OpenBracket,
                    b']' => Token::CloseBracket,
                    b',' => Token::Comma,
                    _ => {
                        let ch = text[i..].chars().next().unwrap_or('?');
                        return Err(error(i, &format!("unexpected {ch:?}")));
                    }
                };
                (t, 1)
            };
            i += len;
            token
        };
        out.push((token, start));
    }
    Ok(out)
}

/// The factor of a unit suffix.
pub(crate) fn unit_factor(unit: &str) -> Option<f64> {
    Some(match unit {
        "B" | "b" | "ns" => 1.0,
        "KB" | "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "TiB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "us" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "%" => 0.01,
        _ => return None,
    })
}

/// Column (from 1, in characters) of byte offset `at`.
fn column(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].chars().count() + 1
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<(Token, usize)>,
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|(t, _)| t)
    }

    fn next(&mut self) -> Option<(Token, usize)> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn error(&self, found: Option<(Token, usize)>, expected: &str) -> Error {
        let text = self.text;
        match found {
            Some((_, at)) => {
                let rest: String = text[at..].chars().take(20).collect();
                Error::Usage(format!(
                    "budget {text:?}: at column {}: expected {expected}, found {rest:?}",
                    column(text, at)
                ))
            }
            None => Error::Usage(format!("budget {text:?}: expected {expected} at the end")),
        }
    }

    fn expr(&mut self) -> Result<Expr> {
        let mut e = self.term()?;
        while let Some(Token::Arith(op @ (Arith::Add | Arith::Sub))) = self.peek() {
            let op = *op;
            self.at += 1;
            e = Expr::Binary(Box::new(e), op, Box::new(self.term()?));
        }
        Ok(e)
    }

    fn term(&mut self) -> Result<Expr> {
        let mut e = self.factor()?;
        while let Some(Token::Arith(op @ (Arith::Mul | Arith::Div))) = self.peek() {
            let op = *op;
            self.at += 1;
            e = Expr::Binary(Box::new(e), op, Box::new(self.factor()?));
        }
        Ok(e)
    }

    fn factor(&mut self) -> Result<Expr> {
        match self.next() {
            Some((Token::Number(n), _)) => Ok(Expr::Number(n)),
            Some((Token::Arith(Arith::Sub), _)) => Ok(Expr::Negate(Box::new(self.factor()?))),
            Some((Token::Open, _)) => {
                let e = self.expr()?;
                match self.next() {
                    Some((Token::Close, _)) => Ok(e),
                    other => Err(self.error(other, "')'")),
                }
            }
            Some((Token::Ident(name), at)) => self.metric(&name, at).map(Expr::Metric),
            other => Err(self.error(other, "a number, a metric or '('")),
        }
    }

    fn metric(&mut self, name: &str, at: usize) -> Result<MetricRef> {
        let (baseline, bare) = match name.strip_prefix("baseline.") {
            Some(rest) => (true, rest),
            None => (false, name),
        };
        let metric = Metric::from_name(bare).ok_or_else(|| {
            let names: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
            Error::Usage(format!(
                "budget {:?}: at column {}: unknown metric {bare:?} (known: {})",
                self.text,
                column(self.text, at),
                names.join(", ")
            ))
        })?;
        let mut filter = Vec::new();
        if self.peek() == Some(&Token::OpenBracket) {
            self.at += 1;
            if !metric.filterable() {
                return Err(Error::Usage(format!(
                    "budget {:?}: {metric} cannot be filtered by allocation",
                    self.text
                )));
            }
            loop {
                filter.push(self.condition()?);
                match self.next() {
                    Some((Token::Comma, _)) => {}
                    Some((Token::Ident(and), _)) if and.eq_ignore_ascii_case("and") => {}
                    Some((Token::CloseBracket, _)) => break,
                    other => return Err(self.error(other, "',' or ']'")),
                }
            }
        }
        Ok(MetricRef { baseline, metric, filter })
    }

    fn condition(&mut self) -> Result<Condition> {
        let field = match self.next() {
            Some((Token::Ident(name), _)) if name == "call_site" => Column::CallSite,
            Some((Token::Ident(name), _)) if name == "type" || name == "type_name" => Column::Type,
            Some((Token::Ident(name), _)) if name == "thread" => Column::Thread,
            Some((Token::Ident(name), _)) if name == "file" || name == "call_site_file" => {
                Column::File
            }
            other => return Err(self.error(other, "call_site, type, thread or file")),
        };
        let op = match self.next() {
            Some((Token::Match(m), _)) => m,
            Some((Token::Compare(Compare::Equal), _)) => Match::Equal,
            Some((Token::Compare(Compare::NotEqual), _)) => Match::NotEqual,
            other => return Err(self.error(other, "~, !~, = or !=")),
        };
        let value = match self.next() {
            Some((Token::Text(v), at)) => {
                if matches!(op, Match::Regex | Match::NotRegex)
                    && let Err(e) = regex::Regex::new(&v)
                {
                    return Err(Error::Usage(format!(
                        "budget {:?}: at column {}: bad regular expression: {e}",
                        self.text,
                        column(self.text, at)
                    )));
                }
                v
            }
            other => return Err(self.error(other, "a quoted string")),
        };
        Ok(Condition { column: field, op, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metric(m: Metric) -> Expr {
        Expr::Metric(MetricRef { baseline: false, metric: m, filter: vec![] })
    }

    #[test]
    fn simple_budgets() {
        let b = Budget::parse("leaked_bytes > 0").unwrap();
        assert_eq!(b.left, metric(Metric::LeakedBytes));
        assert_eq!(b.compare, Compare::Greater);
        assert_eq!(b.right, Expr::Number(0.0));
        let b = Budget::parse("peak_bytes >= 64MiB").unwrap();
        assert_eq!(b.right, Expr::Number(64.0 * 1024.0 * 1024.0));
        let b = Budget::parse("duration_ns > 1.5 s").unwrap();
        assert_eq!(b.right, Expr::Number(1.5e9));
        let b = Budget::parse("allocations > 1_000_000").unwrap();
        assert_eq!(b.right, Expr::Number(1e6));
    }

    #[test]
    fn baseline_arithmetic_and_precedence() {
        let b = Budget::parse("peak_bytes > baseline.peak_bytes * 1.10 + 1KB").unwrap();
        let base =
            Expr::Metric(MetricRef { baseline: true, metric: Metric::PeakBytes, filter: vec![] });
        assert_eq!(
            b.right,
            Expr::Binary(
                Box::new(Expr::Binary(Box::new(base), Arith::Mul, Box::new(Expr::Number(1.1)))),
                Arith::Add,
                Box::new(Expr::Number(1000.0))
            )
        );
        let v = b.right.eval(&|_| 100.0);
        assert!((v - 1110.0).abs() < 1e-9, "{v}");
        assert!(
            Budget::parse("peak_bytes > baseline.peak_bytes * 110%")
                .unwrap()
                .right
                .eval(&|_| 100.0)
                - 110.0
                < 1e-9
        );
    }

    #[test]
    fn filters() {
        let b = Budget::parse(
            r#"leaked_bytes[call_site ~ "my_crate::cache", type != 'String'] > 1KiB"#,
        )
        .unwrap();
        let m = b.subject();
        assert_eq!(m.metric, Metric::LeakedBytes);
        assert_eq!(
            m.filter,
            vec![
                Condition {
                    column: Column::CallSite,
                    op: Match::Regex,
                    value: "my_crate::cache".into()
                },
                Condition { column: Column::Type, op: Match::NotEqual, value: "String".into() },
            ]
        );
        assert_eq!(
            m.filter[1].sql(),
            "coalesce(CAST(a.type_name AS VARCHAR), '(unknown)') <> 'String'"
        );
        let q = Budget::parse(r#"allocations[thread = "it's"] > 0"#).unwrap();
        assert!(q.subject().filter[0].sql().ends_with("= 'it''s'"));
        assert_eq!(q.subject().to_string(), r#"allocations[thread = "it's"]"#);
    }

    #[test]
    fn errors_name_the_column() {
        let cases = [
            ("leaked_bytes", "expected a comparison"),
            ("leaked_bytes > ", "expected a number, a metric or '(' at the end"),
            ("leakd_bytes > 0", "at column 1: unknown metric \"leakd_bytes\""),
            ("peak_bytes > 64 MiBs", "at column 17: unknown unit \"MiBs\""),
            ("peak_bytes > 1 2", "at column 16: expected the end of the budget"),
            ("leaked_bytes[size ~ \"x\"] > 0", "expected call_site, type, thread or file"),
            ("leaked_bytes[call_site ~ \"(\"] > 0", "bad regular expression"),
            ("leaked_bytes[call_site ~ \"x] > 0", "string without its closing quote"),
            ("peak_rss_bytes[type = \"x\"] > 0", "cannot be filtered"),
            ("1 > 0", "tests no metric"),
            ("peak_bytes $ 0", "at column 12: unexpected '$'"),
        ];
        for (text, want) in cases {
            let err = Budget::parse(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
            assert!(err.starts_with(&format!("budget {text:?}")), "{err}");
        }
    }

    #[test]
    fn comparisons() {
        assert!(Compare::Greater.holds(2.0, 1.0));
        assert!(!Compare::Greater.holds(1.0, 1.0));
        assert!(Compare::LessEqual.holds(1.0, 1.0));
        assert!(Compare::NotEqual.holds(1.0, 2.0));
    }

    #[test]
    fn units_follow_the_arithmetic() {
        let unit = |t: &str| Budget::parse(t).unwrap().left.unit();
        assert_eq!(unit("peak_bytes * 1.1 > 0"), Some(Unit::Bytes));
        assert_eq!(unit("leaked_bytes / allocated_bytes > 1%"), Some(Unit::Ratio));
        assert_eq!(unit("allocations / duration_ns > 1"), Some(Unit::Count));
        assert_eq!(unit("64MiB < peak_bytes"), None);
        assert_eq!(Budget::parse("64MiB < peak_bytes").unwrap().right.unit(), Some(Unit::Bytes));
        let b = Budget::parse(r#"leaked_bytes[call_site = "<Vec<u8> as Drop>::drop"] * 2 > 0"#)
            .unwrap();
        assert_eq!(b.left_text, r#"leaked_bytes[call_site = "<Vec<u8> as Drop>::drop"] * 2"#);
    }
}
