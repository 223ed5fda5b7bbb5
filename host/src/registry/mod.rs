//! Policies as OCI artifacts: pinned references, pulling within the egress
//! rules (with registry logins from `kubernetes.io/dockerconfigjson`
//! Secrets and an on-disk cache by digest), and pushing for authors.

mod cache;
mod login;
mod pull;
mod push;
mod reference;

pub use login::{from_docker_config, Login, DOCKER_CONFIG_KEY};
pub use pull::{
    wasm_layer, Layer, Origin, PullError, Pulled, Registry, RegistrySettings,
    WASM_LAYER_MEDIA_TYPES,
};
pub use push::{push, PushError, Pushed, WASM_CONFIG_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE};
pub use reference::{Reference, ReferenceError};
