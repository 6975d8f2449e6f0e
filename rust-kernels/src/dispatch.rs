//! Decides the CPU path once. The choice is cached in an atomic; kernels read it once per call, never
//! inside a loop. `QLORA_KERNEL=scalar|avx2|avx512` forces a path at start-up, and `set_kernel_by_name`
//! switches it at run time so tests can run every path the machine has.

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

    fn from_u8(v: u8) -> Kernel {
        match v {
            2 => Kernel::Avx2,
            3 => Kernel::Avx512,
            _ => Kernel::Scalar,
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

/// What the CPU can run, detected once.
#[derive(Clone, Copy, Debug)]
pub struct Cpu {
    pub avx2_fma: bool,
    pub avx512: bool,
    /// AVX512-BF16 (`vdpbf16ps`): bf16 dot products with f32 accumulation.
    pub avx512_bf16: bool,
}

pub fn cpu() -> Cpu {
    static CPU: OnceLock<Cpu> = OnceLock::new();
    *CPU.get_or_init(detect)
}

#[cfg(target_arch = "x86_64")]
fn detect() -> Cpu {
    let avx2_fma = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    let avx512 = avx2_fma
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vl");
    let avx512_bf16 = avx512 && is_x86_feature_detected!("avx512bf16");
    Cpu { avx2_fma, avx512, avx512_bf16 }
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> Cpu {
    Cpu { avx2_fma: false, avx512: false, avx512_bf16: false }
}

pub fn supported(kernel: Kernel) -> bool {
    let cpu = cpu();
    match kernel {
        Kernel::Scalar => true,
        Kernel::Avx2 => cpu.avx2_fma,
        Kernel::Avx512 => cpu.avx512,
    }
}

/// Every path this machine can run, fastest last.
pub fn available() -> Vec<Kernel> {
    [Kernel::Scalar, Kernel::Avx2, Kernel::Avx512].into_iter().filter(|k| supported(*k)).collect()
}

fn best() -> Kernel {
    *available().last().expect("scalar is always available")
}

static ACTIVE: AtomicU8 = AtomicU8::new(0);

/// The active path (decided on first use: `QLORA_KERNEL` if set and supported, else the best one).
pub fn active() -> Kernel {
    let v = ACTIVE.load(Ordering::Relaxed);
    if v != 0 {
        return Kernel::from_u8(v);
    }
    let chosen = std::env::var("QLORA_KERNEL")
        .ok()
        .and_then(|name| Kernel::from_name(name.trim()))
        .filter(|k| supported(*k))
        .unwrap_or_else(best);
    ACTIVE.store(chosen as u8, Ordering::Relaxed);
    chosen
}

/// "auto" returns to the best path; anything else must name a path this CPU supports.
pub fn set_kernel_by_name(name: &str) -> KResult<()> {
    let kernel = if name == "auto" {
        best()
    } else {
        let kernel = Kernel::from_name(name).ok_or_else(|| {
            KernelError::invalid(format!(
                "kernel: unknown path {name:?} (expected auto, scalar, avx2 or avx512)"
            ))
        })?;
        if !supported(kernel) {
            return Err(KernelError::unsupported(format!(
                "kernel: this CPU cannot run the {name} path (it has: {})",
                describe_cpu()
            )));
        }
        kernel
    };
    ACTIVE.store(kernel as u8, Ordering::Relaxed);
    Ok(())
}

pub fn describe_cpu() -> String {
    let mut parts: Vec<&str> = available().iter().map(|k| k.name()).collect();
    if cpu().avx512_bf16 {
        parts.push("bf16dot");
    }
    parts.join(",")
}
