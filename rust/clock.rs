//! Time values handed to the core: seconds as `f64`, from a monotonic clock or a simulator's
//! virtual clock. The network never chooses them, but a caller's clock can be broken or
//! hostile (NaN, ±inf, 1e308), and one bad value must not poison state for ever (a table
//! epoch of +inf, a rate-limit bucket that never refills). Every entry point that takes a
//! time checks it here and refuses the value with `InvalidArgument`; arithmetic on checked
//! values then stays far from overflow (|t| <= 1e12 s, i.e. milliseconds fit i64 with room).
#![forbid(unsafe_code)]

use crate::error::{CoreError, CoreResult};

/// The largest accepted |time| or duration, in seconds (about 31 700 years).
pub const MAX_SECONDS: f64 = 1e12;

/// `t` is a usable point in time: finite and within ±[`MAX_SECONDS`].
///
/// # Errors
/// `InvalidArgument` naming `name` otherwise.
pub fn check_time(t: f64, name: &str) -> CoreResult<()> {
    if t.is_finite() && t.abs() <= MAX_SECONDS {
        Ok(())
    } else {
        Err(CoreError::InvalidArgument(format!(
            "{name} must be a finite number of seconds within ±{MAX_SECONDS:e}, got {t}"
        )))
    }
}

/// `d` is a usable duration: finite, >= 0 and at most [`MAX_SECONDS`].
///
/// # Errors
/// `InvalidArgument` naming `name` otherwise.
pub fn check_duration(d: f64, name: &str) -> CoreResult<()> {
    if d.is_finite() && (0.0..=MAX_SECONDS).contains(&d) {
        Ok(())
    } else {
        Err(CoreError::InvalidArgument(format!(
            "{name} must be a finite number of seconds in 0..={MAX_SECONDS:e}, got {d}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_time() {
        for bad in [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e308,
            -1e308,
            MAX_SECONDS * 1.000_001,
        ] {
            assert!(check_time(bad, "now").is_err(), "{bad}");
            assert!(check_duration(bad, "idle").is_err(), "{bad}");
        }
        for good in [0.0, -0.0, 5e-324, 1.5, 1e9, MAX_SECONDS, -MAX_SECONDS] {
            assert!(check_time(good, "now").is_ok(), "{good}");
        }
        assert!(check_duration(-1.0, "idle").is_err());
        assert!(check_duration(5e-324, "idle").is_ok());
    }
}
