//! Whether this process may use AMX tiles: the CPU has AMX-TILE and AMX-BF16 (CPUID leaf 7), the OS saves
//! tile state (XCR0 bits 17 and 18), and Linux granted this process the large tile-data state
//! (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`; without it the first tile instruction faults).
//! Asked once per process; the grant covers every thread, so rayon workers only load a tile config.

use std::sync::OnceLock;

/// Enables tiles for this process on first call; later calls return the cached answer.
pub fn enable_tiles() -> Result<(), String> {
    static ANSWER: OnceLock<Result<(), String>> = OnceLock::new();
    ANSWER.get_or_init(request).clone()
}

#[cfg(target_arch = "x86_64")]
fn request() -> Result<(), String> {
    use std::arch::x86_64::{__cpuid, __cpuid_count};
    let (leaf1, leaf7) = (__cpuid(1), __cpuid_count(7, 0));
    let amx_bf16 = leaf7.edx & (1 << 22) != 0;
    let amx_tile = leaf7.edx & (1 << 24) != 0;
    if !(amx_bf16 && amx_tile) {
        return Err("the CPU has no AMX-BF16/AMX-TILE".into());
    }
    let osxsave = leaf1.ecx & (1 << 27) != 0;
    if !osxsave {
        return Err("the OS has not enabled XSAVE".into());
    }
    let xcr0 = xgetbv0();
    const TILE_BITS: u64 = (1 << 17) | (1 << 18);
    if xcr0 & TILE_BITS != TILE_BITS {
        return Err(format!("the OS does not save tile state (XCR0 = {xcr0:#x})"));
    }
    request_permission()
}

#[cfg(not(target_arch = "x86_64"))]
fn request() -> Result<(), String> {
    Err("AMX needs x86_64".into())
}

#[cfg(target_arch = "x86_64")]
fn xgetbv0() -> u64 {
    let (lo, hi): (u32, u32);
    // Safety: only called after CPUID reported OSXSAVE, so XGETBV is enabled.
    unsafe {
        std::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags));
    }
    ((hi as u64) << 32) | lo as u64
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_permission() -> Result<(), String> {
    const SYS_ARCH_PRCTL: usize = 158;
    const ARCH_REQ_XCOMP_PERM: usize = 0x1023;
    const XFEATURE_XTILEDATA: usize = 18;
    let ret: isize;
    // Safety: arch_prctl with these arguments only changes this process's permitted XSAVE features.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL as isize => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    if ret == 0 {
        Ok(())
    } else {
        // -ENOSPC: a thread's signal stack is too small for tile state; -EINVAL/-ENOSYS: kernel too old.
        Err(format!(
            "Linux refused tile data to this process (arch_prctl ARCH_REQ_XCOMP_PERM: errno {})",
            -ret
        ))
    }
}

#[cfg(all(target_arch = "x86_64", not(target_os = "linux")))]
fn request_permission() -> Result<(), String> {
    Err("AMX is only enabled on Linux here".into())
}
