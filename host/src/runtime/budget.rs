//! What a component may cost before it serves.
//!
//! Compiling is the expensive step a tenant controls: a small compressed
//! ConfigMap value can expand to megabytes of code that takes a minute and
//! most of a gigabyte to compile. Two lines of defense: the component's
//! shape is measured before anything is compiled (code size, function
//! count, largest function), which refuses the obvious bombs in
//! milliseconds; and the compile itself runs in a child process under a
//! CPU-time and address-space limit (see `isolate`), which holds whatever
//! the shape.

use std::time::Duration;

use super::RuntimeError;

/// Limits on one component's compile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileBudget {
    /// Most bytes of function bodies, over every core module of the component.
    pub max_code_bytes: u64,
    /// Most functions with a body, over every core module.
    pub max_functions: u64,
    /// Largest single function body, in bytes (compile time grows faster than linearly in it).
    pub max_function_bytes: u64,
    /// Most CPU time the compile may take, all its threads together.
    pub cpu: Duration,
    /// Most address space the compiling process may map.
    pub memory_bytes: u64,
}

impl Default for CompileBudget {
    /// Room for the Python and JavaScript policies (`docs/security.md` has their measured shape
    /// and cost), and far less than a compile bomb needs.
    fn default() -> Self {
        CompileBudget {
            max_code_bytes: 32 << 20,
            max_functions: 100_000,
            max_function_bytes: 1 << 20,
            cpu: Duration::from_secs(60),
            memory_bytes: 1024 << 20,
        }
    }
}

impl CompileBudget {
    /// Longest a compile may take by the clock: the CPU budget, plus room for
    /// a machine busy with other work, before the child is killed.
    pub fn wall(&self) -> Duration {
        self.cpu * 2 + Duration::from_secs(10)
    }
}

/// What a component holds that decides what compiling it costs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shape {
    /// Core modules, nested components' included.
    pub modules: u64,
    /// Functions with a body.
    pub functions: u64,
    /// Bytes of all function bodies.
    pub code_bytes: u64,
    /// Bytes of the largest function body.
    pub largest_function: u64,
}

impl Shape {
    /// Measures `bytes` without compiling or validating them (a malformed
    /// component is left for the compiler to describe).
    pub fn of(bytes: &[u8]) -> Result<Self, RuntimeError> {
        use wasmparser::{Parser, Payload};
        let mut shape = Shape::default();
        for payload in Parser::new(0).parse_all(bytes) {
            match payload {
                Ok(Payload::ModuleSection { .. }) => shape.modules += 1,
                Ok(Payload::CodeSectionStart { count, .. }) => {
                    shape.functions += u64::from(count);
                }
                Ok(Payload::CodeSectionEntry(body)) => {
                    let size = body.range().len() as u64;
                    shape.code_bytes += size;
                    shape.largest_function = shape.largest_function.max(size);
                }
                Ok(_) => {}
                Err(e) => return Err(RuntimeError::Compile(format!("{e}"))),
            }
        }
        Ok(shape)
    }

    /// Refuses a shape over `budget`, naming the first limit it passes.
    pub fn check(&self, budget: &CompileBudget) -> Result<(), RuntimeError> {
        let over = |what: &str, value: u64, limit: u64| {
            Err(RuntimeError::OverBudget(format!(
                "{what} is {value}, above the limit of {limit}"
            )))
        };
        if self.code_bytes > budget.max_code_bytes {
            return over(
                "its code size in bytes",
                self.code_bytes,
                budget.max_code_bytes,
            );
        }
        if self.functions > budget.max_functions {
            return over("its function count", self.functions, budget.max_functions);
        }
        if self.largest_function > budget.max_function_bytes {
            return over(
                "its largest function in bytes",
                self.largest_function,
                budget.max_function_bytes,
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module_with(functions: usize, body_instructions: usize) -> Vec<u8> {
        let body = "i32.const 1 drop ".repeat(body_instructions);
        let funcs = format!("(func {body})").repeat(functions);
        wat::parse_str(format!("(module {funcs})")).unwrap()
    }

    #[test]
    fn the_shape_counts_every_function_body() {
        let shape = Shape::of(&module_with(3, 10)).unwrap();
        assert_eq!(shape.functions, 3);
        // Each body: a size byte, a locals count byte, 10 × (const 1, drop) = 30 bytes, end.
        assert_eq!(shape.largest_function, 32);
        assert_eq!(shape.code_bytes, 3 * 32);
    }

    #[test]
    fn each_limit_is_named_when_passed() {
        let shape = Shape::of(&module_with(4, 100)).unwrap();
        let budget = CompileBudget::default();
        assert!(shape.check(&budget).is_ok());
        for (limits, want) in [
            (
                CompileBudget {
                    max_code_bytes: 100,
                    ..budget.clone()
                },
                "code size",
            ),
            (
                CompileBudget {
                    max_functions: 3,
                    ..budget.clone()
                },
                "function count",
            ),
            (
                CompileBudget {
                    max_function_bytes: 100,
                    ..budget.clone()
                },
                "largest function",
            ),
        ] {
            let err = shape.check(&limits).unwrap_err();
            assert!(err.to_string().contains(want), "{err}");
        }
    }
}
