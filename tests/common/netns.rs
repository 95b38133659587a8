//! Network namespaces a test creates (and deletes when dropped), links between them, and code
//! run inside one: a socket made in a namespace stays there, so servers and clients are made
//! on a thread that entered it, then used from anywhere.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;

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

/// Answers every connection to `listener` with `name` and the address it came from.
pub fn answer_tcp(listener: TcpListener, name: &'static str) {
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let peer = stream.peer_addr().map(|p| p.ip().to_string());
            let _ = write!(stream, "{name} {}", peer.unwrap_or_default());
        }
    });
}

/// [`answer_tcp`] on `port` of every address of `ns`.
pub fn serve_tcp(ns: &Netns, port: u16, name: &'static str) {
    answer_tcp(
        ns.within(move || TcpListener::bind(("0.0.0.0", port)).unwrap()),
        name,
    );
}

/// Answers every datagram to `port` of `ns` with `name` and the address it came from.
pub fn serve_udp(ns: &Netns, port: u16, name: &'static str) {
    let socket = ns.within(move || UdpSocket::bind(("0.0.0.0", port)).unwrap());
    std::thread::spawn(move || {
        let mut buffer = [0u8; 64];
        while let Ok((_, peer)) = socket.recv_from(&mut buffer) {
            let _ = socket.send_to(format!("{name} {}", peer.ip()).as_bytes(), peer);
        }
    });
}

/// What a TCP server at `to` says to a client in `ns` after `request`, or why there is no
/// answer: a dropped connection attempt times out, a refused one is refused.
pub fn ask(ns: &Netns, to: SocketAddr, request: &'static [u8]) -> Result<String, ErrorKind> {
    ns.within(move || {
        let mut stream =
            TcpStream::connect_timeout(&to, Duration::from_secs(2)).map_err(|e| e.kind())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(request).map_err(|e| e.kind())?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).map_err(|e| e.kind())?;
        Ok(answer)
    })
}

pub fn ask_tcp(ns: &Netns, to: &str, port: u16) -> Result<String, ErrorKind> {
    ask(ns, SocketAddr::new(to.parse().unwrap(), port), b"")
}

pub fn ask_udp(ns: &Netns, to: &str, port: u16) -> Result<String, ErrorKind> {
    let to = SocketAddr::new(to.parse::<IpAddr>().unwrap(), port);
    ns.within(move || {
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        socket.send_to(b"?", to).map_err(|e| e.kind())?;
        let mut buffer = [0u8; 64];
        let (n, _) = socket.recv_from(&mut buffer).map_err(|e| e.kind())?;
        Ok(String::from_utf8_lossy(&buffer[..n]).into_owned())
    })
}

/// Whether the attempt was dropped (timed out) rather than answered or refused.
pub fn dropped(answer: Result<String, ErrorKind>) -> bool {
    matches!(answer, Err(ErrorKind::TimedOut | ErrorKind::WouldBlock))
}
