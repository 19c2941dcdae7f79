//! The ECS cluster query language: the expressions of `memberOf` placement
//! constraints and of `ListContainerInstances --filter`, such as
//! `attribute:ecs.instance-type =~ t2.* and not(task:group == database)`.
//!
//! [`parse`] checks an expression once, when the request brings it, so that
//! a mistake becomes a request error that says what is wrong and where (a
//! character position, counted from 0). [`Expression::matches`] then tests
//! the checked expression against each candidate instance and cannot fail.
//!
//! Every negative operator (`!=`, `not_in`, `not_matches`, `!exists`) is
//! the exact negation of its positive one. So an instance with no value to
//! compare (no EC2 instance ID, no such attribute, an attribute without a
//! value) fails `==` and passes `!=`, and `task:group != g` holds where no
//! task of group `g` runs, as ECS documents it.

use ecs_model::ecs_api::Attribute;
use std::cmp::Ordering;
use std::fmt;

/// ECS refuses longer expressions.
pub const MAX_LENGTH: usize = 2000;

/// How deeply parentheses and `not(...)` may nest. The parser and the
/// evaluator recurse once per level, so this bounds their stack on hostile
/// input.
pub const MAX_DEPTH: usize = 32;

/// Why an expression was refused. The message is written to be returned as
/// it is, as the message of an `InvalidParameterException`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(String);

impl QueryError {
    pub fn message(&self) -> &str {
        &self.0
    }

    fn new(what: impl fmt::Display, at: Option<usize>) -> Self {
        match at {
            Some(pos) => QueryError(format!("Invalid expression: {what} at position {pos}")),
            None => QueryError(format!(
                "Invalid expression: {what} at the end of the expression"
            )),
        }
    }
}

/// A checked cluster query expression; see [`parse`].
#[derive(Debug, Clone, PartialEq)]
pub struct Expression {
    root: Node,
}

/// What an expression is evaluated against: one container instance.
#[derive(Debug, Clone, Copy)]
pub struct InstanceFacts<'a> {
    pub ec2_instance_id: Option<&'a str>,
    pub agent_connected: bool,
    pub agent_version: Option<&'a str>,
    /// Epoch seconds.
    pub registered_at: f64,
    pub running_tasks_count: i64,
    pub attributes: &'a [Attribute],
    /// The groups of the tasks on the instance that have not stopped; a
    /// group may appear more than once.
    pub task_groups: &'a [&'a str],
}

impl Expression {
    /// Whether the instance satisfies the expression.
    pub fn matches(&self, facts: &InstanceFacts<'_>) -> bool {
        self.root.eval(facts)
    }
}

/// Parses and checks a cluster query expression.
pub fn parse(text: &str) -> Result<Expression, QueryError> {
    let chars: Vec<char> = text.chars().collect();
    if chars.len() > MAX_LENGTH {
        return Err(QueryError(format!(
            "Invalid expression: {} characters, longer than the limit of {MAX_LENGTH}",
            chars.len()
        )));
    }
    let tokens = lex(&chars)?;
    if tokens.is_empty() {
        return Err(QueryError("Invalid expression: it is empty".to_owned()));
    }
    let mut parser = Parser { tokens, next: 0 };
    let root = parser.disjunction(0)?;
    match parser.peek() {
        None => Ok(Expression { root }),
        Some(Token {
            tok: Tok::Sym(")"),
            pos,
        }) => Err(QueryError::new("unbalanced ')'", Some(*pos))),
        Some(token) => Err(QueryError::new(
            format_args!(
                "unexpected {} where 'and', 'or' or the end was expected,",
                token.tok
            ),
            Some(token.pos),
        )),
    }
}

// ---------------------------------------------------------------------------
// Evaluation

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Any(Vec<Node>),
    All(Vec<Node>),
    Not(Box<Node>),
    Test(Test),
}

#[derive(Debug, Clone, PartialEq)]
enum Test {
    AgentConnected(Pick),
    AgentVersion(Cmp, Version),
    Attribute(String, AttributeTest),
    Ec2InstanceId(Pick),
    RegisteredAt(Cmp, TimeSpan),
    RunningTasksCount(Cmp, i64),
    TaskGroup(Pick),
}

#[derive(Debug, Clone, PartialEq)]
enum AttributeTest {
    Exists,
    Pick(Pick),
    /// Only the ordering comparisons: `==` is a [`Pick`], a string match.
    Compare(Cmp, String),
}

/// `==` (a list of one), `in`, or `matches`.
#[derive(Debug, Clone, PartialEq)]
enum Pick {
    OneOf(Vec<String>),
    Like(Glob),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Cmp {
    Eq,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Node {
    fn eval(&self, facts: &InstanceFacts<'_>) -> bool {
        match self {
            Node::Any(nodes) => nodes.iter().any(|n| n.eval(facts)),
            Node::All(nodes) => nodes.iter().all(|n| n.eval(facts)),
            Node::Not(node) => !node.eval(facts),
            Node::Test(test) => test.eval(facts),
        }
    }
}

impl Test {
    fn eval(&self, facts: &InstanceFacts<'_>) -> bool {
        match self {
            Test::AgentConnected(pick) => pick.accepts(if facts.agent_connected {
                "true"
            } else {
                "false"
            }),
            Test::AgentVersion(cmp, version) => facts
                .agent_version
                .and_then(Version::reported)
                .is_some_and(|have| cmp.holds(have.cmp(version))),
            Test::Attribute(name, test) => {
                let found = facts.attributes.iter().find(|a| a.name == *name);
                let value = found.and_then(|a| a.value.as_deref());
                match test {
                    AttributeTest::Exists => found.is_some(),
                    AttributeTest::Pick(pick) => value.is_some_and(|v| pick.accepts(v)),
                    AttributeTest::Compare(cmp, want) => {
                        value.is_some_and(|v| cmp.holds(compare_values(v, want)))
                    }
                }
            }
            Test::Ec2InstanceId(pick) => facts.ec2_instance_id.is_some_and(|id| pick.accepts(id)),
            Test::RegisteredAt(cmp, span) => span.holds(*cmp, facts.registered_at),
            Test::RunningTasksCount(cmp, n) => cmp.holds(facts.running_tasks_count.cmp(n)),
            Test::TaskGroup(pick) => facts.task_groups.iter().any(|g| pick.accepts(g)),
        }
    }
}

impl Pick {
    fn accepts(&self, value: &str) -> bool {
        match self {
            Pick::OneOf(values) => values.iter().any(|v| v == value),
            Pick::Like(glob) => glob.matches(value),
        }
    }
}

impl Cmp {
    fn holds(self, ord: Ordering) -> bool {
        match self {
            Cmp::Eq => ord == Ordering::Equal,
            Cmp::Gt => ord == Ordering::Greater,
            Cmp::Ge => ord != Ordering::Less,
            Cmp::Lt => ord == Ordering::Less,
            Cmp::Le => ord != Ordering::Greater,
        }
    }
}

/// Attribute values are strings, but `attribute:cpu-count > 8` should not
/// hold for "10" < "8" lexicographically; numbers compare as numbers.
fn compare_values(have: &str, want: &str) -> Ordering {
    match (number(have), number(want)) {
        (Some(a), Some(b)) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
        _ => have.cmp(want),
    }
}

/// Finite only: Rust would also read "inf" and "NaN", which are names here.
fn number(text: &str) -> Option<f64> {
    text.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// A `matches` pattern: `*` stands for any run of characters, everything
/// else for itself, and the pattern must cover the whole value.
#[derive(Debug, Clone, PartialEq)]
struct Glob {
    /// The text between the stars; one part means there is no star.
    parts: Vec<String>,
}

impl Glob {
    fn new(pattern: &str) -> Glob {
        let mut parts: Vec<String> = pattern.split('*').map(str::to_owned).collect();
        // "a**b" is "a*b"; empty middle parts only cost searches.
        if parts.len() > 2 {
            let last = parts.pop().unwrap_or_default();
            let mut kept = vec![parts.remove(0)];
            kept.extend(parts.into_iter().filter(|p| !p.is_empty()));
            kept.push(last);
            parts = kept;
        }
        Glob { parts }
    }

    /// Taking the leftmost occurrence of each middle part is always right
    /// when `*` is the only wildcard, so there is no backtracking: the work
    /// is linear in the value for each part, whatever the pattern.
    fn matches(&self, text: &str) -> bool {
        let Some((first, rest)) = self.parts.split_first() else {
            return false;
        };
        let Some((last, middle)) = rest.split_last() else {
            return text == first;
        };
        if text.len() < first.len() + last.len()
            || !text.starts_with(first.as_str())
            || !text.ends_with(last.as_str())
        {
            return false;
        }
        let mut between = &text[first.len()..text.len() - last.len()];
        for part in middle {
            match between.find(part.as_str()) {
                Some(at) => between = &between[at + part.len()..],
                None => return false,
            }
        }
        true
    }
}

/// An agent version, compared number by number (1.10.0 > 1.9.3), with
/// missing numbers as 0 (1.2 == 1.2.0).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Version(Vec<u64>);

impl Version {
    /// An expression's version: `1.20.0`, optionally `v1.20.0`.
    fn parse(text: &str) -> Option<Version> {
        let text = text.strip_prefix(['v', 'V']).unwrap_or(text);
        let mut numbers = text.split('.').map(digits).collect::<Option<Vec<u64>>>()?;
        // Trailing zeros would make 1.2 < 1.2.0 in Vec's ordering.
        while numbers.last() == Some(&0) {
            numbers.pop();
        }
        Some(Version(numbers))
    }

    /// An agent's own version may carry a suffix (`1.51.0-dev`, `1.51.0
    /// (abc123)`); only the leading numbers count.
    fn reported(text: &str) -> Option<Version> {
        let text = text.trim().strip_prefix(['v', 'V']).unwrap_or(text.trim());
        let end = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        Version::parse(text[..end].trim_end_matches('.'))
    }
}

/// A non-empty run of ASCII digits: `str::parse` would also take "+1".
fn digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The interval a `registeredAt` date stands for: a whole day for
/// `2018-06-18`, a whole second otherwise. Registration times have
/// fractions of a second, so comparing with the interval's bounds is what
/// lets `registeredAt == 2018-06-18` mean "registered that day".
#[derive(Debug, Clone, Copy, PartialEq)]
struct TimeSpan {
    start: f64,
    end: f64,
}

impl TimeSpan {
    fn holds(self, cmp: Cmp, t: f64) -> bool {
        match cmp {
            Cmp::Eq => self.start <= t && t < self.end,
            Cmp::Gt => t >= self.end,
            Cmp::Ge => t >= self.start,
            Cmp::Lt => t < self.start,
            Cmp::Le => t < self.end,
        }
    }

    /// `2018-06-18`, `2018-06-18T22:28:28`, and the latter followed by `Z`
    /// or an offset such as `+00:00` or `-05:30`. No zone means UTC.
    fn parse(text: &str) -> Option<TimeSpan> {
        let b = text.as_bytes();
        let num = |from: usize, len: usize| -> Option<i64> {
            let part = b.get(from..from + len)?;
            if !part.iter().all(u8::is_ascii_digit) {
                return None;
            }
            Some(part.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
        };
        let sep = |at: usize, c: u8| b.get(at) == Some(&c);

        let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
        let valid = sep(4, b'-')
            && sep(7, b'-')
            && (1..=12).contains(&month)
            && (1..=days_in_month(year, month)).contains(&day);
        if !valid {
            return None;
        }
        let midnight = days_from_civil(year, month, day) * 86_400;
        if b.len() == 10 {
            let start = midnight as f64;
            return Some(TimeSpan {
                start,
                end: start + 86_400.0,
            });
        }

        if !(sep(10, b'T') || sep(10, b't')) || !sep(13, b':') || !sep(16, b':') {
            return None;
        }
        let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
        if hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        let offset = match &b[19..] {
            [] | [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
                let (h, m) = (num(20, 2)?, num(23, 2)?);
                if h > 23 || m > 59 {
                    return None;
                }
                let offset = h * 3600 + m * 60;
                if *sign == b'-' {
                    -offset
                } else {
                    offset
                }
            }
            _ => return None,
        };
        let start = (midnight + hour * 3600 + minute * 60 + second - offset) as f64;
        Some(TimeSpan {
            start,
            end: start + 1.0,
        })
    }
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date, by the era-based
/// method of Howard Hinnant's `days_from_civil` (exact for any year).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    // Years start in March so that the leap day is the last of its year.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

// ---------------------------------------------------------------------------
// Lexing

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// A bare word: a subject, an operator or keyword, or a value.
    Word(String),
    /// A value in quotes, and the quote character.
    Quoted(String, char),
    /// Punctuation and symbolic operators.
    Sym(&'static str),
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Word(w) => write!(f, "'{w}'"),
            Tok::Quoted(s, q) => write!(f, "{q}{s}{q}"),
            Tok::Sym(s) => write!(f, "'{s}'"),
        }
    }
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    /// Index of the token's first character.
    pos: usize,
}

fn is_word_char(c: char) -> bool {
    // `+` is here so that `2018-06-18T22:28:28+00:00` needs no quotes.
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '*' | '/' | '+' | '@')
}

fn lex(chars: &[char]) -> Result<Vec<Token>, QueryError> {
    let mut tokens = Vec::new();
    let mut i = 0;
    let word_end = |from: usize| {
        chars[from..]
            .iter()
            .position(|c| !is_word_char(*c))
            .map_or(chars.len(), |n| from + n)
    };
    while let Some(&c) = chars.get(i) {
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let pos = i;
        let next = chars.get(i + 1).copied();
        let sym = match (c, next) {
            ('=', Some('=')) => Some("=="),
            ('=', Some('~')) => Some("=~"),
            ('!', Some('=')) => Some("!="),
            ('!', Some('~')) => Some("!~"),
            ('>', Some('=')) => Some(">="),
            ('<', Some('=')) => Some("<="),
            ('&', Some('&')) => Some("&&"),
            ('|', Some('|')) => Some("||"),
            ('>', _) => Some(">"),
            ('<', _) => Some("<"),
            ('(', _) => Some("("),
            (')', _) => Some(")"),
            ('[', _) => Some("["),
            (']', _) => Some("]"),
            (',', _) => Some(","),
            // `!in` and `!exists` are one operator; `!(` is `not(`.
            ('!', Some(n)) if is_word_char(n) => None,
            ('!', _) => Some("!"),
            _ => None,
        };
        let tok = if let Some(sym) = sym {
            i += sym.len();
            Tok::Sym(sym)
        } else if c == '!' || is_word_char(c) {
            let end = word_end(i + 1);
            let word = chars[i..end].iter().collect();
            i = end;
            Tok::Word(word)
        } else if c == '\'' || c == '"' {
            let Some(len) = chars[i + 1..].iter().position(|&q| q == c) else {
                return Err(QueryError::new(
                    format_args!("the quote {c} is never closed; it opens"),
                    Some(pos),
                ));
            };
            let text = chars[i + 1..i + 1 + len].iter().collect();
            i += len + 2;
            Tok::Quoted(text, c)
        } else {
            return Err(QueryError::new(
                format_args!("unexpected character {c:?}"),
                Some(pos),
            ));
        };
        tokens.push(Token { tok, pos });
    }
    Ok(tokens)
}

// ---------------------------------------------------------------------------
// Parsing

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Exists,
    NotExists,
    In,
    NotIn,
    Matches,
    NotMatches,
}

impl Op {
    fn from_tok(tok: &Tok) -> Option<Op> {
        let text = match tok {
            Tok::Sym(s) => (*s).to_owned(),
            Tok::Word(w) => w.to_ascii_lowercase(),
            Tok::Quoted(..) => return None,
        };
        Some(match text.as_str() {
            "==" | "equals" => Op::Eq,
            "!=" | "not_equals" => Op::Ne,
            ">" | "greater_than" => Op::Gt,
            ">=" | "greater_than_equal" => Op::Ge,
            "<" | "less_than" => Op::Lt,
            "<=" | "less_than_equal" => Op::Le,
            "exists" => Op::Exists,
            "!exists" | "not_exists" => Op::NotExists,
            "in" => Op::In,
            "!in" | "not_in" => Op::NotIn,
            "=~" | "matches" => Op::Matches,
            "!~" | "not_matches" => Op::NotMatches,
            _ => return None,
        })
    }

    /// The positive operator, and whether this one is its negation.
    fn positive(self) -> (Op, bool) {
        match self {
            Op::Ne => (Op::Eq, true),
            Op::NotExists => (Op::Exists, true),
            Op::NotIn => (Op::In, true),
            Op::NotMatches => (Op::Matches, true),
            op => (op, false),
        }
    }

    fn cmp(self) -> Option<Cmp> {
        match self {
            Op::Eq => Some(Cmp::Eq),
            Op::Gt => Some(Cmp::Gt),
            Op::Ge => Some(Cmp::Ge),
            Op::Lt => Some(Cmp::Lt),
            Op::Le => Some(Cmp::Le),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Subject {
    AgentConnected,
    AgentVersion,
    Attribute(String),
    Ec2InstanceId,
    RegisteredAt,
    RunningTasksCount,
    TaskGroup,
}

/// The operators a subject takes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// ==, !=, in, not_in, matches, not_matches.
    Set,
    /// ==, !=, >, >=, <, <=.
    Ordered,
    Any,
}

impl Subject {
    fn from_word(word: &str) -> Option<Subject> {
        const ATTRIBUTE: &str = "attribute:";
        if word
            .get(..ATTRIBUTE.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(ATTRIBUTE))
        {
            return Some(Subject::Attribute(word[ATTRIBUTE.len()..].to_owned()));
        }
        Some(match word.to_ascii_lowercase().as_str() {
            "agentconnected" => Subject::AgentConnected,
            "agentversion" => Subject::AgentVersion,
            "ec2instanceid" => Subject::Ec2InstanceId,
            "registeredat" => Subject::RegisteredAt,
            "runningtaskscount" => Subject::RunningTasksCount,
            "task:group" => Subject::TaskGroup,
            _ => return None,
        })
    }

    fn kind(&self) -> Kind {
        match self {
            Subject::AgentConnected | Subject::Ec2InstanceId | Subject::TaskGroup => Kind::Set,
            Subject::AgentVersion | Subject::RegisteredAt | Subject::RunningTasksCount => {
                Kind::Ordered
            }
            Subject::Attribute(_) => Kind::Any,
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::AgentConnected => f.write_str("agentConnected"),
            Subject::AgentVersion => f.write_str("agentVersion"),
            Subject::Attribute(name) => write!(f, "attribute:{name}"),
            Subject::Ec2InstanceId => f.write_str("ec2InstanceId"),
            Subject::RegisteredAt => f.write_str("registeredAt"),
            Subject::RunningTasksCount => f.write_str("runningTasksCount"),
            Subject::TaskGroup => f.write_str("task:group"),
        }
    }
}

/// A value of the expression and where it starts, for error messages.
struct Value {
    text: String,
    pos: usize,
}

struct Parser {
    tokens: Vec<Token>,
    next: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.next)
    }

    fn advance(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.next).cloned();
        if token.is_some() {
            self.next += 1;
        }
        token
    }

    fn peek_is(&self, sym: &str, word: &str) -> bool {
        match self.peek().map(|t| &t.tok) {
            Some(Tok::Sym(s)) => *s == sym,
            Some(Tok::Word(w)) => w.eq_ignore_ascii_case(word),
            _ => false,
        }
    }

    /// `or` binds loosest.
    fn disjunction(&mut self, depth: usize) -> Result<Node, QueryError> {
        let mut nodes = vec![self.conjunction(depth)?];
        while self.peek_is("||", "or") {
            self.next += 1;
            nodes.push(self.conjunction(depth)?);
        }
        Ok(if nodes.len() == 1 {
            nodes.swap_remove(0)
        } else {
            Node::Any(nodes)
        })
    }

    fn conjunction(&mut self, depth: usize) -> Result<Node, QueryError> {
        let mut nodes = vec![self.unary(depth)?];
        while self.peek_is("&&", "and") {
            self.next += 1;
            nodes.push(self.unary(depth)?);
        }
        Ok(if nodes.len() == 1 {
            nodes.swap_remove(0)
        } else {
            Node::All(nodes)
        })
    }

    /// `not(...)`, `(...)` or a condition.
    fn unary(&mut self, depth: usize) -> Result<Node, QueryError> {
        let Some(token) = self.advance() else {
            return Err(QueryError::new("missing a condition", None));
        };
        let negate = match &token.tok {
            Tok::Sym("!") => true,
            Tok::Word(w) if w.eq_ignore_ascii_case("not") => true,
            Tok::Sym("(") => false,
            Tok::Word(_) => return self.condition(token),
            other => {
                return Err(QueryError::new(
                    format_args!("expected a condition, found {other},"),
                    Some(token.pos),
                ))
            }
        };
        if depth >= MAX_DEPTH {
            return Err(QueryError::new(
                format_args!("nesting deeper than {MAX_DEPTH} levels"),
                Some(token.pos),
            ));
        }
        let open = if negate {
            match self.advance() {
                Some(Token {
                    tok: Tok::Sym("("),
                    pos,
                }) => pos,
                Some(other) => {
                    return Err(QueryError::new(
                        format_args!("expected '(' after {}, found {},", token.tok, other.tok),
                        Some(other.pos),
                    ))
                }
                None => {
                    return Err(QueryError::new(
                        format_args!("missing '(' after {}", token.tok),
                        None,
                    ))
                }
            }
        } else {
            token.pos
        };
        let inner = self.disjunction(depth + 1)?;
        match self.advance() {
            Some(Token {
                tok: Tok::Sym(")"), ..
            }) => {}
            Some(other) => {
                return Err(QueryError::new(
                    format_args!(
                        "unexpected {} where 'and', 'or' or ')' was expected,",
                        other.tok
                    ),
                    Some(other.pos),
                ))
            }
            None => {
                return Err(QueryError::new(
                    format_args!("missing ')' for the '(' at position {open}"),
                    None,
                ))
            }
        }
        Ok(if negate {
            Node::Not(Box::new(inner))
        } else {
            inner
        })
    }

    /// `subject operator [argument]`; `subject` is the token taken.
    fn condition(&mut self, subject_token: Token) -> Result<Node, QueryError> {
        let Tok::Word(word) = &subject_token.tok else {
            return Err(QueryError::new(
                "expected a subject",
                Some(subject_token.pos),
            ));
        };
        let subject = Subject::from_word(word).ok_or_else(|| {
            QueryError::new(
                format_args!("unknown subject '{word}'"),
                Some(subject_token.pos),
            )
        })?;
        if matches!(&subject, Subject::Attribute(name) if name.is_empty()) {
            return Err(QueryError::new(
                "'attribute:' needs an attribute name, as in attribute:ecs.instance-type,",
                Some(subject_token.pos),
            ));
        }

        let Some(op_token) = self.advance() else {
            return Err(QueryError::new(
                format_args!("missing an operator after '{subject}'"),
                None,
            ));
        };
        let Some(op) = Op::from_tok(&op_token.tok) else {
            return Err(QueryError::new(
                format_args!(
                    "expected an operator after '{subject}', found {},",
                    op_token.tok
                ),
                Some(op_token.pos),
            ));
        };
        let allowed = match subject.kind() {
            Kind::Set => matches!(
                op,
                Op::Eq | Op::Ne | Op::In | Op::NotIn | Op::Matches | Op::NotMatches
            ),
            Kind::Ordered => matches!(op, Op::Eq | Op::Ne | Op::Gt | Op::Ge | Op::Lt | Op::Le),
            Kind::Any => true,
        };
        if !allowed {
            let takes = match subject.kind() {
                Kind::Set => "==, !=, in, not_in, matches and not_matches",
                _ => "==, !=, >, >=, < and <=",
            };
            return Err(QueryError::new(
                format_args!(
                    "{subject} does not take the operator {} (only {takes})",
                    op_token.tok
                ),
                Some(op_token.pos),
            ));
        }

        let (positive, negate) = op.positive();
        let values = match positive {
            Op::Exists => Vec::new(),
            Op::In => self.list(&op_token)?,
            _ => vec![self.value(&op_token)?],
        };
        let test = build_test(subject, positive, values)?;
        let node = Node::Test(test);
        Ok(if negate {
            Node::Not(Box::new(node))
        } else {
            node
        })
    }

    fn value(&mut self, op_token: &Token) -> Result<Value, QueryError> {
        match self.advance() {
            Some(Token {
                tok: Tok::Word(text) | Tok::Quoted(text, _),
                pos,
            }) => Ok(Value { text, pos }),
            Some(other) => Err(QueryError::new(
                format_args!(
                    "expected a value after {}, found {},",
                    op_token.tok, other.tok
                ),
                Some(other.pos),
            )),
            None => Err(QueryError::new(
                format_args!("missing a value after {}", op_token.tok),
                None,
            )),
        }
    }

    /// `[a, b]` or `(a, b)`.
    fn list(&mut self, op_token: &Token) -> Result<Vec<Value>, QueryError> {
        let (open, close) = match self.advance() {
            Some(Token {
                tok: Tok::Sym("["),
                pos,
            }) => (pos, "]"),
            Some(Token {
                tok: Tok::Sym("("),
                pos,
            }) => (pos, ")"),
            Some(other) => {
                return Err(QueryError::new(
                    format_args!(
                        "{} needs a list such as [a, b], found {},",
                        op_token.tok, other.tok
                    ),
                    Some(other.pos),
                ))
            }
            None => {
                return Err(QueryError::new(
                    format_args!("missing a list such as [a, b] after {}", op_token.tok),
                    None,
                ))
            }
        };
        let mut values = Vec::new();
        loop {
            match self.advance() {
                Some(Token {
                    tok: Tok::Word(text) | Tok::Quoted(text, _),
                    pos,
                }) => values.push(Value { text, pos }),
                Some(Token {
                    tok: Tok::Sym(s),
                    pos,
                }) if s == close && values.is_empty() => {
                    return Err(QueryError::new("empty list", Some(pos)))
                }
                Some(other) => {
                    return Err(QueryError::new(
                        format_args!("expected a list value, found {},", other.tok),
                        Some(other.pos),
                    ))
                }
                None => {
                    return Err(QueryError::new(
                        format_args!("the list at position {open} is never closed"),
                        None,
                    ))
                }
            }
            match self.advance() {
                Some(Token {
                    tok: Tok::Sym(","), ..
                }) => {}
                Some(Token {
                    tok: Tok::Sym(s), ..
                }) if s == close => return Ok(values),
                Some(other) => {
                    return Err(QueryError::new(
                        format_args!("expected ',' or '{close}' in a list, found {},", other.tok),
                        Some(other.pos),
                    ))
                }
                None => {
                    return Err(QueryError::new(
                        format_args!("the list at position {open} is never closed"),
                        None,
                    ))
                }
            }
        }
    }
}

/// Turns a condition into its test, checking the values the subject needs
/// (a date, a number, a version, true or false) now rather than on every
/// instance. `op` is never a negative operator.
fn build_test(subject: Subject, op: Op, values: Vec<Value>) -> Result<Test, QueryError> {
    let pick = |values: Vec<Value>| match op {
        Op::Matches => Pick::Like(Glob::new(
            &values
                .into_iter()
                .next()
                .map(|v| v.text)
                .unwrap_or_default(),
        )),
        _ => Pick::OneOf(values.into_iter().map(|v| v.text).collect()),
    };
    let first = |values: &[Value]| -> Result<(String, usize), QueryError> {
        values
            .first()
            .map(|v| (v.text.clone(), v.pos))
            .ok_or_else(|| QueryError::new("missing a value", None))
    };
    let cmp = || {
        op.cmp()
            .ok_or_else(|| QueryError::new("an operator that does not compare", None))
    };
    Ok(match subject {
        Subject::AgentConnected => {
            let mut values = values;
            if op != Op::Matches {
                for v in &mut values {
                    v.text = v.text.to_ascii_lowercase();
                    if v.text != "true" && v.text != "false" {
                        return Err(QueryError::new(
                            format_args!(
                                "agentConnected compares with true or false, not '{}',",
                                v.text
                            ),
                            Some(v.pos),
                        ));
                    }
                }
            }
            Test::AgentConnected(pick(values))
        }
        Subject::Ec2InstanceId => Test::Ec2InstanceId(pick(values)),
        Subject::TaskGroup => Test::TaskGroup(pick(values)),
        Subject::Attribute(name) => {
            let test = match op {
                Op::Exists => AttributeTest::Exists,
                Op::Eq | Op::In | Op::Matches => AttributeTest::Pick(pick(values)),
                _ => AttributeTest::Compare(cmp()?, first(&values)?.0),
            };
            Test::Attribute(name, test)
        }
        Subject::AgentVersion => {
            let (text, pos) = first(&values)?;
            let version = Version::parse(&text).ok_or_else(|| {
                QueryError::new(
                    format_args!("'{text}' is not a version such as 1.20.0,"),
                    Some(pos),
                )
            })?;
            Test::AgentVersion(cmp()?, version)
        }
        Subject::RegisteredAt => {
            let (text, pos) = first(&values)?;
            let span = TimeSpan::parse(&text).ok_or_else(|| {
                QueryError::new(
                    format_args!(
                        "'{text}' is not a date such as 2018-06-18, 2018-06-18T22:28:28Z \
                         or 2018-06-18T22:28:28+00:00,"
                    ),
                    Some(pos),
                )
            })?;
            Test::RegisteredAt(cmp()?, span)
        }
        Subject::RunningTasksCount => {
            let (text, pos) = first(&values)?;
            let n = text.parse::<i64>().map_err(|_| {
                QueryError::new(format_args!("'{text}' is not a whole number,"), Some(pos))
            })?;
            Test::RunningTasksCount(cmp()?, n)
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn attr(name: &str, value: Option<&str>) -> Attribute {
        Attribute {
            name: name.to_owned(),
            value: value.map(str::to_owned),
            ..Attribute::default()
        }
    }

    struct Instance {
        id: Option<&'static str>,
        connected: bool,
        version: Option<&'static str>,
        registered_at: f64,
        running: i64,
        attributes: Vec<Attribute>,
        groups: Vec<&'static str>,
    }

    impl Instance {
        /// A t2.micro in us-east-1a, registered 2018-06-18T22:28:28.5Z,
        /// running a web task twice and a batch task once.
        fn new() -> Instance {
            Instance {
                id: Some("i-0123456789abcdef0"),
                connected: true,
                version: Some("1.51.0"),
                registered_at: 1_529_360_908.5,
                running: 3,
                attributes: vec![
                    attr("ecs.instance-type", Some("t2.micro")),
                    attr("ecs.availability-zone", Some("us-east-1a")),
                    attr("cpus", Some("8")),
                    attr("stack", Some("prod")),
                    attr("flag", None),
                ],
                groups: vec!["service:web", "service:web", "family:batch"],
            }
        }

        fn facts(&self) -> InstanceFacts<'_> {
            InstanceFacts {
                ec2_instance_id: self.id,
                agent_connected: self.connected,
                agent_version: self.version,
                registered_at: self.registered_at,
                running_tasks_count: self.running,
                attributes: &self.attributes,
                task_groups: &self.groups,
            }
        }

        fn eval(&self, expression: &str) -> bool {
            match parse(expression) {
                Ok(e) => e.matches(&self.facts()),
                Err(e) => panic!("{expression:?} does not parse: {e}"),
            }
        }
    }

    fn eval(expression: &str) -> bool {
        Instance::new().eval(expression)
    }

    fn error(expression: &str) -> String {
        match parse(expression) {
            Ok(e) => panic!("{expression:?} parsed as {e:?}"),
            Err(e) => e.message().to_owned(),
        }
    }

    #[test]
    fn agent_connected() {
        assert!(eval("agentConnected == true"));
        assert!(!eval("agentConnected == false"));
        assert!(eval("agentConnected != false"));
        assert!(eval("agentConnected == TRUE"));
        assert!(eval("agentConnected in [false, true]"));
        assert!(!eval("agentConnected in [false]"));
        assert!(eval("agentConnected not_in [false]"));
        assert!(eval("agentConnected !in [false]"));
        assert!(eval("agentConnected =~ t*"));
        assert!(!eval("agentConnected matches f*"));
        assert!(eval("agentConnected !~ f*"));
        let mut off = Instance::new();
        off.connected = false;
        assert!(off.eval("agentConnected == false"));
        assert!(!off.eval("agentConnected == true"));
        assert!(off.eval("agentConnected not_matches t*"));
    }

    #[test]
    fn agent_version_compares_number_by_number() {
        assert!(eval("agentVersion == 1.51.0"));
        assert!(eval("agentVersion == 1.51"));
        assert!(eval("agentVersion == v1.51.0.0"));
        assert!(!eval("agentVersion != 1.51.0"));
        assert!(eval("agentVersion > 1.9.3"));
        assert!(eval("agentVersion >= 1.51.0"));
        assert!(!eval("agentVersion > 1.51.0"));
        assert!(eval("agentVersion < 1.100.0"));
        assert!(eval("agentVersion <= 1.51.0"));
        assert!(!eval("agentVersion < 1.51.0"));
        assert!(!eval("agentVersion < 1.6"));
        assert!(eval("agentVersion greater_than 1.50.99"));

        let mut v = Instance::new();
        v.version = Some("1.10.0");
        assert!(v.eval("agentVersion > 1.9.3"));
        assert!(!v.eval("agentVersion < 1.9.3"));
        assert!(v.eval("agentVersion < 1.10.1"));
        v.version = Some("1.51.0-dev (abc123)");
        assert!(v.eval("agentVersion == 1.51.0"));
        v.version = None;
        assert!(!v.eval("agentVersion >= 0"));
        assert!(!v.eval("agentVersion == 1.51.0"));
        assert!(v.eval("agentVersion != 1.51.0"));
        v.version = Some("unknown");
        assert!(!v.eval("agentVersion > 0"));
    }

    #[test]
    fn attributes() {
        assert!(eval("attribute:ecs.instance-type == t2.micro"));
        assert!(!eval("attribute:ecs.instance-type == t2.small"));
        assert!(eval("attribute:ecs.instance-type != t2.small"));
        assert!(eval("attribute:ecs.instance-type =~ t2.*"));
        assert!(!eval("attribute:ecs.instance-type =~ m5.*"));
        assert!(eval("attribute:ecs.instance-type !~ m5.*"));
        assert!(eval(
            "attribute:ecs.availability-zone in [us-east-1a, us-east-1b]"
        ));
        assert!(!eval("attribute:ecs.availability-zone in [us-east-1b]"));
        assert!(eval("attribute:ecs.availability-zone not_in [us-east-1b]"));
        assert!(eval("attribute:stack exists"));
        assert!(!eval("attribute:nothing exists"));
        assert!(eval("attribute:nothing !exists"));
        assert!(eval("attribute:nothing not_exists"));
        assert!(!eval("attribute:stack !exists"));
        // The name keeps its case; the prefix does not matter.
        assert!(eval("ATTRIBUTE:stack == prod"));
        assert!(!eval("attribute:Stack exists"));
        // A missing attribute equals nothing, so every negation holds.
        assert!(!eval("attribute:nothing == x"));
        assert!(eval("attribute:nothing != x"));
        assert!(!eval("attribute:nothing =~ *"));
        assert!(!eval("attribute:nothing > 0"));
        assert!(!eval("attribute:nothing < 0"));
    }

    #[test]
    fn attribute_without_a_value_exists_but_equals_nothing() {
        assert!(eval("attribute:flag exists"));
        assert!(!eval("attribute:flag !exists"));
        assert!(!eval("attribute:flag == ''"));
        assert!(eval("attribute:flag != ''"));
        assert!(!eval("attribute:flag =~ *"));
        assert!(!eval("attribute:flag in [a, '']"));
        assert!(!eval("attribute:flag >= ''"));
    }

    #[test]
    fn attribute_comparisons_are_numeric_when_both_sides_are_numbers() {
        assert!(!eval("attribute:cpus > 10"));
        assert!(eval("attribute:cpus < 10"));
        assert!(eval("attribute:cpus >= 8.0"));
        assert!(eval("attribute:cpus <= 8"));
        assert!(!eval("attribute:cpus < 8"));
        assert!(eval("attribute:cpus greater_than 7.5"));
        assert!(eval("attribute:cpus less_than_equal 8"));
        assert!(eval("attribute:cpus greater_than_equal -1"));
        // Otherwise lexicographic: "prod" > "pre", and "8" > "10x".
        assert!(eval("attribute:stack > pre"));
        assert!(eval("attribute:stack < prods"));
        assert!(eval("attribute:cpus > 10x"));
        // `==` is a string comparison.
        assert!(!eval("attribute:cpus == 8.0"));
        assert!(eval("attribute:cpus == 8"));
    }

    #[test]
    fn ec2_instance_id() {
        assert!(eval("ec2InstanceId == i-0123456789abcdef0"));
        assert!(eval("ec2InstanceId != i-0"));
        assert!(eval("ec2InstanceId in ['i-1', \"i-0123456789abcdef0\"]"));
        assert!(!eval("ec2InstanceId not_in (i-1, i-0123456789abcdef0)"));
        assert!(eval("ec2InstanceId matches i-0123*"));
        assert!(eval("ec2InstanceId not_matches i-9*"));
        let mut none = Instance::new();
        none.id = None;
        assert!(!none.eval("ec2InstanceId =~ *"));
        assert!(none.eval("ec2InstanceId != i-0123456789abcdef0"));
    }

    #[test]
    fn registered_at_date_formats() {
        // Registered at 2018-06-18T22:28:28.5Z.
        assert!(eval("registeredAt == 2018-06-18T22:28:28+00:00"));
        assert!(eval("registeredAt == 2018-06-18T22:28:28Z"));
        assert!(eval("registeredAt == 2018-06-18T22:28:28"));
        assert!(eval("registeredAt == 2018-06-18"));
        assert!(eval("registeredAt == '2018-06-18T22:28:28z'"));
        assert!(eval("registeredAt == 2018-06-19T03:58:28+05:30"));
        assert!(eval("registeredAt == 2018-06-18T17:28:28-05:00"));
        assert!(!eval("registeredAt == 2018-06-18T22:28:29Z"));
        assert!(!eval("registeredAt == 2018-06-19"));
        assert!(eval("registeredAt != 2018-06-19"));
        assert!(eval("registeredAt > 2018-06-18T22:28:27Z"));
        assert!(!eval("registeredAt > 2018-06-18T22:28:28Z"));
        assert!(eval("registeredAt >= 2018-06-18T22:28:28Z"));
        assert!(eval("registeredAt < 2018-06-18T22:28:29Z"));
        assert!(!eval("registeredAt < 2018-06-18"));
        assert!(eval("registeredAt <= 2018-06-18"));
        assert!(eval("registeredAt > 2018-06-17"));
        assert!(eval("registeredAt < 2018-06-19"));
        assert!(eval("registeredAt < 2018-06-18T23:00:00+00:30"));
        assert!(!eval("registeredAt < 2018-06-18T23:00:00+00:40"));

        // A day ends where the next begins.
        let mut midnight = Instance::new();
        midnight.registered_at = 1_529_366_400.0; // 2018-06-19T00:00:00Z
        assert!(!midnight.eval("registeredAt == 2018-06-18"));
        assert!(midnight.eval("registeredAt == 2018-06-19"));
        assert!(midnight.eval("registeredAt > 2018-06-18"));
        assert!(!midnight.eval("registeredAt <= 2018-06-18"));
        assert!(midnight.eval("registeredAt >= 2018-06-19T00:00:00Z"));
        assert!(!midnight.eval("registeredAt < 2018-06-19T00:00:00Z"));
        assert!(!midnight.eval("registeredAt == 2018-06-18T23:59:59Z"));
    }

    #[test]
    fn dates_are_exact() {
        let at = |t: &str| TimeSpan::parse(t).map(|s| (s.start, s.end));
        assert_eq!(at("1970-01-01"), Some((0.0, 86_400.0)));
        assert_eq!(at("1970-01-01T00:00:01Z"), Some((1.0, 2.0)));
        assert_eq!(
            at("2018-06-18T22:28:28+00:00"),
            Some((1_529_360_908.0, 1_529_360_909.0))
        );
        assert_eq!(at("2000-03-01"), Some((951_868_800.0, 951_955_200.0)));
        assert_eq!(
            at("2024-02-29T00:00:00Z").map(|s| s.0),
            Some(1_709_164_800.0)
        );
        assert_eq!(at("1969-12-31T23:59:59Z").map(|s| s.0), Some(-1.0));
        for bad in [
            "2018-06-18T",
            "2018-6-18",
            "2018-06-18 22:28:28",
            "2018-13-01",
            "2018-02-29",
            "2018-06-31",
            "2018-06-00",
            "2018-06-18T24:00:00Z",
            "2018-06-18T22:60:00Z",
            "2018-06-18T22:28:28+0000",
            "2018-06-18T22:28:28+24:00",
            "2018-06-18T22:28:28ZZ",
            "2018-06-18T22:28",
            "20180618",
            "+018-06-18",
            "",
        ] {
            assert_eq!(at(bad), None, "{bad}");
        }
    }

    #[test]
    fn running_tasks_count() {
        assert!(eval("runningTasksCount == 3"));
        assert!(eval("runningTasksCount != 4"));
        assert!(eval("runningTasksCount > 2"));
        assert!(!eval("runningTasksCount > 3"));
        assert!(eval("runningTasksCount >= 3"));
        assert!(eval("runningTasksCount < 4"));
        assert!(!eval("runningTasksCount < 3"));
        assert!(eval("runningTasksCount <= 3"));
        assert!(eval("runningTasksCount less_than 10"));
        assert!(eval("runningTasksCount not_equals 0"));
    }

    #[test]
    fn task_group() {
        assert!(eval("task:group == service:web"));
        assert!(eval("task:group == family:batch"));
        assert!(!eval("task:group == database"));
        assert!(eval("task:group != database"));
        assert!(!eval("task:group != service:web"));
        assert!(eval("task:group in [database, family:batch]"));
        assert!(!eval("task:group in [database]"));
        assert!(eval("task:group not_in [database, cache]"));
        assert!(!eval("task:group not_in [database, service:web]"));
        assert!(eval("task:group =~ service:*"));
        assert!(!eval("task:group !~ service:*"));
        assert!(eval("task:group !~ database*"));
        let mut idle = Instance::new();
        idle.groups.clear();
        assert!(!idle.eval("task:group =~ *"));
        assert!(idle.eval("task:group != service:web"));
    }

    #[test]
    fn operator_words_and_keywords_ignore_case() {
        assert!(eval("attribute:stack EQUALS prod"));
        assert!(eval("attribute:stack Not_Equals test"));
        assert!(eval("attribute:stack MATCHES pr*"));
        assert!(eval("attribute:stack In [prod]"));
        assert!(eval("AgentConnected == true AND RUNNINGTASKSCOUNT > 0"));
        assert!(eval("agentConnected == false OR Task:Group == service:web"));
        assert!(eval("NOT(agentConnected == false)"));
        assert!(eval("attribute:stack EXISTS"));
        assert!(eval("attribute:nothing NOT_EXISTS"));
    }

    #[test]
    fn quoted_values_and_list_styles() {
        let mut i = Instance::new();
        i.attributes.push(attr("team", Some("data science (ml)")));
        assert!(i.eval("attribute:team == 'data science (ml)'"));
        assert!(i.eval("attribute:team == \"data science (ml)\""));
        assert!(i.eval("attribute:team in ['a b', \"data science (ml)\"]"));
        assert!(i.eval("attribute:team in ('data science (ml)')"));
        assert!(i.eval("attribute:team =~ 'data *'"));
        assert!(i.eval("attribute:team == \"data science (ml)\"and agentConnected==true"));
        assert!(eval("attribute:stack in[prod,test]"));
        assert!(eval("attribute:stack in (test , prod)"));
        assert!(eval("attribute:stack==prod&&runningTasksCount>=3"));
    }

    #[test]
    fn precedence_and_grouping() {
        // true or (false and false) = true; (true or false) and false = false.
        let a = "agentConnected == true";
        let f = "agentConnected == false";
        assert!(eval(&format!("{a} or {f} and {f}")));
        assert!(!eval(&format!("({a} or {f}) and {f}")));
        assert!(eval(&format!("{f} and {f} or {a}")));
        assert!(!eval(&format!("{f} and ({f} or {a})")));
        assert!(eval(&format!("{a} || {f} && {f}")));
        // `not` binds tighter than `and`.
        assert!(!eval(&format!("not({f}) and {f}")));
        assert!(eval(&format!("!({f}) || {f}")));
        assert!(eval(&format!("not(({f}))")));
        assert!(eval(&format!("not (not({a}))")));
        assert!(!eval("not(task:group == service:web)"));
        assert!(eval("not(task:group == database)"));
        assert!(eval(
            "attribute:ecs.instance-type =~ t2.* and attribute:ecs.availability-zone in [us-east-1a, us-east-1b]"
        ));
        assert_eq!(
            parse(&format!("{a} or {f} and {f}")),
            parse(&format!("{a} or ({f} and {f})"))
        );
        assert_ne!(
            parse(&format!("{a} or {f} and {f}")),
            parse(&format!("({a} or {f}) and {f}"))
        );
    }

    #[test]
    fn glob_matching() {
        let g = |p: &str, t: &str| Glob::new(p).matches(t);
        assert!(g("t2.*", "t2.micro"));
        assert!(!g("t2.*", "xt2.micro"));
        assert!(g("*micro", "t2.micro"));
        assert!(!g("*micro", "t2.micros"));
        assert!(g("*2.m*", "t2.micro"));
        assert!(!g("*3.m*", "t2.micro"));
        assert!(g("*", ""));
        assert!(g("**", "anything"));
        assert!(g("a*b*c", "abc"));
        assert!(g("a*b*c", "axxbyyc"));
        assert!(!g("a*b*c", "axxcyyb"));
        assert!(!g("ab*ba", "aba"));
        assert!(g("ab*ba", "abba"));
        assert!(g("a**b", "ab"));
        assert!(g("exact", "exact"));
        assert!(!g("exact", "exactly"));
        assert!(!g("", "x"));
        assert!(g("é*ü", "éxü"));
        // Dots are literal, not regex.
        assert!(!g("t2.*", "t2xmicro"));
    }

    #[test]
    fn pathological_glob_is_fast() {
        let pattern = format!("{}b", "a*".repeat(500));
        let text = "a".repeat(100_000);
        let started = std::time::Instant::now();
        assert!(!Glob::new(&pattern).matches(&text));
        assert!(Glob::new(&pattern).matches(&format!("{text}b")));
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        // And through the parser, at the length limit.
        let expression = format!("attribute:stack =~ {}b", "a*".repeat(985));
        assert_eq!(expression.len(), 1990);
        let mut i = Instance::new();
        i.attributes.push(attr("stack", Some(&text)));
        i.attributes.remove(3);
        assert!(!i.eval(&expression));
    }

    #[test]
    fn errors_say_what_and_where() {
        assert_eq!(error(""), "Invalid expression: it is empty");
        assert_eq!(error("   "), "Invalid expression: it is empty");
        assert_eq!(
            error("foo == bar"),
            "Invalid expression: unknown subject 'foo' at position 0"
        );
        assert_eq!(
            error("agentConnected == true and cpu > 1"),
            "Invalid expression: unknown subject 'cpu' at position 27"
        );
        assert_eq!(
            error("agentConnected > true"),
            "Invalid expression: agentConnected does not take the operator '>' \
             (only ==, !=, in, not_in, matches and not_matches) at position 15"
        );
        assert_eq!(
            error("runningTasksCount =~ 1*"),
            "Invalid expression: runningTasksCount does not take the operator '=~' \
             (only ==, !=, >, >=, < and <=) at position 18"
        );
        assert_eq!(
            error("task:group exists"),
            "Invalid expression: task:group does not take the operator 'exists' \
             (only ==, !=, in, not_in, matches and not_matches) at position 11"
        );
        assert!(error("registeredAt in [2018-06-18]").contains("does not take the operator 'in'"));
        assert!(error("agentVersion matches 1.*").contains("does not take"));
        assert!(error("ec2InstanceId < i-1").contains("does not take"));
        assert_eq!(
            error("attribute:stack =="),
            "Invalid expression: missing a value after '==' at the end of the expression"
        );
        assert_eq!(
            error("attribute:stack"),
            "Invalid expression: missing an operator after 'attribute:stack' \
             at the end of the expression"
        );
        assert_eq!(
            error("attribute:stack is prod"),
            "Invalid expression: expected an operator after 'attribute:stack', \
             found 'is', at position 16"
        );
        assert_eq!(
            error("attribute:stack in"),
            "Invalid expression: missing a list such as [a, b] after 'in' \
             at the end of the expression"
        );
        assert_eq!(
            error("attribute:stack in prod"),
            "Invalid expression: 'in' needs a list such as [a, b], found 'prod', at position 19"
        );
        assert_eq!(
            error("attribute:stack == )"),
            "Invalid expression: expected a value after '==', found ')', at position 19"
        );
        assert_eq!(
            error("attribute: exists"),
            "Invalid expression: 'attribute:' needs an attribute name, \
             as in attribute:ecs.instance-type, at position 0"
        );
        assert_eq!(
            error("agentConnected == true and"),
            "Invalid expression: missing a condition at the end of the expression"
        );
        assert_eq!(
            error("and agentConnected == true"),
            "Invalid expression: unknown subject 'and' at position 0"
        );
        assert_eq!(
            error("agentConnected == yes"),
            "Invalid expression: agentConnected compares with true or false, \
             not 'yes', at position 18"
        );
        assert_eq!(
            error("agentVersion > 1.x"),
            "Invalid expression: '1.x' is not a version such as 1.20.0, at position 15"
        );
        assert!(error("registeredAt > yesterday")
            .starts_with("Invalid expression: 'yesterday' is not a date such as 2018-06-18"));
        assert_eq!(
            error("runningTasksCount > 1.5"),
            "Invalid expression: '1.5' is not a whole number, at position 20"
        );
        assert_eq!(
            error("attribute:stack == 'prod"),
            "Invalid expression: the quote ' is never closed; it opens at position 19"
        );
        assert_eq!(
            error("attribute:stack == prod; x"),
            "Invalid expression: unexpected character ';' at position 23"
        );
        assert_eq!(
            error("attribute:stack = prod"),
            "Invalid expression: unexpected character '=' at position 16"
        );
        assert_eq!(
            error("!foo == x"),
            "Invalid expression: unknown subject '!foo' at position 0"
        );
        assert_eq!(
            error("not agentConnected == true"),
            "Invalid expression: expected '(' after 'not', found 'agentConnected', at position 4"
        );
    }

    #[test]
    fn list_errors() {
        assert_eq!(
            error("attribute:stack in []"),
            "Invalid expression: empty list at position 20"
        );
        assert_eq!(
            error("attribute:stack in [a,]"),
            "Invalid expression: expected a list value, found ']', at position 22"
        );
        assert_eq!(
            error("attribute:stack in [a b]"),
            "Invalid expression: expected ',' or ']' in a list, found 'b', at position 22"
        );
        assert_eq!(
            error("attribute:stack in [a, b)"),
            "Invalid expression: expected ',' or ']' in a list, found ')', at position 24"
        );
        assert_eq!(
            error("attribute:stack in [a, b"),
            "Invalid expression: the list at position 19 is never closed \
             at the end of the expression"
        );
        assert_eq!(
            error("attribute:stack == [a]"),
            "Invalid expression: expected a value after '==', found '[', at position 19"
        );
    }

    #[test]
    fn unbalanced_parentheses_and_trailing_garbage() {
        assert_eq!(
            error("(agentConnected == true"),
            "Invalid expression: missing ')' for the '(' at position 0 \
             at the end of the expression"
        );
        assert_eq!(
            error("not(agentConnected == true"),
            "Invalid expression: missing ')' for the '(' at position 3 \
             at the end of the expression"
        );
        assert_eq!(
            error("agentConnected == true)"),
            "Invalid expression: unbalanced ')' at position 22"
        );
        assert_eq!(
            error("(agentConnected == true))"),
            "Invalid expression: unbalanced ')' at position 24"
        );
        assert_eq!(
            error("()"),
            "Invalid expression: expected a condition, found ')', at position 1"
        );
        assert_eq!(
            error("agentConnected == true runningTasksCount > 1"),
            "Invalid expression: unexpected 'runningTasksCount' where 'and', 'or' \
             or the end was expected, at position 23"
        );
        assert_eq!(
            error("attribute:stack exists prod"),
            "Invalid expression: unexpected 'prod' where 'and', 'or' \
             or the end was expected, at position 23"
        );
        assert_eq!(
            error("(attribute:stack exists prod)"),
            "Invalid expression: unexpected 'prod' where 'and', 'or' \
             or ')' was expected, at position 24"
        );
    }

    #[test]
    fn length_limit() {
        let at_limit = format!("attribute:stack == {}", "p".repeat(MAX_LENGTH - 19));
        assert_eq!(at_limit.chars().count(), MAX_LENGTH);
        assert!(parse(&at_limit).is_ok());
        let over = format!("{at_limit}p");
        assert_eq!(
            error(&over),
            "Invalid expression: 2001 characters, longer than the limit of 2000"
        );
        // Characters, not bytes.
        let wide = format!("attribute:stack == '{}'", "é".repeat(MAX_LENGTH - 21));
        assert_eq!(wide.chars().count(), MAX_LENGTH);
        assert!(parse(&wide).is_ok());
    }

    #[test]
    fn nesting_limit() {
        let nested = |n: usize| {
            format!(
                "{}agentConnected == true{}",
                "not(".repeat(n),
                ")".repeat(n)
            )
        };
        let ok = parse(&nested(MAX_DEPTH)).unwrap();
        let facts_instance = Instance::new();
        // 32 negations cancel out.
        assert!(ok.matches(&facts_instance.facts()));
        assert!(!parse(&nested(MAX_DEPTH - 1))
            .unwrap()
            .matches(&facts_instance.facts()));
        assert_eq!(
            error(&nested(MAX_DEPTH + 1)),
            "Invalid expression: nesting deeper than 32 levels at position 128"
        );
        let parens = format!("{}runningTasksCount > 0{}", "(".repeat(33), ")".repeat(33));
        assert_eq!(
            error(&parens),
            "Invalid expression: nesting deeper than 32 levels at position 32"
        );
        // Hostile input stops at the limit rather than recursing through it.
        let hostile = "(".repeat(MAX_LENGTH);
        assert!(error(&hostile).contains("nesting deeper than 32 levels"));
        let hostile = "!(".repeat(MAX_LENGTH / 2);
        assert!(error(&hostile).contains("nesting deeper than 32 levels"));
    }

    #[test]
    fn errors_display_their_message() {
        let e = parse("foo == 1").unwrap_err();
        assert_eq!(e.to_string(), e.message());
    }
}
