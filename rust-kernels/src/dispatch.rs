//! Decides the CPU path once. The choice is cached in an atomic; kernels read it once per call, never
//! inside a loop. `QLORA_KERNEL=scalar|avx2|avx512|avx512bf16|amx` forces a path at start-up, and
//! `set_kernel_by_name` switches it at run time so tests can run every path the machine has.
//!
//! A path is a SIMD family (`Kernel`: what f32 kernels run on) plus the unit that multiplies bf16 operands
//! (`Bf16Unit`): `avx512bf16` and `amx` are the AVX-512 family with `vdpbf16ps` or AMX tiles for bf16 compute.

use crate::error::{KResult, KernelError};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    Scalar = 1,
    Avx2 = 2,
    Avx512 = 3,
}

impl Kernel {
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Scalar => "scalar",
            Kernel::Avx2 => "avx2",
            Kernel::Avx512 => "avx512",
        }
    }

    pub fn from_name(name: &str) -> Option<Kernel> {
        match name {
            "scalar" => Some(Kernel::Scalar),
            "avx2" => Some(Kernel::Avx2),
            "avx512" => Some(Kernel::Avx512),
            _ => None,
        }
    }
}

/// What multiplies operands when a GEMM computes in bf16 (`Compute::Bf16`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bf16Unit {
    /// The family's own bf16 GEMM (`gemm/driver.rs`): f32 panels rounded to bf16 and multiplied with f32 FMAs,
    /// or on CPUs with AVX512-BF16 converted to pairs for `vdpbf16ps`.
    Fma,
    /// AVX512-BF16 `vdpbf16ps`: a pair of bf16 products per f32 lane.
    Dot,
    /// AMX-BF16 tiles (`tdpbf16ps`): 16×16 f32 tiles from 16×32 bf16 operands.
    Amx,
}

/// A named CPU path: what `QLORA_KERNEL` and `setKernel` choose, and what `kernel_name` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    Scalar = 1,
    Avx2 = 2,
    Avx512 = 3,
    Avx512Bf16 = 4,
    Amx = 5,
}

impl Path {
    pub const ALL: [Path; 5] = [Path::Scalar, Path::Avx2, Path::Avx512, Path::Avx512Bf16, Path::Amx];

    pub fn name(self) -> &'static str {
        match self {
            Path::Avx512Bf16 => "avx512bf16",
            Path::Amx => "amx",
            other => other.kernel().name(),
        }
    }

    pub fn from_name(name: &str) -> Option<Path> {
        Path::ALL.into_iter().find(|p| p.name() == name)
    }

    /// The SIMD family every f32 kernel of this path runs on.
    pub fn kernel(self) -> Kernel {
        match self {
            Path::Scalar => Kernel::Scalar,
            Path::Avx2 => Kernel::Avx2,
            Path::Avx512 | Path::Avx512Bf16 | Path::Amx => Kernel::Avx512,
        }
    }

    pub fn bf16_unit(self) -> Bf16Unit {
        match self {
            Path::Avx512Bf16 => Bf16Unit::Dot,
            Path::Amx => Bf16Unit::Amx,
            _ => Bf16Unit::Fma,
        }
    }

    fn from_u8(v: u8) -> Path {
        Path::ALL.into_iter().find(|p| *p as u8 == v).unwrap_or(Path::Scalar)
    }
}

/// What the CPU can run, detected once.
#[derive(Clone, Copy, Debug)]
pub struct Cpu {
    pub avx2_fma: bool,
    pub avx512: bool,
    /// AVX512-BF16 (`vdpbf16ps`): bf16 dot products with f32 accumulation.
    pub avx512_bf16: bool,
    /// AMX-BF16 tiles, enabled by the OS (XCR0) and granted to this process (`arch_prctl`).
    pub amx_bf16: bool,
}

pub fn cpu() -> Cpu {
    static CPU: OnceLock<Cpu> = OnceLock::new();
    *CPU.get_or_init(detect)
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Cpu {
    let avx2_fma = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    // DQ too (every CPU with BW and VL has it): the ops' AVX-512 build multiplies 64-bit lanes (dropout's hash).
    let avx512 = avx2_fma
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512dq");
    let avx512_bf16 = avx512 && is_x86_feature_detected!("avx512bf16");
    let amx_bf16 = avx512 && crate::gemm::amx::os::enable_tiles().is_ok();
    Cpu { avx2_fma, avx512, avx512_bf16, amx_bf16 }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Cpu {
    Cpu { avx2_fma: false, avx512: false, avx512_bf16: false, amx_bf16: false }
}

pub fn supported(kernel: Kernel) -> bool {
    let cpu = cpu();
    match kernel {
        Kernel::Scalar => true,
        Kernel::Avx2 => cpu.avx2_fma,
        Kernel::Avx512 => cpu.avx512,
    }
}

pub fn path_supported(path: Path) -> bool {
    supported(path.kernel())
        && match path.bf16_unit() {
            Bf16Unit::Fma => true,
            Bf16Unit::Dot => cpu().avx512_bf16,
            Bf16Unit::Amx => cpu().amx_bf16,
        }
}

/// Every SIMD family this machine can run, fastest last.
pub fn available() -> Vec<Kernel> {
    [Kernel::Scalar, Kernel::Avx2, Kernel::Avx512].into_iter().filter(|k| supported(*k)).collect()
}

/// Every named path this machine can run (families, then bf16 units), fastest last.
pub fn available_paths() -> Vec<Path> {
    Path::ALL.into_iter().filter(|p| path_supported(*p)).collect()
}

/// Every bf16 unit this machine has (`Fma` always).
pub fn available_bf16_units() -> Vec<Bf16Unit> {
    let mut units = vec![Bf16Unit::Fma];
    if cpu().avx512 && cpu().avx512_bf16 {
        units.push(Bf16Unit::Dot);
    }
    if cpu().avx512 && cpu().amx_bf16 {
        units.push(Bf16Unit::Amx);
    }
    units
}

fn best() -> Path {
    *available_paths().last().expect("scalar is always available")
}

static ACTIVE: AtomicU8 = AtomicU8::new(0);

/// The active path (decided on first use: `QLORA_KERNEL` if set and supported, else the best one).
pub fn active_path() -> Path {
    let v = ACTIVE.load(Ordering::Relaxed);
    if v != 0 {
        return Path::from_u8(v);
    }
    let chosen = std::env::var("QLORA_KERNEL")
        .ok()
        .and_then(|name| Path::from_name(name.trim()))
        .filter(|p| path_supported(*p))
        .unwrap_or_else(best);
    ACTIVE.store(chosen as u8, Ordering::Relaxed);
    chosen
}

/// The SIMD family of the active path.
pub fn active() -> Kernel {
    active_path().kernel()
}

/// The bf16 unit of the active path.
pub fn active_bf16_unit() -> Bf16Unit {
    active_path().bf16_unit()
}

/// "auto" returns to the best path; anything else must name a path this CPU supports.
pub fn set_kernel_by_name(name: &str) -> KResult<()> {
    let path = if name == "auto" {
        best()
    } else {
        let path = Path::from_name(name).ok_or_else(|| {
            let names: Vec<&str> = Path::ALL.iter().map(|p| p.name()).collect();
            KernelError::invalid(format!(
                "kernel: unknown path {name:?} (expected auto or one of {}; this CPU has: {})",
                names.join(", "),
                describe_cpu()
            ))
        })?;
        if !path_supported(path) {
            return Err(KernelError::unsupported(format!(
                "kernel: this CPU cannot run the {name} path (it has: {}){}",
                describe_cpu(),
                unsupported_reason(path)
            )));
        }
        path
    };
    ACTIVE.store(path as u8, Ordering::Relaxed);
    Ok(())
}

/// Why AMX is missing, when the CPU has the instructions but the OS refused them.
fn unsupported_reason(path: Path) -> String {
    #[cfg(target_arch = "x86_64")]
    if path == Path::Amx {
        if let Err(why) = crate::gemm::amx::os::enable_tiles() {
            return format!("; AMX: {why}");
        }
    }
    let _ = path;
    String::new()
}

/// The named paths this machine can run, e.g. "scalar,avx2,avx512,avx512bf16,amx" ("bf16dot" is kept for
/// readers of the older list: the CPU has `vdpbf16ps`).
pub fn describe_cpu() -> String {
    let mut parts: Vec<&str> = available_paths().iter().map(|p| p.name()).collect();
    if cpu().avx512_bf16 {
        parts.push("bf16dot");
    }
    parts.join(",")
}
