//! The machine's Docker engine and host nftables as tests use them: the test image, one CLI
//! helper, and a guard that removes what a test's nodes made, even when the test fails.

use alveole_agent::engine::runtime::Naming;
use alveole_agent::net::routing::NftCommand;
use alveole_model::NodeId;

use crate::skip_or_fail;

/// Runs the Docker CLI; its standard output, trimmed (empty when it fails).
pub fn docker(args: &[&str]) -> String {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .expect("docker CLI");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Removes everything made for its nodes when dropped, whatever state the test left:
/// containers and volumes labelled for them, their network, their nftables table in the
/// host's namespace (agents on the host make one), and their agents' state directories.
#[derive(Debug, Default)]
pub struct NodeCleanup {
    nodes: Vec<NodeId>,
    dirs: Vec<std::path::PathBuf>,
}

impl NodeCleanup {
    pub fn new(nodes: impl IntoIterator<Item = NodeId>) -> NodeCleanup {
        NodeCleanup {
            nodes: nodes.into_iter().collect(),
            dirs: Vec::new(),
        }
    }

    /// Also removes `dir` (an agent's state directory).
    pub fn with_dir(mut self, dir: &std::path::Path) -> NodeCleanup {
        self.dirs.push(dir.to_owned());
        self
    }
}

impl Drop for NodeCleanup {
    fn drop(&mut self) {
        for dir in &self.dirs {
            let _ = std::fs::remove_dir_all(dir);
        }
        for &node_id in &self.nodes {
            let label = format!("label=coop.alveole.node={node_id}");
            for id in docker(&["ps", "-aq", "--filter", &label]).lines() {
                docker(&["rm", "-f", id]);
            }
            for volume in docker(&["volume", "ls", "-q", "--filter", &label]).lines() {
                docker(&["volume", "rm", "-f", volume]);
            }
            let naming = Naming { node_id };
            docker(&["network", "rm", &naming.network()]);
            alveole_agent::net::routing::remove_node_table(&NftCommand::host(), &naming);
        }
    }
}

/// The test image, built locally (no registry is reachable): Debian's static busybox in an
/// otherwise empty root file system, imported with `docker import`. Built once per engine.
pub const TEST_IMAGE: &str = "alveole-test/busybox:2";

/// A site command that answers `hello from $SITE_NAME` on port 8080 and writes nothing but /tmp.
pub fn hello_command() -> Vec<String> {
    vec![
        "/bin/sh".into(),
        "-c".into(),
        "mkdir -p /tmp/www && echo \"hello from $SITE_NAME\" > /tmp/www/index.html && exec /bin/httpd -f -p 8080 -h /tmp/www".into(),
    ]
}

/// Makes sure the test image exists; false (after saying so) when Docker is unavailable outside CI.
pub fn ensure_test_image() -> bool {
    let docker = |args: &[&str]| std::process::Command::new("docker").args(args).output();
    match docker(&["version", "--format", "{{.Server.Version}}"]) {
        Ok(out) if out.status.success() => {}
        _ => {
            skip_or_fail("Docker", "no Docker engine answers");
            return false;
        }
    }
    if docker(&["image", "inspect", TEST_IMAGE]).is_ok_and(|o| o.status.success()) {
        return true;
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(busybox) = busybox else {
        skip_or_fail(
            "busybox-static",
            "Debian's busybox-static is not installed (.ci/run installs it)",
        );
        return false;
    };
    let root =
        std::env::temp_dir().join(format!("alveole-rootfs-{}", uuid::Uuid::now_v7().simple()));
    for dir in ["bin", "tmp", "data"] {
        std::fs::create_dir_all(root.join(dir)).expect("rootfs dir");
    }
    std::fs::copy(busybox, root.join("bin/busybox")).expect("copy busybox");
    // Like any Unix /tmp: writable by every user (sites may run as an unprivileged user).
    std::fs::set_permissions(
        root.join("tmp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .expect("tmp mode");
    for applet in [
        "sh", "httpd", "echo", "cat", "mkdir", "sleep", "wget", "ls", "id",
    ] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).expect("applet link");
    }
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar -C '{}' -c . | docker import - {TEST_IMAGE}",
            root.display()
        ))
        .status()
        .expect("docker import");
    let _ = std::fs::remove_dir_all(&root);
    assert!(status.success(), "docker import of the test image failed");
    true
}

/// The database images the tests run, as the panel offers them: built from Debian's packages
/// by `tests/images/build.sh` (which `.ci/run` runs), honouring the official images' variables.
pub const TEST_DATABASE_OFFERS: [&str; 2] = [
    "mariadb:10.11=alveole-test/mariadb:10.11",
    "postgresql:15=alveole-test/postgresql:15",
];

/// Makes sure the database images exist (building them, cached, when missing); false (after
/// saying so) when they cannot be had outside CI.
pub fn ensure_database_images() -> bool {
    if !ensure_test_image() {
        return false;
    }
    let present = |image: &str| {
        std::process::Command::new("docker")
            .args(["image", "inspect", image])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if present("alveole-test/mariadb:10.11") && present("alveole-test/postgresql:15") {
        return true;
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("images/build.sh");
    let built = std::process::Command::new("bash")
        .arg(&script)
        .status()
        .is_ok_and(|s| s.success());
    if !built {
        skip_or_fail(
            "database images",
            "tests/images/build.sh could not build them (it needs debootstrap and Debian's mirror; .ci/run runs it)",
        );
    }
    built
}
