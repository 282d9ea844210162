//! MRC / MRCS (MRC2014) images, stacks and volumes.
//!
//! Reading maps the file into memory, so opening a stack of a million particles costs nothing
//! until a section is read. Modes 0 (int8), 1 (int16), 2 (float32), 6 (uint16) and 12 (float16)
//! are decoded to `f32`; complex modes are refused with a clear error because no picker or
//! classifier input is complex. Either byte order is accepted: the machine stamp decides, and a
//! zero stamp (old cryoDRGN and EMAN writers) falls back to whichever order gives a sane header.
//! gzip and bzip2 compressed files (`.map.gz` from EMDB) are decompressed into memory.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::error::{FormatError, Location, Result};

pub const HEADER_LEN: usize = 1024;

/// "IMOD" read as a little-endian i32 at byte 152: IMOD's stamp.
const IMOD_STAMP: i32 = 1_146_047_817;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Mode {
    Int8,
    /// Mode 0 in a file whose IMOD stamp says its bytes are unsigned (IMOD's flags bit 0 clear).
    Uint8,
    Int16,
    Float32,
    Uint16,
    Float16,
}

impl Mode {
    pub fn from_code(code: i32) -> Option<Mode> {
        match code {
            0 => Some(Mode::Int8),
            1 => Some(Mode::Int16),
            2 => Some(Mode::Float32),
            6 => Some(Mode::Uint16),
            12 => Some(Mode::Float16),
            _ => None,
        }
    }

    pub fn code(self) -> i32 {
        match self {
            Mode::Int8 | Mode::Uint8 => 0,
            Mode::Int16 => 1,
            Mode::Float32 => 2,
            Mode::Uint16 => 6,
            Mode::Float16 => 12,
        }
    }

    pub fn bytes(self) -> usize {
        match self {
            Mode::Int8 | Mode::Uint8 => 1,
            Mode::Int16 | Mode::Uint16 | Mode::Float16 => 2,
            Mode::Float32 => 4,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Mode::Int8 => "0 (int8)",
            Mode::Uint8 => "0 (uint8, by IMOD's flags)",
            Mode::Int16 => "1 (int16)",
            Mode::Float32 => "2 (float32)",
            Mode::Uint16 => "6 (uint16)",
            Mode::Float16 => "12 (float16)",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ByteOrder {
    Little,
    Big,
}

/// What the data represents. MRC encodes this in ISPG and MZ; `.mrcs` files are stacks whatever
/// their header says, since many writers leave ISPG at 1 for stacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum DataKind {
    Image,
    ImageStack,
    Volume,
    VolumeStack,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct MrcHeader {
    pub nx: usize,
    pub ny: usize,
    pub nz: usize,
    pub mode: Mode,
    pub start: [i32; 3],
    pub sampling: [i32; 3],
    pub cell: [f32; 3],
    pub cell_angles: [f32; 3],
    pub axis_order: [i32; 3],
    pub dmin: f32,
    pub dmax: f32,
    pub dmean: f32,
    pub rms: f32,
    pub ispg: i32,
    pub nsymbt: usize,
    pub exttyp: String,
    pub nversion: i32,
    pub origin: [f32; 3],
    pub has_map_id: bool,
    pub byte_order: ByteOrder,
    pub labels: Vec<String>,
}

impl MrcHeader {
    /// Voxel size in Å along x, y, z (cell / sampling); zero where the header leaves it unset.
    pub fn voxel_size(&self) -> [f32; 3] {
        let mut v = [0.0; 3];
        for (i, out) in v.iter_mut().enumerate() {
            if self.sampling[i] != 0 {
                *out = self.cell[i] / self.sampling[i] as f32;
            }
        }
        v
    }

    /// Pixel size in Å when the header states a positive one.
    pub fn pixel_size(&self) -> Option<f32> {
        let v = self.voxel_size()[0];
        (v.is_finite() && v > 0.0).then_some(v)
    }

    pub fn data_offset(&self) -> usize {
        HEADER_LEN + self.nsymbt
    }

    pub fn section_len(&self) -> usize {
        self.nx * self.ny
    }

    pub fn data_len_bytes(&self) -> u64 {
        // Saturating: absurd dimensions from a damaged header must become a "truncated" error.
        (self.nx as u64)
            .saturating_mul(self.ny as u64)
            .saturating_mul(self.nz as u64)
            .saturating_mul(self.mode.bytes() as u64)
    }

    pub fn kind(&self, path: &Path) -> DataKind {
        let is_mrcs = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("mrcs"));
        if is_mrcs || (self.ispg == 0 && self.nz > 1) {
            DataKind::ImageStack
        } else if self.nz == 1 {
            DataKind::Image
        } else if self.ispg >= 401 {
            DataKind::VolumeStack
        } else {
            DataKind::Volume
        }
    }

    /// Parses the 1024-byte header. `file_len` (bytes available after decompression) lets us
    /// check that the extended header and the data fit before anyone indexes past the end.
    pub fn parse(path: &Path, bytes: &[u8], file_len: u64) -> Result<MrcHeader> {
        let bad =
            |offset: u64, msg: String| FormatError::invalid(path, Location::Byte(offset), msg);
        if bytes.len() < HEADER_LEN {
            return Err(FormatError::invalid(
                path,
                Location::Whole,
                format!(
                    "truncated MRC header: the file has {} bytes, an MRC header needs {HEADER_LEN}",
                    bytes.len()
                ),
            ));
        }
        let h = &bytes[..HEADER_LEN];
        if is_deltavision(h) {
            return Err(FormatError::unsupported(
                path,
                "this is a DeltaVision/Priism file (magic 0xC0A0 at byte 96), not MRC; convert it to MRC first",
            ));
        }
        let has_map_id = &h[208..212] == b"MAP ";
        // A file that says it is MRC but whose stamp and fields fit neither order is read as
        // little-endian (what nearly every writer produces), so that the field at fault is named.
        let byte_order = match detect_byte_order(h) {
            Some(order) => order,
            None if has_map_id => ByteOrder::Little,
            None => return Err(bad(
                0,
                "not an MRC file: no \"MAP \" identifier and the header makes no sense in either byte order".into(),
            )),
        };
        let r = Reader {
            h,
            order: byte_order,
        };
        let dims = [r.i32(0), r.i32(4), r.i32(8)];
        for (i, d) in dims.iter().enumerate() {
            if *d <= 0 {
                return Err(bad(
                    i as u64 * 4,
                    format!(
                        "{} = {d}; expected a positive dimension",
                        ["NX", "NY", "NZ"][i]
                    ),
                ));
            }
        }
        let mode_code = r.i32(12);
        let mode = match Mode::from_code(mode_code) {
            Some(m) => m,
            None if matches!(mode_code, 3 | 4) => {
                return Err(FormatError::unsupported(
                    path,
                    format!("MRC mode {mode_code} holds complex numbers (Fourier transforms); cryoprune reads real images only (modes 0, 1, 2, 6, 12)"),
                ))
            }
            None => {
                return Err(bad(
                    12,
                    format!("unknown MRC mode {mode_code}; expected 0, 1, 2, 6 or 12"),
                ))
            }
        };
        // IMOD stamps its files ("IMOD" at byte 152) and says in bit 0 of the flags after it
        // whether mode-0 bytes are signed; older IMOD files (and their copies) are unsigned.
        let mode = if mode == Mode::Int8 && r.i32(152) == IMOD_STAMP && r.i32(156) & 1 == 0 {
            Mode::Uint8
        } else {
            mode
        };
        let nsymbt = r.i32(92);
        if nsymbt < 0 {
            return Err(bad(
                92,
                format!("NSYMBT = {nsymbt}; expected a non-negative extended header length"),
            ));
        }
        let nlabl = r.i32(220).clamp(0, 10) as usize;
        let labels = (0..nlabl)
            .map(|i| {
                let raw = &h[224 + 80 * i..224 + 80 * (i + 1)];
                String::from_utf8_lossy(raw)
                    .trim_end_matches(['\0', ' '])
                    .to_string()
            })
            .collect();
        let header = MrcHeader {
            nx: dims[0] as usize,
            ny: dims[1] as usize,
            nz: dims[2] as usize,
            mode,
            start: [r.i32(16), r.i32(20), r.i32(24)],
            sampling: [r.i32(28), r.i32(32), r.i32(36)],
            cell: [r.f32(40), r.f32(44), r.f32(48)],
            cell_angles: [r.f32(52), r.f32(56), r.f32(60)],
            axis_order: [r.i32(64), r.i32(68), r.i32(72)],
            dmin: r.f32(76),
            dmax: r.f32(80),
            dmean: r.f32(84),
            ispg: r.i32(88),
            nsymbt: nsymbt as usize,
            exttyp: String::from_utf8_lossy(&h[104..108])
                .trim_end_matches(['\0', ' '])
                .to_string(),
            nversion: r.i32(108),
            origin: [r.f32(196), r.f32(200), r.f32(204)],
            rms: r.f32(216),
            has_map_id,
            byte_order,
            labels,
        };
        let data_start = header.data_offset() as u64;
        if data_start > file_len {
            return Err(bad(
                92,
                format!(
                    "NSYMBT = {nsymbt} puts the data at byte {data_start}, past the end of the {file_len}-byte file"
                ),
            ));
        }
        let need = data_start.saturating_add(header.data_len_bytes());
        if need > file_len {
            return Err(bad(
                file_len,
                format!(
                    "file is truncated: {}x{}x{} mode {} needs {} bytes of data after byte {data_start}, found {}",
                    header.nx,
                    header.ny,
                    header.nz,
                    mode_code,
                    header.data_len_bytes(),
                    file_len - data_start
                ),
            ));
        }
        Ok(header)
    }
}

fn is_deltavision(h: &[u8]) -> bool {
    let m = [h[96], h[97]];
    m == [0xA0, 0xC0] || m == [0xC0, 0xA0]
}

struct Reader<'a> {
    h: &'a [u8],
    order: ByteOrder,
}

impl Reader<'_> {
    fn word(&self, off: usize) -> [u8; 4] {
        self.h[off..off + 4].try_into().unwrap()
    }
    fn i32(&self, off: usize) -> i32 {
        match self.order {
            ByteOrder::Little => i32::from_le_bytes(self.word(off)),
            ByteOrder::Big => i32::from_be_bytes(self.word(off)),
        }
    }
    fn f32(&self, off: usize) -> f32 {
        f32::from_bits(self.i32(off) as u32)
    }
}

fn detect_byte_order(h: &[u8]) -> Option<ByteOrder> {
    match (h[212], h[213]) {
        (0x44, 0x44) | (0x44, 0x41) => return Some(ByteOrder::Little),
        (0x11, 0x11) => return Some(ByteOrder::Big),
        _ => {}
    }
    // Zero or garbage stamp: take the order in which mode and dimensions look like an MRC file.
    let plausible = |order| {
        let r = Reader { h, order };
        let mode = r.i32(12);
        let dims_ok = (0..3).all(|i| (1..=1 << 24).contains(&r.i32(i * 4)));
        dims_ok && (0..=12).contains(&mode)
    };
    if plausible(ByteOrder::Little) {
        Some(ByteOrder::Little)
    } else if plausible(ByteOrder::Big) {
        Some(ByteOrder::Big)
    } else {
        None
    }
}

enum Backing {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Mapped(m) => m,
            Backing::Owned(v) => v,
        }
    }
}

/// An open MRC file. Sections (2D images) are decoded on demand.
pub struct MrcFile {
    path: PathBuf,
    header: MrcHeader,
    backing: Backing,
}

/// The most a compressed MRC may decompress to in memory; larger files are better decompressed
/// once on disk, where they are memory-mapped instead.
const MAX_DECOMPRESSED: u64 = 8 << 30;

/// Decompresses an MRC as far as its own header says it reaches (and no further: a small file
/// that inflates to gigabytes of zeros is refused after 1 KiB, not after filling memory).
fn decompress(path: &Path, mut dec: impl Read, what: &str) -> Result<Vec<u8>> {
    let damaged = |e: std::io::Error| {
        FormatError::invalid(
            path,
            Location::Whole,
            format!("{what} data is damaged: {e}"),
        )
    };
    let mut bytes = Vec::with_capacity(HEADER_LEN);
    (&mut dec)
        .take(HEADER_LEN as u64)
        .read_to_end(&mut bytes)
        .map_err(damaged)?;
    // The file's length is not known yet; the parser still refuses a short header.
    let header = MrcHeader::parse(path, &bytes, u64::MAX)?;
    let need = (header.data_offset() as u64).saturating_add(header.data_len_bytes());
    if need > MAX_DECOMPRESSED {
        return Err(FormatError::invalid(
            path,
            Location::Whole,
            format!(
                "the header declares {}x{}x{} values ({need} bytes), more than the {} GiB cryoprune decompresses in memory; decompress the file first (it is then read from disk)",
                header.nx,
                header.ny,
                header.nz,
                MAX_DECOMPRESSED >> 30
            ),
        ));
    }
    bytes.reserve((need as usize).saturating_sub(HEADER_LEN));
    dec.take(need - HEADER_LEN as u64)
        .read_to_end(&mut bytes)
        .map_err(damaged)?;
    Ok(bytes)
}

impl MrcFile {
    pub fn open(path: impl AsRef<Path>) -> Result<MrcFile> {
        let path = path.as_ref();
        let mut file = crate::error::open_regular(path)?;
        let mut magic = [0u8; 3];
        let n = file
            .read(&mut magic)
            .map_err(|e| FormatError::io(path, e))?;
        file.seek(SeekFrom::Start(0))
            .map_err(|e| FormatError::io(path, e))?;
        let backing = if n >= 2 && magic[..2] == [0x1f, 0x8b] {
            let dec = flate2::read::MultiGzDecoder::new(file);
            Backing::Owned(decompress(path, dec, "gzip")?)
        } else if n == 3 && &magic == b"BZh" {
            let dec = bzip2::read::MultiBzDecoder::new(file);
            Backing::Owned(decompress(path, dec, "bzip2")?)
        } else {
            let len = file.metadata().map_err(|e| FormatError::io(path, e))?.len();
            if len == 0 {
                return Err(FormatError::invalid(
                    path,
                    Location::Whole,
                    "empty file; expected an MRC header of 1024 bytes",
                ));
            }
            // SAFETY: the map is read-only; a file truncated by another process while mapped
            // would fault, which is the accepted trade-off for opening huge stacks instantly.
            let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| FormatError::io(path, e))?;
            Backing::Mapped(map)
        };
        let bytes = backing.bytes();
        let header = MrcHeader::parse(path, bytes, bytes.len() as u64)?;
        Ok(MrcFile {
            path: path.to_path_buf(),
            header,
            backing,
        })
    }

    pub fn header(&self) -> &MrcHeader {
        &self.header
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn n_sections(&self) -> usize {
        self.header.nz
    }

    /// The raw extended header (FEI1/FEI2 metadata, symmetry records), skipped by the data reader.
    pub fn extended_header(&self) -> &[u8] {
        &self.backing.bytes()[HEADER_LEN..self.header.data_offset()]
    }

    /// Decodes section `index` (0-based) into `out`, row 0 first, x fastest.
    pub fn read_section_into(&self, index: usize, out: &mut [f32]) -> Result<()> {
        let n = self.header.section_len();
        if index >= self.header.nz {
            return Err(FormatError::invalid(
                &self.path,
                Location::Record(index + 1),
                format!(
                    "section {} requested but the file has {}",
                    index + 1,
                    self.header.nz
                ),
            ));
        }
        assert_eq!(out.len(), n, "output buffer must hold one section");
        let b = self.header.mode.bytes();
        let start = self.header.data_offset() + index * n * b;
        let raw = &self.backing.bytes()[start..start + n * b];
        decode(raw, self.header.mode, self.header.byte_order, out);
        Ok(())
    }

    pub fn read_section(&self, index: usize) -> Result<Vec<f32>> {
        let mut out = vec![0.0; self.header.section_len()];
        self.read_section_into(index, &mut out)?;
        Ok(out)
    }

    /// Every section, in file order.
    pub fn read_all(&self) -> Vec<f32> {
        let n = self.header.nx * self.header.ny * self.header.nz;
        let mut out = vec![0.0; n];
        let start = self.header.data_offset();
        let raw = &self.backing.bytes()[start..start + n * self.header.mode.bytes()];
        decode(raw, self.header.mode, self.header.byte_order, &mut out);
        out
    }
}

fn decode(raw: &[u8], mode: Mode, order: ByteOrder, out: &mut [f32]) {
    macro_rules! conv {
        ($n:literal, $f:expr) => {
            for (o, c) in out.iter_mut().zip(raw.chunks_exact($n)) {
                let a: [u8; $n] = c.try_into().unwrap();
                *o = $f(a);
            }
        };
    }
    let le = order == ByteOrder::Little;
    match mode {
        Mode::Int8 => conv!(1, |a: [u8; 1]| a[0] as i8 as f32),
        Mode::Uint8 => conv!(1, |a: [u8; 1]| a[0] as f32),
        Mode::Int16 if le => conv!(2, |a| i16::from_le_bytes(a) as f32),
        Mode::Int16 => conv!(2, |a| i16::from_be_bytes(a) as f32),
        Mode::Uint16 if le => conv!(2, |a| u16::from_le_bytes(a) as f32),
        Mode::Uint16 => conv!(2, |a| u16::from_be_bytes(a) as f32),
        Mode::Float16 if le => conv!(2, |a| half::f16::from_le_bytes(a).to_f32()),
        Mode::Float16 => conv!(2, |a| half::f16::from_be_bytes(a).to_f32()),
        Mode::Float32 if le => conv!(4, f32::from_le_bytes),
        Mode::Float32 => conv!(4, f32::from_be_bytes),
    }
}

/// How a written file declares itself; decides ISPG and MZ the way mrcfile does, so that its
/// validator and RELION agree on whether the file is a stack or a volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    ImageOrStack,
    Volume,
}

/// Streams sections into a new MRC file: header first as a placeholder, data appended section by
/// section, the final header (NZ, statistics) written on `finish`. Memory stays at one section
/// whatever the stack size; the file appears under its name only when finished.
pub struct MrcWriter {
    path: PathBuf,
    tmp: Option<tempfile::NamedTempFile>,
    out: std::io::BufWriter<File>,
    nx: usize,
    ny: usize,
    nz: usize,
    mode: Mode,
    kind: WriteKind,
    pixel_size: f32,
    stats: Stats,
}

#[derive(Default)]
struct Stats {
    n: u64,
    min: f64,
    max: f64,
    sum: f64,
    sum_sq: f64,
}

impl Stats {
    fn add(&mut self, values: &[f32]) {
        // Eight independent accumulators let the compiler vectorise; one chain of f64 additions
        // would make the statistics cost more than writing the bytes.
        const LANES: usize = 8;
        let mut min = [f32::INFINITY; LANES];
        let mut max = [f32::NEG_INFINITY; LANES];
        let mut sum = [0f64; LANES];
        let mut sum_sq = [0f64; LANES];
        let chunks = values.chunks_exact(LANES);
        let rest = chunks.remainder();
        for c in chunks {
            for i in 0..LANES {
                min[i] = min[i].min(c[i]);
                max[i] = max[i].max(c[i]);
                let v = c[i] as f64;
                sum[i] += v;
                sum_sq[i] += v * v;
            }
        }
        for (i, &v) in rest.iter().enumerate() {
            min[i] = min[i].min(v);
            max[i] = max[i].max(v);
            sum[i] += v as f64;
            sum_sq[i] += v as f64 * v as f64;
        }
        self.n += values.len() as u64;
        for i in 0..LANES {
            self.min = self.min.min(min[i] as f64);
            self.max = self.max.max(max[i] as f64);
            self.sum += sum[i];
            self.sum_sq += sum_sq[i];
        }
    }
}

impl MrcWriter {
    pub fn create(
        path: impl AsRef<Path>,
        nx: usize,
        ny: usize,
        mode: Mode,
        kind: WriteKind,
        pixel_size: Option<f32>,
    ) -> Result<MrcWriter> {
        let path = path.as_ref().to_path_buf();
        let tmp = crate::atomic::temp_beside(&path)?;
        let file = tmp.reopen().map_err(|e| FormatError::io(&path, e))?;
        let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
        out.write_all(&[0u8; HEADER_LEN])
            .map_err(|e| FormatError::io(&path, e))?;
        Ok(MrcWriter {
            path,
            tmp: Some(tmp),
            out,
            nx,
            ny,
            nz: 0,
            mode,
            kind,
            pixel_size: pixel_size.unwrap_or(0.0),
            stats: Stats {
                min: f64::INFINITY,
                max: f64::NEG_INFINITY,
                ..Stats::default()
            },
        })
    }

    pub fn push_section(&mut self, data: &[f32]) -> Result<()> {
        assert_eq!(data.len(), self.nx * self.ny, "section size must be nx*ny");
        // The values as stored (quantised for integer and half modes; every one is exact in
        // f32), so the header statistics describe the file, not the input.
        let stored: std::borrow::Cow<[f32]> = match self.mode {
            Mode::Float32 => data.into(),
            Mode::Float16 => data
                .iter()
                .map(|&v| half::f16::from_f32(v).to_f32())
                .collect(),
            Mode::Int16 => data
                .iter()
                .map(|&v| v.round().clamp(i16::MIN as f32, i16::MAX as f32))
                .collect(),
            Mode::Uint16 => data
                .iter()
                .map(|&v| v.round().clamp(0.0, u16::MAX as f32))
                .collect(),
            Mode::Int8 => data
                .iter()
                .map(|&v| v.round().clamp(i8::MIN as f32, i8::MAX as f32))
                .collect(),
            Mode::Uint8 => data.iter().map(|&v| v.round().clamp(0.0, 255.0)).collect(),
        };
        let mut buf = Vec::with_capacity(data.len() * self.mode.bytes());
        match self.mode {
            Mode::Float32 => stored
                .iter()
                .for_each(|v| buf.extend_from_slice(&v.to_le_bytes())),
            Mode::Float16 => stored
                .iter()
                .for_each(|&v| buf.extend_from_slice(&half::f16::from_f32(v).to_le_bytes())),
            Mode::Int16 => stored
                .iter()
                .for_each(|&v| buf.extend_from_slice(&(v as i16).to_le_bytes())),
            Mode::Uint16 => stored
                .iter()
                .for_each(|&v| buf.extend_from_slice(&(v as u16).to_le_bytes())),
            Mode::Int8 => stored.iter().for_each(|&v| buf.push(v as i8 as u8)),
            Mode::Uint8 => stored.iter().for_each(|&v| buf.push(v as u8)),
        }
        self.stats.add(&stored);
        self.out
            .write_all(&buf)
            .map_err(|e| FormatError::io(&self.path, e))?;
        self.nz += 1;
        Ok(())
    }

    /// Sets the pixel size (Å) written in the final header, for streams whose pixel size is known
    /// only once every section has been computed.
    pub fn set_pixel_size(&mut self, pixel_size: f32) {
        self.pixel_size = pixel_size;
    }

    pub fn finish(mut self) -> Result<()> {
        if self.nz == 0 {
            return Err(FormatError::invalid(
                &self.path,
                Location::Whole,
                "no sections were written; an MRC file needs at least one image",
            ));
        }
        let header = self.header_bytes();
        let path = self.path.clone();
        let io = |e| FormatError::io(&path, e);
        self.out.flush().map_err(io)?;
        let file = self.out.get_mut();
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(&header).map_err(io)?;
        file.sync_all().map_err(io)?;
        let tmp = self.tmp.take().expect("finish is called once");
        tmp.persist(&self.path)
            .map_err(|e| FormatError::io(&path, e.error))?;
        Ok(())
    }

    fn header_bytes(&self) -> Vec<u8> {
        let mut h = vec![0u8; HEADER_LEN];
        let mut put = |off: usize, bytes: [u8; 4]| h[off..off + 4].copy_from_slice(&bytes);
        let (ispg, mz): (i32, i32) = match self.kind {
            WriteKind::ImageOrStack => (0, 1),
            WriteKind::Volume => (1, self.nz as i32),
        };
        let s = &self.stats;
        let mean = s.sum / s.n as f64;
        let rms = (s.sum_sq / s.n as f64 - mean * mean).max(0.0).sqrt();
        put(0, (self.nx as i32).to_le_bytes());
        put(4, (self.ny as i32).to_le_bytes());
        put(8, (self.nz as i32).to_le_bytes());
        put(12, self.mode.code().to_le_bytes());
        put(28, (self.nx as i32).to_le_bytes());
        put(32, (self.ny as i32).to_le_bytes());
        put(36, mz.to_le_bytes());
        put(40, (self.pixel_size * self.nx as f32).to_le_bytes());
        put(44, (self.pixel_size * self.ny as f32).to_le_bytes());
        put(48, (self.pixel_size * mz as f32).to_le_bytes());
        for off in [52, 56, 60] {
            put(off, 90f32.to_le_bytes());
        }
        put(64, 1i32.to_le_bytes());
        put(68, 2i32.to_le_bytes());
        put(72, 3i32.to_le_bytes());
        put(76, (s.min as f32).to_le_bytes());
        put(80, (s.max as f32).to_le_bytes());
        put(84, (mean as f32).to_le_bytes());
        put(88, ispg.to_le_bytes());
        if self.mode == Mode::Uint8 {
            // Unsigned bytes are IMOD's convention; say so the way IMOD does (flags bit 0 clear).
            put(152, IMOD_STAMP.to_le_bytes());
            put(156, 0i32.to_le_bytes());
        }
        put(108, 20140i32.to_le_bytes());
        put(208, *b"MAP ");
        put(212, [0x44, 0x44, 0, 0]);
        put(216, (rms as f32).to_le_bytes());
        put(220, 1i32.to_le_bytes());
        let label = format!("cryoprune {}", env!("CARGO_PKG_VERSION"));
        h[224..224 + label.len()].copy_from_slice(label.as_bytes());
        h
    }
}

/// Writes a whole image (nz = 1), stack or volume in one call.
pub fn write_mrc(
    path: impl AsRef<Path>,
    (nx, ny, nz): (usize, usize, usize),
    data: &[f32],
    mode: Mode,
    kind: WriteKind,
    pixel_size: Option<f32>,
) -> Result<()> {
    assert_eq!(data.len(), nx * ny * nz, "data must hold nx*ny*nz values");
    let mut w = MrcWriter::create(path, nx, ny, mode, kind, pixel_size)?;
    for section in data.chunks_exact(nx * ny) {
        w.push_section(section)?;
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header_le(nx: i32, ny: i32, nz: i32, mode: i32, nsymbt: i32) -> Vec<u8> {
        let mut h = vec![0u8; HEADER_LEN];
        for (off, v) in [(0, nx), (4, ny), (8, nz), (12, mode), (92, nsymbt)] {
            h[off..off + 4].copy_from_slice(&v.to_le_bytes());
        }
        h[208..212].copy_from_slice(b"MAP ");
        h[212] = 0x44;
        h[213] = 0x44;
        h
    }

    #[test]
    fn round_trip_every_mode() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<f32> = (0..6 * 4 * 3).map(|i| (i as f32) - 20.0).collect();
        for mode in [
            Mode::Int8,
            Mode::Int16,
            Mode::Float32,
            Mode::Uint16,
            Mode::Float16,
        ] {
            let p = dir.path().join(format!("m{}.mrcs", mode.code()));
            let input: Vec<f32> = if mode == Mode::Uint16 {
                data.iter().map(|v| v + 20.0).collect()
            } else {
                data.clone()
            };
            write_mrc(
                &p,
                (6, 4, 3),
                &input,
                mode,
                WriteKind::ImageOrStack,
                Some(1.5),
            )
            .unwrap();
            let f = MrcFile::open(&p).unwrap();
            assert_eq!(f.header().mode, mode);
            assert_eq!((f.header().nx, f.header().ny, f.header().nz), (6, 4, 3));
            assert_eq!(f.header().pixel_size(), Some(1.5));
            assert_eq!(f.read_all(), input);
            assert_eq!(f.read_section(2).unwrap(), input[48..72].to_vec());
        }
    }

    /// A compressed file is inflated only as far as its header says the data reach: 200 MB of
    /// zeros is refused after the first KiB, a header declaring terabytes before any data.
    #[test]
    fn compressed_bombs_are_refused_before_they_fill_memory() {
        let dir = tempfile::tempdir().unwrap();
        let gz = |name: &str, chunks: &mut dyn FnMut(&mut dyn std::io::Write)| {
            let p = dir.path().join(name);
            let mut e = flate2::write::GzEncoder::new(
                std::fs::File::create(&p).unwrap(),
                flate2::Compression::fast(),
            );
            chunks(&mut e);
            e.finish().unwrap();
            p
        };
        let zeros = gz("zeros.mrc.gz", &mut |w| {
            let block = vec![0u8; 1 << 20];
            for _ in 0..200 {
                w.write_all(&block).unwrap();
            }
        });
        let started = std::time::Instant::now();
        let err = MrcFile::open(&zeros).err().unwrap().to_string();
        assert!(
            err.contains("not an MRC file") || err.contains("expected a positive"),
            "{err}"
        );
        assert!(
            started.elapsed().as_secs_f64() < 1.0,
            "read the whole stream"
        );

        let src = dir.path().join("small.mrc");
        write_mrc(
            &src,
            (4, 4, 1),
            &[1.0; 16],
            Mode::Float32,
            WriteKind::ImageOrStack,
            None,
        )
        .unwrap();
        let mut header = std::fs::read(&src).unwrap()[..HEADER_LEN].to_vec();
        for (off, v) in [(0, 100_000i32), (4, 100_000), (8, 1000)] {
            header[off..off + 4].copy_from_slice(&v.to_le_bytes());
        }
        let huge = gz("huge.mrc.gz", &mut |w| w.write_all(&header).unwrap());
        let err = MrcFile::open(&huge).err().unwrap().to_string();
        assert!(err.contains("decompress the file first"), "{err}");

        // An honest compressed file still reads.
        let ok = gz("ok.mrc.gz", &mut |w| {
            w.write_all(&std::fs::read(&src).unwrap()).unwrap()
        });
        assert_eq!(MrcFile::open(&ok).unwrap().read_all(), vec![1.0; 16]);
    }

    /// Mode 0 is signed (MRC2014) unless IMOD's stamp says otherwise: flags bit 0 clear means
    /// unsigned bytes, as older IMOD wrote them.
    #[test]
    fn imod_unsigned_bytes_follow_imod_flags() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bytes.mrc");
        let values = [124.0, 125.0, 126.0, 127.0, -128.0, -127.0];
        write_mrc(
            &p,
            (6, 1, 1),
            &values,
            Mode::Int8,
            WriteKind::ImageOrStack,
            None,
        )
        .unwrap();
        assert_eq!(MrcFile::open(&p).unwrap().read_all(), values.to_vec());
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[152..156].copy_from_slice(&IMOD_STAMP.to_le_bytes());
        for (flags, want) in [
            (0i32, vec![124.0, 125.0, 126.0, 127.0, 128.0, 129.0]),
            (1, values.to_vec()),
        ] {
            bytes[156..160].copy_from_slice(&flags.to_le_bytes());
            std::fs::write(&p, &bytes).unwrap();
            let f = MrcFile::open(&p).unwrap();
            assert_eq!(f.read_all(), want, "flags {flags}");
        }
        // Written back as unsigned, the stamp goes with it.
        let q = dir.path().join("unsigned.mrc");
        let unsigned = [0.0, 128.0, 255.0];
        write_mrc(
            &q,
            (3, 1, 1),
            &unsigned,
            Mode::Uint8,
            WriteKind::ImageOrStack,
            None,
        )
        .unwrap();
        let f = MrcFile::open(&q).unwrap();
        assert_eq!(f.header().mode, Mode::Uint8);
        assert_eq!(f.read_all(), unsigned.to_vec());
    }

    #[test]
    fn big_endian_and_zero_stamp_are_read() {
        let dir = tempfile::tempdir().unwrap();
        // big-endian float32 2x1x1 with the 0x11 0x11 stamp
        let mut h = vec![0u8; HEADER_LEN];
        for (off, v) in [(0, 2i32), (4, 1), (8, 1), (12, 2)] {
            h[off..off + 4].copy_from_slice(&v.to_be_bytes());
        }
        h[208..212].copy_from_slice(b"MAP ");
        h[212] = 0x11;
        h[213] = 0x11;
        h.extend_from_slice(&1.5f32.to_be_bytes());
        h.extend_from_slice(&(-2.0f32).to_be_bytes());
        let p = dir.path().join("be.mrc");
        std::fs::write(&p, &h).unwrap();
        let f = MrcFile::open(&p).unwrap();
        assert_eq!(f.header().byte_order, ByteOrder::Big);
        assert_eq!(f.read_all(), vec![1.5, -2.0]);
        // same file without the stamp: plausibility picks big-endian again
        h[212] = 0;
        h[213] = 0;
        std::fs::write(&p, &h).unwrap();
        assert_eq!(MrcFile::open(&p).unwrap().read_all(), vec![1.5, -2.0]);
    }

    #[test]
    fn extended_header_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = header_le(2, 2, 1, 2, 8);
        h.extend_from_slice(b"EXTENDED");
        for v in [1f32, 2., 3., 4.] {
            h.extend_from_slice(&v.to_le_bytes());
        }
        let p = dir.path().join("ext.mrc");
        std::fs::write(&p, &h).unwrap();
        let f = MrcFile::open(&p).unwrap();
        assert_eq!(f.extended_header(), b"EXTENDED");
        assert_eq!(f.read_all(), vec![1., 2., 3., 4.]);
    }

    fn no_stamp(mut h: Vec<u8>) -> Vec<u8> {
        h[212] = 0;
        h[213] = 0;
        h
    }

    #[test]
    fn bad_headers_give_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let cases: Vec<(&str, Vec<u8>, &str)> = vec![
            ("short.mrc", vec![0u8; 100], "truncated MRC header"),
            ("complex.mrc", header_le(2, 2, 1, 4, 0), "complex"),
            ("mode9.mrc", header_le(2, 2, 1, 9, 0), "unknown MRC mode 9"),
            ("nsym.mrc", header_le(2, 2, 1, 2, 1 << 20), "past the end"),
            ("trunc.mrc", header_le(64, 64, 1, 2, 0), "truncated"),
            ("negdim.mrc", header_le(-3, 2, 1, 2, 0), "NX = -3"),
            // found by fuzz/mrc_header: dimensions whose product overflows u64
            (
                "huge.mrc",
                header_le(i32::MAX, i32::MAX, i32::MAX, 2, 0),
                "truncated",
            ),
            ("empty.mrc", vec![], "empty file"),
            // "MAP " but no machine stamp: the field at fault, not "not an MRC file"
            (
                "nostamp.mrc",
                no_stamp(header_le(-3, 2, 1, 2, 0)),
                "NX = -3",
            ),
            (
                "nostamp99.mrc",
                no_stamp(header_le(2, 2, 1, 99, 0)),
                "mode 99",
            ),
            (
                "garbage.mrc",
                no_stamp(vec![7u8; HEADER_LEN]),
                "not an MRC file",
            ),
        ];
        for (name, bytes, needle) in cases {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            let msg = MrcFile::open(&p).err().expect(name).to_string();
            assert!(msg.contains(name), "{msg}");
            assert!(msg.contains(needle), "{name}: {msg}");
        }
    }
}
