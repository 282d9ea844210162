//! NumPy `.npy` structured arrays, the container of cryoSPARC `.cs` files.
//!
//! Records are kept as raw bytes and every field keeps its original type string, so a file read,
//! subset and written again holds every field cryoSPARC put there, exactly. Only the header's
//! Python literal is parsed, with a small parser for the subset numpy writes.

use std::io::Write;
use std::path::Path;

use crate::error::{FormatError, Location, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scalar {
    Bool,
    Int(usize),
    UInt(usize),
    Float(usize),
    /// Fixed-length bytes (`|S52`): cryoSPARC's paths and names.
    Bytes(usize),
    /// Fixed-length UCS-4 text (`<U10`).
    Unicode(usize),
    /// Raw padding (`|V4`).
    Void(usize),
}

impl Scalar {
    pub fn size(self) -> usize {
        match self {
            Scalar::Bool => 1,
            Scalar::Int(n)
            | Scalar::UInt(n)
            | Scalar::Float(n)
            | Scalar::Bytes(n)
            | Scalar::Void(n) => n,
            Scalar::Unicode(n) => 4 * n,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    /// The numpy type string as written in the header (`<f4`, `|S61`, ...).
    pub dtype: String,
    pub scalar: Scalar,
    pub big_endian: bool,
    /// Sub-array shape: `(2,)` for cryoSPARC's `blob/shape`; empty for scalars.
    pub shape: Vec<usize>,
    pub offset: usize,
}

impl Field {
    pub fn count(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn size(&self) -> usize {
        self.scalar.size() * self.count()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StructArray {
    pub fields: Vec<Field>,
    pub itemsize: usize,
    pub nrows: usize,
    pub data: Vec<u8>,
}

/// Writes one record's bytes of a new field, given the record's index.
pub type Fill<'a> = dyn Fn(usize, &mut [u8]) + 'a;

/// A field to add to an array, and how each record's bytes of it are written (given the
/// record's index in the new array; the bytes come zeroed).
pub struct NewField<'a> {
    pub name: String,
    pub dtype: String,
    /// Elements per record: 1, or n for an `(n,)` sub-array.
    pub count: usize,
    pub fill: Box<Fill<'a>>,
}

impl<'a> NewField<'a> {
    pub fn f32(name: &str, value: impl Fn(usize) -> f32 + 'a) -> NewField<'a> {
        Self::le(name, "<f4", 1, move |i, b| {
            b.copy_from_slice(&value(i).to_le_bytes())
        })
    }

    pub fn u32(name: &str, value: impl Fn(usize) -> u32 + 'a) -> NewField<'a> {
        Self::le(name, "<u4", 1, move |i, b| {
            b.copy_from_slice(&value(i).to_le_bytes())
        })
    }

    pub fn u64(name: &str, value: impl Fn(usize) -> u64 + 'a) -> NewField<'a> {
        Self::le(name, "<u8", 1, move |i, b| {
            b.copy_from_slice(&value(i).to_le_bytes())
        })
    }

    /// A bytes field as wide as the longest value `width`; longer values are cut.
    pub fn text<S: AsRef<str>>(
        name: &str,
        width: usize,
        value: impl Fn(usize) -> S + 'a,
    ) -> NewField<'a> {
        Self::le(name, &format!("|S{}", width.max(1)), 1, move |i, b| {
            let v = value(i);
            let v = v.as_ref().as_bytes();
            let n = v.len().min(b.len());
            b[..n].copy_from_slice(&v[..n]);
        })
    }

    pub fn le(
        name: &str,
        dtype: &str,
        count: usize,
        fill: impl Fn(usize, &mut [u8]) + 'a,
    ) -> NewField<'a> {
        NewField {
            name: name.to_string(),
            dtype: dtype.to_string(),
            count,
            fill: Box::new(fill),
        }
    }
}

impl StructArray {
    pub fn new() -> StructArray {
        StructArray {
            fields: Vec::new(),
            itemsize: 0,
            nrows: 0,
            data: Vec::new(),
        }
    }

    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    fn raw<'a>(&'a self, row: usize, f: &Field, elem: usize) -> &'a [u8] {
        let start = row * self.itemsize + f.offset + elem * f.scalar.size();
        &self.data[start..start + f.scalar.size()]
    }

    /// Numeric element `elem` of field `f` in `row`, as f64; `None` for text fields.
    pub fn number(&self, row: usize, f: &Field, elem: usize) -> Option<f64> {
        let b = self.raw(row, f, elem);
        macro_rules! rd {
            ($t:ty) => {{
                let a = b.try_into().ok()?;
                Some(if f.big_endian {
                    <$t>::from_be_bytes(a)
                } else {
                    <$t>::from_le_bytes(a)
                } as f64)
            }};
        }
        match f.scalar {
            Scalar::Bool => Some((b[0] != 0) as u8 as f64),
            Scalar::Int(1) => Some(b[0] as i8 as f64),
            Scalar::UInt(1) => Some(b[0] as f64),
            Scalar::Int(2) => rd!(i16),
            Scalar::Int(4) => rd!(i32),
            Scalar::Int(8) => rd!(i64),
            Scalar::UInt(2) => rd!(u16),
            Scalar::UInt(4) => rd!(u32),
            Scalar::UInt(8) => rd!(u64),
            Scalar::Float(2) => {
                let a = b.try_into().ok()?;
                let h = if f.big_endian {
                    half::f16::from_be_bytes(a)
                } else {
                    half::f16::from_le_bytes(a)
                };
                Some(h.to_f64())
            }
            Scalar::Float(4) => rd!(f32),
            Scalar::Float(8) => rd!(f64),
            _ => None,
        }
    }

    /// Text of a bytes or unicode field, trailing NULs removed as numpy does.
    pub fn text(&self, row: usize, f: &Field) -> Option<String> {
        let b = self.raw(row, f, 0);
        match f.scalar {
            Scalar::Bytes(_) => {
                let end = b.iter().rposition(|&c| c != 0).map_or(0, |p| p + 1);
                Some(String::from_utf8_lossy(&b[..end]).into_owned())
            }
            Scalar::Unicode(_) => {
                let s: String = b
                    .chunks_exact(4)
                    .map(|c| {
                        let a = c.try_into().unwrap();
                        if f.big_endian {
                            u32::from_be_bytes(a)
                        } else {
                            u32::from_le_bytes(a)
                        }
                    })
                    .filter(|&c| c != 0)
                    .filter_map(char::from_u32)
                    .collect();
                Some(s)
            }
            _ => None,
        }
    }

    /// Writes the records `rows` of this array, in that order, each followed by the fields
    /// `more`, to `path`: one record at a time, so a subset of a large array, or a new array
    /// (`rows` all 0 of an empty one), takes no memory beside it.
    pub fn write_selected(
        &self,
        path: impl AsRef<Path>,
        rows: impl ExactSizeIterator<Item = usize>,
        more: &[NewField],
    ) -> Result<()> {
        let (fields, itemsize) = self.with_fields(more);
        let nrows = rows.len();
        let mut record = vec![0u8; itemsize];
        crate::atomic::write_atomic(path.as_ref(), |w| {
            write_header(w, &fields, nrows)?;
            for (k, r) in rows.enumerate() {
                record.fill(0);
                self.fill_record(k, r, &fields, more, &mut record);
                w.write_all(&record)?;
            }
            Ok(())
        })
    }

    /// This array's fields followed by `more`, and the record size.
    fn with_fields(&self, more: &[NewField]) -> (Vec<Field>, usize) {
        let mut fields = self.fields.clone();
        let mut itemsize = self.itemsize;
        for f in more {
            let (scalar, big_endian) = parse_scalar(&f.dtype).expect("caller passes a valid dtype");
            fields.push(Field {
                name: f.name.clone(),
                dtype: f.dtype.clone(),
                scalar,
                big_endian,
                shape: if f.count == 1 {
                    Vec::new()
                } else {
                    vec![f.count]
                },
                offset: itemsize,
            });
            itemsize += scalar.size() * f.count;
        }
        (fields, itemsize)
    }

    /// Record `k` of a selection: this array's record `r`, then the new fields.
    fn fill_record(
        &self,
        k: usize,
        r: usize,
        fields: &[Field],
        more: &[NewField],
        record: &mut [u8],
    ) {
        let old = self.itemsize;
        record[..old].copy_from_slice(&self.data[r * old..(r + 1) * old]);
        for (f, new) in fields[self.fields.len()..].iter().zip(more) {
            (new.fill)(k, &mut record[f.offset..f.offset + f.size()]);
        }
    }

    pub fn read(path: impl AsRef<Path>) -> Result<StructArray> {
        let path = path.as_ref();
        crate::error::ensure_regular(path)?;
        let mut bytes = std::fs::read(path).map_err(|e| FormatError::io(path, e))?;
        let (mut array, start) = Self::parse_header(&bytes, path)?;
        // The records stay where they were read, without a second copy of a large file.
        bytes.truncate(start + array.nrows * array.itemsize);
        bytes.drain(..start);
        array.data = bytes;
        Ok(array)
    }

    pub fn parse(bytes: &[u8], path: &Path) -> Result<StructArray> {
        let (mut array, start) = Self::parse_header(bytes, path)?;
        array.data = bytes[start..start + array.nrows * array.itemsize].to_vec();
        Ok(array)
    }

    /// The array's fields and size, with no data, and where the data starts in `bytes`, which
    /// holds all of it.
    fn parse_header(bytes: &[u8], path: &Path) -> Result<(StructArray, usize)> {
        let bad = |off: u64, msg: String| FormatError::invalid(path, Location::Byte(off), msg);
        if bytes.is_empty() {
            return Err(FormatError::invalid(
                path,
                Location::Whole,
                "empty file; expected a NumPy array (cryoSPARC .cs)",
            ));
        }
        if bytes.starts_with(b"\x94CSDAT") {
            return Err(FormatError::unsupported(
                path,
                "cryoSPARC's compressed CSDAT dataset format; export the dataset as a plain .cs (NumPy) file",
            ));
        }
        if bytes.len() < 10 || !bytes.starts_with(MAGIC) {
            return Err(bad(
                0,
                "not a NumPy file: expected the magic bytes \\x93NUMPY at the start".into(),
            ));
        }
        let major = bytes[6];
        let (hlen, hstart) = match major {
            1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
            2 | 3 => {
                if bytes.len() < 12 {
                    return Err(bad(8, "truncated NumPy header".into()));
                }
                (
                    u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
                    12,
                )
            }
            v => {
                return Err(bad(
                    6,
                    format!("NumPy format version {v}; expected 1, 2 or 3"),
                ))
            }
        };
        let Some(header_bytes) = bytes.get(hstart..hstart + hlen) else {
            return Err(bad(
                hstart as u64,
                format!("header claims {hlen} bytes but the file ends before"),
            ));
        };
        let header = std::str::from_utf8(header_bytes)
            .map_err(|_| bad(hstart as u64, "header is not text".into()))?;
        let dict = Literal::parse(header)
            .map_err(|m| bad(hstart as u64, format!("cannot read header: {m}")))?;
        let get = |k: &str| {
            dict.get(k)
                .ok_or_else(|| bad(hstart as u64, format!("header has no '{k}' entry")))
        };
        if matches!(get("fortran_order")?, Literal::Bool(true)) {
            return Err(bad(
                hstart as u64,
                "Fortran-ordered arrays are not used by cryoSPARC; expected C order".into(),
            ));
        }
        let shape = get("shape")?
            .as_usize_tuple()
            .ok_or_else(|| bad(hstart as u64, "'shape' is not a tuple of integers".into()))?;
        let nrows = match shape.as_slice() {
            [n] => *n,
            [] => 1,
            _ => {
                return Err(bad(
                    hstart as u64,
                    format!("array shape {shape:?}; expected a 1-D table of records"),
                ))
            }
        };
        let descr = get("descr")?;
        let Literal::List(entries) = descr else {
            return Err(bad(
                hstart as u64,
                "not a structured array: 'descr' is a plain type, expected a list of named fields"
                    .into(),
            ));
        };
        let mut fields = Vec::with_capacity(entries.len());
        let mut offset = 0;
        for (i, e) in entries.iter().enumerate() {
            let field = parse_field(e, offset)
                .map_err(|m| bad(hstart as u64, format!("field {}: {m}", i + 1)))?;
            offset += field.size();
            fields.push(field);
        }
        let itemsize = offset;
        let data_start = hstart + hlen;
        let need = nrows
            .checked_mul(itemsize)
            .ok_or_else(|| bad(hstart as u64, "row count overflows".into()))?;
        let avail = bytes.len() - data_start;
        if avail < need {
            return Err(bad(
                bytes.len() as u64,
                format!("file is truncated: {nrows} records of {itemsize} bytes need {need} bytes, found {avail}"),
            ));
        }
        let array = StructArray {
            fields,
            itemsize,
            nrows,
            data: Vec::new(),
        };
        Ok((array, data_start))
    }

    /// This array with the fields of `other` it lacks, each record given those of `other`'s
    /// record with the same `key` (cryoSPARC's `uid`): how a job's main `.cs` and its
    /// passthrough `.cs` make one table. Where both have a field, this array's stays. The error
    /// says which key is missing or which record has no partner.
    pub fn joined(&self, other: &StructArray, key: &str) -> std::result::Result<Self, String> {
        let (Some(mine), Some(theirs)) = (self.field(key), other.field(key)) else {
            return Err(format!("both files need a `{key}` field to be joined by"));
        };
        let kind = |f: &Field| (f.scalar, f.big_endian, f.count());
        if kind(mine) != kind(theirs) || mine.count() != 1 {
            return Err(format!(
                "`{key}` is {} in one file and {} in the other",
                mine.dtype, theirs.dtype
            ));
        }
        // Keys compared as bytes: a 64-bit uid does not survive a trip through f64.
        let mut rows = std::collections::HashMap::with_capacity(other.nrows);
        for r in 0..other.nrows {
            if rows.insert(other.raw(r, theirs, 0), r).is_some() {
                return Err(format!(
                    "record {} of the joined file: `{key}` {} appears twice",
                    r + 1,
                    key_text(other.raw(r, theirs, 0), theirs)
                ));
            }
        }
        let added: Vec<&Field> = other
            .fields
            .iter()
            .filter(|f| self.field(&f.name).is_none())
            .collect();
        let mut fields = self.fields.clone();
        let mut itemsize = self.itemsize;
        for f in &added {
            fields.push(Field {
                offset: itemsize,
                ..(*f).clone()
            });
            itemsize += f.size();
        }
        let mut data = Vec::with_capacity(self.nrows * itemsize);
        for r in 0..self.nrows {
            let Some(&o) = rows.get(self.raw(r, mine, 0)) else {
                return Err(format!(
                    "record {} of the main file: no record with its `{key}` ({})",
                    r + 1,
                    key_text(self.raw(r, mine, 0), mine)
                ));
            };
            data.extend_from_slice(&self.data[r * self.itemsize..(r + 1) * self.itemsize]);
            for f in &added {
                let start = o * other.itemsize + f.offset;
                data.extend_from_slice(&other.data[start..start + f.size()]);
            }
        }
        Ok(StructArray {
            fields,
            itemsize,
            nrows: self.nrows,
            data,
        })
    }

    pub fn header_text(&self) -> String {
        header_text(&self.fields, self.nrows)
    }

    pub fn write_to(&self, w: &mut dyn Write) -> std::io::Result<()> {
        write_header(w, &self.fields, self.nrows)?;
        w.write_all(&self.data)
    }

    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        crate::atomic::write_atomic(path.as_ref(), |w| self.write_to(w))
    }
}

/// A key's bytes as a user would look it up: an unsigned 64-bit uid in full, anything else in hex.
fn key_text(bytes: &[u8], f: &Field) -> String {
    match (f.scalar, <[u8; 8]>::try_from(bytes)) {
        (Scalar::UInt(8), Ok(b)) if f.big_endian => u64::from_be_bytes(b).to_string(),
        (Scalar::UInt(8), Ok(b)) => u64::from_le_bytes(b).to_string(),
        _ => bytes.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

fn header_text(fields: &[Field], nrows: usize) -> String {
    let mut d = String::from("{'descr': [");
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            d.push_str(", ");
        }
        if f.shape.is_empty() {
            d.push_str(&format!("('{}', '{}')", f.name, f.dtype));
        } else {
            let dims: Vec<String> = f.shape.iter().map(|n| format!("{n},")).collect();
            d.push_str(&format!(
                "('{}', '{}', ({}))",
                f.name,
                f.dtype,
                dims.join(" ").trim_end_matches(' ')
            ));
        }
    }
    d.push_str(&format!(
        "], 'fortran_order': False, 'shape': ({nrows},), }}"
    ));
    d
}

/// The magic, version and header of an array of `nrows` records of `fields`.
fn write_header(w: &mut dyn Write, fields: &[Field], nrows: usize) -> std::io::Result<()> {
    let mut header = header_text(fields, nrows);
    // numpy pads the header with spaces so the data starts on a 64-byte boundary.
    let v1 = header.len() + 11 < 65536 - 64;
    let prefix = if v1 { 10 } else { 12 };
    let total = (prefix + header.len() + 1).div_ceil(64) * 64;
    header.push_str(&" ".repeat(total - prefix - header.len() - 1));
    header.push('\n');
    w.write_all(MAGIC)?;
    if v1 {
        w.write_all(&[1, 0])?;
        w.write_all(&(header.len() as u16).to_le_bytes())?;
    } else {
        w.write_all(&[2, 0])?;
        w.write_all(&(header.len() as u32).to_le_bytes())?;
    }
    w.write_all(header.as_bytes())
}

impl Default for StructArray {
    fn default() -> Self {
        Self::new()
    }
}

fn parse_field(e: &Literal, offset: usize) -> std::result::Result<Field, String> {
    let Literal::Tuple(parts) = e else {
        return Err("expected a (name, type) tuple".into());
    };
    let (name, dtype) = match (parts.first(), parts.get(1)) {
        (Some(Literal::Str(n)), Some(Literal::Str(t))) => (n.clone(), t.clone()),
        (Some(Literal::Str(n)), Some(Literal::List(_))) => {
            return Err(format!(
                "'{n}' is a nested record; cryoSPARC files have flat fields"
            ))
        }
        _ => return Err("expected a (name, type) tuple of strings".into()),
    };
    let shape = match parts.get(2) {
        None => Vec::new(),
        Some(s) => s
            .as_usize_tuple()
            .ok_or_else(|| format!("'{name}' has a shape that is not a tuple of integers"))?,
    };
    let (scalar, big_endian) = parse_scalar(&dtype).ok_or_else(|| {
        format!("'{name}' has type '{dtype}'; object and other non-fixed types cannot be read")
    })?;
    Ok(Field {
        name,
        dtype,
        scalar,
        big_endian,
        shape,
        offset,
    })
}

pub fn parse_scalar(t: &str) -> Option<(Scalar, bool)> {
    let (order, rest) = match t.chars().next()? {
        c @ ('<' | '>' | '|' | '=') => (c, &t[1..]),
        _ => ('=', t),
    };
    let big = order == '>';
    let kind = rest.chars().next()?;
    let n: usize = rest[1..].parse().ok()?;
    let s = match (kind, n) {
        ('b', 1) => Scalar::Bool,
        ('i', 1 | 2 | 4 | 8) => Scalar::Int(n),
        ('u', 1 | 2 | 4 | 8) => Scalar::UInt(n),
        ('f', 2 | 4 | 8) => Scalar::Float(n),
        ('S' | 'a', _) => Scalar::Bytes(n),
        ('U', _) => Scalar::Unicode(n),
        ('V', _) => Scalar::Void(n),
        _ => return None,
    };
    Some((s, big))
}

/// The subset of Python literals numpy writes in `.npy` headers.
#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Str(String),
    Int(i64),
    Bool(bool),
    None,
    Tuple(Vec<Literal>),
    List(Vec<Literal>),
    Dict(Vec<(String, Literal)>),
}

impl Literal {
    fn parse(text: &str) -> std::result::Result<Literal, String> {
        let mut p = LitParser {
            s: text.as_bytes(),
            i: 0,
            depth: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!(
                "unexpected text after the header dictionary at offset {}",
                p.i
            ));
        }
        Ok(v)
    }

    fn get(&self, key: &str) -> Option<&Literal> {
        match self {
            Literal::Dict(kv) => kv.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn as_usize_tuple(&self) -> Option<Vec<usize>> {
        match self {
            Literal::Tuple(v) => v
                .iter()
                .map(|x| match x {
                    Literal::Int(n) if *n >= 0 => Some(*n as usize),
                    _ => None,
                })
                .collect(),
            Literal::Int(n) if *n >= 0 => Some(vec![*n as usize]),
            _ => None,
        }
    }
}

struct LitParser<'a> {
    s: &'a [u8],
    i: usize,
    depth: usize,
}

impl LitParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn value(&mut self) -> std::result::Result<Literal, String> {
        self.ws();
        self.depth += 1;
        if self.depth > 32 {
            return Err("header nests too deeply".into());
        }
        let c = *self.s.get(self.i).ok_or("header ends early")?;
        let v = match c {
            b'\'' | b'"' => self.string().map(Literal::Str),
            b'(' => self.seq(b')').map(Literal::Tuple),
            b'[' => self.seq(b']').map(Literal::List),
            b'{' => self.dict(),
            b'-' | b'0'..=b'9' => self.int(),
            _ => self.word(),
        };
        self.depth -= 1;
        v
    }

    fn string(&mut self) -> std::result::Result<String, String> {
        let q = self.s[self.i];
        let start = self.i + 1;
        let end = self.s[start..]
            .iter()
            .position(|&c| c == q)
            .ok_or("unterminated string in header")?;
        self.i = start + end + 1;
        Ok(String::from_utf8_lossy(&self.s[start..start + end]).into_owned())
    }

    fn seq(&mut self, close: u8) -> std::result::Result<Vec<Literal>, String> {
        self.i += 1;
        let mut out = Vec::new();
        loop {
            self.ws();
            match self.s.get(self.i) {
                None => return Err("header ends inside a list or tuple".into()),
                Some(&c) if c == close => {
                    self.i += 1;
                    return Ok(out);
                }
                _ => {}
            }
            out.push(self.value()?);
            self.ws();
            match self.s.get(self.i) {
                Some(b',') => self.i += 1,
                Some(&c) if c == close => {}
                _ => {
                    return Err(format!(
                        "expected ',' or '{}' at offset {}",
                        close as char, self.i
                    ))
                }
            }
        }
    }

    fn dict(&mut self) -> std::result::Result<Literal, String> {
        self.i += 1;
        let mut out = Vec::new();
        loop {
            self.ws();
            match self.s.get(self.i) {
                None => return Err("header ends inside the dictionary".into()),
                Some(b'}') => {
                    self.i += 1;
                    return Ok(Literal::Dict(out));
                }
                _ => {}
            }
            let Literal::Str(k) = self.value()? else {
                return Err("dictionary keys must be strings".into());
            };
            self.ws();
            if self.s.get(self.i) != Some(&b':') {
                return Err(format!("expected ':' after key '{k}'"));
            }
            self.i += 1;
            let v = self.value()?;
            out.push((k, v));
            self.ws();
            match self.s.get(self.i) {
                Some(b',') => self.i += 1,
                Some(b'}') => {}
                _ => return Err(format!("expected ',' or '}}' at offset {}", self.i)),
            }
        }
    }

    fn int(&mut self) -> std::result::Result<Literal, String> {
        let start = self.i;
        self.i += 1;
        while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
            self.i += 1;
        }
        // numpy 1.x on Windows wrote 64-bit sizes with an 'L' suffix
        if self.s.get(self.i) == Some(&b'L') {
            self.i += 1;
        }
        let t = std::str::from_utf8(&self.s[start..self.i])
            .unwrap()
            .trim_end_matches('L');
        t.parse()
            .map(Literal::Int)
            .map_err(|_| format!("bad integer '{t}'"))
    }

    fn word(&mut self) -> std::result::Result<Literal, String> {
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i].is_ascii_alphabetic() {
            self.i += 1;
        }
        match &self.s[start..self.i] {
            b"True" => Ok(Literal::Bool(true)),
            b"False" => Ok(Literal::Bool(false)),
            b"None" => Ok(Literal::None),
            w => Err(format!(
                "unexpected '{}' in header",
                String::from_utf8_lossy(w)
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An array of `uids` with one f32 field `name` (the record's index plus `plus`).
    fn keyed(dir: &Path, file: &str, uids: &[u64], name: &str, plus: f32) -> StructArray {
        let path = dir.join(file);
        StructArray::new()
            .write_selected(
                &path,
                uids.iter().map(|_| 0),
                &[
                    NewField::u64("uid", |i| uids[i]),
                    NewField::f32(name, |i| i as f32 + plus),
                ],
            )
            .unwrap();
        StructArray::read(&path).unwrap()
    }

    #[test]
    fn arrays_join_record_to_record_by_key() {
        let dir = tempfile::tempdir().unwrap();
        // uids past 2^53, which an f64 would merge.
        let big = 1u64 << 60;
        let main = keyed(dir.path(), "m.cs", &[big, big + 1, 5], "a", 0.0);
        let other = keyed(dir.path(), "o.cs", &[5, big + 1, big, 9], "b", 10.0);
        let j = main.joined(&other, "uid").unwrap();
        let names: Vec<&str> = j.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!((names, j.nrows), (vec!["uid", "a", "b"], 3));
        let b = j.field("b").unwrap();
        let got: Vec<f64> = (0..3).map(|r| j.number(r, b, 0).unwrap()).collect();
        assert_eq!(got, [12.0, 11.0, 10.0]);
        // A field both have keeps the main array's values.
        let same = keyed(dir.path(), "s.cs", &[5, big, big + 1], "a", 100.0);
        let j = main.joined(&same, "uid").unwrap();
        assert_eq!(j.fields.len(), 2);
        assert_eq!(j.number(0, j.field("a").unwrap(), 0), Some(0.0));

        let lacking = keyed(dir.path(), "l.cs", &[5, big], "b", 0.0);
        let e = main.joined(&lacking, "uid").unwrap_err();
        assert!(
            e.contains("record 2 of the main file") && e.contains(&(big + 1).to_string()),
            "{e}"
        );
        let twice = keyed(dir.path(), "t.cs", &[5, 5], "b", 0.0);
        assert!(main
            .joined(&twice, "uid")
            .unwrap_err()
            .contains("appears twice"));
        assert!(main.joined(&main, "nope").unwrap_err().contains("`nope`"));
    }

    #[test]
    fn build_write_read_select() {
        let names = ["ab", "cdef", ""];
        let dir = tempfile::tempdir().unwrap();
        let (path, subset) = (dir.path().join("t.cs"), dir.path().join("s.cs"));
        StructArray::new()
            .write_selected(
                &path,
                (0..3).map(|_| 0),
                &[
                    NewField::u64("uid", |i| 7 + 2 * i as u64),
                    NewField::text("name", 4, |i| names[i]),
                    NewField::f32("x", |i| 0.25 * (i + 1) as f32),
                    NewField::le("shape", "<u4", 2, |i, b| {
                        b[..4].copy_from_slice(&(i as u32).to_le_bytes());
                        b[4..].copy_from_slice(&(10 * i as u32).to_le_bytes());
                    }),
                ],
            )
            .unwrap();
        let a = StructArray::read(&path).unwrap();
        assert_eq!((a.nrows, a.itemsize), (3, 8 + 4 + 4 + 8));
        assert_eq!(a.header_text(), "{'descr': [('uid', '<u8'), ('name', '|S4'), ('x', '<f4'), ('shape', '<u4', (2,))], 'fortran_order': False, 'shape': (3,), }");
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!((bytes.len() - a.data.len()) % 64, 0);
        assert_eq!(StructArray::parse(&bytes, &path).unwrap(), a);
        let mut buf = Vec::new();
        a.write_to(&mut buf).unwrap();
        assert_eq!(buf, bytes);
        let y = NewField::f32("y", |i| i as f32 + 0.5);
        a.write_selected(&subset, [2, 0].into_iter(), &[y]).unwrap();
        let s = StructArray::read(&subset).unwrap();
        let x = s.field("x").unwrap();
        assert_eq!(s.number(0, x, 0), Some(0.75));
        assert_eq!(s.text(1, s.field("name").unwrap()).unwrap(), "ab");
        assert_eq!(s.text(0, s.field("name").unwrap()).unwrap(), "");
        assert_eq!(s.number(0, s.field("shape").unwrap(), 1), Some(20.0));
        assert_eq!(s.number(1, s.field("y").unwrap(), 0), Some(1.5));
        assert_eq!(s.number(1, s.field("uid").unwrap(), 0), Some(7.0));
    }

    #[test]
    fn header_errors() {
        let p = Path::new("bad.cs");
        assert!(StructArray::parse(b"", p)
            .unwrap_err()
            .to_string()
            .contains("empty file"));
        assert!(StructArray::parse(b"random bytes here", p)
            .unwrap_err()
            .to_string()
            .contains("magic"));
        let mut obj = b"\x93NUMPY\x01\x00".to_vec();
        let h = "{'descr': [('a', '|O')], 'fortran_order': False, 'shape': (1,), }\n";
        obj.extend_from_slice(&(h.len() as u16).to_le_bytes());
        obj.extend_from_slice(h.as_bytes());
        let e = StructArray::parse(&obj, p).unwrap_err().to_string();
        assert!(e.contains("'a' has type '|O'"), "{e}");
    }
}
