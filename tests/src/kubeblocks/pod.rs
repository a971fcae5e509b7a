//! One pod as the stand-in's kubelet runs it: its volumes as directories, its containers as
//! processes started by their chart command, probes and lifecycle actions run as kbagent runs
//! them (`command[0]` with no shell, the action's environment, its timeout enforced on the whole
//! process group).
//!
//! Paths: every volume mount of a container is a directory of the pod, and every file the image
//! provides that the chart names (the coordinator binary at `/valkey-coordinator`) is mapped to
//! the file built here. Both are applied to commands, arguments and environment values, so a
//! script that takes its paths from the environment, as the chart's do, runs unchanged.
//! Kubernetes' `$(VAR)` expansion in commands and env values is applied as the kubelet does.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::process;

use super::KubeError;

/// A path inside the container and where it is on this machine.
#[derive(Debug, Clone)]
pub struct PathMap {
    entries: Vec<(String, PathBuf)>,
}

impl PathMap {
    /// Builds the map; longer container paths first, so `/etc/valkey` wins over `/etc`.
    pub fn new(mut entries: Vec<(String, PathBuf)>) -> Self {
        entries.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
        Self { entries }
    }

    /// Rewrites every container path inside `text` that starts at a word boundary.
    pub fn apply(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (inside, outside) in &self.entries {
            out = replace_path(&out, inside, &outside.to_string_lossy());
        }
        out
    }
}

/// Replaces `from` in `text` where it starts a path: at the start or after a separator, and
/// followed by the end, `/` or a separator.
fn replace_path(text: &str, from: &str, to: &str) -> String {
    const SEPARATORS: &[char] = &[' ', '=', ':', ',', '"', '\'', ';', '\n', '\t'];
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut previous: Option<char> = None;
    while let Some(at) = rest.find(from) {
        let before = rest[..at].chars().last().or(previous);
        let after = rest[at + from.len()..].chars().next();
        let starts = before.is_none_or(|c| SEPARATORS.contains(&c));
        let ends = after.is_none_or(|c| c == '/' || SEPARATORS.contains(&c));
        out.push_str(&rest[..at]);
        if starts && ends {
            out.push_str(to);
        } else {
            out.push_str(from);
        }
        previous = from.chars().last();
        rest = &rest[at + from.len()..];
    }
    out.push_str(rest);
    out
}

/// Kubernetes' `$(VAR)` expansion: a reference to a defined name is replaced, `$$` is a `$`,
/// anything else stays as written.
pub fn expand(text: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(after) = tail.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(inner) = tail.strip_prefix("$(")
            && let Some(close) = inner.find(')')
            && let Some(value) = env.get(&inner[..close])
        {
            out.push_str(value);
            rest = &inner[close + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

/// What a container needs to run: its command line and environment, paths already mapped.
#[derive(Debug, Clone)]
pub struct Exec {
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
}

/// What the pod's downward API and resource fields give.
#[derive(Debug, Clone)]
pub struct PodFacts {
    pub name: String,
    pub namespace: String,
    pub ip: Ipv4Addr,
    /// `limits.memory` in bytes and `limits.cpu` in cores, as the cluster spec sets them.
    pub memory_limit: u64,
    pub cpu_limit: u64,
}

/// The container's environment as the kubelet builds it: `base` (the component's vars) first,
/// then the container's own `env`, each value `$(VAR)`-expanded against what came before, with
/// `fieldRef`, `resourceFieldRef` and `secretKeyRef` resolved.
pub fn container_env(
    base: &BTreeMap<String, String>,
    env: &Value,
    facts: &PodFacts,
    secrets: &dyn Fn(&str, &str) -> Option<String>,
) -> Result<BTreeMap<String, String>, KubeError> {
    let mut out = base.clone();
    for entry in env.as_array().into_iter().flatten() {
        let name = entry["name"].as_str().unwrap_or_default().to_owned();
        let value = if let Some(value) = entry.get("value").and_then(Value::as_str) {
            expand(value, &out)
        } else if let Some(from) = entry.get("valueFrom") {
            if let Some(path) = from["fieldRef"]["fieldPath"].as_str() {
                match path {
                    "metadata.name" => facts.name.clone(),
                    "metadata.namespace" => facts.namespace.clone(),
                    "status.podIP" | "status.hostIP" => facts.ip.to_string(),
                    "spec.nodeName" => "stand-in-node".to_owned(),
                    other => {
                        return Err(KubeError::Pod(format!(
                            "{}: env {name}: fieldRef {other} is not known to the stand-in",
                            facts.name
                        )));
                    }
                }
            } else if let Some(resource) = from["resourceFieldRef"]["resource"].as_str() {
                match resource {
                    "limits.memory" | "requests.memory" => facts.memory_limit.to_string(),
                    "limits.cpu" | "requests.cpu" => facts.cpu_limit.to_string(),
                    other => {
                        return Err(KubeError::Pod(format!(
                            "{}: env {name}: resourceFieldRef {other} is not known",
                            facts.name
                        )));
                    }
                }
            } else if let Some(secret) = from.get("secretKeyRef") {
                let secret_name = secret["name"].as_str().unwrap_or_default();
                let key = secret["key"].as_str().unwrap_or_default();
                secrets(secret_name, key).ok_or_else(|| {
                    KubeError::Pod(format!(
                        "{}: env {name}: no secret {secret_name}/{key}",
                        facts.name
                    ))
                })?
            } else {
                return Err(KubeError::Pod(format!(
                    "{}: env {name}: a valueFrom the stand-in does not know: {from}",
                    facts.name
                )));
            }
        } else {
            String::new()
        };
        out.insert(name, value);
    }
    Ok(out)
}

/// `command` + `args` of a container (or action), expanded and mapped.
pub fn argv(spec: &Value, env: &BTreeMap<String, String>, paths: &PathMap) -> Vec<String> {
    spec["command"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(spec["args"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .map(|word| paths.apply(&expand(word, env)))
        .collect()
}

/// Maps every env value's paths.
pub fn map_env(env: BTreeMap<String, String>, paths: &PathMap) -> BTreeMap<String, String> {
    env.into_iter()
        .map(|(name, value)| (name, paths.apply(&value)))
        .collect()
}

/// Builds the OS command: no shell, a clean environment (the container's only, plus a PATH
/// holding the image's binaries), output appended to `log`.
pub fn command(exec: &Exec, path: &str, log: &Path) -> Result<Command, KubeError> {
    let (program, args) = exec
        .argv
        .split_first()
        .ok_or_else(|| KubeError::Pod(format!("an empty command (log {})", log.display())))?;
    let mut command = Command::new(program);
    command.args(args).env_clear().envs(&exec.env);
    if !exec.env.contains_key("PATH") {
        command.env("PATH", path);
    }
    if let Some(parent) = log.parent() {
        fs::create_dir_all(parent).map_err(|e| KubeError::io(parent, e))?;
    }
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| KubeError::io(log, e))?;
    let err = out.try_clone().map_err(|e| KubeError::io(log, e))?;
    command.stdin(Stdio::null()).stdout(out).stderr(err);
    Ok(command)
}

/// A started container.
#[derive(Debug)]
pub struct Running {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

/// Starts a container's process.
pub async fn start(name: &str, mut command: Command, log: PathBuf) -> Result<Running, KubeError> {
    use std::os::unix::process::CommandExt;
    command.process_group(0);
    let child = process::spawn(command)
        .await
        .map_err(|e| KubeError::Pod(format!("starting {name}: {e}")))?;
    Ok(Running {
        name: name.to_owned(),
        child,
        log,
    })
}

/// How a run-to-completion command (an init container, a probe, an action) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Exit code; `None` when killed at its timeout.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

impl Outcome {
    /// Exit 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs a command to completion as kbagent does: stdout and stderr captured, the whole process
/// group SIGKILLed at `timeout`.
pub async fn run(mut command: Command, timeout: Duration) -> Result<Outcome, KubeError> {
    use std::os::unix::process::CommandExt;
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let started = Instant::now();
    let mut child = process::spawn(command)
        .await
        .map_err(|e| KubeError::Pod(format!("running an action: {e}")))?;
    let pid = child.id();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let readers = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let mut out = String::new();
        let mut err = String::new();
        if let Some(stdout) = stdout.as_mut() {
            let _ = stdout.read_to_string(&mut out);
        }
        if let Some(stderr) = stderr.as_mut() {
            let _ = stderr.read_to_string(&mut err);
        }
        (out, err)
    });
    let waited = tokio::task::spawn_blocking(move || child.wait());
    let status = match tokio::time::timeout(timeout, waited).await {
        Ok(joined) => Some(
            joined
                .map_err(|e| KubeError::Pod(format!("waiting for an action: {e}")))?
                .map_err(|e| KubeError::Pod(format!("waiting for an action: {e}")))?,
        ),
        Err(_) => {
            process::kill_group(pid);
            None
        }
    };
    let (stdout, stderr) = readers
        .await
        .map_err(|e| KubeError::Pod(format!("reading an action's output: {e}")))?;
    Ok(Outcome {
        code: status.and_then(|status| status.code()),
        stdout,
        stderr,
        took: started.elapsed(),
    })
}

/// Writes a ConfigMap's data into `dir` with `mode`.
pub fn project_config_map(config_map: &Value, dir: &Path, mode: u32) -> Result<(), KubeError> {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(dir).map_err(|e| KubeError::io(dir, e))?;
    for (file, content) in config_map["data"].as_object().into_iter().flatten() {
        let path = dir.join(file);
        fs::write(&path, content.as_str().unwrap_or_default())
            .map_err(|e| KubeError::io(&path, e))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .map_err(|e| KubeError::io(&path, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_paths_are_mapped_at_word_boundaries_only() {
        let paths = PathMap::new(vec![
            ("/data".into(), PathBuf::from("/tmp/p/data")),
            ("/etc/valkey".into(), PathBuf::from("/tmp/p/rt")),
            ("/etc".into(), PathBuf::from("/tmp/p/etc")),
        ]);
        assert_eq!(paths.apply("/data/dump.rdb"), "/tmp/p/data/dump.rdb");
        assert_eq!(paths.apply("--dir=/data"), "--dir=/tmp/p/data");
        assert_eq!(paths.apply("/database"), "/database");
        assert_eq!(
            paths.apply("/etc/valkey/valkey.conf"),
            "/tmp/p/rt/valkey.conf"
        );
        assert_eq!(paths.apply("a:/data,/etc/x"), "a:/tmp/p/data,/tmp/p/etc/x");
        assert_eq!(paths.apply("http://x/data"), "http://x/data");
    }

    #[test]
    fn dollar_parens_expand_as_the_kubelet_does() {
        let env: BTreeMap<String, String> = [("POD_IP".to_owned(), "127.0.0.5".to_owned())].into();
        assert_eq!(expand("$(POD_IP):26379", &env), "127.0.0.5:26379");
        assert_eq!(
            expand("$(NOPE) $$(POD_IP) $x", &env),
            "$(NOPE) $(POD_IP) $x"
        );
    }
}
