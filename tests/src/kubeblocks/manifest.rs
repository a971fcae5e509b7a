//! The charts as Helm renders them: every object of a multi-document YAML stream, read into
//! JSON values, and the lookups the stand-in needs (by kind and name, the ComponentDefinition
//! a cluster component selects, the image a ComponentVersion gives a service version).

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::KubeError;

/// Every object one or more renders produced.
#[derive(Debug, Clone, Default)]
pub struct Manifests {
    objects: Vec<Value>,
}

impl Manifests {
    /// Reads a multi-document YAML stream; empty documents (`---` with only comments) are skipped.
    pub fn from_yaml(text: &str) -> Result<Self, KubeError> {
        let mut objects = Vec::new();
        for document in serde_yaml_ng::Deserializer::from_str(text) {
            let value: Value = serde::Deserialize::deserialize(document)
                .map_err(|error| KubeError::Manifest(format!("unreadable YAML: {error}")))?;
            if !value.is_null() {
                objects.push(value);
            }
        }
        Ok(Self { objects })
    }

    /// `helm template RELEASE CHART --namespace NS [--set k=v]...`, read.
    pub fn render(
        helm: &Path,
        release: &str,
        chart: &Path,
        namespace: &str,
        set: &[(&str, &str)],
    ) -> Result<Self, KubeError> {
        let mut command = Command::new(helm);
        command
            .arg("template")
            .arg(release)
            .arg(chart)
            .args(["--namespace", namespace]);
        for (key, value) in set {
            command.arg("--set").arg(format!("{key}={value}"));
        }
        let output = command
            .output()
            .map_err(|error| KubeError::Manifest(format!("running {}: {error}", helm.display())))?;
        if !output.status.success() {
            return Err(KubeError::Manifest(format!(
                "helm template {} failed: {}",
                chart.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Self::from_yaml(&String::from_utf8_lossy(&output.stdout))
    }

    /// Adds another render's objects.
    pub fn extend(&mut self, other: Manifests) {
        self.objects.extend(other.objects);
    }

    /// Every object.
    pub fn objects(&self) -> &[Value] {
        &self.objects
    }

    /// Every object of a kind.
    pub fn of_kind(&self, kind: &str) -> impl Iterator<Item = &Value> {
        let kind = kind.to_owned();
        self.objects
            .iter()
            .filter(move |object| object["kind"].as_str() == Some(kind.as_str()))
    }

    /// The object of `kind` named `name`.
    pub fn get(&self, kind: &str, name: &str) -> Result<&Value, KubeError> {
        self.of_kind(kind)
            .find(|object| object["metadata"]["name"].as_str() == Some(name))
            .ok_or_else(|| KubeError::Manifest(format!("no {kind} named {name} in the render")))
    }

    /// The ComponentDefinition a cluster component names, matched as KubeBlocks matches it: by
    /// exact name, else by name prefix, else as a regular expression anchored at the start
    /// (only the forms this addon uses: a name or a prefix).
    pub fn component_definition(&self, pattern: &str) -> Result<&Value, KubeError> {
        let definitions: Vec<&Value> = self.of_kind("ComponentDefinition").collect();
        let name = |object: &Value| object["metadata"]["name"].as_str().unwrap_or("").to_owned();
        if let Some(exact) = definitions.iter().find(|object| name(object) == pattern) {
            return Ok(exact);
        }
        let prefixed: Vec<&&Value> = definitions
            .iter()
            .filter(|object| name(object).starts_with(pattern))
            .collect();
        match prefixed.as_slice() {
            [one] => Ok(one),
            [] => Err(KubeError::Manifest(format!(
                "no ComponentDefinition matches {pattern:?}"
            ))),
            many => Err(KubeError::Manifest(format!(
                "{pattern:?} matches {} ComponentDefinitions: {}",
                many.len(),
                many.iter().map(|o| name(o)).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    /// The images a ComponentVersion gives `service_version` of `component_definition`: the
    /// release whose `serviceVersion` matches, among the releases a compatibility rule lists
    /// for a ComponentDefinition matching that name.
    pub fn release_images(
        &self,
        component_definition: &str,
        service_version: &str,
    ) -> Result<serde_json::Map<String, Value>, KubeError> {
        for version in self.of_kind("ComponentVersion") {
            let spec = &version["spec"];
            let allowed: Vec<&str> = spec["compatibilityRules"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|rule| {
                    rule["compDefs"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|def| {
                            def.as_str()
                                .is_some_and(|def| component_definition.starts_with(def))
                        })
                })
                .flat_map(|rule| rule["releases"].as_array().into_iter().flatten())
                .filter_map(Value::as_str)
                .collect();
            for release in spec["releases"].as_array().into_iter().flatten() {
                let name = release["name"].as_str().unwrap_or("");
                // No service version asked: KubeBlocks takes the newest compatible release;
                // this addon lists one per component where it asks none.
                let matches = service_version.is_empty()
                    || release["serviceVersion"].as_str() == Some(service_version);
                if allowed.contains(&name) && matches {
                    return Ok(release["images"].as_object().cloned().unwrap_or_default());
                }
            }
        }
        Err(KubeError::Manifest(format!(
            "no ComponentVersion release of {component_definition} serves version {service_version}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_of_documents_reads_into_objects_skipping_empty_ones() {
        let manifests = Manifests::from_yaml(
            "---\n# Source: x\n---\nkind: ConfigMap\nmetadata:\n  name: a\n---\n\
             kind: ComponentDefinition\nmetadata:\n  name: valkey-data\n---\n\
             kind: ComponentDefinition\nmetadata:\n  name: valkey-sentinel\n",
        )
        .unwrap();
        assert_eq!(manifests.objects().len(), 3);
        assert!(manifests.get("ConfigMap", "a").is_ok());
        let data = manifests.component_definition("valkey-data").unwrap();
        assert_eq!(data["metadata"]["name"], "valkey-data");
        assert!(
            manifests.component_definition("valkey-").is_err(),
            "ambiguous"
        );
    }
}
