//! A general STAR reader and writer (the dialect RELION, crYOLO and starfile use).
//!
//! Values are kept as the strings the file holds, so a file read and written again keeps every
//! column byte-for-byte in meaning, including the ones cryoprune does not understand. Comment
//! lines before a block (RELION 3.1's `# version 30001`) travel with the block. Loop rows are one
//! per line, as every RELION version writes them; a row with too few or too many values is an
//! error naming the line rather than a silent shift of every later column.

use std::io::Write;
use std::path::Path;

use crate::error::{FormatError, Location, Result};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct StarFile {
    pub blocks: Vec<Block>,
    /// Comment lines after the last block.
    pub trailing_comments: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Block {
    pub name: String,
    /// Comment lines between the previous block and this one's `data_` line.
    pub comments: Vec<String>,
    pub items: Vec<Item>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Pair { key: String, value: String },
    Loop(Loop),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Loop {
    /// Column names without the leading underscore or the `#N` comment.
    pub columns: Vec<String>,
    pub rows: Rows,
    /// 1-based line number of each row in the file it came from (empty for built loops).
    pub lines: Vec<u32>,
}

/// A loop's rows, compactly: all values in one text buffer, a row's values separated by NUL
/// (which STAR text never holds) and each row's start kept. A particle STAR of ten million rows
/// then takes about its size on disk, not the ten times more that a `String` per value costs;
/// a value is found by scanning its row, a few dozen bytes.
#[derive(Clone, Default, PartialEq)]
pub struct Rows {
    text: String,
    /// Where each row begins in `text`.
    starts: Vec<usize>,
    width: usize,
}

const SEP: char = '\0';

/// One row of a loop: its values by column index (`row[c]`), or in order (`row.iter()`).
#[derive(Clone, Copy)]
pub struct Row<'a> {
    text: &'a str,
    width: usize,
}

impl<'a> Row<'a> {
    pub fn len(&self) -> usize {
        self.width
    }

    pub fn is_empty(&self) -> bool {
        self.width == 0
    }

    /// The value in column `c`; panics past the last column, as a slice would.
    pub fn get(&self, c: usize) -> &'a str {
        assert!(c < self.width, "column {c} of a row of {}", self.width);
        self.text.split(SEP).nth(c).expect("a value per column")
    }

    pub fn iter(&self) -> std::str::Split<'a, char> {
        self.text.split(SEP)
    }

    pub fn to_vec(&self) -> Vec<String> {
        self.iter().map(str::to_string).collect()
    }
}

impl<'a> IntoIterator for Row<'a> {
    type Item = &'a str;
    type IntoIter = std::str::Split<'a, char>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl std::ops::Index<usize> for Row<'_> {
    type Output = str;

    fn index(&self, c: usize) -> &str {
        self.get(c)
    }
}

impl std::fmt::Debug for Row<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<S: AsRef<str>> PartialEq<Vec<S>> for Row<'_> {
    fn eq(&self, other: &Vec<S>) -> bool {
        self.len() == other.len() && self.iter().zip(other).all(|(a, b)| a == b.as_ref())
    }
}

impl std::fmt::Debug for Rows {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<S: AsRef<str>> PartialEq<Vec<Vec<S>>> for Rows {
    fn eq(&self, other: &Vec<Vec<S>>) -> bool {
        self.len() == other.len() && self.iter().zip(other).all(|(a, b)| a == *b)
    }
}

impl Rows {
    pub fn len(&self) -> usize {
        self.starts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.starts.is_empty()
    }

    pub fn get(&self, r: usize) -> Row<'_> {
        // A row ends where the next begins, less the separator between them.
        let end = self.starts.get(r + 1).map_or(self.text.len(), |&n| n - 1);
        Row {
            text: &self.text[self.starts[r]..end],
            width: self.width,
        }
    }

    pub fn iter(&self) -> RowsIter<'_> {
        RowsIter {
            rows: self,
            next: 0,
        }
    }

    /// Appends a row; every row has as many values as the first. A NUL inside a value (no
    /// STAR file holds one) would split it, so it becomes U+FFFD.
    pub fn push<S: AsRef<str>>(&mut self, values: impl IntoIterator<Item = S>) {
        if !self.starts.is_empty() {
            self.text.push(SEP);
        }
        let start = self.text.len();
        let mut n = 0;
        for v in values {
            if n > 0 {
                self.text.push(SEP);
            }
            let v = v.as_ref();
            match v.contains(SEP) {
                true => self.text.push_str(&v.replace(SEP, "\u{fffd}")),
                false => self.text.push_str(v),
            }
            n += 1;
        }
        if self.starts.is_empty() {
            self.width = n;
        }
        assert_eq!(
            n, self.width,
            "every row of a loop has one value per column"
        );
        self.starts.push(start);
    }
}

pub struct RowsIter<'a> {
    rows: &'a Rows,
    next: usize,
}

impl<'a> Iterator for RowsIter<'a> {
    type Item = Row<'a>;

    fn next(&mut self) -> Option<Row<'a>> {
        (self.next < self.rows.len()).then(|| {
            self.next += 1;
            self.rows.get(self.next - 1)
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.rows.len() - self.next;
        (n, Some(n))
    }
}

impl ExactSizeIterator for RowsIter<'_> {}

impl<'a> IntoIterator for &'a Rows {
    type Item = Row<'a>;
    type IntoIter = RowsIter<'a>;

    fn into_iter(self) -> RowsIter<'a> {
        self.iter()
    }
}

impl Loop {
    pub fn new(columns: Vec<String>) -> Loop {
        Loop {
            columns,
            ..Loop::default()
        }
    }

    pub fn column(&self, name: &str) -> Option<usize> {
        let name = name.strip_prefix('_').unwrap_or(name);
        self.columns.iter().position(|c| c == name)
    }

    pub fn line_of(&self, row: usize) -> Location {
        self.lines
            .get(row)
            .map_or(Location::Record(row + 1), |&l| Location::Line(l as usize))
    }

    /// Adds a column (or replaces its values if present) from one value per row.
    pub fn set_column<S: AsRef<str>>(&mut self, name: &str, values: Vec<S>) {
        assert_eq!(values.len(), self.rows.len(), "one value per row");
        let replace = self.column(name);
        if replace.is_none() {
            self.columns.push(name.trim_start_matches('_').to_string());
        }
        let mut rows = Rows::default();
        for (row, v) in self.rows.iter().zip(&values) {
            let v = v.as_ref();
            match replace {
                Some(c) => rows.push(
                    row.iter()
                        .enumerate()
                        .map(|(i, x)| if i == c { v } else { x }),
                ),
                None => rows.push(row.iter().chain([v])),
            }
        }
        self.rows = rows;
    }
}

impl Block {
    pub fn new(name: &str) -> Block {
        Block {
            name: name.to_string(),
            ..Block::default()
        }
    }

    pub fn loops(&self) -> impl Iterator<Item = &Loop> {
        self.items.iter().filter_map(|i| match i {
            Item::Loop(l) => Some(l),
            _ => None,
        })
    }

    pub fn first_loop(&self) -> Option<&Loop> {
        self.loops().next()
    }

    pub fn first_loop_mut(&mut self) -> Option<&mut Loop> {
        self.items.iter_mut().find_map(|i| match i {
            Item::Loop(l) => Some(l),
            _ => None,
        })
    }

    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.items.iter().filter_map(|i| match i {
            Item::Pair { key, value } => Some((key.as_str(), value.as_str())),
            _ => None,
        })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        let key = key.strip_prefix('_').unwrap_or(key);
        self.pairs().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

impl StarFile {
    pub fn block(&self, name: &str) -> Option<&Block> {
        self.blocks.iter().find(|b| b.name == name)
    }

    pub fn block_index(&self, name: &str) -> Option<usize> {
        self.blocks.iter().position(|b| b.name == name)
    }

    /// Reads a STAR file line by line, so the file's text is never all in memory beside its
    /// values.
    pub fn read(path: impl AsRef<Path>) -> Result<StarFile> {
        use std::io::BufRead;
        let path = path.as_ref();
        crate::error::ensure_regular(path)?;
        let file = std::fs::File::open(path).map_err(|e| FormatError::io(path, e))?;
        let mut reader = std::io::BufReader::with_capacity(1 << 20, file);
        let (mut failed, mut read) = (None, 0usize);
        let lines = std::iter::from_fn(|| {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) => None,
                Ok(_) => {
                    read += 1;
                    Some(line)
                }
                Err(e) => {
                    failed = Some(e);
                    None
                }
            }
        });
        // Editors on Windows start UTF-8 files with a byte-order mark; it is no part of the text.
        let lines = lines
            .enumerate()
            .map(|(i, l)| match (i, l.strip_prefix('\u{feff}')) {
                (0, Some(rest)) => rest.to_string(),
                _ => l,
            });
        let parsed = Self::parse_lines(lines, path);
        match failed {
            None => parsed,
            Some(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(FormatError::invalid(
                path,
                Location::Line(read + 1),
                "not UTF-8 text; a STAR file is text",
            )),
            Some(e) => Err(FormatError::io(path, e)),
        }
    }

    /// Parses STAR text; `path` is only used to name the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<StarFile> {
        Self::parse_lines(text.lines().map(str::to_string), path)
    }

    fn parse_lines(lines: impl Iterator<Item = String>, path: &Path) -> Result<StarFile> {
        let mut file = StarFile::default();
        let mut pending_comments: Vec<String> = Vec::new();
        let mut state = State::Outside;
        let mut lines = lines.enumerate().peekable();
        while let Some((i, raw)) = lines.next() {
            let lineno = i + 1;
            let err = |msg: String| FormatError::invalid(path, Location::Line(lineno), msg);
            let line = raw.trim();
            if line.is_empty() {
                continue;
            }
            if line.starts_with('#') {
                // Comments inside a block are dropped; RELION writes none there.
                if file.blocks.is_empty() || matches!(state, State::Outside | State::InBlock) {
                    pending_comments.push(line.to_string());
                }
                continue;
            }
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("data_") {
                let name = line[5..]
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_string();
                let mut block = Block::new(&name);
                block.comments = std::mem::take(&mut pending_comments);
                file.blocks.push(block);
                state = State::InBlock;
                continue;
            }
            let Some(block) = file.blocks.last_mut() else {
                return Err(err(format!(
                    "expected a `data_` block before any content, found `{}`",
                    clip(line)
                )));
            };
            // Comments found between items of one block belong to no block; keep the ones that
            // precede the next `data_` only.
            pending_comments.clear();
            if lower == "loop_" || lower.starts_with("loop_ ") || lower.starts_with("loop_\t") {
                block.items.push(Item::Loop(Loop::default()));
                state = State::LoopHeader;
                continue;
            }
            if lower.starts_with("stop_") || lower.starts_with("global_") {
                continue;
            }
            if line.starts_with('_') {
                if state == State::LoopHeader {
                    let name = line.split_whitespace().next().unwrap_or("");
                    if let Some(Item::Loop(l)) = block.items.last_mut() {
                        if l.columns.iter().any(|c| c == &name[1..]) {
                            return Err(err(format!(
                                "column `{name}` appears twice in this loop; which one is meant is ambiguous"
                            )));
                        }
                        l.columns.push(name[1..].to_string());
                    }
                    continue;
                }
                // A key-value pair, which also ends any loop body before it.
                let tokens = tokenize(line).map_err(err)?;
                let key = tokens[0][1..].to_string();
                let value = match tokens.len() {
                    2 => tokens[1].clone(),
                    1 => take_value_from_next_line(&mut lines, path)?,
                    _ => {
                        return Err(err(format!(
                        "key `{}` has {} values; expected one (quote values that contain spaces)",
                        tokens[0],
                        tokens.len() - 1
                    )))
                    }
                };
                block.items.push(Item::Pair { key, value });
                state = State::InBlock;
                continue;
            }
            match state {
                State::LoopHeader | State::LoopBody => {
                    let Some(Item::Loop(l)) = block.items.last_mut() else {
                        unreachable!("loop state without a loop")
                    };
                    if l.columns.is_empty() {
                        return Err(err(
                            "`loop_` has no column names before its first row".into()
                        ));
                    }
                    // Most rows hold no quotes and no comment: split them without copying.
                    let plain = !line.contains(['\'', '"', '#']);
                    let tokens = match plain {
                        true => Vec::new(),
                        false => tokenize(line).map_err(err)?,
                    };
                    let n = match plain {
                        true => line.split_whitespace().count(),
                        false => tokens.len(),
                    };
                    if n != l.columns.len() {
                        return Err(err(format!(
                            "loop row has {n} values; expected {} (one per column: {})",
                            l.columns.len(),
                            summarize_columns(&l.columns)
                        )));
                    }
                    match plain {
                        true => l.rows.push(line.split_whitespace()),
                        false => l.rows.push(tokens),
                    }
                    l.lines.push(lineno as u32);
                    state = State::LoopBody;
                }
                _ => {
                    return Err(err(format!(
                        "unexpected `{}`; expected `_name value`, `loop_` or `data_`",
                        clip(line)
                    )))
                }
            }
        }
        file.trailing_comments = pending_comments;
        Ok(file)
    }

    /// Writes the file in RELION's layout. Values that would not read back as one token are quoted.
    pub fn write_to(&self, w: &mut dyn Write) -> std::io::Result<()> {
        self.write_replacing(w, None)
    }

    /// Writes the file with the first loop of block `replaced.0` written from `replaced.1`
    /// instead: a subset of a large loop goes out without a copy of it in memory.
    pub fn write_replacing(
        &self,
        w: &mut dyn Write,
        mut replaced: Option<(usize, &dyn LoopSource)>,
    ) -> std::io::Result<()> {
        for (b, block) in self.blocks.iter().enumerate() {
            writeln!(w)?;
            for c in &block.comments {
                writeln!(w, "{c}")?;
            }
            if !block.comments.is_empty() {
                writeln!(w)?;
            }
            writeln!(w, "data_{}", block.name)?;
            writeln!(w)?;
            let key_width = block.pairs().map(|(k, _)| k.len() + 1).max().unwrap_or(0);
            let mut last_was_pair = false;
            for item in &block.items {
                match item {
                    Item::Pair { key, value } if needs_text_field(value) => {
                        // Multi-line values only fit a `;` text field. A line of the value that
                        // starts with `;` would close the field early, so it gets a leading space.
                        writeln!(w, "_{key}")?;
                        for (i, line) in value.lines().enumerate() {
                            let guard = if i > 0 && line.starts_with(';') {
                                " "
                            } else {
                                ""
                            };
                            writeln!(w, "{}{guard}{line}", if i == 0 { ";" } else { "" })?;
                        }
                        writeln!(w, ";")?;
                        last_was_pair = true;
                    }
                    Item::Pair { key, value } => {
                        writeln!(w, "{:<key_width$} {}", format!("_{key}"), quote(value))?;
                        last_was_pair = true;
                    }
                    Item::Loop(l) => {
                        if last_was_pair {
                            writeln!(w)?;
                        }
                        match replaced.take_if(|(rb, _)| *rb == b) {
                            Some((_, source)) => write_loop(w, source)?,
                            None => write_loop(w, l)?,
                        }
                        last_was_pair = false;
                    }
                }
            }
            if last_was_pair {
                writeln!(w)?;
            }
        }
        for c in &self.trailing_comments {
            writeln!(w, "{c}")?;
        }
        Ok(())
    }

    pub fn to_string_lossless(&self) -> String {
        let mut v = Vec::new();
        self.write_to(&mut v).expect("writing to memory");
        String::from_utf8(v).expect("STAR text is UTF-8")
    }

    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        crate::atomic::write_atomic(path.as_ref(), |w| self.write_to(w))
    }
}

/// Rows to write as a loop: its columns and, as often as asked, its rows from the first.
pub trait LoopSource {
    fn columns(&self) -> &[String];
    fn for_each_row(&self, f: &mut dyn FnMut(&mut dyn Iterator<Item = &str>));
}

impl LoopSource for Loop {
    fn columns(&self) -> &[String] {
        &self.columns
    }

    fn for_each_row(&self, f: &mut dyn FnMut(&mut dyn Iterator<Item = &str>)) {
        for r in self.rows.iter() {
            f(&mut r.iter());
        }
    }
}

fn write_loop(w: &mut dyn Write, l: &dyn LoopSource) -> std::io::Result<()> {
    writeln!(w, "loop_ ")?;
    for (i, c) in l.columns().iter().enumerate() {
        writeln!(w, "_{c} #{} ", i + 1)?;
    }
    // Columns are right-aligned to their widest value, so the widths come first (a pass that
    // measures) and the rows second (one that writes), with no copy of the table between.
    let mut widths = vec![0usize; l.columns().len()];
    l.for_each_row(&mut |r| {
        for (wd, v) in widths.iter_mut().zip(r) {
            *wd = (*wd).max(quote(v).len());
        }
    });
    let mut line = String::new();
    let mut failed = None;
    l.for_each_row(&mut |r| {
        line.clear();
        for (v, &wd) in r.zip(&widths) {
            let q = quote(v);
            line.extend(std::iter::repeat_n(' ', wd.saturating_sub(q.len())));
            line.push_str(&q);
            line.push(' ');
        }
        if failed.is_none() {
            failed = writeln!(w, "{}", line.trim_end()).err();
        }
    });
    match failed {
        Some(e) => Err(e),
        None => writeln!(w),
    }
}

#[derive(PartialEq, Clone, Copy)]
enum State {
    Outside,
    InBlock,
    LoopHeader,
    LoopBody,
}

fn clip(s: &str) -> String {
    let mut out: String = s.chars().take(60).collect();
    if out.len() < s.len() {
        out.push_str("...");
    }
    out
}

fn summarize_columns(cols: &[String]) -> String {
    if cols.len() <= 6 {
        cols.join(", ")
    } else {
        format!("{}, ... {}", cols[..4].join(", "), cols[cols.len() - 1])
    }
}

fn take_value_from_next_line<I>(lines: &mut std::iter::Peekable<I>, path: &Path) -> Result<String>
where
    I: Iterator<Item = (usize, String)>,
{
    let Some((i, next)) = lines.peek() else {
        return Err(FormatError::invalid(
            path,
            Location::Line(0),
            "file ends after a key with no value",
        ));
    };
    let i = *i;
    if let Some(first) = next.strip_prefix(';') {
        // A multi-line text field: lines up to the closing `;` at the start of a line.
        let mut text = vec![first.trim_end_matches(['\n', '\r']).to_string()];
        lines.next();
        for (_, l) in lines.by_ref() {
            if l.starts_with(';') {
                return Ok(text.join("\n").trim().to_string());
            }
            text.push(l.trim_end_matches(['\n', '\r']).to_string());
        }
        return Err(FormatError::invalid(
            path,
            Location::Line(i + 1),
            "text field opened with `;` is never closed",
        ));
    }
    Err(FormatError::invalid(
        path,
        Location::Line(i),
        "key has no value on its line; expected `_name value`",
    ))
}

/// Splits a line into STAR tokens. A quote opens a quoted value only at the start of a token and
/// closes only when followed by whitespace or the end of the line (so `it's` stays one token).
pub fn tokenize(line: &str) -> std::result::Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '#' {
            break;
        }
        if c == '\'' || c == '"' {
            let mut j = i + 1;
            loop {
                if j >= chars.len() {
                    return Err(format!("quote {c} opened here is never closed"));
                }
                if chars[j] == c && (j + 1 == chars.len() || chars[j + 1].is_whitespace()) {
                    break;
                }
                j += 1;
            }
            tokens.push(chars[i + 1..j].iter().collect());
            i = j + 1;
            continue;
        }
        let start = i;
        while i < chars.len() && !chars[i].is_whitespace() {
            i += 1;
        }
        tokens.push(chars[start..i].iter().collect());
    }
    Ok(tokens)
}

/// Quotes a value when written bare it would not read back as the same single token.
pub fn quote(v: &str) -> std::borrow::Cow<'_, str> {
    let lower = v.to_ascii_lowercase();
    let needs = v.is_empty()
        || v.chars().any(char::is_whitespace)
        || v.starts_with(['_', '#', '\'', '"', '$', ';', '[', ']'])
        || ["data_", "loop_", "save_", "stop_", "global_"]
            .iter()
            .any(|k| lower.starts_with(k));
    if !needs {
        return v.into();
    }
    if !closes_early(v, '"') {
        format!("\"{v}\"").into()
    } else {
        format!("'{v}'").into()
    }
}

/// Whether quote `q` inside `v` would end a `q`-quoted token early (quote then whitespace or end).
fn closes_early(v: &str, q: char) -> bool {
    let chars: Vec<char> = v.chars().collect();
    chars
        .iter()
        .enumerate()
        .any(|(i, &c)| c == q && chars.get(i + 1).is_none_or(|n| n.is_whitespace()))
}

/// Values no quote style can hold on one line; key-value pairs write them as `;` text fields.
fn needs_text_field(v: &str) -> bool {
    v.contains('\n') || (closes_early(v, '"') && closes_early(v, '\''))
}

#[cfg(test)]
mod tests {
    use super::*;

    const RELION31: &str = "
# version 30001

data_optics

loop_
_rlnOpticsGroupName #1
_rlnOpticsGroup #2
_rlnMicrographPixelSize #3
opticsGroup1 1 1.0

# version 30001

data_particles

loop_
_rlnCoordinateX #1
_rlnCoordinateY #2
_rlnMicrographName #3
_rlnImageName #4
  10.5 20 'mic one.mrc' 1@stack.mrcs
  11 21 \"\" 2@stack.mrcs
";

    #[test]
    fn parses_blocks_loops_quotes_and_comments() {
        let f = StarFile::parse(RELION31, Path::new("t.star")).unwrap();
        assert_eq!(f.blocks.len(), 2);
        assert_eq!(f.blocks[0].comments, vec!["# version 30001"]);
        let l = f.block("particles").unwrap().first_loop().unwrap();
        assert_eq!(l.columns[3], "rlnImageName");
        assert_eq!(
            l.rows.get(0),
            vec!["10.5", "20", "mic one.mrc", "1@stack.mrcs"]
        );
        assert_eq!(&l.rows.get(1)[2], "");
        assert_eq!(l.lines, vec![21, 22]);
    }

    #[test]
    fn rows_keep_every_value_empty_ones_included() {
        let mut rows = Rows::default();
        let data = [["", "a b", ""], ["x", "", "y\0z"], ["", "", ""]];
        for r in &data {
            rows.push(r);
        }
        assert_eq!(rows.len(), 3);
        assert_eq!(rows.get(0), vec!["", "a b", ""]);
        assert_eq!(rows.get(1).to_vec(), ["x", "", "y\u{fffd}z"]);
        assert_eq!(rows.get(2).iter().count(), 3);
        assert_eq!(&rows.get(1)[0], "x");
        let mut l = Loop::new(vec!["a".into(), "b".into(), "c".into()]);
        l.rows = rows;
        l.set_column("b", vec!["1", "2", "3"]);
        l.set_column("d", vec!["4", "", "6"]);
        assert_eq!(l.rows.get(1), vec!["x", "2", "y\u{fffd}z", ""]);
        assert_eq!(l.columns, ["a", "b", "c", "d"]);
    }

    #[test]
    fn round_trip_is_identical() {
        let f = StarFile::parse(RELION31, Path::new("t.star")).unwrap();
        let text = f.to_string_lossless();
        let g = StarFile::parse(&text, Path::new("t2.star")).unwrap();
        assert_eq!(f.blocks.len(), g.blocks.len());
        for (a, b) in f.blocks.iter().zip(&g.blocks) {
            assert_eq!(a.name, b.name);
            assert_eq!(a.comments, b.comments);
            assert_eq!(a.first_loop().unwrap().rows, b.first_loop().unwrap().rows);
            assert_eq!(
                a.first_loop().unwrap().columns,
                b.first_loop().unwrap().columns
            );
        }
    }

    #[test]
    fn key_values_and_text_fields() {
        let t = "data_general\n_rlnFinalResolution 3.5\n_rlnName 'a b'\n_rlnNote\n;line one\nline two\n;\n";
        let f = StarFile::parse(t, Path::new("kv.star")).unwrap();
        let b = &f.blocks[0];
        assert_eq!(b.get("rlnFinalResolution"), Some("3.5"));
        assert_eq!(b.get("_rlnName"), Some("a b"));
        assert_eq!(b.get("rlnNote"), Some("line one\nline two"));
    }

    #[test]
    fn multi_line_values_write_as_text_fields() {
        // found by fuzz/star: a text field was written back as a quoted string over two lines
        let t = "data_a\n_note\n;;;\n_ $aa\n;\nloop_\n_x\n1\n";
        let f = StarFile::parse(t, Path::new("t.star")).unwrap();
        assert_eq!(f.blocks[0].get("note"), Some(";;\n_ $aa"));
        let g = StarFile::parse(&f.to_string_lossless(), Path::new("t2.star")).unwrap();
        assert_eq!(g.blocks[0].get("note"), Some(";;\n_ $aa"));
        assert_eq!(
            g.blocks[0].first_loop().unwrap().rows,
            vec![vec!["1".to_string()]]
        );
    }

    #[test]
    fn bad_rows_name_the_line() {
        let t = "data_\nloop_\n_a #1\n_b #2\n1 2\n3\n";
        let e = StarFile::parse(t, Path::new("bad.star"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("bad.star: line 6: loop row has 1 values; expected 2"),
            "{e}"
        );
        let e = StarFile::parse("_a 1\n", Path::new("nodata.star"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1") && e.contains("data_"), "{e}");
        let e = StarFile::parse("data_\nloop_\n_a\n'open\n", Path::new("q.star"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 4") && e.contains("never closed"), "{e}");
    }

    #[test]
    fn quoting_rules() {
        for v in [
            "",
            "a b",
            "_x",
            "#1",
            "data_x",
            "plain",
            "it's",
            "1.5e-3",
            "\"q\" x",
            " \"\t >!! ",
        ] {
            let q = quote(v);
            let t = tokenize(&q).unwrap();
            assert_eq!(t, vec![v.to_string()], "value {v:?} written as {q:?}");
        }
    }
}
