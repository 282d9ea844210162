//! A 2D `f32` image in the layout every cryo-EM file uses: row-major, `data[y * nx + x]`,
//! x = column, y = row of the stored array, no flips.

use cryoprune_formats::micrograph::Micrograph;

#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub nx: usize,
    pub ny: usize,
    pub data: Vec<f32>,
}

impl Image {
    pub fn new(nx: usize, ny: usize, data: Vec<f32>) -> Image {
        assert_eq!(data.len(), nx * ny, "image data must hold nx * ny values");
        Image { nx, ny, data }
    }

    pub fn zeros(nx: usize, ny: usize) -> Image {
        Image::filled(nx, ny, 0.0)
    }

    pub fn filled(nx: usize, ny: usize, value: f32) -> Image {
        Image {
            nx,
            ny,
            data: vec![value; nx * ny],
        }
    }

    /// An image whose pixel (x, y) is `f(x, y)`.
    pub fn from_fn(nx: usize, ny: usize, mut f: impl FnMut(usize, usize) -> f32) -> Image {
        let mut data = Vec::with_capacity(nx * ny);
        for y in 0..ny {
            for x in 0..nx {
                data.push(f(x, y));
            }
        }
        Image { nx, ny, data }
    }

    #[inline]
    pub fn get(&self, x: usize, y: usize) -> f32 {
        self.data[y * self.nx + x]
    }

    #[inline]
    pub fn set(&mut self, x: usize, y: usize, value: f32) {
        self.data[y * self.nx + x] = value;
    }

    pub fn row(&self, y: usize) -> &[f32] {
        &self.data[y * self.nx..(y + 1) * self.nx]
    }

    /// Position of the largest value as (x, y); the first one in storage order on ties.
    pub fn argmax(&self) -> (usize, usize) {
        let mut best = 0;
        for (i, &v) in self.data.iter().enumerate() {
            if v > self.data[best] {
                best = i;
            }
        }
        (best % self.nx, best / self.nx)
    }

    pub fn invert(&mut self) {
        for v in &mut self.data {
            *v = -*v;
        }
    }
}

impl From<Micrograph> for Image {
    fn from(m: Micrograph) -> Image {
        Image::new(m.nx, m.ny, m.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_row_major_x_column() {
        let img = Image::from_fn(3, 2, |x, y| (10 * y + x) as f32);
        assert_eq!(img.data, vec![0.0, 1.0, 2.0, 10.0, 11.0, 12.0]);
        assert_eq!(img.get(2, 1), 12.0);
        assert_eq!(img.row(1), &[10.0, 11.0, 12.0]);
        assert_eq!(img.argmax(), (2, 1));
    }
}
