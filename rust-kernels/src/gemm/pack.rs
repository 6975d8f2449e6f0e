//! Packing: copies a block of A or B into the micro-panel order the micro-kernel reads, zero padded to
//! whole tiles. NF4 dequantization happens here, once per KC×NC block of the weight, so its cost is shared
//! by every row of the activation batch.

use crate::dispatch::Kernel;
use crate::nf4::dequant::{dequant_pieces, dequant_run};
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
///
/// Written so the destination fills front to back: one contiguous MR-run per depth step (strided
/// scatters of one row at a time cost ~6 % of a training step in `perf`). Row-major A gathers the run from
/// MR row slices (a full 8-row panel on a SIMD path: 8×8 register transposes); column-major A (`rs == 1`,
/// e.g. `dYᵀ`) copies it as one contiguous slice.
#[allow(clippy::too_many_arguments)]
pub fn pack_a(
    kernel: Kernel,
    a: &Strided,
    i0: usize,
    mc: usize,
    p0: usize,
    kc: usize,
    mr: usize,
    dst: &mut [f32],
) {
    for (panel, chunk) in dst.chunks_exact_mut(mr * kc).take(mc.div_ceil(mr)).enumerate() {
        let first = i0 + panel * mr;
        let rows = mr.min(mc - panel * mr);
        if a.cs == 1 {
            if rows == 6 && mr == 6 {
                pack_rows_6(a, first, p0, kc, chunk);
                continue;
            }
            #[cfg(target_arch = "x86_64")]
            if rows == 8 && mr == 8 && kernel != Kernel::Scalar {
                let sources: Vec<&[f32]> = (0..8).map(|r| &a.data[(first + r) * a.rs + p0..][..kc]).collect();
                // Safety: AVX2 is present on every non-scalar path; each source has kc values and the
                // chunk holds kc · 8.
                let done = unsafe { crate::simd::avx2::transpose_panel(&sources, chunk, 8, kc) };
                for (p, run) in chunk.chunks_exact_mut(8).enumerate().skip(done) {
                    for (d, src) in run.iter_mut().zip(&sources) {
                        *d = src[p];
                    }
                }
                continue;
            }
            let srcs: Vec<&[f32]> = (0..rows).map(|r| &a.data[(first + r) * a.rs + p0..][..kc]).collect();
            for (p, run) in chunk.chunks_exact_mut(mr).enumerate() {
                for (r, d) in run.iter_mut().enumerate() {
                    *d = if r < rows { srcs[r][p] } else { 0.0 };
                }
            }
        } else if a.rs == 1 {
            for (p, run) in chunk.chunks_exact_mut(mr).enumerate() {
                let start = (p0 + p) * a.cs + first;
                if rows == mr {
                    copy_panel_row(run, &a.data[start..start + mr]);
                } else {
                    run[..rows].copy_from_slice(&a.data[start..start + rows]);
                    run[rows..].fill(0.0);
                }
            }
        } else {
            for (p, run) in chunk.chunks_exact_mut(mr).enumerate() {
                for (r, d) in run.iter_mut().enumerate() {
                    *d = if r < rows { a.at(first + r, p0 + p) } else { 0.0 };
                }
            }
        }
    }
}

/// The common case of `pack_a` (a full 6-row panel of row-major A, the AVX2 MR), unrolled so the
/// bounds checks leave the loop.
fn pack_rows_6(a: &Strided, first: usize, p0: usize, kc: usize, chunk: &mut [f32]) {
    let row = |r: usize| &a.data[(first + r) * a.rs + p0..][..kc];
    let (r0, r1, r2, r3, r4, r5) = (row(0), row(1), row(2), row(3), row(4), row(5));
    for (p, run) in chunk[..6 * kc].chunks_exact_mut(6).enumerate() {
        run.copy_from_slice(&[r0[p], r1[p], r2[p], r3[p], r4[p], r5[p]]);
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
    fn pack(
        &self,
        ctx: &PackCtx,
        p0: usize,
        kc: usize,
        j0: usize,
        nc: usize,
        nr: usize,
        dst: &mut [f32],
        scratch: &mut Vec<f32>,
    );

    /// Hints the caches (into L2) to fetch part `part` of `parts` of what packing the block at depth
    /// `p0 .. p0+kc`, columns `j0 .. j0+nc` will read. The driver spreads the parts of the next block over
    /// the micro-kernel calls of the current one, so a weight larger than the caches is read while the FMA
    /// units are busy rather than while packing waits for it.
    #[allow(clippy::too_many_arguments)]
    fn prefetch_block(&self, _p0: usize, _kc: usize, _j0: usize, _nc: usize, _part: usize, _parts: usize) {}
}

/// The runs `count * part / parts .. count * (part + 1) / parts` of `count`.
fn part_of(count: usize, part: usize, parts: usize) -> std::ops::Range<usize> {
    count * part / parts..count * (part + 1) / parts
}

impl PackB for Strided<'_> {
    fn pack(
        &self,
        ctx: &PackCtx,
        p0: usize,
        kc: usize,
        j0: usize,
        nc: usize,
        nr: usize,
        dst: &mut [f32],
        _: &mut Vec<f32>,
    ) {
        for (panel, chunk) in dst.chunks_exact_mut(nr * kc).take(nc.div_ceil(nr)).enumerate() {
            let cols = nr.min(nc - panel * nr);
            let j = j0 + panel * nr;
            if self.cs == 1 {
                // Row-major B (e.g. W in dY·W): each depth step is a contiguous run.
                for (p, row) in chunk.chunks_exact_mut(nr).enumerate() {
                    let start = (p0 + p) * self.rs + j;
                    if cols == nr {
                        copy_panel_row(row, &self.data[start..start + nr]);
                    } else {
                        row[..cols].copy_from_slice(&self.data[start..start + cols]);
                        row[cols..].fill(0.0);
                    }
                }
            } else if self.rs == 1 {
                // Transposed B (Wᵀ in X·Wᵀ): each column is a contiguous run; transpose it into the panel,
                // asking for the next panel's runs meanwhile (W is read as many short runs).
                for c in (j + nr)..(j + 2 * nr).min(j0 + nc) {
                    let run = self.data.as_ptr().wrapping_add(c * self.cs + p0) as *const u8;
                    crate::simd::prefetch_run(run, kc * std::mem::size_of::<f32>());
                }
                transpose_into(ctx.kernel, chunk, nr, kc, cols, |c| {
                    let start = (j + c) * self.cs + p0;
                    &self.data[start..start + kc]
                });
            } else {
                for p in 0..kc {
                    for c in 0..nr {
                        chunk[p * nr + c] = if c < cols { self.at(p0 + p, j + c) } else { 0.0 };
                    }
                }
            }
        }
    }

    fn prefetch_block(&self, p0: usize, kc: usize, j0: usize, nc: usize, part: usize, parts: usize) {
        let size = std::mem::size_of::<f32>();
        let base = self.data.as_ptr();
        if self.cs == 1 {
            for p in part_of(kc, part, parts) {
                crate::simd::prefetch_run_l2(
                    base.wrapping_add((p0 + p) * self.rs + j0) as *const u8,
                    nc * size,
                );
            }
        } else if self.rs == 1 {
            for j in part_of(nc, part, parts) {
                crate::simd::prefetch_run_l2(
                    base.wrapping_add((j0 + j) * self.cs + p0) as *const u8,
                    kc * size,
                );
            }
        }
    }
}

/// Writes `cols` column runs of length `kc` into a `kc × nr` panel (row p holds element p of every column),
/// zero padding columns `cols..nr`. With SIMD, whole 8×8 blocks are transposed in registers.
pub(crate) fn transpose_into<'a>(
    kernel: Kernel,
    panel: &mut [f32],
    nr: usize,
    kc: usize,
    cols: usize,
    column: impl Fn(usize) -> &'a [f32],
) {
    let sources: Vec<&[f32]> = (0..cols).map(column).collect();
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if kernel != Kernel::Scalar && cols == nr && nr % 8 == 0 && panel.len() >= kc * nr {
        // Safety: AVX2 is present on every non-scalar path; sizes were checked above and by the callers.
        done = unsafe { crate::simd::avx2::transpose_panel(&sources, panel, nr, kc) };
    }
    for (p, row) in panel.chunks_exact_mut(nr).take(kc).enumerate().skip(done) {
        for (d, src) in row.iter_mut().zip(&sources) {
            *d = src[p];
        }
        row[cols..].fill(0.0);
    }
}

/// A frozen weight W `[rows, cols]` (row-major) that can decode any run of its flattened elements to f32:
/// NF4 (dequantization) or bf16 (widening). Packing, the few-row path and the entry points are written once
/// over this.
pub trait Weight: Sync {
    fn rows(&self) -> usize;
    fn cols(&self) -> usize;
    /// Decodes elements `start .. start + dst.len()` of the flattened weight.
    fn decode(&self, ctx: &PackCtx, start: usize, dst: &mut [f32]);
    /// Hints that elements `start .. start + len` will be decoded soon (a weight larger than the caches is
    /// read as many short runs, which the hardware prefetcher picks up too late).
    fn prefetch(&self, _start: usize, _len: usize) {}
    /// The same hint into L2 only (see `PackB::prefetch_block`).
    fn prefetch_l2(&self, _start: usize, _len: usize) {}
    /// Decodes elements `start .. start + len` in pieces of `width`: piece `i` goes to `dst[i * stride ..]`.
    fn decode_pieces(
        &self,
        ctx: &PackCtx,
        start: usize,
        len: usize,
        width: usize,
        dst: &mut [f32],
        stride: usize,
    ) {
        for (i, first) in (0..len).step_by(width).enumerate() {
            let n = width.min(len - first);
            self.decode(ctx, start + first, &mut dst[i * stride..][..n]);
        }
    }
}

impl Weight for Nf4Weight {
    fn rows(&self) -> usize {
        self.rows
    }
    fn cols(&self) -> usize {
        self.cols
    }
    fn decode(&self, ctx: &PackCtx, start: usize, dst: &mut [f32]) {
        dequant_run(ctx.kernel, self, start, dst, &ctx.map);
    }
    fn decode_pieces(
        &self,
        ctx: &PackCtx,
        start: usize,
        len: usize,
        width: usize,
        dst: &mut [f32],
        stride: usize,
    ) {
        dequant_pieces(ctx.kernel, self, start, len, width, dst, stride, &ctx.map);
    }
    fn prefetch(&self, start: usize, len: usize) {
        // Two codes per byte; the scales are small and stay in cache.
        let first = (start / 2).min(self.packed.len());
        crate::simd::prefetch_run(self.packed.as_ptr().wrapping_add(first), len.div_ceil(2) + 1);
    }
    fn prefetch_l2(&self, start: usize, len: usize) {
        let first = (start / 2).min(self.packed.len());
        crate::simd::prefetch_run_l2(self.packed.as_ptr().wrapping_add(first), len.div_ceil(2) + 1);
    }
}

/// B = Wᵀ (the forward `X · Wᵀ`): column j of B is row j of W, a contiguous run; decode the runs of a panel,
/// then transpose them into it.
pub struct Transposed<'a, W: Weight>(pub &'a W);

impl<W: Weight> PackB for Transposed<'_, W> {
    fn pack(
        &self,
        ctx: &PackCtx,
        p0: usize,
        kc: usize,
        j0: usize,
        nc: usize,
        nr: usize,
        dst: &mut [f32],
        scratch: &mut Vec<f32>,
    ) {
        let w = self.0;
        let scratch = aligned(scratch, kc * nr);
        let panels = nc.div_ceil(nr);
        for (panel, chunk) in dst.chunks_exact_mut(nr * kc).take(panels).enumerate() {
            let cols = nr.min(nc - panel * nr);
            if panel + 1 < panels {
                let next = j0 + (panel + 1) * nr;
                for c in next..(next + nr).min(j0 + nc) {
                    w.prefetch(c * w.cols() + p0, kc);
                }
            }
            for (c, run) in scratch.chunks_exact_mut(kc).take(cols).enumerate() {
                w.decode(ctx, (j0 + panel * nr + c) * w.cols() + p0, run);
            }
            transpose_into(ctx.kernel, chunk, nr, kc, cols, |c| &scratch[c * kc..(c + 1) * kc]);
        }
    }

    fn prefetch_block(&self, p0: usize, kc: usize, j0: usize, nc: usize, part: usize, parts: usize) {
        let w = self.0;
        for j in part_of(nc, part, parts) {
            w.prefetch_l2((j0 + j) * w.cols() + p0, kc);
        }
    }
}

/// How many rows ahead the backward packer asks for a weight's rows.
const PREFETCH_ROWS: usize = 4;

/// B = W (the backward `dY · W`): each depth step is a run of a W row, decoded straight into its row of every
/// panel (one call per row: the per-call cost of decoding is paid once).
pub struct Direct<'a, W: Weight>(pub &'a W);

impl<W: Weight> PackB for Direct<'_, W> {
    fn pack(
        &self,
        ctx: &PackCtx,
        p0: usize,
        kc: usize,
        j0: usize,
        nc: usize,
        nr: usize,
        dst: &mut [f32],
        _: &mut Vec<f32>,
    ) {
        let w = self.0;
        let last = (nc.div_ceil(nr) - 1) * nr * kc;
        let edge = nc % nr;
        for p in 0..kc {
            if p + PREFETCH_ROWS < kc {
                w.prefetch((p0 + p + PREFETCH_ROWS) * w.cols() + j0, nc);
            }
            w.decode_pieces(ctx, (p0 + p) * w.cols() + j0, nc, nr, &mut dst[p * nr..], nr * kc);
            if edge != 0 {
                dst[last + p * nr + edge..][..nr - edge].fill(0.0);
            }
        }
    }

    fn prefetch_block(&self, p0: usize, kc: usize, j0: usize, nc: usize, part: usize, parts: usize) {
        let w = self.0;
        for p in part_of(kc, part, parts) {
            w.prefetch_l2((p0 + p) * w.cols() + j0, nc);
        }
    }
}

/// Returns a 64-byte aligned slice of `len` elements inside `buf` (grown as needed): whole vectors written to
/// it never straddle two cache lines.
pub fn aligned(buf: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if buf.len() < len + 16 {
        buf.resize(len + 16, 0.0);
    }
    let offset = buf.as_ptr().align_offset(64).min(16);
    &mut buf[offset..offset + len]
}

/// Copies one depth step of a panel (`mr` or `nr` values). A copy of run-time length compiles to a `memcpy`
/// call, and one call per 24- or 64-byte row cost ~3 % of a training step; copies of a constant size become a
/// few vector moves.
#[inline(always)]
fn copy_panel_row(dst: &mut [f32], src: &[f32]) {
    fn fixed<const N: usize>(dst: &mut [f32], src: &[f32]) {
        for (d, s) in dst.chunks_exact_mut(N).zip(src.chunks_exact(N)) {
            let d: &mut [f32; N] = d.try_into().expect("N values");
            *d = *<&[f32; N]>::try_from(s).expect("N values");
        }
    }
    assert_eq!(dst.len(), src.len(), "panel row width");
    match dst.len() {
        n if n % 16 == 0 => fixed::<16>(dst, src),
        n if n % 8 == 0 => fixed::<8>(dst, src),
        6 => fixed::<6>(dst, src),
        4 => fixed::<4>(dst, src),
        _ => dst.copy_from_slice(src),
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

/// bf16 → f32 (exact: bf16 is the top half of an f32).
#[inline(always)]
pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits((bits as u32) << 16)
}

/// A dense weight W `[rows, cols]` stored as bf16 bits (embeddings, LM head): the high-precision weights of
/// the model, at half the memory of f32.
#[derive(Clone, Copy)]
pub struct Bf16Matrix<'a> {
    pub bits: &'a [u16],
    pub rows: usize,
    pub cols: usize,
}

impl Weight for Bf16Matrix<'_> {
    fn rows(&self) -> usize {
        self.rows
    }
    fn cols(&self) -> usize {
        self.cols
    }
    fn decode(&self, ctx: &PackCtx, start: usize, dst: &mut [f32]) {
        let len = dst.len();
        widen_bf16(ctx.kernel, &self.bits[start..start + len], dst);
    }
    fn prefetch(&self, start: usize, len: usize) {
        let run = &self.bits[start.min(self.bits.len())..(start + len).min(self.bits.len())];
        crate::simd::prefetch_run(run.as_ptr() as *const u8, std::mem::size_of_val(run));
    }
    fn prefetch_l2(&self, start: usize, len: usize) {
        let run = &self.bits[start.min(self.bits.len())..(start + len).min(self.bits.len())];
        crate::simd::prefetch_run_l2(run.as_ptr() as *const u8, std::mem::size_of_val(run));
    }
}

/// `dst[i] = bf16_to_f32(src[i])`; the SIMD paths widen 8 values per instruction (the LM head's forward
/// decodes the whole bf16 head once per logits chunk, where a plain loop cost ~18 % of the product).
pub fn widen_bf16(kernel: Kernel, src: &[u16], dst: &mut [f32]) {
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if kernel != Kernel::Scalar {
        // Safety: AVX2 is present on every non-scalar path; `dst` is at least as long as `src` (zip below).
        assert!(dst.len() >= src.len());
        done = unsafe { crate::simd::avx2::widen_bf16(src, dst) };
    }
    for (d, &b) in dst[done..].iter_mut().zip(&src[done..]) {
        *d = bf16_to_f32(b);
    }
}
