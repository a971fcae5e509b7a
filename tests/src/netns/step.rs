//! One `ip`, `tc` or `iptables` invocation: how every part of a network and every fault is made
//! and undone. Steps are written as the command line they run, so an error (and a trace) reads as
//! a command one could paste into a shell.

use std::{
    fmt,
    path::Path,
    process::{Command, Stdio},
};

use super::{NetError, Result};

/// iproute2's `ip`.
pub(super) const IP: &str = "/usr/sbin/ip";
/// iproute2's `tc`.
const TC: &str = "/usr/sbin/tc";

/// One command: a program and its arguments.
#[derive(Debug, Clone)]
pub(super) struct Step {
    program: &'static str,
    args: Vec<String>,
}

impl Step {
    /// `ip <line>` in the root namespace; `line` is split at whitespace.
    pub(super) fn ip(line: &str) -> Step {
        Step::new(IP, None, line)
    }

    /// `ip -n <namespace> <line>`.
    pub(super) fn ip_in(namespace: &str, line: &str) -> Step {
        Step::new(IP, Some(namespace), line)
    }

    /// `tc -n <namespace> <line>`.
    pub(super) fn tc_in(namespace: &str, line: &str) -> Step {
        Step::new(TC, Some(namespace), line)
    }

    /// `ip netns exec <namespace> <iptables> <line>` (iptables has no `-n`), with the iptables
    /// the lab installs (see `delay::iptables`).
    pub(super) fn iptables_in(namespace: &str, iptables: &Path, line: &str) -> Step {
        let exec = ["netns", "exec", namespace].map(str::to_string);
        let iptables = iptables.to_string_lossy().into_owned();
        Step {
            program: IP,
            args: exec
                .into_iter()
                .chain([iptables])
                .chain(split(line))
                .collect(),
        }
    }

    fn new(program: &'static str, namespace: Option<&str>, line: &str) -> Step {
        let namespace = namespace.into_iter().flat_map(|ns| ["-n", ns]);
        Step {
            program,
            args: namespace.map(str::to_string).chain(split(line)).collect(),
        }
    }

    /// One more argument, kept whole even if it has spaces (a BPF program).
    pub(super) fn arg(mut self, arg: impl Into<String>) -> Step {
        self.args.push(arg.into());
        self
    }

    /// Runs the step to completion and returns its stdout; a non-zero exit is an error with
    /// its stderr.
    pub(super) fn run(&self) -> Result<String> {
        let output = Command::new(self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| NetError::io(format!("running `{self}`"), e))?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(NetError::Command {
                command: self.to_string(),
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            })
        }
    }

    /// Runs a removal whose failure only means there was nothing left to remove.
    pub(super) fn run_quietly(&self) {
        if let Err(e) = self.run() {
            tracing::debug!("{e}");
        }
    }
}

fn split(line: &str) -> impl Iterator<Item = String> + '_ {
    line.split_whitespace().map(str::to_string)
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.program.rsplit('/').next().unwrap_or(self.program);
        write!(f, "{name}")?;
        for arg in &self.args {
            if arg.contains(' ') {
                write!(f, " '{arg}'")?;
            } else {
                write!(f, " {arg}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_prints_as_its_command_line() {
        let step = Step::tc_in("vkn7-m0", "filter add dev eth0 bpf bytecode").arg("1,6 0 0 0");
        assert_eq!(
            step.to_string(),
            "tc -n vkn7-m0 filter add dev eth0 bpf bytecode '1,6 0 0 0'"
        );
        assert_eq!(
            Step::ip("netns add vkn7-hub").to_string(),
            "ip netns add vkn7-hub"
        );
        let rule = Step::iptables_in("vkn7-m0", Path::new("/d/iptables-legacy"), "-S OUTPUT");
        assert_eq!(
            rule.to_string(),
            "ip netns exec vkn7-m0 /d/iptables-legacy -S OUTPUT"
        );
    }
}
