//! What a node is made of (operating system, kernel, container engine, packages), for the
//! platform inventory an outside audit asks for. Read from the system, never from the panel.

use alveole_model::{NodeInventory, Package};

/// The node's inventory now; parts that cannot be read are left empty.
pub fn collect(engine_version: Option<String>) -> NodeInventory {
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    NodeInventory {
        os: pretty_name(&os_release).unwrap_or_else(|| "unknown".to_owned()),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|k| k.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned()),
        engine_version,
        packages: packages(),
    }
}

/// `PRETTY_NAME` of an os-release file.
fn pretty_name(os_release: &str) -> Option<String> {
    os_release.lines().find_map(|line| {
        let value = line.strip_prefix("PRETTY_NAME=")?;
        Some(value.trim_matches('"').to_owned())
    })
}

/// The installed packages, from dpkg (Debian, Ubuntu) or else rpm (Fedora, RHEL, SUSE).
fn packages() -> Vec<Package> {
    let queries: [(&str, &[&str]); 2] = [
        (
            "dpkg-query",
            &["-W", "-f", "${db:Status-Abbrev}\t${Package}\t${Version}\n"],
        ),
        (
            "rpm",
            &["-qa", "--qf", "ii \t%{NAME}\t%{VERSION}-%{RELEASE}\n"],
        ),
    ];
    for (program, args) in queries {
        if let Ok(output) = std::process::Command::new(program).args(args).output()
            && output.status.success()
        {
            return parse_packages(&String::from_utf8_lossy(&output.stdout));
        }
    }
    Vec::new()
}

/// Lines of `status \t name \t version`; only installed packages (`ii`) count.
fn parse_packages(text: &str) -> Vec<Package> {
    let mut packages: Vec<Package> = text
        .lines()
        .filter_map(|line| {
            let mut fields = line.split('\t');
            let status = fields.next()?;
            let (name, version) = (fields.next()?, fields.next()?);
            (status.trim() == "ii" && !name.is_empty()).then(|| Package {
                name: name.to_owned(),
                version: version.to_owned(),
            })
        })
        .collect();
    packages.sort();
    packages.dedup();
    packages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_and_package_lists_are_read() {
        let release = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(
            pretty_name(release).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        let listed = parse_packages("ii \tzlib1g\t1:1.2.13\nrc \told\t1\nii \tbash\t5.2.15-2\n");
        assert_eq!(
            listed,
            [
                Package {
                    name: "bash".into(),
                    version: "5.2.15-2".into()
                },
                Package {
                    name: "zlib1g".into(),
                    version: "1:1.2.13".into()
                }
            ]
        );
    }

    #[test]
    fn this_machine_has_an_inventory() {
        let inventory = collect(None);
        assert_ne!(inventory.kernel, "unknown");
        // These machines run Debian: its package list is there.
        if std::path::Path::new("/usr/bin/dpkg-query").exists() {
            assert!(inventory.packages.iter().any(|p| p.name == "dpkg"));
        }
    }
}
