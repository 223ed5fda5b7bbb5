//! RBAC as the API server enforces it, for the manifests of this project:
//! Roles and ClusterRoles grant nothing by themselves; a ClusterRoleBinding
//! grants its ClusterRole's rules in every namespace, a RoleBinding grants
//! its Role's (or ClusterRole's) rules in the binding's namespace only. A
//! request is allowed when a grant covers its namespace, group, resource
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

/// A rule granted to the subject, in one namespace or (`None`) in all.
#[derive(Debug, Clone)]
pub struct Grant {
    pub namespace: Option<String>,
    pub rule: Rule,
}

/// The subject the operator runs as.
pub const OPERATOR: (&str, &str) = ("wasm-autoscaler", "wasm-autoscaler");

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Doc {
    kind: String,
    #[serde(default)]
    metadata: Meta,
    #[serde(default)]
    rules: Vec<Rule>,
    #[serde(default)]
    role_ref: Option<RoleRef>,
    #[serde(default)]
    subjects: Vec<Subject>,
}

#[derive(Deserialize, Default)]
struct Meta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Deserialize)]
struct RoleRef {
    kind: String,
    name: String,
}

#[derive(Deserialize)]
struct Subject {
    kind: String,
    name: String,
    #[serde(default)]
    namespace: Option<String>,
}

/// What the multi-document YAML `manifests` grant the ServiceAccount
/// `subject` (namespace, name); documents without a namespace are taken to
/// be in `namespace`, as `kubectl apply -n` would place them.
pub fn grants(manifests: &[&str], namespace: &str, subject: (&str, &str)) -> Vec<Grant> {
    let docs: Vec<Doc> = manifests
        .iter()
        .flat_map(|yaml| serde_yaml::Deserializer::from_str(yaml))
        .filter_map(|d| Doc::deserialize(d).ok())
        .collect();
    let ns_of = |d: &Doc| {
        d.metadata
            .namespace
            .clone()
            .unwrap_or(namespace.to_string())
    };
    let rules_of = |kind: &str, name: &str, ns: &str| -> Vec<Rule> {
        docs.iter()
            .filter(|d| d.kind == kind && d.metadata.name == name)
            .filter(|d| kind == "ClusterRole" || ns_of(d) == ns)
            .flat_map(|d| d.rules.clone())
            .collect()
    };
    let mut out = Vec::new();
    for binding in docs
        .iter()
        .filter(|d| d.kind == "RoleBinding" || d.kind == "ClusterRoleBinding")
    {
        let binds_subject = binding.subjects.iter().any(|s| {
            s.kind == "ServiceAccount"
                && s.name == subject.1
                && s.namespace.as_deref().unwrap_or(&ns_of(binding)) == subject.0
        });
        let Some(role) = &binding.role_ref else {
            continue;
        };
        if !binds_subject {
            continue;
        }
        let scope = (binding.kind == "RoleBinding").then(|| ns_of(binding));
        let rules = rules_of(&role.kind, &role.name, scope.as_deref().unwrap_or(""));
        out.extend(rules.into_iter().map(|rule| Grant {
            namespace: scope.clone(),
            rule,
        }));
    }
    out
}

/// What `deploy/operator/rbac.yaml` (and any further manifests) grant the operator.
pub fn operator_grants(manifests: &[&str]) -> Vec<Grant> {
    grants(manifests, OPERATOR.0, OPERATOR)
}

/// Whether `grants` allow `verb` on `resource` of `group`, object `name`, in
/// `namespace` (`None`: a request across all namespaces).
pub fn allows(
    grants: &[Grant],
    namespace: Option<&str>,
    group: &str,
    resource: &str,
    verb: &str,
    name: Option<&str>,
) -> bool {
    grants.iter().any(|g| {
        let r = &g.rule;
        let in_scope = match (&g.namespace, namespace) {
            (None, _) => true,
            (Some(granted), Some(asked)) => granted == asked,
            (Some(_), None) => false,
        };
        // Wildcards are deliberately not understood: our manifests must not use them.
        in_scope
            && r.api_groups.iter().any(|g| g == group)
            && r.resources.iter().any(|x| x == resource)
            && r.verbs.iter().any(|v| v == verb)
            && (r.resource_names.is_empty()
                || name.is_some_and(|n| r.resource_names.iter().any(|x| x == n)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFESTS: &str = r#"
kind: ClusterRole
metadata: {name: everywhere}
rules: [{apiGroups: [""], resources: [pods], verbs: [list]}]
---
kind: ClusterRoleBinding
metadata: {name: everywhere}
roleRef: {kind: ClusterRole, name: everywhere}
subjects: [{kind: ServiceAccount, name: op, namespace: sys}]
---
kind: Role
metadata: {name: secrets, namespace: team-a}
rules: [{apiGroups: [""], resources: [secrets], verbs: [get], resourceNames: [token]}]
---
kind: RoleBinding
metadata: {name: secrets, namespace: team-a}
roleRef: {kind: Role, name: secrets}
subjects: [{kind: ServiceAccount, name: op, namespace: sys}]
---
kind: Role
metadata: {name: unbound, namespace: team-b}
rules: [{apiGroups: [""], resources: [secrets], verbs: [get]}]
"#;

    #[test]
    fn bindings_decide_where_rules_apply() {
        let g = grants(&[MANIFESTS], "default", ("sys", "op"));
        assert!(allows(&g, None, "", "pods", "list", None));
        assert!(allows(&g, Some("team-b"), "", "pods", "list", None));
        assert!(allows(
            &g,
            Some("team-a"),
            "",
            "secrets",
            "get",
            Some("token")
        ));
        assert!(!allows(
            &g,
            Some("team-a"),
            "",
            "secrets",
            "get",
            Some("other")
        ));
        assert!(
            !allows(&g, Some("team-b"), "", "secrets", "get", Some("token")),
            "unbound role"
        );
        assert!(!allows(&g, None, "", "secrets", "get", Some("token")));
        let other = grants(&[MANIFESTS], "default", ("sys", "someone-else"));
        assert!(other.is_empty());
    }
}
