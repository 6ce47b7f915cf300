//! Debian's `docker-registry` (distribution) as a throwaway local registry.

use std::net::TcpListener;
use std::process::{Child, Command};

use super::{require_tool, temp_dir};

/// Debian's registry on a free loopback port, killed on drop.
pub struct Registry {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        Registry::start_on(std::net::Ipv4Addr::LOCALHOST)
    }

    /// On `address` (a non-loopback one, for clients that never send
    /// loopback traffic through a proxy, as Go's net/http does not).
    pub fn start_on(address: std::net::Ipv4Addr) -> Registry {
        Registry::start_with(address, None)
    }

    /// One that asks for `user` and `password` (htpasswd, over plain HTTP).
    pub fn start_with_login(user: &str, password: &str) -> Registry {
        Registry::start_with(std::net::Ipv4Addr::LOCALHOST, Some((user, password)))
    }

    fn start_with(address: std::net::Ipv4Addr, login: Option<(&str, &str)>) -> Registry {
        require_tool("docker-registry", "docker-registry");
        let dir = temp_dir("registry-");
        let port = TcpListener::bind((address, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("config.yml");
        let mut text = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {address}:{port}\n",
            dir.path().join("data").display()
        );
        if let Some((user, password)) = login {
            let htpasswd = dir.path().join("htpasswd");
            let hash = bcrypt::hash(password, 6).unwrap();
            std::fs::write(&htpasswd, format!("{user}:{hash}\n")).unwrap();
            text.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: osforge-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        std::fs::write(&config, text).unwrap();
        // It logs every 404 of a client probing for blobs as an error: to a file.
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start docker-registry");
        let registry = Registry {
            child,
            port,
            _dir: dir,
        };
        super::wait_listening(address, port, "docker-registry", || {
            std::fs::read_to_string(registry._dir.path().join("registry.log")).unwrap_or_default()
        });
        registry
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
