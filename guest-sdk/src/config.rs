//! Parsing a policy's JSON configuration with errors a person can act on.

use serde::de::DeserializeOwned;

/// Parses the configuration text of a policy.
///
/// Empty text means "no configuration" and parses as `{}`, so a policy whose
/// fields all have defaults needs no config in the spec. Errors name the
/// field and position, for example
/// `invalid config: unknown field `alpa`, expected `alpha` or `window` at line 1 column 7`.
pub fn parse<C: DeserializeOwned>(text: &str) -> Result<C, String> {
    let text = if text.trim().is_empty() { "{}" } else { text };
    // serde would also fill a struct from a JSON array, by field order; a
    // config is an object, in every language a policy is written in.
    if !text.trim_start().starts_with('{') {
        return Err("invalid config: expected a JSON object".into());
    }
    serde_json::from_str(text).map_err(|e| format!("invalid config: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        #[serde(default)]
        alpha: f64,
    }

    #[test]
    fn empty_text_is_an_empty_object() {
        let c: Sample = parse("  ").unwrap();
        assert_eq!(c.alpha, 0.0);
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse::<Sample>(r#"{"alpa": 1}"#).unwrap_err();
        assert!(e.starts_with("invalid config: unknown field `alpa`"), "{e}");
    }

    #[test]
    fn only_an_object_is_a_config() {
        for text in ["[1]", "null", "1", "\"x\""] {
            let e = parse::<Sample>(text).unwrap_err();
            assert_eq!(e, "invalid config: expected a JSON object", "{text}");
        }
    }

    #[test]
    fn errors_name_the_type_problem() {
        let e = parse::<Sample>(r#"{"alpha": "x"}"#).unwrap_err();
        assert!(e.contains("invalid type"), "{e}");
    }
}
