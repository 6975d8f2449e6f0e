//! Packing: copies a block of A or B into the micro-panel order the micro-kernel reads, zero padded to
//! whole tiles. NF4 dequantization happens here, once per KC×NC block of the weight, so its cost is shared
//! by every row of the activation batch.

use crate::dispatch::Kernel;
use crate::nf4::dequant::dequant_run;
use crate::nf4::Nf4Weight;

/// A read-only strided matrix view: element (i, j) is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct Strided<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl Strided<'_> {
    #[inline(always)]
    fn at(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.rs + j * self.cs]
    }
}

/// Packs rows `i0 .. i0+mc` and depth `p0 .. p0+kc` of A into MR-row micro-panels.
pub fn pack_a(a: &Strided, i0: usize, mc: usize, p0: usize, kc: usize, mr: usize, dst: &mut [f32]) {
    for (panel, chunk) in dst.chunks_exact_mut(mr * kc).take(mc.div_ceil(mr)).enumerate() {
        let rows = mr.min(mc - panel * mr);
        for r in 0..mr {
            if r < rows {
                let i = i0 + panel * mr + r;
                for p in 0..kc {
                    chunk[p * mr + r] = a.at(i, p0 + p);
                }
            } else {
                for p in 0..kc {
                    chunk[p * mr + r] = 0.0;
                }
            }
        }
    }
}

/// Context every B packer gets: the SIMD path for dequantization and the dynamic map of the scales.
pub struct PackCtx {
    pub kernel: Kernel,
    pub map: [f32; 256],
}

/// A source of the B operand (`k × n`).
pub trait PackB: Sync {
    /// Packs depth `p0 .. p0+kc` and columns `j0 .. j0+nc` into NR-wide micro-panels, zero padded.
    /// `scratch` is a reusable buffer for the packer's own use.
    #[allow(clippy::too_many_arguments)]
    fn pack(&self, ctx: &PackCtx, p0: usize, kc: usize, j0: usize, nc: usize, nr: usize, dst: &mut [f32], scratch: &mut Vec<f32>);
}

impl PackB for Strided<'_> {
    fn pack(&self, _: &PackCtx, p0: usize, kc: usize, j0: usize, nc: usize, nr: usize, dst: &mut [f32], _: &mut Vec<f32>) {
        for (panel, chunk) in dst.chunks_exact_mut(nr * kc).take(nc.div_ceil(nr)).enumerate() {
            let cols = nr.min(nc - panel * nr);
            for c in 0..nr {
                if c < cols {
                    let j = j0 + panel * nr + c;
                    for p in 0..kc {
                        chunk[p * nr + c] = self.at(p0 + p, j);
                    }
                } else {
                    for p in 0..kc {
                        chunk[p * nr + c] = 0.0;
                    }
                }
            }
        }
    }
}

/// B = Wᵀ for an NF4 weight W `[n, k]` (the forward `Y = X · Wᵀ`): column j of B is row j of W, so each
/// column's run of `kc` values is contiguous in W; dequantize it, then spread it across the panel.
pub struct Nf4Transposed<'a>(pub &'a Nf4Weight);

impl PackB for Nf4Transposed<'_> {
    fn pack(&self, ctx: &PackCtx, p0: usize, kc: usize, j0: usize, nc: usize, nr: usize, dst: &mut [f32], scratch: &mut Vec<f32>) {
        let w = self.0;
        scratch.resize(kc, 0.0);
        for (panel, chunk) in dst.chunks_exact_mut(nr * kc).take(nc.div_ceil(nr)).enumerate() {
            let cols = nr.min(nc - panel * nr);
            for c in 0..nr {
                if c < cols {
                    let j = j0 + panel * nr + c;
                    dequant_run(ctx.kernel, w, j * w.cols + p0, &mut scratch[..kc], &ctx.map);
                    for (p, &v) in scratch[..kc].iter().enumerate() {
                        chunk[p * nr + c] = v;
                    }
                } else {
                    for p in 0..kc {
                        chunk[p * nr + c] = 0.0;
                    }
                }
            }
        }
    }
}

/// B = W for an NF4 weight W `[k, n]` (the backward `dX = dY · W`): each depth step is a run of W's row,
/// dequantized straight into the panel.
pub struct Nf4Direct<'a>(pub &'a Nf4Weight);

impl PackB for Nf4Direct<'_> {
    fn pack(&self, ctx: &PackCtx, p0: usize, kc: usize, j0: usize, nc: usize, nr: usize, dst: &mut [f32], _: &mut Vec<f32>) {
        let w = self.0;
        for (panel, chunk) in dst.chunks_exact_mut(nr * kc).take(nc.div_ceil(nr)).enumerate() {
            let cols = nr.min(nc - panel * nr);
            let j = j0 + panel * nr;
            for p in 0..kc {
                let row = &mut chunk[p * nr..(p + 1) * nr];
                dequant_run(ctx.kernel, w, (p0 + p) * w.cols + j, &mut row[..cols], &ctx.map);
                row[cols..].fill(0.0);
            }
        }
    }
}

/// Rounds every value to the nearest bf16 (ties to even), kept in f32: the bf16 compute path on CPUs
/// without bf16 dot-product instructions (products of bf16 values are exact in f32).
pub fn round_to_bf16(values: &mut [f32]) {
    for v in values.iter_mut() {
        *v = bf16_round(*v);
    }
}

#[inline(always)]
pub fn bf16_round(x: f32) -> f32 {
    let bits = x.to_bits();
    if x.is_nan() {
        return f32::from_bits(bits | 0x0040_0000);
    }
    let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) & 0xffff_0000;
    f32::from_bits(rounded)
}
