//! The failure report: the lab's layout and the tail of every process's log, printed when a test
//! fails so the reason is on screen without digging through temp directories.

use std::{fmt::Write as _, fs, path::Path, sync::atomic::Ordering};

use crate::lab::Lab;

/// Lines of each log shown in the report.
const TAIL_LINES: usize = 40;

/// Set to keep the lab directory even when the test passes.
const KEEP_ENV: &str = "VALKEY_LAB_KEEP";

impl Lab {
    /// The layout (pod, address, pid, version) and the last lines of every log.
    pub fn report(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "===== valkey-lab report: block 127.0.{}.0/24, valkey {}{}, master name {:?}, dir {} =====",
            self.block.number(),
            self.version(),
            if self.is_tls() { " (TLS only)" } else { "" },
            self.master_name(),
            self.root.display()
        );
        if let Some(net) = &self.net {
            let faults: Vec<String> = net.active_faults().iter().map(|f| f.to_string()).collect();
            let _ = writeln!(
                out,
                "  pods on namespaces: network 10.213.{}.0/24, faults in place: {faults:?}",
                net.block()
            );
        }
        for pod in self.pods() {
            let state = match (&pod.child, pod.paused) {
                (Some(child), false) => format!("pid {}", child.id()),
                (Some(child), true) => format!("pid {} (paused)", child.id()),
                (None, _) => "stopped".into(),
            };
            let _ = writeln!(
                out,
                "  {:<12} {:<22} {:<20} starts {}",
                pod.id.to_string(),
                pod.addr.to_string(),
                state,
                pod.starts
            );
        }
        for aux in &self.aux {
            let state = aux
                .child
                .as_ref()
                .map_or_else(|| "stopped".into(), |c| format!("pid {}", c.id()));
            let _ = writeln!(out, "  {:<12} {:<22} {state}", aux.name, "(aux)");
        }
        let logs = self
            .pods()
            .map(|p| (p.id.to_string(), &p.log))
            .chain(self.aux.iter().map(|a| (a.name.clone(), &a.log)));
        for (name, log) in logs {
            let _ = writeln!(
                out,
                "----- {name} ({}) last {TAIL_LINES} lines -----",
                log.display()
            );
            out.push_str(&tail(log, TAIL_LINES));
        }
        let _ = writeln!(out, "===== end of valkey-lab report =====");
        out
    }

    /// Marks the lab failed: `Drop` will print the report and keep the directory.
    pub fn mark_failed(&self) {
        self.failed.store(true, Ordering::Relaxed);
    }
}

fn tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let mut out = all[all.len().saturating_sub(lines)..].join("\n");
            out.push('\n');
            out
        }
        Err(e) => format!("(cannot read: {e})\n"),
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let failed = std::thread::panicking() || self.failed.load(Ordering::Relaxed);
        if failed {
            eprintln!("{}", self.report());
        }
        let pods = self.data.iter_mut().chain(self.sentinels.iter_mut());
        let children = pods
            .map(|p| &mut p.child)
            .chain(self.aux.iter_mut().map(|a| &mut a.child));
        for child in children {
            if let Some(mut child) = child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        if failed || std::env::var_os(KEEP_ENV).is_some() {
            eprintln!("valkey-lab: files kept in {}", self.root.display());
        } else {
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}
