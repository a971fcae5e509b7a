//! Role labels as KubeBlocks keeps them from role-probe output (kubeblocks-runtime.md, "Role
//! probe"): `parseRoleProbeOutput` and `acceptRoleProbeEvent`, so a scenario sees exactly the
//! labels the primary Service would select.

use std::collections::BTreeMap;

/// One probe output, parsed: the role (lower-cased) and its version when given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleEvent {
    pub role: String,
    pub version: Option<u64>,
}

/// `parseRoleProbeOutput`: one token is the role, two are the role and an unsigned version; a
/// non-integer version or three or more tokens is malformed (`None`, the event is skipped).
pub fn parse(output: &str) -> Option<RoleEvent> {
    let tokens: Vec<&str> = output.split_whitespace().collect();
    match tokens.as_slice() {
        [role] => Some(RoleEvent {
            role: role.to_ascii_lowercase(),
            version: None,
        }),
        [role, version] => Some(RoleEvent {
            role: role.to_ascii_lowercase(),
            version: Some(version.parse().ok()?),
        }),
        _ => None,
    }
}

/// A pod's label and the last authoritative version it reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Label {
    pub role: Option<String>,
    pub version: Option<u64>,
    /// Once a pod has reported a versioned role, its unversioned ones are rejected.
    pub versioned: bool,
}

/// The labels of one component's pods.
#[derive(Debug, Clone, Default)]
pub struct Labels {
    pods: BTreeMap<String, Label>,
}

impl Labels {
    /// A pod's label.
    pub fn get(&self, pod: &str) -> Label {
        self.pods.get(pod).cloned().unwrap_or_default()
    }

    /// Forgets a deleted pod (a recreated pod starts unlabelled).
    pub fn remove(&mut self, pod: &str) {
        self.pods.remove(pod);
    }

    /// The pods labelled `role`.
    pub fn holding(&self, role: &str) -> Vec<String> {
        self.pods
            .iter()
            .filter(|(_, label)| label.role.as_deref() == Some(role))
            .map(|(pod, _)| pod.clone())
            .collect()
    }

    /// `acceptRoleProbeEvent`: applies an event from `pod` if KubeBlocks would; `exclusive`
    /// names the roles marked `isExclusive`. Returns whether the label changed.
    pub fn accept(&mut self, pod: &str, event: &RoleEvent, exclusive: &[String]) -> bool {
        let current = self.get(pod);
        let stale = match event.version {
            Some(version) => current.version.is_some_and(|last| version <= last),
            None => current.versioned,
        };
        if stale {
            return false;
        }
        if exclusive.contains(&event.role) {
            let blocked = self.pods.iter().any(|(other, label)| {
                other != pod
                    && label.role.as_deref() == Some(event.role.as_str())
                    && match (label.version, event.version) {
                        (Some(_), None) => true,
                        (Some(theirs), Some(mine)) => theirs >= mine,
                        _ => false,
                    }
            });
            if blocked {
                return false;
            }
        }
        let next = Label {
            role: Some(event.role.clone()),
            version: event.version.or(current.version),
            versioned: current.versioned || event.version.is_some(),
        };
        let changed = next != current;
        self.pods.insert(pod.to_owned(), next);
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(text: &str) -> RoleEvent {
        parse(text).expect("well-formed")
    }

    #[test]
    fn outputs_parse_as_the_controller_parses_them() {
        assert_eq!(
            event("Primary 5"),
            RoleEvent {
                role: "primary".into(),
                version: Some(5)
            }
        );
        assert_eq!(
            event("secondary"),
            RoleEvent {
                role: "secondary".into(),
                version: None
            }
        );
        assert_eq!(parse("primary five"), None);
        assert_eq!(parse("primary 5 extra"), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn an_old_event_replayed_never_flips_a_label_back() {
        let exclusive = vec!["primary".to_owned()];
        let mut labels = Labels::default();
        assert!(labels.accept("p0", &event("primary 1"), &exclusive));
        assert!(labels.accept("p1", &event("secondary 1"), &exclusive));
        // Failover to p1 at epoch 2; p0's replayed "primary 1" must not win.
        assert!(labels.accept("p1", &event("primary 2"), &exclusive));
        assert!(!labels.accept("p0", &event("primary 1"), &exclusive));
        assert!(labels.accept("p0", &event("secondary 2"), &exclusive));
        assert_eq!(labels.holding("primary"), vec!["p1".to_owned()]);
        // An unversioned claim after a versioned one is rejected.
        assert!(!labels.accept("p0", &event("primary"), &exclusive));
    }

    #[test]
    fn a_versioned_peer_blocks_an_equal_or_lower_exclusive_claim() {
        let exclusive = vec!["primary".to_owned()];
        let mut labels = Labels::default();
        assert!(labels.accept("p0", &event("primary 3"), &exclusive));
        assert!(!labels.accept("p1", &event("primary 3"), &exclusive));
        assert!(!labels.accept("p2", &event("primary"), &exclusive));
        assert!(labels.accept("p1", &event("primary 4"), &exclusive));
    }
}
