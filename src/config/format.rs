//! Canonical layout for a Proxyfile (`bellhop fmt`), keeping every comment.
//!
//! `kdl`'s own `autoformat` drops comments that trail a node on its line and
//! re-indents others oddly, so this works from the raw token stream instead.
//! The rules:
//! - four spaces per block level, one node per line, one space between parts,
//!   `key=value` without spaces, no `;` between lines;
//! - values are written exactly as the user wrote them (quoting is theirs);
//! - a block written on one line stays on one line (`{ tls internal; proxy 8000 }`)
//!   if it fits in [`WIDTH`] columns, otherwise it is opened up;
//! - runs of blank lines become one, none at the start or end of a block;
//! - comments keep their place: own line, end of line, or inline; end-of-line
//!   comments on consecutive lines are aligned in one column.
//!
//! The input must be valid KDL (the caller has parsed it already); anything the
//! formatter does not understand makes it give up rather than guess.

use super::lexer::{self, Kind, Slashes, Token};

/// Lines longer than this are not kept on one line.
const WIDTH: usize = 100;
const INDENT: &str = "    ";

/// The formatter met a token sequence that valid KDL does not produce.
#[derive(Debug)]
pub(crate) struct Unformattable;

/// Formats a KDL document.
pub(crate) fn format(source: &str) -> Result<String, Unformattable> {
    let tokens = lexer::tokenize(source, Slashes::Kdl);
    let mut parser = Parser {
        src: source,
        tokens,
        pos: 0,
    };
    let items = parser.document(false)?;
    if parser.pos != parser.tokens.len() {
        return Err(Unformattable);
    }
    let mut lines = Vec::new();
    write_items(&items, 0, &mut lines);
    Ok(join_lines(&lines))
}

/// A line-level element of a document or block.
#[derive(Debug)]
enum Item {
    /// One blank line separating groups.
    Blank,
    /// A comment on a line of its own, verbatim.
    Comment(String),
    Node(Node),
}

#[derive(Debug)]
struct Node {
    /// Line comments between a leading `/-` and the node it comments out; they
    /// go on their own lines above the node.
    leading: Vec<String>,
    /// Name, values, properties, inline comments and blocks, in order.
    parts: Vec<Part>,
    /// A `// …` comment after the node on the same line.
    trailing: Option<String>,
}

#[derive(Debug)]
enum Part {
    /// A name, value, `key=value`, `/-`-prefixed entry or inline `/* … */`.
    Text(String),
    /// A `\` line continuation; kept (with its line break) only when it carries a comment.
    Continuation(Option<String>),
    Block(Block),
}

#[derive(Debug)]
struct Block {
    /// `/-{ … }`: a commented-out block.
    slashdash: bool,
    items: Vec<Item>,
    /// A `// …` comment right after the `{`, kept on that line.
    open_comment: Option<String>,
    /// Whether `{` and `}` were on the same line in the source.
    one_line: bool,
}

struct Parser<'a> {
    src: &'a str,
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn peek_kind(&self) -> Option<Kind> {
        self.peek().map(|t| t.kind)
    }

    fn text(&self, t: &Token) -> String {
        self.src[t.span.clone()].to_string()
    }

    /// Items up to the end of input, or up to (not including) the `}` of a block.
    fn document(&mut self, nested: bool) -> Result<Vec<Item>, Unformattable> {
        let mut items = Vec::new();
        let mut newlines = 0usize;
        while let Some(token) = self.peek().cloned() {
            let item = match token.kind {
                Kind::Newline => {
                    newlines += 1;
                    self.pos += 1;
                    continue;
                }
                Kind::Semicolon | Kind::Escline => {
                    self.pos += 1;
                    continue;
                }
                Kind::Close if nested => break,
                Kind::LineComment => {
                    self.pos += 1;
                    Item::Comment(self.text(&token).trim_end().to_string())
                }
                Kind::BlockComment { .. }
                    if matches!(
                        self.tokens.get(self.pos + 1).map(|t| t.kind),
                        None | Some(Kind::Newline | Kind::Close | Kind::LineComment)
                    ) =>
                {
                    self.pos += 1;
                    Item::Comment(self.text(&token))
                }
                Kind::Word | Kind::Annotation | Kind::Slashdash | Kind::BlockComment { .. } => {
                    Item::Node(self.node()?)
                }
                _ => return Err(Unformattable),
            };
            if newlines >= 2 && !items.is_empty() {
                items.push(Item::Blank);
            }
            newlines = 0;
            items.push(item);
        }
        Ok(items)
    }

    /// The rest of an argument or property that started with `text`: for a
    /// property, `=`, any type annotations and the value.
    fn word(&mut self, mut text: String) -> Result<String, Unformattable> {
        if self.peek_kind() != Some(Kind::Equals) {
            return Ok(text);
        }
        self.pos += 1;
        text.push('=');
        while self.peek_kind() == Some(Kind::Annotation) {
            let annotation = self.tokens[self.pos].clone();
            text.push_str(&self.text(&annotation));
            self.pos += 1;
        }
        match self.peek().cloned() {
            Some(value) if value.kind == Kind::Word => {
                text.push_str(&self.text(&value));
                self.pos += 1;
                Ok(text)
            }
            _ => Err(Unformattable),
        }
    }

    /// A `{ … }` block whose `{` is `open` (already consumed), up to and
    /// including its `}`.
    fn block(&mut self, open: &Token, slashdash: bool) -> Result<Block, Unformattable> {
        let open_comment = self.line_comment();
        let items = self.document(true)?;
        let close = match self.peek() {
            Some(t) if t.kind == Kind::Close => t.span.end,
            _ => return Err(Unformattable),
        };
        self.pos += 1;
        let one_line = !self.src[open.span.start..close]
            .chars()
            .any(lexer::is_newline_start);
        Ok(Block {
            slashdash,
            items,
            open_comment,
            one_line,
        })
    }

    /// A `// comment` right here (after `{` or `;`), consumed.
    fn line_comment(&mut self) -> Option<String> {
        let t = self.peek().cloned()?;
        if t.kind != Kind::LineComment {
            return None;
        }
        self.pos += 1;
        Some(self.text(&t).trim_end().to_string())
    }

    /// One node, up to (not including) its newline or the `}` that ends it.
    fn node(&mut self) -> Result<Node, Unformattable> {
        let mut parts = Vec::new();
        let mut prefix = String::new();
        let mut trailing = None;
        let mut leading = Vec::new();
        while let Some(token) = self.peek().cloned() {
            match token.kind {
                Kind::Slashdash | Kind::Annotation => {
                    prefix.push_str(&self.text(&token));
                    self.pos += 1;
                }
                Kind::Word => {
                    self.pos += 1;
                    let text = self.word(std::mem::take(&mut prefix) + &self.text(&token))?;
                    parts.push(Part::Text(text));
                }
                Kind::BlockComment { .. } => {
                    self.pos += 1;
                    parts.push(Part::Text(self.text(&token)));
                }
                Kind::Escline => {
                    self.pos += 1;
                    let text = self.text(&token);
                    let comment = text.find("//").map(|i| text[i..].trim_end().to_string());
                    parts.push(Part::Continuation(comment));
                }
                Kind::Open => {
                    self.pos += 1;
                    let slashdash = !prefix.is_empty();
                    prefix.clear();
                    parts.push(Part::Block(self.block(&token, slashdash)?));
                }
                Kind::Semicolon => {
                    self.pos += 1;
                    trailing = self.line_comment();
                    break;
                }
                // `/-` may be followed by comments and line breaks before what it
                // comments out.
                Kind::LineComment if parts.is_empty() && !prefix.is_empty() => {
                    self.pos += 1;
                    leading.push(self.text(&token).trim_end().to_string());
                }
                Kind::Newline if parts.is_empty() && !prefix.is_empty() => self.pos += 1,
                Kind::LineComment => {
                    self.pos += 1;
                    trailing = Some(self.text(&token).trim_end().to_string());
                    break;
                }
                Kind::Newline | Kind::Close => break,
                Kind::Equals | Kind::Stray => return Err(Unformattable),
            }
        }
        if !prefix.is_empty() || parts.is_empty() {
            return Err(Unformattable);
        }
        Ok(Node {
            leading,
            parts,
            trailing,
        })
    }
}

/// One output line: code, and a trailing comment to be aligned with its neighbours'.
struct Line {
    code: String,
    comment: Option<String>,
}

/// Joins lines, aligning the trailing comments of consecutive lines into one
/// column (as gofmt does), so hand-aligned comments stay aligned.
fn join_lines(lines: &[Line]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < lines.len() {
        let run = lines[i..]
            .iter()
            .take_while(|l| l.comment.is_some())
            .count()
            .max(1);
        let width = lines[i..i + run]
            .iter()
            .map(|l| l.code.chars().count())
            .max()
            .unwrap_or(0);
        for line in &lines[i..i + run] {
            out.push_str(&line.code);
            if let Some(comment) = &line.comment {
                let pad = width - line.code.chars().count() + 1;
                out.extend(std::iter::repeat_n(' ', pad));
                out.push_str(comment);
            }
            out.push('\n');
        }
        i += run;
    }
    out
}

/// Writes items as lines at `level`.
fn write_items(items: &[Item], level: usize, out: &mut Vec<Line>) {
    let indent = INDENT.repeat(level);
    let last = items.iter().rposition(|i| !matches!(i, Item::Blank));
    for item in items.iter().take(last.map_or(0, |l| l + 1)) {
        match item {
            Item::Blank => out.push(Line {
                code: String::new(),
                comment: None,
            }),
            Item::Comment(text) => out.push(Line {
                code: format!("{indent}{text}"),
                comment: None,
            }),
            Item::Node(node) => {
                for comment in &node.leading {
                    out.push(Line {
                        code: format!("{indent}{comment}"),
                        comment: None,
                    });
                }
                let mut line = indent.clone();
                write_node(node, level, &mut line, out);
                out.push(Line {
                    code: line,
                    comment: node.trailing.clone(),
                });
            }
        }
    }
}

/// Appends `node` to the current `line`; finished lines (when a block opens
/// up or a continuation keeps its comment) go to `out`.
fn write_node(node: &Node, level: usize, line: &mut String, out: &mut Vec<Line>) {
    let mut first = true;
    for part in &node.parts {
        match part {
            Part::Continuation(None) => continue,
            Part::Continuation(Some(comment)) => {
                line.push_str(" \\");
                out.push(Line {
                    code: std::mem::replace(line, INDENT.repeat(level + 1)),
                    comment: Some(comment.clone()),
                });
                first = true;
                continue;
            }
            _ => {}
        }
        if !first {
            line.push(' ');
        }
        first = false;
        match part {
            Part::Text(text) => line.push_str(text),
            Part::Block(block) => write_block(block, level, line, out),
            Part::Continuation(_) => {}
        }
    }
}

fn write_block(block: &Block, level: usize, line: &mut String, out: &mut Vec<Line>) {
    if block.slashdash {
        line.push_str("/-");
    }
    let empty = block.items.iter().all(|i| matches!(i, Item::Blank));
    if empty && block.open_comment.is_none() {
        line.push_str("{}");
        return;
    }
    if block.one_line {
        if let Some(inline) = inline_block(block) {
            if line.chars().count() + inline.chars().count() <= WIDTH {
                line.push_str(&inline);
                return;
            }
        }
    }
    line.push('{');
    out.push(Line {
        code: std::mem::replace(line, INDENT.repeat(level)),
        comment: block.open_comment.clone(),
    });
    write_items(&block.items, level + 1, out);
    line.push('}');
}

/// The block as `{ a; b }`, if every item can sit on one line.
fn inline_block(block: &Block) -> Option<String> {
    if block.open_comment.is_some() {
        return None;
    }
    let mut pieces = Vec::new();
    for item in &block.items {
        match item {
            Item::Blank => {}
            Item::Comment(text) if !text.starts_with("//") => pieces.push(text.clone()),
            Item::Node(node) if node.trailing.is_none() && node.leading.is_empty() => {
                let mut text = String::new();
                for part in &node.parts {
                    let piece = match part {
                        Part::Text(t) => t.clone(),
                        Part::Block(b) if b.one_line => {
                            let inner = inline_block(b)?;
                            if b.slashdash {
                                format!("/-{inner}")
                            } else {
                                inner
                            }
                        }
                        Part::Continuation(None) => continue,
                        _ => return None,
                    };
                    if !text.is_empty() {
                        text.push(' ');
                    }
                    text.push_str(&piece);
                }
                pieces.push(text);
            }
            _ => return None,
        }
    }
    if pieces.is_empty() {
        return Some("{}".to_string());
    }
    Some(format!("{{ {} }}", pieces.join("; ")))
}
