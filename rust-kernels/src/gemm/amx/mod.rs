//! AMX-BF16 tiles through `asm!` (stable Rust has no AMX intrinsics). The compiler never allocates tile
//! registers, so tile state survives between `asm!` statements on one thread: a worker loads the tile
//! config once per call (`ldtilecfg`), runs its micro-kernels, and releases the tiles (`tilerelease`).
//!
//! Register plan of the 2 × 2 micro-kernel (8 tiles of 16 rows × 64 bytes):
//! tmm0..tmm3 hold C (2 × 2 tiles of 16 × 16 f32), tmm4/tmm5 two 16-row tiles of A (32 bf16 of depth per
//! row), tmm6/tmm7 two 16-column tiles of B (16 pairs of depth × 16 columns). Where the operands come from
//! (and which of them is the weight) is up to the loop nest, `nest.rs`.
//!
//! Measured on this Sapphire Rapids (`amx_probe_timing`, 64-byte aligned buffers): a 1 KiB `tileloadd`
//! from L1 costs ~2.5 ns, four `tdpbf16ps` ~21 ns, so with both operands in L1 a step (four loads, four
//! products) takes ~31 ns, near the multiplies' own time; streaming 2 KiB-contiguous operands from L2
//! ~35–41 ns. Inside the nest a step averages ~55 ns (C tiles loaded and stored every call, the pipeline
//! drained between calls, X read from L3 on its first pass). Unaligned buffers cost about twice as much
//! (each 64-byte tile row then spans two cache lines; an earlier version of the probe measured that).

pub mod nest;
pub mod os;

use std::arch::asm;

/// The 64-byte tile configuration `ldtilecfg` reads (palette 1).
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    bytes_per_row: [u16; 16],
    rows: [u8; 16],
}

const _: () = assert!(std::mem::size_of::<TileConfig>() == 64);
const _: () = assert!(std::mem::align_of::<TileConfig>() == 64);

/// Configures tmm0..tmm7 as 16 rows × 64 bytes on this thread.
///
/// # Safety
/// Tiles must be enabled for the process (`os::enable_tiles`); pair with [`release`] on the same thread.
pub unsafe fn configure() {
    let mut cfg =
        TileConfig { palette: 1, start_row: 0, reserved: [0; 14], bytes_per_row: [0; 16], rows: [0; 16] };
    for t in 0..8 {
        cfg.bytes_per_row[t] = 64;
        cfg.rows[t] = 16;
    }
    asm!("ldtilecfg [{0}]", in(reg) &cfg as *const TileConfig, options(nostack, readonly));
}

/// Returns the tiles to their initial state (the OS then need not save them on context switches).
///
/// # Safety
/// Tiles must be enabled for the process.
pub unsafe fn release() {
    asm!("tilerelease", options(nostack, nomem));
}

/// Where the micro-kernel finds the two tiles of one operand: the first at `ptr`, the second `next` bytes
/// further, 16 rows `stride` bytes apart in each, and the next depth chunk `step` bytes on.
#[derive(Clone, Copy, Debug)]
pub struct TilePair {
    pub ptr: *const u8,
    pub next: usize,
    pub stride: usize,
    pub step: usize,
}

/// Where the four f32 tiles of C live: tile (i, j) at `ptr + i·down + j·right`, rows `stride` bytes apart.
#[derive(Clone, Copy, Debug)]
pub struct TileQuad {
    pub ptr: *mut u8,
    pub down: usize,
    pub right: usize,
    pub stride: usize,
}

/// The body of [`tile_2x2`] with A's tiles loaded by `$load_a` and B's by `$load_b`.
macro_rules! tile_2x2_with {
    ($load_a:literal, $load_b:literal, $chunks:expr, $a:expr, $b:expr, $c:expr, $load_c:expr) => {{
        let (chunks, a, b, c): (usize, TilePair, TilePair, TileQuad) = ($chunks, $a, $b, $c);
        let (c00, c01) = (c.ptr, c.ptr.add(c.right));
        let (c10, c11) = (c.ptr.add(c.down), c.ptr.add(c.down + c.right));
        if $load_c {
            asm!(
                "tileloadd tmm0, [{c00} + {s}*1]",
                "tileloadd tmm1, [{c01} + {s}*1]",
                "tileloadd tmm2, [{c10} + {s}*1]",
                "tileloadd tmm3, [{c11} + {s}*1]",
                c00 = in(reg) c00, c01 = in(reg) c01, c10 = in(reg) c10, c11 = in(reg) c11, s = in(reg) c.stride,
                options(nostack, readonly),
            );
        } else {
            asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
        }
        let (mut a0, mut b0) = (a.ptr, b.ptr);
        asm!(
            concat!($load_a, " tmm4, [{a0} + {sa}*1]"),
            concat!($load_b, " tmm6, [{b0} + {sb}*1]"),
            concat!($load_b, " tmm7, [{b1} + {sb}*1]"),
            concat!($load_a, " tmm5, [{a1} + {sa}*1]"),
            a0 = in(reg) a0, a1 = in(reg) a0.add(a.next), b0 = in(reg) b0, b1 = in(reg) b0.add(b.next),
            sa = in(reg) a.stride, sb = in(reg) b.stride,
            options(nostack, readonly),
        );
        for _ in 1..chunks {
            a0 = a0.add(a.step);
            b0 = b0.add(b.step);
            asm!(
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                concat!($load_a, " tmm4, [{a0} + {sa}*1]"),
                "tdpbf16ps tmm2, tmm5, tmm6",
                concat!($load_b, " tmm6, [{b0} + {sb}*1]"),
                "tdpbf16ps tmm3, tmm5, tmm7",
                concat!($load_a, " tmm5, [{a1} + {sa}*1]"),
                concat!($load_b, " tmm7, [{b1} + {sb}*1]"),
                a0 = in(reg) a0, a1 = in(reg) a0.add(a.next), b0 = in(reg) b0, b1 = in(reg) b0.add(b.next),
                sa = in(reg) a.stride, sb = in(reg) b.stride,
                options(nostack, readonly),
            );
        }
        asm!(
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            options(nostack, nomem),
        );
        asm!(
            "tilestored [{c00} + {s}*1], tmm0",
            "tilestored [{c01} + {s}*1], tmm1",
            "tilestored [{c10} + {s}*1], tmm2",
            "tilestored [{c11} + {s}*1], tmm3",
            c00 = in(reg) c00, c01 = in(reg) c01, c10 = in(reg) c10, c11 = in(reg) c11, s = in(reg) c.stride,
            options(nostack),
        );
    }};
}

/// Which operand of [`tile_2x2`] streams through once per call, loaded with `tileloaddt1` (the
/// "not reused" hint): its lines then skip L1, where the other operand's panel stays for the next call.
/// Measured at 7B shapes: +10–17 % forward (B streams), +20–30 % backward (A streams).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Neither,
    A,
    B,
}

/// C tile (i, j) (+)= A tile i · B tile j over `chunks` steps of 16 depth pairs: a 2 × 2 block of tiles,
/// four tile loads per four `tdpbf16ps` (the most products per load eight tile registers allow). A tiles
/// are 16 rows × 32 bf16 of depth; B tiles 16 pairs of depth × 16 columns. `load_c` adds to C's current
/// values, else C is overwritten. Software-pipelined: each operand tile of the next step is loaded right
/// after the last product of this step that reads it (tile registers are not renamed, so a load waits for
/// its readers; measured ~5 % faster than loading all four at the top of the step).
///
/// # Safety
/// Tiles configured by [`configure`] on this thread; `chunks` ≥ 1; every tile the descriptors name is
/// readable (C writable) for all `chunks` steps.
#[inline(always)]
pub unsafe fn tile_2x2(chunks: usize, a: TilePair, b: TilePair, c: TileQuad, load_c: bool, stream: Stream) {
    // One body per load instruction pair (`asm!` takes literal text); `stream` is a constant at every call.
    match stream {
        Stream::Neither => tile_2x2_with!("tileloadd", "tileloadd", chunks, a, b, c, load_c),
        Stream::A => tile_2x2_with!("tileloaddt1", "tileloadd", chunks, a, b, c, load_c),
        Stream::B => tile_2x2_with!("tileloadd", "tileloaddt1", chunks, a, b, c, load_c),
    }
}

#[cfg(test)]
mod probe {
    use super::*;

    /// What bounds the micro-kernel (`cargo test --release -- --ignored --nocapture amx_probe`): products
    /// alone, tile loads alone, and 64-step calls over operands laid out as in the nest or row-strided.
    #[test]
    #[ignore]
    fn amx_probe_timing() {
        if os::enable_tiles().is_err() {
            return;
        }
        // 64-byte aligned operands, as in the nest (a large `Vec<u32>` starts 16 bytes into a page, and a
        // tile row spanning two cache lines costs two loads).
        #[derive(Clone, Copy)]
        #[repr(C, align(64))]
        struct Line([u32; 16]);
        let a = vec![Line([0x3f80_3f80; 16]); (64 * 1040 + 4096) / 16];
        let b = vec![Line([0x3f80_3f80; 16]); (2 * 64 * 256 + 4096) / 16];
        let mut c = vec![Line([0; 16]); 32 * 32 / 16];
        let reps = 200_000usize;
        unsafe {
            configure();
            let t = std::time::Instant::now();
            for _ in 0..reps {
                asm!(
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    "tdpbf16ps tmm2, tmm5, tmm6",
                    "tdpbf16ps tmm3, tmm5, tmm7",
                    options(nostack, nomem)
                );
            }
            eprintln!("4 products: {:.1} ns", t.elapsed().as_secs_f64() * 1e9 / reps as f64);
            let t = std::time::Instant::now();
            for _ in 0..reps {
                asm!(
                    "tileloadd tmm4, [{p} + {s}*1]",
                    "tileloadd tmm5, [{p} + {s}*1]",
                    "tileloadd tmm6, [{p} + {s}*1]",
                    "tileloadd tmm7, [{p} + {s}*1]",
                    p = in(reg) a.as_ptr(), s = in(reg) 64usize,
                    options(nostack, readonly)
                );
            }
            eprintln!("4 tile loads (L1): {:.1} ns", t.elapsed().as_secs_f64() * 1e9 / reps as f64);
            let (pa, pb) = (a.as_ptr() as *const u8, b.as_ptr() as *const u8);
            let contiguous = TilePair { ptr: pa, next: 1024, stride: 64, step: 2048 };
            let streamed = TilePair { ptr: pb, ..contiguous };
            for (name, ta, tb, stream) in [
                (
                    "A rows 4160 B apart",
                    TilePair { ptr: pa, next: 16 * 4160, stride: 4160, step: 64 },
                    contiguous,
                    Stream::Neither,
                ),
                ("both 2 KiB per step", contiguous, streamed, Stream::Neither),
                ("both 2 KiB per step, B by tileloaddt1", contiguous, streamed, Stream::B),
                (
                    "both in L1 (step 0)",
                    TilePair { step: 0, ..contiguous },
                    TilePair { ptr: pb, step: 0, ..contiguous },
                    Stream::Neither,
                ),
            ] {
                let tc = TileQuad { ptr: c.as_mut_ptr() as *mut u8, down: 16 * 128, right: 64, stride: 128 };
                let calls = 3000;
                let t = std::time::Instant::now();
                for _ in 0..calls {
                    tile_2x2(64, ta, tb, tc, true, stream);
                }
                let step = t.elapsed().as_secs_f64() * 1e9 / (calls * 64) as f64;
                eprintln!("{name}: {step:.1} ns per step ({:.0} GFLOP/s)", 65536.0 / step);
            }
            release();
        }
    }
}
