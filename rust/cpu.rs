//! What the CPU can do, read with CPUID itself: `is_x86_feature_detected!` answers `true`
//! without asking the CPU for a feature the build enables (`.cargo/config.toml` enables AES-NI
//! and PCLMULQDQ code generation on x86-64 for the RustCrypto AES-GCM backends).

/// Whether the AES-GCM code of this build can run here: on x86-64, the CPU has AES-NI and
/// PCLMULQDQ when the build relies on them; elsewhere, always.
#[must_use]
pub fn aes_gcm_ok() -> bool {
    #[cfg(all(
        target_arch = "x86_64",
        any(target_feature = "aes", target_feature = "pclmulqdq")
    ))]
    {
        // CPUID leaf 1, ECX: bit 25 AES-NI, bit 1 PCLMULQDQ.
        #[allow(unused_unsafe, unsafe_code)]
        // SAFETY: CPUID leaf 1 exists on every x86-64 CPU.
        let ecx = unsafe { std::arch::x86_64::__cpuid(1) }.ecx;
        ecx & (1 << 25) != 0 && ecx & (1 << 1) != 0
    }
    #[cfg(not(all(
        target_arch = "x86_64",
        any(target_feature = "aes", target_feature = "pclmulqdq")
    )))]
    {
        true
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_machine_runs_aes_gcm() {
        // the development and CI machines have AES-NI; a false here means the build's
        // AES-GCM entry points would refuse to run
        assert!(super::aes_gcm_ok());
    }
}
