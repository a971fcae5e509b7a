//! A ComponentDefinition's `vars`, resolved for one cluster the way KubeBlocks resolves them
//! (`pkg/controller/component/vars.go`), for the sources this addon uses: plain values,
//! `componentVarRef` (componentName, shortName, replicas, podNames, podFQDNs),
//! `credentialVarRef` (username, password), `serviceVarRef` (host, port), `clusterVarRef`
//! (namespace, clusterName) and `tlsVarRef` (enabled).
//!
//! The stand-in's cluster DNS: a pod's FQDN resolves to its loopback address, so `podFQDNs`
//! lists the addresses themselves, and a Service's host is the address of its first running
//! pod (a ClusterIP stand-in without load balancing). A source it does not know is an error,
//! never an empty value: a var the chart relies on must not be silently blank.

use std::collections::BTreeMap;

use serde_json::Value;

use super::KubeError;

/// What the resolver needs to know of the cluster.
pub trait ClusterView {
    /// The cluster's name and namespace.
    fn cluster_name(&self) -> &str;
    fn namespace(&self) -> &str;
    /// The cluster component whose ComponentDefinition matches `comp_def` (prefix), or the
    /// component the vars belong to when `comp_def` is empty: its short name.
    fn component_for(&self, comp_def: &str, own: &str) -> Option<String>;
    /// A component's pods, in ordinal order: (pod name, address as the stand-in's DNS gives it).
    fn pods(&self, component: &str) -> Vec<(String, String)>;
    /// A component's replica count.
    fn replicas(&self, component: &str) -> usize;
    /// The password of a component's system account.
    fn account_password(&self, component: &str, account: &str) -> Option<String>;
    /// Whether TLS is on for a component.
    fn tls(&self, component: &str) -> bool;
    /// A resource of a component as a whole number, as `Quantity.Value()` gives it (CPU cores
    /// rounded up, memory in bytes): `cpu`, `cpuLimit`, `memory` or `memoryLimit`.
    fn resource(&self, component: &str, which: &str) -> Option<u64>;
}

/// Resolves every var of `component`'s definition, in order (a later var may not refer to an
/// earlier one in this addon, so order only decides clashes: the last wins, as in KubeBlocks).
pub fn resolve(
    definition: &Value,
    component: &str,
    cluster: &dyn ClusterView,
) -> Result<BTreeMap<String, String>, KubeError> {
    let mut vars = BTreeMap::new();
    for var in definition["spec"]["vars"].as_array().into_iter().flatten() {
        let name = var["name"]
            .as_str()
            .ok_or_else(|| KubeError::Var("a var without a name".into()))?;
        if let Some(value) = resolve_one(var, component, cluster)
            .map_err(|reason| KubeError::Var(format!("{name}: {reason}")))?
        {
            vars.insert(name.to_owned(), value);
        }
    }
    Ok(vars)
}

/// One var: `Ok(None)` for an optional reference that does not resolve.
fn resolve_one(
    var: &Value,
    own: &str,
    cluster: &dyn ClusterView,
) -> Result<Option<String>, String> {
    if let Some(value) = var.get("value").and_then(Value::as_str) {
        return Ok(Some(value.to_owned()));
    }
    let Some(from) = var.get("valueFrom").and_then(Value::as_object) else {
        return Ok(Some(String::new()));
    };
    let (kind, reference) = from
        .iter()
        .next()
        .ok_or_else(|| "an empty valueFrom".to_owned())?;
    let optional = reference["optional"].as_bool().unwrap_or(false);
    let comp_def = reference["compDef"].as_str().unwrap_or("");
    let target = || cluster.component_for(comp_def, own);
    let missing = |what: String| if optional { Ok(None) } else { Err(what) };
    // `Required` and `Optional` both ask for the field (Optional only tolerates its absence).
    let asked = |field: &str| {
        matches!(
            reference[field].as_str(),
            Some("Required") | Some("Optional")
        )
    };
    let full_name = |component: &str| format!("{}-{component}", cluster.cluster_name());
    match kind.as_str() {
        "componentVarRef" => {
            let Some(component) = target() else {
                return missing(format!("no component of definition {comp_def:?}"));
            };
            let pods = cluster.pods(&component);
            let joined = |pick: fn(&(String, String)) -> &String| {
                pods.iter().map(pick).cloned().collect::<Vec<_>>().join(",")
            };
            if asked("componentName") {
                Ok(Some(full_name(&component)))
            } else if asked("shortName") {
                Ok(Some(component))
            } else if asked("replicas") {
                Ok(Some(cluster.replicas(&component).to_string()))
            } else if asked("podNames") {
                Ok(Some(joined(|(name, _)| name)))
            } else if asked("podFQDNs") {
                Ok(Some(joined(|(_, address)| address)))
            } else {
                Err(format!(
                    "componentVarRef asks for nothing the stand-in knows: {reference}"
                ))
            }
        }
        "credentialVarRef" => {
            let Some(component) = target() else {
                return missing(format!("no component of definition {comp_def:?}"));
            };
            let account = reference["name"].as_str().unwrap_or("");
            if asked("username") {
                Ok(Some(account.to_owned()))
            } else if asked("password") {
                match cluster.account_password(&component, account) {
                    Some(password) => Ok(Some(password)),
                    None => missing(format!("{component} has no account {account:?}")),
                }
            } else {
                Err(format!("credentialVarRef asks for nothing: {reference}"))
            }
        }
        "serviceVarRef" => {
            let Some(component) = target() else {
                return missing(format!("no component of definition {comp_def:?}"));
            };
            if asked("host") {
                match cluster.pods(&component).first() {
                    Some((_, address)) => Ok(Some(address.clone())),
                    None => missing(format!("{component} has no pod behind its service")),
                }
            } else if let Some(port) = reference.get("port") {
                let name = port["name"].as_str().unwrap_or("");
                Err(format!(
                    "serviceVarRef port {name:?} is not known to the stand-in"
                ))
            } else {
                Err(format!("serviceVarRef asks for nothing: {reference}"))
            }
        }
        "clusterVarRef" => {
            if asked("namespace") {
                Ok(Some(cluster.namespace().to_owned()))
            } else if asked("clusterName") {
                Ok(Some(cluster.cluster_name().to_owned()))
            } else {
                Err(format!(
                    "clusterVarRef asks for nothing the stand-in knows: {reference}"
                ))
            }
        }
        "tlsVarRef" => {
            let Some(component) = target() else {
                return missing(format!("no component of definition {comp_def:?}"));
            };
            if asked("enabled") {
                Ok(Some(cluster.tls(&component).to_string()))
            } else {
                Err(format!(
                    "tlsVarRef asks for a file the stand-in has not got: {reference}"
                ))
            }
        }
        "resourceVarRef" => {
            let Some(component) = target() else {
                return missing(format!("no component of definition {comp_def:?}"));
            };
            let which = ["cpu", "cpuLimit", "memory", "memoryLimit"]
                .into_iter()
                .find(|which| reference.get(*which).is_some())
                .ok_or_else(|| format!("resourceVarRef asks for nothing known: {reference}"))?;
            Ok(Some(
                cluster.resource(&component, which).unwrap_or(0).to_string(),
            ))
        }
        other => Err(format!("the stand-in does not resolve {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Two;

    impl ClusterView for Two {
        fn cluster_name(&self) -> &str {
            "c"
        }
        fn namespace(&self) -> &str {
            "demo"
        }
        fn component_for(&self, comp_def: &str, own: &str) -> Option<String> {
            match comp_def {
                "" => Some(own.to_owned()),
                "valkey-sentinel" => Some("valkey-sentinel".into()),
                "valkey-data" => Some("valkey".into()),
                _ => None,
            }
        }
        fn pods(&self, component: &str) -> Vec<(String, String)> {
            (0..2)
                .map(|i| (format!("c-{component}-{i}"), format!("127.0.0.{i}")))
                .collect()
        }
        fn replicas(&self, _: &str) -> usize {
            2
        }
        fn account_password(&self, component: &str, account: &str) -> Option<String> {
            (account == "default").then(|| format!("{component}-pw"))
        }
        fn tls(&self, _: &str) -> bool {
            false
        }
        fn resource(&self, _: &str, _: &str) -> Option<u64> {
            Some(1)
        }
    }

    #[test]
    fn vars_resolve_as_kubeblocks_gives_them_to_the_pods() {
        let definition = json!({"spec": {"vars": [
            {"name": "A", "value": "plain"},
            {"name": "NAME", "valueFrom": {"componentVarRef": {"compDef": "valkey-data", "componentName": "Required"}}},
            {"name": "S", "valueFrom": {"componentVarRef": {"compDef": "valkey-sentinel", "podFQDNs": "Required"}}},
            {"name": "P", "valueFrom": {"credentialVarRef": {"compDef": "valkey-sentinel", "name": "default", "password": "Required"}}},
            {"name": "GONE", "valueFrom": {"componentVarRef": {"compDef": "nope", "optional": true, "podNames": "Required"}}},
        ]}});
        let vars = resolve(&definition, "valkey", &Two).unwrap();
        assert_eq!(vars["A"], "plain");
        assert_eq!(vars["NAME"], "c-valkey");
        assert_eq!(vars["S"], "127.0.0.0,127.0.0.1");
        assert_eq!(vars["P"], "valkey-sentinel-pw");
        assert!(!vars.contains_key("GONE"));
    }

    #[test]
    fn a_required_reference_that_does_not_resolve_is_an_error_naming_the_var() {
        let definition = json!({"spec": {"vars": [
            {"name": "X", "valueFrom": {"credentialVarRef": {"name": "nobody", "password": "Required"}}},
        ]}});
        let error = resolve(&definition, "valkey", &Two)
            .unwrap_err()
            .to_string();
        assert!(error.contains("X:") && error.contains("nobody"), "{error}");
    }
}
