//! RBAC as the API server enforces it, for the rules of our own manifests:
//! a request is allowed only if some rule lists its group, resource
//! (`plural` or `plural/subresource`), verb and, where the rule names
//! objects, its object.

use serde::Deserialize;

/// One `rules[]` entry of a Role or ClusterRole.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    #[serde(default)]
    pub api_groups: Vec<String>,
    #[serde(default)]
    pub resources: Vec<String>,
    #[serde(default)]
    pub verbs: Vec<String>,
    #[serde(default)]
    pub resource_names: Vec<String>,
}

#[derive(Deserialize)]
struct RoleDoc {
    kind: String,
    #[serde(default)]
    rules: Vec<Rule>,
}

/// The rules of every Role and ClusterRole in a multi-document YAML manifest.
pub fn rules_from_manifest(yaml: &str) -> Vec<Rule> {
    serde_yaml::Deserializer::from_str(yaml)
        .filter_map(|doc| RoleDoc::deserialize(doc).ok())
        .filter(|d| d.kind == "Role" || d.kind == "ClusterRole")
        .flat_map(|d| d.rules)
        .collect()
}

/// Whether `rules` allow `verb` on `resource` of `group`, object `name`.
pub fn allows(rules: &[Rule], group: &str, resource: &str, verb: &str, name: Option<&str>) -> bool {
    rules.iter().any(|r| {
        // Wildcards are deliberately not understood: our manifests must not use them.
        r.api_groups.iter().any(|g| g == group)
            && r.resources.iter().any(|x| x == resource)
            && r.verbs.iter().any(|v| v == verb)
            && (r.resource_names.is_empty()
                || name.is_some_and(|n| r.resource_names.iter().any(|x| x == n)))
    })
}
