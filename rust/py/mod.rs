//! PyO3 bindings: type conversion, GIL release and error mapping only. No logic lives here.

mod aead;
mod convert;
mod detach;
mod errors;
mod gate;
mod kernel;
mod live;
mod net;
mod pairmap;
mod ratelimit;
mod responder;
mod table;
mod token;
mod wire;

use pyo3::prelude::*;

/// The native module `ikeqcd._core`. Users import from `ikeqcd`, never from here.
#[pymodule(gil_used = false)]
mod _core {
    #[pymodule_export]
    use super::aead::{aead_open_py, aead_seal_py};
    #[pymodule_export]
    use super::gate::PyMakerGate;
    #[pymodule_export]
    use super::kernel::kernel_info_py;
    #[pymodule_export]
    use super::pairmap::PyPairMap;
    #[pymodule_export]
    use super::ratelimit::{source_key_py, PyRateLimiter};
    #[pymodule_export]
    use super::responder::{reason_names_py, PyResponder};
    #[pymodule_export]
    use super::token::{hmac_py, PyTokenMaker};
    #[pymodule_export]
    use super::wire::{
        build_invalid_ike_spi_reply_py, build_invalid_spi_message_py, build_qcd_notify_py,
        build_qcd_reply_py, build_request_py, parse_header_py, parse_message_py,
        parse_qcd_replies_py, parse_qcd_reply_py,
    };

    #[pymodule_export]
    use super::table::PySaTable;

    #[pymodule_export]
    use super::net::{load_spis_py, PyLoadDriver, PyUdpServer};

    use pyo3::prelude::*;

    #[pymodule_init]
    fn init(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add("__version__", env!("CARGO_PKG_VERSION"))?;
        let profile = if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        };
        m.add("build_profile", profile)?;
        m.add("DETACH_THRESHOLD", super::detach::DETACH_THRESHOLD)?;
        m.add("PAR_THRESHOLD", crate::par::PAR_THRESHOLD)?;
        m.add("MIN_SK_BODY", crate::responder::MIN_SK_BODY)?;
        m.add("MAX_AMPLIFICATION", crate::responder::MAX_AMPLIFICATION)?;
        Ok(())
    }
}
