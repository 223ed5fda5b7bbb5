//! A real OCI registry for tests: Debian's `docker-registry` (distribution
//! 2.8, installed by `scripts/setup --test-deps`) on a loopback port with
//! its storage in a temporary folder, optionally behind an htpasswd login.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::fixtures::{free_port, which};

/// The login of a registry started with [`RegistryServer::start_with_login`].
pub const USER: &str = "robot";
/// Its password (the htpasswd file below holds its bcrypt hash).
pub const PASSWORD: &str = "registry-test-password";
const HTPASSWD: &str = "robot:$2a$05$OoTCB/Aq8W4Ws2rBeWMd2e2Nf8KIc7uDPeFT/uZqSfItJuYmhyeXy\n";

/// A running registry; stopped and its storage removed when dropped.
pub struct RegistryServer {
    child: Option<Child>,
    /// `127.0.0.1:PORT`, as a reference's registry part.
    pub address: String,
    dir: PathBuf,
}

impl RegistryServer {
    /// A registry anyone may pull from and push to.
    pub fn start() -> Self {
        Self::launch(false)
    }

    /// A registry that answers only [`USER`] with [`PASSWORD`].
    pub fn start_with_login() -> Self {
        Self::launch(true)
    }

    fn launch(login: bool) -> Self {
        let binary = which("docker-registry").unwrap_or_else(|| {
            panic!("the `docker-registry` binary is missing: run `scripts/setup --test-deps` (Debian's docker-registry package)")
        });
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("registry-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("registry folder");
        let auth = if login {
            std::fs::write(dir.join("htpasswd"), HTPASSWD).expect("htpasswd");
            format!(
                "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                dir.join("htpasswd").display()
            )
        } else {
            String::new()
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth}",
            dir.join("data").display()
        );
        std::fs::write(dir.join("config.yml"), config).expect("registry config");
        let log = std::fs::File::create(dir.join("log")).expect("registry log");
        let child = Command::new(binary)
            .arg("serve")
            .arg(dir.join("config.yml"))
            // The access log goes to stdout, the rest to stderr.
            .stdout(log.try_clone().expect("registry log"))
            .stderr(log)
            .spawn()
            .expect("docker-registry starts");
        let server = RegistryServer {
            child: Some(child),
            address: format!("127.0.0.1:{port}"),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&server.address).is_err() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen within 20 s: {}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// What the registry logged so far (one line per request among others).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// Stops the registry (its address then refuses connections).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
