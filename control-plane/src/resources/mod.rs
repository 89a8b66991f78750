//! What the control plane serves, named: the xDS type URLs (`type_url`). A leaf module, so
//! the snapshot and the xDS state machines both depend on it and not on each other.

pub mod type_url;
