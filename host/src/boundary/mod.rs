//! The trust boundary between tenants and the operator.
//!
//! Everything a `WasmAutoscaler`, or a ConfigMap or Secret in its namespace,
//! says is written by a tenant who may be hostile. This module holds the
//! checks that keep such input away from what only the operator's admin may
//! grant: which files a spec may name ([`files`]), which addresses metric
//! requests may reach ([`egress`]) and which credentials they may carry
//! ([`credentials`]). `docs/security.md` ("Tenants") lists every field and
//! its defense.

pub mod credentials;
pub mod egress;
pub mod files;
pub mod names;
