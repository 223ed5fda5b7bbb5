//! Errors of loading and calling policy components.

use std::time::Duration;

/// Why a component could not be loaded or a policy call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    /// The bytes are not a WebAssembly binary at all.
    #[error("not a WebAssembly component: the file does not start with the `\\0asm` header")]
    NotWasm,
    /// The bytes are a core Wasm module, which cannot carry the WIT contract.
    #[error("a core WebAssembly module, not a component: build it for wasm32-wasip2 or wrap it with `wasm-tools component new`")]
    CoreModule,
    /// The component failed validation or compilation.
    #[error("invalid component: {0}")]
    Compile(String),
    /// The component would cost more to compile than the budget allows.
    #[error("component over the compile budget: {0}")]
    OverBudget(String),
    /// Compiling took longer by the clock than the budget allows (the
    /// machine may have been busy; tried again later).
    #[error("compiling took longer than {0:?} and was stopped")]
    CompileTimeout(Duration),
    /// The compile worker could not be run.
    #[error("the compile worker failed: {0}")]
    Worker(String),
    /// The component imports something the sandbox does not provide.
    #[error("component imports `{0}`, which the host does not provide (policies get only WASI and `wasm-autoscaler:policy/log`)")]
    UnsupportedImport(String),
    /// The component does not export a policy world, or exports it with the wrong types.
    #[error("component does not implement a policy world: {0}")]
    WrongWorld(String),
    /// The policy ran past its deadline and was interrupted.
    #[error("policy call exceeded its deadline of {0:?}")]
    Timeout(Duration),
    /// The policy tried to grow its memory past the cap.
    #[error("policy exceeded its memory cap of {0} bytes")]
    MemoryCap(usize),
    /// The policy trapped (a bug in the policy).
    #[error("policy trapped: {0}")]
    Trap(String),
    /// The policy answered with an error of its own.
    #[error("policy returned an error: {0}")]
    Policy(String),
    /// The policy rejected its configuration.
    #[error("invalid policy config: {0}")]
    Config(String),
    /// The compiled-component cache folder cannot be used safely.
    #[error("compiled-component cache {0}")]
    Cache(String),
}

impl RuntimeError {
    /// A stable, low-cardinality name for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            RuntimeError::NotWasm => "not_wasm",
            RuntimeError::CoreModule => "core_module",
            RuntimeError::Compile(_) => "compile",
            RuntimeError::OverBudget(_) => "over_budget",
            RuntimeError::CompileTimeout(_) => "compile_timeout",
            RuntimeError::Worker(_) => "compile_worker",
            RuntimeError::UnsupportedImport(_) => "unsupported_import",
            RuntimeError::WrongWorld(_) => "wrong_world",
            RuntimeError::Timeout(_) => "timeout",
            RuntimeError::MemoryCap(_) => "memory_cap",
            RuntimeError::Trap(_) => "trap",
            RuntimeError::Policy(_) => "policy_error",
            RuntimeError::Config(_) => "invalid_config",
            RuntimeError::Cache(_) => "cache",
        }
    }
}

impl RuntimeError {
    /// Whether the same bytes would fail the same way again (so the refusal
    /// can be remembered by digest instead of compiling them again).
    pub fn is_lasting(&self) -> bool {
        matches!(
            self,
            RuntimeError::NotWasm
                | RuntimeError::CoreModule
                | RuntimeError::Compile(_)
                | RuntimeError::OverBudget(_)
        )
    }
}
