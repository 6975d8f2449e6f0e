//! AMX-BF16 tiles through `asm!` (stable Rust has no AMX intrinsics). The compiler never allocates tile
//! registers, so tile state survives between `asm!` statements on one thread: a worker loads the tile
//! config once per call (`ldtilecfg`), runs its micro-kernels, and releases the tiles (`tilerelease`).
//!
//! Register plan of the 32 × 32 micro-kernel (8 tiles of 16 rows × 64 bytes):
//! tmm0..tmm3 hold C (rows 0–15 / 16–31 × columns 0–15 / 16–31, f32), tmm4/tmm5 two 16-row tiles of A
//! (32 bf16 of depth per row), tmm6/tmm7 two 16-column tiles of B (16 pairs of depth × 16 columns).

pub mod os;

use std::arch::asm;

/// Rows of C per micro-kernel call (two A tiles).
pub const MR: usize = 32;
/// Depth pairs per tile step (16 pairs = 32 depth values = one 64-byte tile row of A).
pub const CHUNK_PAIRS: usize = 16;

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

/// C[32 × 32] (+)= A · B over `chunks` steps of 16 depth pairs.
///
/// `a` is two row tiles one after the other, each `chunks` blocks of 16 rows × 16 pairs (1 KiB, rows 64 bytes
/// apart); `b` is a 32-column pair panel (`[pair][32]` u32, rows 128 bytes apart). `load_c` adds to C's
/// current values, else C is overwritten. C has row stride `ldc` floats.
///
/// # Safety
/// Tiles configured by [`configure`] on this thread; `a` holds `2 · chunks · 256` and `b` `chunks · 512` u32;
/// C has 32 rows of 32 floats at stride `ldc`.
#[inline(always)]
pub unsafe fn tile_32x32(chunks: usize, a: *const u32, b: *const u32, c: *mut f32, ldc: usize, load_c: bool) {
    let c_stride = ldc * 4;
    let (c00, c01, c10, c11) = (c, c.add(16), c.add(16 * ldc), c.add(16 * ldc + 16));
    if load_c {
        asm!(
            "tileloadd tmm0, [{c00} + {s}*1]",
            "tileloadd tmm1, [{c01} + {s}*1]",
            "tileloadd tmm2, [{c10} + {s}*1]",
            "tileloadd tmm3, [{c11} + {s}*1]",
            c00 = in(reg) c00, c01 = in(reg) c01, c10 = in(reg) c10, c11 = in(reg) c11, s = in(reg) c_stride,
            options(nostack, readonly),
        );
    } else {
        asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
    }
    let a1 = a.add(chunks * 256);
    for s in 0..chunks {
        let (a0p, a1p) = (a.add(s * 256), a1.add(s * 256));
        let b0 = b.add(s * CHUNK_PAIRS * 32);
        asm!(
            "tileloadd tmm4, [{a0} + {sa}*1]",
            "tileloadd tmm6, [{b0} + {sb}*1]",
            "tileloadd tmm7, [{b1} + {sb}*1]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tileloadd tmm5, [{a1} + {sa}*1]",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            a0 = in(reg) a0p, a1 = in(reg) a1p, b0 = in(reg) b0, b1 = in(reg) b0.add(16),
            sa = in(reg) 64usize, sb = in(reg) 128usize,
            options(nostack, readonly),
        );
    }
    asm!(
        "tilestored [{c00} + {s}*1], tmm0",
        "tilestored [{c01} + {s}*1], tmm1",
        "tilestored [{c10} + {s}*1], tmm2",
        "tilestored [{c11} + {s}*1], tmm3",
        c00 = in(reg) c00, c01 = in(reg) c01, c10 = in(reg) c10, c11 = in(reg) c11, s = in(reg) c_stride,
        options(nostack),
    );
}
