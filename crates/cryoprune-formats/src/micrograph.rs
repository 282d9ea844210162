//! Micrographs as `f32` arrays, row 0 first (the first row stored in the file), x fastest.
//!
//! Pickers index micrographs as x = column, y = row of the stored array, so no reader here flips
//! anything: what the file stores first is row 0, for MRC and for image formats alike.

use std::io::BufReader;
use std::path::{Path, PathBuf};

use crate::error::{FormatError, Location, Result};
use crate::mrc::MrcFile;

#[derive(Debug, Clone)]
pub struct Micrograph {
    pub path: PathBuf,
    pub nx: usize,
    pub ny: usize,
    pub data: Vec<f32>,
    /// Å per pixel, when the file records it (MRC headers and TIFF resolution tags rarely agree
    /// with the truth for JPEG/PNG renderings, so those give `None`).
    pub pixel_size: Option<f32>,
    /// The file holds further images after this one (an MRC stack, a multi-page TIFF): a movie,
    /// most likely, whose first frame this is.
    pub more_images: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Mrc,
    Tiff,
    Png,
    Jpeg,
}

impl ImageFormat {
    pub fn from_path(path: &Path) -> Option<ImageFormat> {
        let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
        let name = name
            .strip_suffix(".gz")
            .or_else(|| name.strip_suffix(".bz2"))
            .unwrap_or(&name);
        let ext = name.rsplit('.').next()?;
        match ext {
            // DeltaVision files share the MRC layout closely enough to be recognised and refused clearly.
            "mrc" | "mrcs" | "map" | "rec" | "st" | "ali" | "dv" => Some(ImageFormat::Mrc),
            "tif" | "tiff" => Some(ImageFormat::Tiff),
            "png" => Some(ImageFormat::Png),
            "jpg" | "jpeg" => Some(ImageFormat::Jpeg),
            _ => None,
        }
    }
}

/// Reads the first image of a micrograph file in any supported format.
pub fn read_micrograph(path: impl AsRef<Path>) -> Result<Micrograph> {
    let path = path.as_ref();
    let format = ImageFormat::from_path(path).ok_or_else(|| {
        FormatError::unsupported(
            path,
            "unknown micrograph extension; expected .mrc, .mrcs, .map, .tif, .tiff, .png, .jpg or .jpeg",
        )
    })?;
    match format {
        ImageFormat::Mrc => {
            let f = MrcFile::open(path)?;
            let h = f.header();
            Ok(Micrograph {
                path: path.to_path_buf(),
                nx: h.nx,
                ny: h.ny,
                pixel_size: h.pixel_size(),
                data: f.read_section(0)?,
                more_images: f.n_sections() > 1,
            })
        }
        ImageFormat::Tiff => read_tiff(path),
        ImageFormat::Png | ImageFormat::Jpeg => read_raster(path, format),
    }
}

/// Width and height without decoding pixels (MRC header, image header).
pub fn micrograph_shape(path: impl AsRef<Path>) -> Result<(usize, usize)> {
    let path = path.as_ref();
    match ImageFormat::from_path(path) {
        Some(ImageFormat::Mrc) => {
            let f = MrcFile::open(path)?;
            Ok((f.header().nx, f.header().ny))
        }
        Some(ImageFormat::Png | ImageFormat::Jpeg) => {
            let (w, h) = image::image_dimensions(path).map_err(|e| image_error(path, e))?;
            Ok((w as usize, h as usize))
        }
        Some(ImageFormat::Tiff) => {
            let file = crate::error::open_regular(path)?;
            let mut dec = tiff::decoder::Decoder::new(BufReader::new(file))
                .map_err(|e| tiff_error(path, e))?;
            let (w, h) = dec.dimensions().map_err(|e| tiff_error(path, e))?;
            Ok((w as usize, h as usize))
        }
        None => read_micrograph(path).map(|m| (m.nx, m.ny)),
    }
}

fn image_error(path: &Path, e: image::ImageError) -> FormatError {
    match e {
        image::ImageError::IoError(io) => FormatError::io(path, io),
        other => FormatError::invalid(
            path,
            Location::Whole,
            format!("cannot decode image: {other}"),
        ),
    }
}

fn tiff_error(path: &Path, e: tiff::TiffError) -> FormatError {
    match e {
        tiff::TiffError::IoError(io) if io.kind() != std::io::ErrorKind::UnexpectedEof => {
            FormatError::io(path, io)
        }
        other => FormatError::invalid(
            path,
            Location::Whole,
            format!("cannot decode TIFF: {other}"),
        ),
    }
}

/// The most pixels a micrograph may declare: above a super-resolution K3 frame or a 4x
/// upsampled EER frame (16384², 0.27 G), below what would exhaust memory as floats.
const MAX_PIXELS: u64 = 1 << 30;

fn check_declared(path: &Path, w: u64, h: u64) -> Result<()> {
    if w.saturating_mul(h) > MAX_PIXELS {
        return Err(FormatError::invalid(
            path,
            Location::Whole,
            format!("declares {w}x{h} pixels, more than any micrograph (at most {MAX_PIXELS}); a damaged file?"),
        ));
    }
    Ok(())
}

/// A JPEG cut short decodes without complaint, the rows past the cut a flat grey that particles
/// there would be cut from; a whole JPEG ends with its end-of-image marker (FF D9), give or take
/// some trailing padding.
fn check_jpeg_complete(path: &Path) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = crate::error::open_regular(path)?;
    let len = f.metadata().map_err(|e| FormatError::io(path, e))?.len();
    let tail_len = len.min(4096);
    f.seek(SeekFrom::Start(len - tail_len))
        .map_err(|e| FormatError::io(path, e))?;
    let mut tail = Vec::with_capacity(tail_len as usize);
    f.read_to_end(&mut tail)
        .map_err(|e| FormatError::io(path, e))?;
    if tail.windows(2).any(|w| w == [0xFF, 0xD9]) {
        return Ok(());
    }
    Err(FormatError::invalid(
        path,
        Location::Whole,
        "the JPEG ends without its end-of-image marker: the file is truncated (copy it again)",
    ))
}

fn read_raster(path: &Path, format: ImageFormat) -> Result<Micrograph> {
    if format == ImageFormat::Jpeg {
        check_jpeg_complete(path)?;
    }
    let file = crate::error::open_regular(path)?;
    let fmt = match format {
        ImageFormat::Png => image::ImageFormat::Png,
        _ => image::ImageFormat::Jpeg,
    };
    let img = image::load(BufReader::new(file), fmt).map_err(|e| image_error(path, e))?;
    let (nx, ny) = (img.width() as usize, img.height() as usize);
    // Greyscale is what a detector records; colour renderings are reduced to luminance at their
    // own bit depth, so 8-bit files give 0..255 and 16-bit files 0..65535 either way.
    let ct = img.color();
    let data: Vec<f32> = match ct.bits_per_pixel() / ct.channel_count() as u16 {
        8 => img
            .to_luma8()
            .into_raw()
            .into_iter()
            .map(f32::from)
            .collect(),
        16 => img
            .to_luma16()
            .into_raw()
            .into_iter()
            .map(f32::from)
            .collect(),
        _ => img.to_luma32f().into_raw(),
    };
    Ok(Micrograph {
        path: path.to_path_buf(),
        nx,
        ny,
        data,
        pixel_size: None,
        more_images: false,
    })
}

fn read_tiff(path: &Path) -> Result<Micrograph> {
    use tiff::decoder::DecodingResult as D;
    let file = crate::error::open_regular(path)?;
    let mut dec = tiff::decoder::Decoder::new(BufReader::new(file))
        .map_err(|e| tiff_error(path, e))?
        .with_limits(tiff::decoder::Limits::unlimited());
    let (w, h) = dec.dimensions().map_err(|e| tiff_error(path, e))?;
    check_declared(path, w.into(), h.into())?;
    let colour = dec.colortype().map_err(|e| tiff_error(path, e))?;
    let channels = match colour {
        tiff::ColorType::Gray(_) => 1,
        tiff::ColorType::RGB(_) => 3,
        tiff::ColorType::RGBA(_) => 4,
        tiff::ColorType::GrayA(_) => 2,
        other => {
            return Err(FormatError::unsupported(
                path,
                format!(
                "TIFF colour type {other:?}; expected greyscale (8/16-bit integer or 32-bit float)"
            ),
            ))
        }
    };
    let raw: Vec<f32> = match dec.read_image().map_err(|e| tiff_error(path, e))? {
        D::U8(v) => v.into_iter().map(f32::from).collect(),
        D::I8(v) => v.into_iter().map(f32::from).collect(),
        D::U16(v) => v.into_iter().map(f32::from).collect(),
        D::I16(v) => v.into_iter().map(f32::from).collect(),
        D::U32(v) => v.into_iter().map(|x| x as f32).collect(),
        D::I32(v) => v.into_iter().map(|x| x as f32).collect(),
        D::F32(v) => v,
        D::F64(v) => v.into_iter().map(|x| x as f32).collect(),
        other => {
            return Err(FormatError::unsupported(
                path,
                format!(
                    "TIFF sample type {:?}; expected 8/16-bit integer or 32-bit float",
                    std::mem::discriminant(&other)
                ),
            ))
        }
    };
    let (nx, ny) = (w as usize, h as usize);
    let data = if channels == 1 {
        raw
    } else {
        raw.chunks_exact(channels)
            .map(|px| px[..channels.min(3)].iter().sum::<f32>() / channels.min(3) as f32)
            .collect()
    };
    if data.len() != nx * ny {
        return Err(FormatError::invalid(
            path,
            Location::Whole,
            format!("TIFF holds {} samples, expected {nx}x{ny}", data.len()),
        ));
    }
    Ok(Micrograph {
        path: path.to_path_buf(),
        nx,
        ny,
        data,
        pixel_size: None,
        more_images: dec.more_images(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiff_float_and_u16_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.tif");
        let vals: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 1.0).collect();
        {
            let f = std::fs::File::create(&p).unwrap();
            let mut enc = tiff::encoder::TiffEncoder::new(f).unwrap();
            enc.write_image::<tiff::encoder::colortype::Gray32Float>(4, 3, &vals)
                .unwrap();
        }
        let m = read_micrograph(&p).unwrap();
        assert_eq!((m.nx, m.ny), (4, 3));
        assert_eq!(m.data, vals);

        let p16 = dir.path().join("b.tiff");
        let v16: Vec<u16> = (0..6).map(|i| i * 1000).collect();
        {
            let f = std::fs::File::create(&p16).unwrap();
            let mut enc = tiff::encoder::TiffEncoder::new(f).unwrap();
            enc.write_image::<tiff::encoder::colortype::Gray16>(3, 2, &v16)
                .unwrap();
        }
        let m = read_micrograph(&p16).unwrap();
        assert_eq!(m.data, v16.iter().map(|&v| v as f32).collect::<Vec<_>>());
        assert_eq!(micrograph_shape(&p16).unwrap(), (3, 2));
        assert!(!m.more_images);
    }

    /// A movie's frames as pages: the first is the micrograph, and the rest are known of.
    #[test]
    fn a_multi_page_tiff_reads_its_first_page_and_says_there_are_more() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("movie.tif");
        {
            let f = std::fs::File::create(&p).unwrap();
            let mut enc = tiff::encoder::TiffEncoder::new(f).unwrap();
            for frame in 0..3u8 {
                enc.write_image::<tiff::encoder::colortype::Gray8>(2, 2, &[frame; 4])
                    .unwrap();
            }
        }
        let m = read_micrograph(&p).unwrap();
        assert_eq!(m.data, vec![0.0; 4]);
        assert!(m.more_images);
    }

    #[test]
    fn png_rows_are_stored_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.png");
        let img = image::GrayImage::from_fn(3, 2, |x, y| image::Luma([(10 * y + x) as u8]));
        img.save(&p).unwrap();
        let m = read_micrograph(&p).unwrap();
        assert_eq!(m.data, vec![0., 1., 2., 10., 11., 12.]);
    }

    #[test]
    fn garbage_image_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["x.png", "x.jpg", "x.tif"] {
            let p = dir.path().join(name);
            std::fs::write(&p, b"this is not an image at all").unwrap();
            let e = read_micrograph(&p).unwrap_err().to_string();
            assert!(e.contains(name), "{e}");
        }
    }
}
