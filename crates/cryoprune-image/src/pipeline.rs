//! Extraction over many micrographs: parallel, in order, with bounded memory.
//!
//! Each worker reads a micrograph, prepares it and cuts its boxes; results reach the caller's
//! sink on the calling thread in job order, so a stack on disk is in the order of the jobs
//! whatever the scheduling. A worker may run at most `window` micrographs ahead of the sink, so
//! memory holds about `window` micrographs' particles plus one micrograph per thread, however
//! many micrographs there are.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Condvar, Mutex};

use cryoprune_formats::micrograph::ImageFormat;
use cryoprune_formats::{read_micrograph, Micrograph, MrcFile};

use crate::extract::{ExtractConfig, Extracted, Extractor, MicrographPrep};
use crate::fourier::{Cutoff, LowPass};
use crate::image::Image;
use crate::normalize::MicrographNorm;
use crate::{Error, Result};

/// One micrograph and the pick centres to cut from it (micrograph pixels, x = column).
#[derive(Debug, Clone)]
pub struct Job {
    pub path: PathBuf,
    pub picks: Vec<(f64, f64)>,
}

/// What one micrograph gave.
#[derive(Debug)]
pub struct Output {
    /// Index of the job.
    pub index: usize,
    /// Å per pixel of the micrograph (the override when given, else the file's own, if any).
    pub pixel_size: Option<f64>,
    pub shape: (usize, usize),
    pub particles: Extracted,
}

#[derive(Debug, Clone, Copy)]
pub struct Pipeline {
    pub norm: MicrographNorm,
    pub lowpass: Option<Cutoff>,
    /// Soft-edge width of the low-pass, as a fraction of Nyquist.
    pub lowpass_width: f64,
    /// Pixel size to use instead of the micrographs' headers.
    pub angpix: Option<f64>,
    pub extract: ExtractConfig,
    pub threads: usize,
    /// How many micrographs workers may run ahead of the sink.
    pub window: usize,
}

impl Pipeline {
    pub fn new(extract: ExtractConfig, threads: usize) -> Pipeline {
        let threads = threads.max(1);
        Pipeline {
            norm: MicrographNorm::None,
            lowpass: None,
            lowpass_width: LowPass::DEFAULT_WIDTH,
            angpix: None,
            extract,
            threads,
            window: 2 * threads,
        }
    }

    /// Runs every job and hands the results to `sink` in job order. Stops at the first error
    /// (a micrograph that cannot be read, or one the sink refuses) and returns it.
    pub fn run<E: From<Error>>(
        &self,
        jobs: &[Job],
        mut sink: impl FnMut(Output) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        self.extract.validate()?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.threads)
            .build()
            .map_err(|e| Error::Parameter(format!("cannot start {} threads: {e}", self.threads)))?;
        let next = AtomicUsize::new(0);
        // (micrographs the sink has taken, whether to stop)
        let progress = Mutex::new((0usize, false));
        let advanced = Condvar::new();
        let window = self.window.max(1);
        let (tx, rx) = mpsc::channel::<(usize, Result<Output>)>();
        let mut failure = None;
        pool.in_place_scope(|scope| {
            // Releases waiting workers however this closure ends, a panicking sink included;
            // otherwise the scope would wait forever for workers that wait for the sink.
            let _release = StopOnDrop(&progress, &advanced);
            for _ in 0..self.threads.min(jobs.len()) {
                let tx = tx.clone();
                let (next, progress, advanced) = (&next, &progress, &advanced);
                scope.spawn(move |_| {
                    let mut worker = Worker::default();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= jobs.len() {
                            break;
                        }
                        {
                            let mut p = progress.lock().unwrap_or_else(|e| e.into_inner());
                            while i >= p.0 + window && !p.1 {
                                p = advanced.wait(p).unwrap_or_else(|e| e.into_inner());
                            }
                            if p.1 {
                                break;
                            }
                        }
                        let result = self.process(i, &jobs[i], &mut worker);
                        if tx.send((i, result)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            let mut pending = BTreeMap::new();
            let mut wanted = 0;
            for (i, result) in rx {
                pending.insert(i, result);
                while let Some(result) = pending.remove(&wanted) {
                    if let Err(e) = result.map_err(E::from).and_then(&mut sink) {
                        failure = Some(e);
                        break;
                    }
                    wanted += 1;
                }
                let mut p = progress.lock().unwrap_or_else(|e| e.into_inner());
                p.0 = wanted;
                p.1 = failure.is_some();
                advanced.notify_all();
                if p.1 {
                    break;
                }
            }
        });
        failure.map_or(Ok(()), Err)
    }

    fn process(&self, index: usize, job: &Job, worker: &mut Worker) -> Result<Output> {
        let (mut image, file_pixel) = load(&job.path, std::mem::take(&mut worker.buffer))?;
        let bad = replace_nonfinite(&mut image.data);
        if bad == image.data.len() {
            return Err(Error::Parameter(format!(
                "{}: no pixel is a finite number",
                job.path.display()
            )));
        }
        if bad > 0 {
            tracing::warn!(
                "{}: {bad} of {} pixels are not finite numbers (NaN or infinite); they were replaced by the mean of the others",
                job.path.display(),
                image.data.len()
            );
        }
        if image.data.iter().all(|&v| v == image.data[0]) {
            tracing::warn!(
                "{}: every pixel is {}: a blank micrograph (a failed motion correction or \
                 export?); its picks are cut as empty boxes",
                job.path.display(),
                image.data[0]
            );
        }
        check_box_fits(&job.path, self.extract.box_size, (image.nx, image.ny))?;
        let pixel_size = self
            .angpix
            .or(file_pixel.filter(|&p| p > 0.0).map(f64::from));
        let lowpass = match self.lowpass {
            None => None,
            Some(cutoff) => {
                let f = cutoff.nyquist_fraction(pixel_size).map_err(|e| match e {
                    Error::NoPixelSize => Error::Parameter(format!(
                        "{}: no pixel size in the file; give --angpix or a low-pass as a fraction of Nyquist",
                        job.path.display()
                    )),
                    other => other,
                })?;
                Some(LowPass {
                    cutoff: f,
                    width: self.lowpass_width,
                })
            }
        };
        MicrographPrep {
            norm: self.norm,
            lowpass,
        }
        .apply(&mut image);
        let ex = match &mut worker.extractor {
            Some(ex) => ex,
            None => worker.extractor.insert(Extractor::new(self.extract)?),
        };
        let particles = ex.extract(&image, &job.picks, noise_stream(&job.path));
        let shape = (image.nx, image.ny);
        worker.buffer = image.data;
        Ok(Output {
            index,
            pixel_size,
            shape,
            particles,
        })
    }
}

/// Refuses a box larger than the micrograph `path` of `shape` (width, height): a box in another
/// unit (Å, or pixels of unbinned micrographs) would cut boxes that are mostly padding, and a
/// model trained on them learns nothing of the particles.
pub fn check_box_fits(path: &Path, box_size: usize, (nx, ny): (usize, usize)) -> Result<()> {
    if box_size > nx.min(ny) {
        return Err(Error::Parameter(format!(
            "{}: the box ({box_size} px) is larger than the micrograph ({nx}x{ny} px): give the \
             box in pixels of these micrographs",
            path.display()
        )));
    }
    Ok(())
}

/// The padding-noise stream of a micrograph, from its file name (FNV-1a): the same micrograph
/// gets the same padding in any run, whichever other micrographs the run holds and in whatever
/// order, so a rerun of part of a dataset reproduces the full run's results.
fn noise_stream(path: &Path) -> u64 {
    let name = path.file_name().unwrap_or(path.as_os_str());
    name.as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// What a worker keeps between micrographs: its FFT plans and a micrograph-sized buffer, so a
/// long run does not map and fault in fresh memory for every micrograph.
#[derive(Default)]
struct Worker {
    extractor: Option<Extractor>,
    buffer: Vec<f32>,
}

/// Reads a micrograph into `buffer` (MRC) or a new image (other formats); returns it with the
/// pixel size its file records.
fn load(path: &Path, mut buffer: Vec<f32>) -> Result<(Image, Option<f32>)> {
    if ImageFormat::from_path(path) == Some(ImageFormat::Mrc) {
        let f = MrcFile::open(path)?;
        let h = f.header();
        let (nx, ny, px) = (h.nx, h.ny, h.pixel_size());
        if f.n_sections() > 1 {
            warn_movie(path);
        }
        buffer.resize(nx * ny, 0.0);
        f.read_section_into(0, &mut buffer)?;
        return Ok((Image::new(nx, ny, buffer), px));
    }
    let m = read_first_image(path)?;
    let px = m.pixel_size;
    Ok((Image::from(m), px))
}

/// A micrograph file as every micrograph reader takes it: its first image, with a warning when
/// it holds more (a stack or a movie), never one micrograph per frame.
pub fn read_first_image(path: &Path) -> cryoprune_formats::Result<Micrograph> {
    let m = read_micrograph(path)?;
    if m.more_images {
        warn_movie(path);
    }
    Ok(m)
}

/// Says that `path` holds more than one image and its first is taken as the micrograph. A
/// movie's first frame has a fraction of the sum's signal: the network would see noise, and
/// nothing downstream would say why.
fn warn_movie(path: &Path) {
    tracing::warn!(
        "{}: holds more than one image; the first is used as the micrograph (a movie? give the \
         motion-corrected sums)",
        path.display()
    );
}

/// Replaces NaN and infinite pixels (a detector's dead pixels, a failed motion correction)
/// with the mean of the finite ones, so no statistic, filter or particle is poisoned by them;
/// returns how many there were.
pub fn replace_nonfinite(data: &mut [f32]) -> usize {
    let bad = data.iter().filter(|v| !v.is_finite()).count();
    if bad == 0 || bad == data.len() {
        return bad;
    }
    let mean = crate::normalize::stats_of(data.iter().copied().filter(|v| v.is_finite())).mean;
    for v in data.iter_mut().filter(|v| !v.is_finite()) {
        *v = mean as f32;
    }
    bad
}

struct StopOnDrop<'a>(&'a Mutex<(usize, bool)>, &'a Condvar);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
        self.1.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryoprune_formats::mrc::{write_mrc, Mode, WriteKind};

    fn write_dots(dir: &std::path::Path, i: usize, at: &[(usize, usize)]) -> PathBuf {
        let mut img = Image::zeros(96, 80);
        for &(x, y) in at {
            img.set(x, y, 1.0 + i as f32);
        }
        let path = dir.join(format!("mic_{i:03}.mrc"));
        write_mrc(
            &path,
            (96, 80, 1),
            &img.data,
            Mode::Float32,
            WriteKind::ImageOrStack,
            Some(1.5),
        )
        .unwrap();
        path
    }

    #[test]
    fn results_arrive_in_job_order_with_any_thread_count() {
        let dir = tempfile::tempdir().unwrap();
        let at = [(30, 30), (60, 40), (48, 50)];
        let jobs: Vec<Job> = (0..13)
            .map(|i| Job {
                path: write_dots(dir.path(), i, &at),
                picks: at.iter().map(|&(x, y)| (x as f64, y as f64)).collect(),
            })
            .collect();
        let cfg = ExtractConfig {
            norm: crate::extract::ParticleNorm::None,
            ..ExtractConfig::new(24)
        };
        for threads in [1, 2, 3] {
            let mut seen = Vec::new();
            Pipeline::new(cfg, threads)
                .run(&jobs, |out| -> Result<()> {
                    assert_eq!(out.pixel_size, Some(1.5));
                    assert_eq!(out.particles.kept, vec![0, 1, 2]);
                    // The dot's height tells which micrograph the particle came from.
                    let p = &out.particles.data[..576];
                    let peak = p.iter().cloned().fold(f32::MIN, f32::max);
                    assert_eq!(peak, 1.0 + out.index as f32);
                    seen.push(out.index);
                    Ok(())
                })
                .unwrap();
            assert_eq!(seen, (0..13).collect::<Vec<_>>());
        }
    }

    /// Dead pixels (NaN, ±inf) must neither panic the robust normalisation nor reach a
    /// particle, whatever the normalisation; a micrograph of nothing but them is an error.
    #[test]
    fn non_finite_pixels_are_replaced_before_anything_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut img = Image::from_fn(96, 80, |x, y| ((x * 7 + y * 3) % 11) as f32);
        for (i, v) in img.data.iter_mut().enumerate().filter(|(i, _)| i % 97 == 0) {
            *v = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][i % 3];
        }
        let path = dir.path().join("dead.mrc");
        write_mrc(
            &path,
            (96, 80, 1),
            &img.data,
            Mode::Float32,
            WriteKind::ImageOrStack,
            None,
        )
        .unwrap();
        let jobs = [Job {
            path: path.clone(),
            picks: vec![(40.0, 40.0), (10.0, 10.0)],
        }];
        for norm in [
            MicrographNorm::None,
            MicrographNorm::MeanStd,
            MicrographNorm::ROBUST,
        ] {
            let mut p = Pipeline::new(ExtractConfig::new(16), 1);
            p.norm = norm;
            p.run(&jobs, |out| -> Result<()> {
                assert_eq!(out.particles.kept.len(), 2);
                assert!(out.particles.data.iter().all(|v| v.is_finite()), "{norm:?}");
                Ok(())
            })
            .unwrap();
        }
        assert_eq!(replace_nonfinite(&mut [1.0, f32::NAN, 3.0]), 1);
        let dead = dir.path().join("all_dead.mrc");
        write_mrc(
            &dead,
            (4, 4, 1),
            &[f32::NAN; 16],
            Mode::Float32,
            WriteKind::ImageOrStack,
            None,
        )
        .unwrap();
        let jobs = [Job {
            path: dead,
            picks: vec![(2.0, 2.0)],
        }];
        let err = Pipeline::new(ExtractConfig::new(2), 1)
            .run(&jobs, |_| -> Result<()> { Ok(()) })
            .unwrap_err();
        assert!(
            err.to_string().contains("no pixel is a finite number"),
            "{err}"
        );
    }

    #[test]
    #[should_panic(expected = "sink gave up")]
    fn a_panicking_sink_does_not_leave_workers_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let jobs: Vec<Job> = (0..12)
            .map(|i| Job {
                path: write_dots(dir.path(), i, &[(40, 40)]),
                picks: vec![(40.0, 40.0)],
            })
            .collect();
        let mut p = Pipeline::new(ExtractConfig::new(16), 2);
        p.window = 1;
        let _ = p.run(&jobs, |_| -> Result<()> { panic!("sink gave up") });
    }

    #[test]
    fn unreadable_micrograph_stops_the_run_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let good = write_dots(dir.path(), 0, &[(40, 40)]);
        let bad = dir.path().join("broken.mrc");
        std::fs::write(&bad, b"not an mrc").unwrap();
        let jobs = vec![
            Job {
                path: good,
                picks: vec![(40.0, 40.0)],
            },
            Job {
                path: bad,
                picks: vec![(40.0, 40.0)],
            },
        ];
        let err = Pipeline::new(ExtractConfig::new(16), 2)
            .run(&jobs, |_| Ok::<(), Error>(()))
            .unwrap_err();
        assert!(err.to_string().contains("broken.mrc"), "{err}");
    }

    #[test]
    fn a_box_larger_than_the_micrograph_is_refused_with_both_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = [Job {
            path: write_dots(dir.path(), 0, &[(40, 40)]),
            picks: vec![(40.0, 40.0)],
        }];
        // 80 px, the micrograph's shorter side, still cuts; 81 cannot fit anywhere.
        Pipeline::new(ExtractConfig::new(80), 1)
            .run(&jobs, |out| -> Result<()> {
                assert_eq!(out.particles.kept, [0]);
                Ok(())
            })
            .unwrap();
        let err = Pipeline::new(ExtractConfig::new(81), 1)
            .run(&jobs, |_| Ok::<(), Error>(()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("mic_000.mrc") && err.contains("box (81 px)") && err.contains("96x80"),
            "{err}"
        );
    }

    #[test]
    fn lowpass_in_angstrom_without_pixel_size_names_the_micrograph() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nopix.mrc");
        write_mrc(
            &path,
            (32, 32, 1),
            &[0.0; 1024],
            Mode::Float32,
            WriteKind::ImageOrStack,
            None,
        )
        .unwrap();
        let mut p = Pipeline::new(ExtractConfig::new(8), 1);
        p.lowpass = Some(Cutoff::Angstrom(20.0));
        let jobs = [Job {
            path,
            picks: vec![(16.0, 16.0)],
        }];
        let err = p.run(&jobs, |_| Ok::<(), Error>(())).unwrap_err();
        assert!(err.to_string().contains("nopix.mrc"), "{err}");
        p.angpix = Some(2.0);
        p.run(&jobs, |_| Ok::<(), Error>(())).unwrap();
    }
}
