//! toxiproxy (built by `tests/control-plane/build.sh` next to kube-apiserver), driven over its
//! HTTP API on loopback: a proxy per candidate in front of kube-apiserver, and toxics on it to
//! fault that candidate's connection alone. Used by the fault campaign (`faults.rs`) and the soak
//! (`soak.rs`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{ControlPlane, Identity};

const SECOND: Duration = Duration::from_secs(1);
const MILLISECOND: Duration = Duration::from_millis(1);

/// A toxiproxy server, a child of the test, killed when dropped.
pub(crate) struct Toxiproxy {
    child: Child,
    api: SocketAddr,
}

impl Toxiproxy {
    /// Starts `binary` on a free loopback port, logging to `log`, and waits until it answers.
    pub(crate) fn start(binary: &Path, log: &Path) -> Toxiproxy {
        let port = free_port();
        let log = std::fs::File::create(log).expect("creating the toxiproxy log");
        let child = Command::new(binary)
            .args(["-host", "127.0.0.1", "-port", &port.to_string()])
            .env("LOG_LEVEL", "warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("starting {}: {error}", binary.display()));
        let mut toxiproxy = Toxiproxy {
            child,
            api: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let deadline = Instant::now() + 10 * SECOND;
        while toxiproxy.request("GET", "/version", None).is_err() {
            if let Ok(Some(status)) = toxiproxy.child.try_wait() {
                panic!("toxiproxy exited at startup: {status}");
            }
            assert!(Instant::now() < deadline, "toxiproxy not up after 10 s");
            std::thread::sleep(20 * MILLISECOND);
        }
        toxiproxy
    }

    /// One HTTP/1.1 request with a JSON body; the status and body of the answer.
    fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> std::io::Result<(u16, String)> {
        let mut stream = TcpStream::connect_timeout(&self.api, 5 * SECOND)?;
        stream.set_read_timeout(Some(10 * SECOND))?;
        let body = body.map(ToString::to_string).unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.api,
            body.len()
        )?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|status| status.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("no HTTP status in {answer:?}")))?;
        let body = answer
            .split_once("\r\n\r\n")
            .map_or("", |(_, body)| body)
            .to_owned();
        Ok((status, body))
    }

    fn call(&self, method: &str, path: &str, body: Option<&serde_json::Value>) -> String {
        match self.request(method, path, body) {
            Ok((200..=299, answer)) => answer,
            Ok((status, answer)) => panic!("toxiproxy {method} {path}: {status} {answer}"),
            Err(error) => panic!("toxiproxy {method} {path}: {error}"),
        }
    }

    /// Creates a proxy to `upstream` on a free loopback port and returns the port.
    pub(crate) fn create_proxy(&self, name: &str, upstream: &str) -> u16 {
        let proxy = json!({"name": name, "listen": "127.0.0.1:0", "upstream": upstream});
        let answer = self.call("POST", "/proxies", Some(&proxy));
        let answer: serde_json::Value = serde_json::from_str(&answer)
            .unwrap_or_else(|error| panic!("toxiproxy answered {answer:?}: {error}"));
        answer["listen"]
            .as_str()
            .and_then(|listen| listen.rsplit_once(':'))
            .and_then(|(_, port)| port.parse().ok())
            .unwrap_or_else(|| panic!("no listen port in {answer}"))
    }

    /// Adds `toxic` (see [`toxic`]) to `proxy`.
    pub(crate) fn add_toxic(&self, proxy: &str, toxic: &serde_json::Value) {
        self.call("POST", &format!("/proxies/{proxy}/toxics"), Some(toxic));
    }

    /// Removes the toxic named `toxic` from `proxy`.
    pub(crate) fn remove_toxic(&self, proxy: &str, toxic: &str) {
        self.call("DELETE", &format!("/proxies/{proxy}/toxics/{toxic}"), None);
    }

    /// Deletes `proxy`, closing its connections.
    pub(crate) fn delete_proxy(&self, proxy: &str) {
        self.call("DELETE", &format!("/proxies/{proxy}"), None);
    }
}

impl Drop for Toxiproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port that was free a moment ago.
pub(crate) fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
    listener.local_addr().expect("local address").port()
}

impl Toxiproxy {
    /// Creates the proxy `name` in front of the control plane's kube-apiserver and writes
    /// `<dir>/<name>.kubeconfig`, the admin's kubeconfig pointed at the proxy; returns its path.
    pub(crate) fn proxied_kubeconfig(
        &self,
        plane: &ControlPlane,
        name: &str,
        dir: &Path,
    ) -> PathBuf {
        let info = plane.info();
        let server = info["server"]
            .as_str()
            .expect("server in control-plane.json");
        let upstream = server.trim_start_matches("https://");
        let port = self.create_proxy(name, upstream);
        // The serving certificate names 127.0.0.1, so any port on it verifies.
        let admin = plane.kubeconfig(Identity::Admin);
        let text = std::fs::read_to_string(&admin).expect("reading the admin kubeconfig");
        assert!(text.contains(server), "{} names {server}", admin.display());
        let kubeconfig = dir.join(format!("{name}.kubeconfig"));
        std::fs::write(
            &kubeconfig,
            text.replace(server, &format!("https://127.0.0.1:{port}")),
        )
        .expect("writing a kubeconfig");
        kubeconfig
    }

    /// Adds every toxic of `toxics` to `proxy`.
    pub(crate) fn add_toxics(&self, proxy: &str, toxics: &[serde_json::Value]) {
        for toxic in toxics {
            self.add_toxic(proxy, toxic);
        }
    }

    /// Removes every toxic of `toxics` from `proxy`.
    pub(crate) fn remove_toxics(&self, proxy: &str, toxics: &[serde_json::Value]) {
        for toxic in toxics {
            self.remove_toxic(proxy, toxic["name"].as_str().expect("a named toxic"));
        }
    }
}

/// A toxic for [`Toxiproxy::add_toxic`]: `kind` on `stream` (`upstream` or `downstream`) of
/// every connection, with the kind's `attributes`.
pub(crate) fn toxic(
    name: &str,
    kind: &str,
    stream: &str,
    attributes: serde_json::Value,
) -> serde_json::Value {
    json!({"name": name, "type": kind, "stream": stream, "toxicity": 1.0,
           "attributes": attributes})
}

/// A network cut: `timeout` toxics with no timeout both ways, which drop every byte until they
/// are removed.
pub(crate) fn cut() -> Vec<serde_json::Value> {
    vec![
        toxic("cut-up", "timeout", "upstream", json!({"timeout": 0})),
        toxic("cut-down", "timeout", "downstream", json!({"timeout": 0})),
    ]
}
