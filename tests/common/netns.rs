//! Network namespaces a test creates (and deletes when dropped), links between them, and code
//! run inside one: a socket made in a namespace stays there, so servers and clients are made
//! on a thread that entered it, then used from anywhere.

use std::process::Command;

/// Whether this machine can make namespaces and run `nft` (root, iproute2, nftables); says
/// loudly when it cannot, and fails under CI.
pub fn available() -> bool {
    let works = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !works("nft", &["--version"]) {
        crate::skip_or_fail("nft", "nftables is not installed");
        return false;
    }
    if !works("ip", &["netns", "list"]) {
        crate::skip_or_fail("network namespaces", "`ip netns` does not run here");
        return false;
    }
    let probe = Netns::try_new("probe");
    if probe.is_none() {
        crate::skip_or_fail("network namespaces", "cannot create one (root is needed)");
    }
    probe.is_some()
}

/// Runs a command, panicking with its output when it fails (test setup).
pub fn sh(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A network namespace, deleted on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// A new namespace named `alvt-<role>-<random>` with its loopback up.
    pub fn new(role: &str) -> Self {
        Self::try_new(role).expect("cannot create a network namespace")
    }

    fn try_new(role: &str) -> Option<Self> {
        let name = format!(
            "alvt-{role}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..6]
        );
        let created = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .ok()?;
        if !created.status.success() {
            return None;
        }
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        Some(ns)
    }

    /// `ip -n NAME ...`
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        sh("ip", &all)
    }

    /// A program run inside the namespace.
    pub fn exec(&self, program: &str, args: &[&str]) -> String {
        let mut all = vec!["netns", "exec", self.name.as_str(), program];
        all.extend_from_slice(args);
        sh("ip", &all)
    }

    pub fn sysctl(&self, key: &str, value: &str) {
        self.exec("sysctl", &["-q", "-w", &format!("{key}={value}")]);
    }

    /// Runs `f` on a thread inside the namespace.
    pub fn within<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let handle = std::fs::File::open(&path).expect("the namespace's handle");
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&handle),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .expect("entering the namespace");
            f()
        })
        .join()
        .expect("the thread in the namespace panicked")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A veth pair from `a` (named `a_name`) to `b` (named `b_name`), both up.
pub fn link(a: &Netns, a_name: &str, b: &Netns, b_name: &str) {
    a.ip(&[
        "link", "add", a_name, "type", "veth", "peer", "name", b_name, "netns", &b.name,
    ]);
    a.ip(&["link", "set", a_name, "up"]);
    b.ip(&["link", "set", b_name, "up"]);
}
