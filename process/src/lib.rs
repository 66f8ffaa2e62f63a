//! How berth's processes start others, shared by berthd, berth-shim and
//! berth-runtime without one depending on another:
//!
//! - `signals`: the signal state a started process gets (all default, none
//!   blocked);
//! - `sealed`: sealed in-memory copies of berth's own binaries and
//!   non-dumpable processes, so nothing berth runs inside a container's
//!   namespaces exposes a writable host file (CVE-2019-5736).

pub mod sealed;
pub mod signals;
